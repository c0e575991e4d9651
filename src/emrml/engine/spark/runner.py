"""Run a function over argument tuples as one Spark job: the Spark twin of the local engine's process pool.

``SparkRunner.map`` has the signature of ``engine.batch._Runner.map``: the engines plan the same units of
work (whole files, record-aligned byte ranges) and run the same functions on them (``count_quotes``,
``count_unit``, ``run_unit``, ``summarize_unit``); only where the functions run differs. Each run of
consecutive tuples (``engine.units.in_runs``: a few runs an executor core) is one task, which reads the next
objects of its run ahead while it works on one (``engine.units.run_in_turn``); results come back in order.
Progress is the share of the job's tasks done, read from Spark's status tracker on a thread while the
driver waits.

Every task first takes the driver's storage settings (the S3 endpoint, encryption; key files are
named, each executor reads its own), so tasks read and write the same locations the driver names.
Spark ships the function and its arguments to the executors and the results back with its own
serializer (pickle) over its own connections, authenticated and encrypted when ``spark_encryption`` is on
(session.py); emrml itself unpickles nothing it reads from storage or the network. Bad data fails the
step at once: a task that meets a ``DataError`` (a truncated or corrupt file, invalid records past the
limit) returns it as its result (``TaskFailure``), so Spark does not run it again, and adds it to the
job's failures (an accumulator, which the driver sees as each task ends): the watcher thread then cancels
the step's other tasks, which could only be wasted work, and the step raises the first failure to arrive
(the first in task order when the job ended first). Any other failure, a ``ReadError`` (an I/O error reading a
file) among them, is raised in the task and retried by Spark (``spark.task.maxFailures``); a job that
fails raises the error the task raised when it is one of emrml's, else ``SparkEngineError`` with Spark's
reason on one line. A job to stop (``SPARK_STOP`` or a progress report raises
``service.worker.JobStopped``: the job's object was deleted, the job given up) has the step's Spark jobs
cancelled, whose executors are then free for other jobs, and the step raises it. An
application left without any executor (its only worker died, or no worker has the cores and memory it
asks for) would wait for one for ever, the job INPROGRESS with its heartbeat going: after
``spark_executor_wait_seconds`` the step's jobs are cancelled and it fails saying so (meanwhile its
progress message says that it waits, and until when). A driver JVM that dies under a step (killed, most
often for memory) fails it saying so, not as a bare connection error. Each step adds its executors' CPU
time on its tasks to the job's ComputeTime (``SPARK_CPU``; ``compute``): their Python workers' through the
``counted`` partition functions, their JVMs' from the stages of the step's Spark jobs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from emrml import errors
from emrml.core.arrow import skip_pandas_probe
from emrml.engine.spark.compute import Seconds, counted, stage_cpu_seconds
from emrml.engine.spark.session import (
    SparkEngineError,
    driver_exit_error,
    executor_wait_seconds,
    lost_driver,
    one_line,
)
from emrml.storage.local import Check, current_guards, use_guards
from emrml.storage.locations import configure_storage_settings, storage_settings

T = TypeVar("T")
Progress = Callable[[float, str | None], None]

#: Where the runner reports the Spark jobs each step ran, with their application: set by the service for
#: the job running on this thread (``service.tasks.spark_of``) so that its row records them.
SPARK_JOBS: ContextVar[Callable[[str, list[int]], None] | None] = ContextVar("emrml_spark_jobs", default=None)
#: Raises once the job running on this thread is to stop (its object deleted, the job given up or taken
#: over, the server stopping), set by the service (``service.tasks.spark_of``): the watcher thread then
#: cancels the step's Spark jobs, whether the step reports progress or not, so the job's thread returns.
SPARK_STOP: ContextVar[Callable[[], None] | None] = ContextVar("emrml_spark_stop", default=None)
#: Where the runner adds the CPU seconds the executors spent on each step's tasks (``compute``): set by the
#: service for the job running on this thread (``service.tasks.spark_of``), for its ComputeTime.
SPARK_CPU: ContextVar[Callable[[float], None] | None] = ContextVar("emrml_spark_cpu", default=None)

#: "emrml.errors.DataError: message" as the last line of a task's Python traceback.
_EMRML_ERROR = re.compile(r"emrml\.errors\.(\w+): (.*)")
#: A task whose Python worker has no emrml, or another version of it.
_NO_EMRML = re.compile(r"(ModuleNotFoundError|ImportError): .*\bemrml\b.*")
_POLL_SECONDS = 0.5
_logger = logging.getLogger(__name__)


def in_executor(storage: dict[str, Any], guards: tuple[Check | None, Check | None]) -> None:
    """Set up an executor's Python worker for emrml's tasks: the driver's storage settings (an executor
    has loaded none) and its checks of local files (``storage.local.current_guards``: a confined job's
    files are checked as the executor opens and writes them, not only as the driver listed them), and
    Arrow's pandas probe settled without importing pandas (a second per worker)."""
    skip_pandas_probe()
    configure_storage_settings(storage)
    use_guards(guards)


@dataclass(frozen=True)
class TaskFailure:
    """A task's ``DataError``, returned as its result instead of raised: Spark retries a task that raises,
    and bad data fails the same way every time it is read."""

    kind: str
    message: str

    def error(self) -> errors.DataError:
        kind = getattr(errors, self.kind, None)
        if isinstance(kind, type) and issubclass(kind, errors.DataError):
            return kind(self.message)
        return errors.DataError(self.message)


def final(exc: BaseException) -> TaskFailure | None:
    """The failure a task returns for ``exc`` when reading the data again cannot change it (a
    ``DataError`` other than a ``ReadError``); ``None`` when the task should raise it (Spark retries)."""
    if isinstance(exc, errors.DataError) and not isinstance(exc, errors.ReadError):
        return TaskFailure(type(exc).__name__, exc.message)
    return None


def raise_failures(results: list[T]) -> list[T]:
    """``results`` of a job's tasks, the first ``TaskFailure`` among them raised as its error."""
    for result in results:
        if isinstance(result, TaskFailure):
            raise result.error()
    return results


class _FirstFailures:
    """How a job's failures add up as its tasks end (a ``pyspark.AccumulatorParam``, by its two methods:
    this module imports no pyspark): the first one names the error and stops the job."""

    def zero(self, value: list[TaskFailure]) -> list[TaskFailure]:
        return []

    def addInPlace(self, value1: list[TaskFailure], value2: list[TaskFailure]) -> list[TaskFailure]:
        return value1 or value2


def _call(
    function: Callable[..., T],
    storage: dict[str, Any],
    guards: tuple[Check | None, Check | None],
    failures: Any,
    arguments: tuple[Any, ...],
) -> T | TaskFailure:
    in_executor(storage, guards)
    try:
        return function(*arguments, report=None)
    except errors.DataError as exc:
        failure = final(exc)
        if failure is None:
            raise
        failures.add([failure])
        return failure


def driver_guarded(function: Callable[..., T]) -> Callable[..., T]:
    """``function``, an engine's Spark job, failing with ``driver_exit_error`` when the driver exited under
    it: its calls into the JVM outside a step (a broadcast, an unpersist as it unwinds) fail with bare
    connection errors, which would stand for an internal error."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if lost_driver(exc):
                raise driver_exit_error() from None
            raise

    return guarded


class SparkRunner:
    """Runs functions over argument tuples on a SparkSession's executors, one task per tuple."""

    def __init__(self, session: Any, progress: Progress) -> None:
        self.session = session
        self._report = progress
        #: The job's progress as last reported: where a step without a span of its own stands.
        self._fraction = 0.0
        #: Why the watcher thread cancelled the step's jobs (a deleted job, no executor, bad data): the step
        #: raises it.
        self._stopped: BaseException | None = None
        #: The running job's ``TaskFailure``s, as its tasks end (an accumulator, made by ``job``).
        self._failures: Any = None
        #: The CPU seconds of the executors' Python workers on the tasks of ``counted`` functions, and how
        #: much of it was reported; the stages whose JVM CPU time was (``compute``).
        self._seconds = session.sparkContext.accumulator(0.0, Seconds())
        self._seconds_reported = 0.0
        self._counted_stages: set[int] = set()

    def counted(self, function: Callable[..., Iterable[T]]) -> Callable[..., Iterator[T]]:
        """``function``, a partition's, its Python worker's CPU time counted for the job (``compute``)."""
        return counted(self._seconds, function)

    def progress(self, fraction: float, message: str | None) -> None:
        """Report the job's progress (steps and their callers report through here)."""
        self._fraction = fraction
        self._report(fraction, message)

    def __enter__(self) -> SparkRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @driver_guarded
    def map(
        self,
        function: Callable[..., T],
        arguments: Sequence[tuple[Any, ...]],
        message: str,
        span: tuple[float, float],
    ) -> list[T]:
        """``function(*args, report=None)`` for each tuple, runs of them the tasks of one Spark job."""
        if not arguments:
            return []
        from emrml.engine.units import in_runs, run_in_turn

        context = self.session.sparkContext
        runs = [(run,) for run in in_runs(arguments, context.defaultParallelism)]
        # One stage, a task per run: a lost task's index is its run's.
        with self.job(message, span, lambda index: _read_by(runs[index][0]) if index < len(runs) else None):
            rdd = context.parallelize(runs, len(runs))
            in_turn = functools.partial(run_in_turn, function)
            call = functools.partial(_call, in_turn, storage_settings(), current_guards(), self._failures)
            done = rdd.mapPartitions(self.counted(functools.partial(map, call))).collect()
            return [result for run in raise_failures(done) for result in run]

    @contextlib.contextmanager
    def job(
        self,
        message: str,
        span: tuple[float, float] | None,
        task_input: Callable[[int], str | None] | None = None,
    ) -> Iterator[None]:
        """Run the Spark jobs started inside as one step: progress (the share of their tasks done) mapped
        onto ``span`` with ``message`` (none without a span: the caller reports it), their ids recorded for
        the job (``SPARK_JOBS``), their failure turned into emrml's error, which names what the failed task
        read (``task_input`` of its index) when Spark's reason does not."""
        context = self.session.sparkContext
        group = f"emrml-{uuid.uuid4().hex[:12]}"
        context.setJobGroup(group, message, interruptOnCancel=True)
        self._failures = context.accumulator([], _FirstFailures())
        # The job's progress message names the application, and so does its row from the start of its
        # first step (its Spark jobs are added as they end), so the jobs browser shows where it runs.
        record = SPARK_JOBS.get()
        if record is not None:
            record(str(context.applicationId), [])
        done = threading.Event()
        watcher = threading.Thread(
            target=self._watch,
            args=(group, message, span, done, SPARK_STOP.get()),
            name="emrml-spark-progress",
            daemon=True,
        )
        watcher.start()
        try:
            yield
        except errors.AmazonMLError:
            raise
        except Exception as exc:
            if self._stopped is not None:  # the jobs failed because the watcher cancelled them
                raise self._stopped from None
            if lost_driver(exc):
                raise driver_exit_error() from None
            raise _task_error(exc, task_input) from None
        finally:
            done.set()
            watcher.join()
            try:
                job_ids = sorted(context.statusTracker().getJobIdsForGroup(group))
                context.setLocalProperty("spark.jobGroup.id", None)
            except Exception as exc:
                if not lost_driver(exc):
                    raise
                job_ids = []  # the driver is gone, and what it ran with it: the step fails saying so
            if record is not None and job_ids:
                record(str(context.applicationId), job_ids)
            self._report_cpu(context, job_ids)

    def _report_cpu(self, context: Any, job_ids: list[int]) -> None:
        """Add the executors' CPU time on the step's tasks to the job's (``SPARK_CPU``)."""
        add = SPARK_CPU.get()
        if add is None:
            return
        python = float(self._seconds.value)
        try:
            jvm = stage_cpu_seconds(context, job_ids, self._counted_stages)
        except Exception as exc:
            # A measure must not fail the job, nor hide why its step failed: its JVM part is left out.
            if not lost_driver(exc):  # else the driver is gone, and its record of the stages with it
                _logger.warning(
                    "could not read the executors' CPU time of Spark jobs %s", job_ids, exc_info=True
                )
            jvm = 0.0
        add(python - self._seconds_reported + jvm)
        self._seconds_reported = python

    def _watch(
        self,
        group: str,
        message: str,
        span: tuple[float, float] | None,
        done: threading.Event,
        check_stop: Callable[[], None] | None,
    ) -> None:
        try:
            self._watch_step(group, message, span, done, check_stop)
        except Exception as exc:
            if not lost_driver(exc):
                raise
            # The driver exited under the step: the step itself fails saying so (``job``).

    def _watch_step(
        self,
        group: str,
        message: str,
        span: tuple[float, float] | None,
        done: threading.Event,
        check_stop: Callable[[], None] | None,
    ) -> None:
        context = self.session.sparkContext
        tracker = context.statusTracker()
        patience, seen = executor_wait_seconds(), time.monotonic()
        application = context.applicationId
        #: The share of the step's tasks done, as last reported: a stage run again (the output of a lost
        #: executor) counts its tasks anew, and the job's progress must not go back meanwhile.
        share = 0.0
        while not done.wait(_POLL_SECONDS):
            failures = self._failures.value
            if failures:  # bad data: the step fails with it whatever the other tasks find
                self._stopped = failures[0].error()
                context.cancelJobGroup(group)
                return
            waited = 0.0
            try:
                if check_stop is not None:
                    check_stop()
            except BaseException as exc:  # the job is to stop (JobStopped, a BaseException)
                self._stopped = exc
                context.cancelJobGroup(group)
                return
            if _has_executors(context):
                seen = time.monotonic()
            elif (waited := time.monotonic() - seen) > patience:
                self._stopped = SparkEngineError(_no_executor(application, str(context.master), patience))
                context.cancelJobGroup(group)
                return
            finished = total = 0
            for job_id in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job is not None else []:
                    stage = tracker.getStageInfo(stage_id)
                    if stage is not None:
                        finished += stage.numCompletedTasks
                        total += stage.numTasks
            fraction: float | None = None
            shown = f"{message} (Spark application {application})"
            if total:
                share = max(share, finished / total)
                shown = f"{message} ({finished} of {total} Spark tasks done, application {application})"
                if span is not None:
                    low, high = span
                    fraction = low + (high - low) * share
            if waited >= _POLL_SECONDS:
                # Said, else the job sat at its last progress as if it worked, until it failed.
                if fraction is None:  # no task seen yet, or a step whose caller reports its progress
                    fraction = span[0] if span is not None else self._fraction
                # First: a progress bar shows the message's start.
                shown = (
                    f"waiting for an executor ({waited:.0f} s; the job fails at {patience:g} s, setting "
                    f"spark_executor_wait_seconds): {shown}"
                )
            if fraction is None:
                continue
            try:
                self.progress(fraction, shown)
            except BaseException as exc:  # the job is to stop (JobStopped, a BaseException)
                self._stopped = exc
                context.cancelJobGroup(group)
                return


def _no_executor(application: str, master: str, patience: float) -> str:
    """Why a step was stopped for want of an executor, and what to look at."""
    message = (
        f"the Spark application {application} has had no executor for {patience:g} s (its workers are gone, "
        f"or none has the cores and memory it asks for), so the job was stopped: check the cluster at "
        f"{master} (setting spark_executor_wait_seconds)"
    )
    if master.startswith("spark://"):
        # A standalone master gives an application every free core unless told otherwise: a long-running
        # server's application keeps them all, idle or not, and the next application gets none.
        message += (
            "; on a standalone cluster an application takes every free core unless spark.cores.max limits "
            "it, so another one (a long-running emrml serve, another emrml process) may hold them all: give "
            "each spark.cores.max in setting spark_conf"
        )
    return message


def _has_executors(context: Any) -> bool:
    """Whether the application has an executor to run tasks on (a ``local`` master is its own)."""
    if str(context.master).startswith("local"):
        return True
    # The block managers Spark knows: the driver's and one per live executor.
    return int(context._jsc.sc().getExecutorMemoryStatus().size()) > 1


def _read_by(run: Sequence[tuple[Any, ...]]) -> str | None:
    """What a task running ``run`` (a run of argument tuples) reads: its units' files and byte ranges."""
    from emrml.engine.units import Unit

    units = [argument for arguments in run for argument in arguments if isinstance(argument, Unit)]
    if not units:
        return None
    parts = [
        unit.uri if unit.stop is None else f"{unit.uri} (bytes {unit.start}-{unit.stop})" for unit in units
    ]
    return ", ".join(parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "")


#: Spark's reason for a failed job names its last failed task: "Lost task 3.0 in stage 1.0 (TID 7)".
_LOST_TASK = re.compile(r"Lost task (\d+)\.\d+ in stage ")
#: A task's Python worker that died (the kernel's OOM killer, a signal, a crash in native code).
_CRASHED = "Python worker exited unexpectedly"


def _task_error(
    exc: Exception, task_input: Callable[[int], str | None] | None = None
) -> errors.AmazonMLError:
    """The error a failed Spark job stands for: emrml's own when a task raised one, else Spark's reason,
    with what the failed task read when ``task_input`` knows it."""
    text = str(exc)
    found = [match for line in text.splitlines() if (match := _EMRML_ERROR.search(line.strip()))]
    if found:
        name, message = found[-1].group(1), found[-1].group(2)
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, errors.AmazonMLError):
            return kind(message)  # type: ignore[no-any-return]
    reason = one_line(exc)
    if _NO_EMRML.fullmatch(reason):
        # The executors' Python is not the driver's (a node without emrml, or with another version of it):
        # "No module named ..." alone reads as a fault of emrml's.
        return SparkEngineError(
            f"the Spark job failed: the executors' Python could not import emrml's code ({reason}): it must "
            "have the same emrml as the driver: install it on every node, and name its interpreter in "
            "spark.pyspark.python of setting spark_conf (docs/spark.md)"
        )
    if reason.startswith(_CRASHED):
        # Spark's own advice (its fault handler settings) is for PySpark's developers, not for the data.
        reason = (
            "a task's Python process exited unexpectedly (killed: most often by the kernel short of memory "
            "on its executor, see spark.executor.memory and spark.executor.pyspark.memory in setting "
            "spark_conf)"
        )
    lost = _LOST_TASK.search(text)
    read = task_input(int(lost.group(1))) if lost is not None and task_input is not None else None
    if read:
        reason += f"; the task read {read}"
    return SparkEngineError(f"the Spark job failed: {reason}")
