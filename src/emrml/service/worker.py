"""The job's side of a durable job (``service.jobs`` is the runner's): what runs in its worker process.

``run_job_in_this_process`` claims nothing: it runs the registered job function (``job``) of an attempt the
runner claimed, with a ``JobContext`` that writes progress and a heartbeat fenced by the attempt, and records
the outcome: COMPLETED with the job's columns, or FAILED with a message a user can act on (an internal error
is logged under a reference, never shown: ``service.job_failures`` words them). A job whose row is no longer
its attempt's (deleted, taken over) stops at its next progress point (``JobStopped``), and what it wrote is
removed (``discard_results``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from emrml.config import Settings
from emrml.errors import AmazonMLError
from emrml.lifetime import exit_with, machine
from emrml.service.confinement import OWNER_ONLY_UMASK
from emrml.service.job_failures import (
    JOB_WORK,
    METASTORE_BUSY,
    METASTORE_FULL,
    POOL_DIED,
    busy,
    describe_exit,
    internal_failure,
    metastore_full,
    system_failure,
)
from emrml.service.job_grants import check_job_grants
from emrml.service.metastore import (
    Sessions,
    fenced_update,
    is_full,
    now,
    open_engine,
    session_factory,
)
from emrml.service.rows import ENTITY_CLASSES
from emrml.storage.locations import configure as configure_storage

log = logging.getLogger(__name__)


def reservation_seconds(settings: Settings) -> float:
    """How far ahead a fenced step (``JobContext.fenced``) or a failed job's removal (``discard_failed``)
    reserves its row, renewing it that often while it runs: the row never reads older than the present,
    so only a holder silent for a whole lease is given up, and one that died is given up within the lease
    (and this) like any silent worker, whatever machine it was on."""
    return settings.job_lease_seconds / 4


@contextmanager
def renewing(renew: Callable[[], bool], every: float, what: str) -> Iterator[None]:
    """Call ``renew`` every ``every`` seconds on a thread while the body runs, until it returns False (the
    row is no longer held: nothing left to renew). A failed renewal (the metastore out of reach for a
    moment) is logged, and the next one tries again."""
    done = threading.Event()

    def loop() -> None:
        while not done.wait(every):
            try:
                if not renew():
                    return
            except SQLAlchemyError as exc:
                log.warning("%s: could not renew its reservation: %s", what, exc)

    thread = threading.Thread(target=loop, name=f"emrml-renew-{what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class JobStopped(BaseException):
    """Raised in a job's worker at a progress point once its row is no longer this attempt's: the object was
    deleted, or a later attempt took the job over. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` of the job code turns it into a failure: the job unwinds, running its cleanup, and
    records nothing."""


@dataclass
class JobContext:
    """What a job function gets: its entity's identity, settings, and a way to report progress."""

    settings: Settings
    kind: str
    entity_id: str
    sessions: Sessions
    #: The attempt this worker runs (the ``attempts`` count its claim set): every write is fenced by it.
    attempt: int = 0
    _last_report: float = field(default=0.0, repr=False)
    _spark_jobs: list[int] = field(default_factory=list, repr=False)
    #: Set once a write found the row no longer this attempt's, or the runner asked the worker to stop.
    stopped: threading.Event = field(default_factory=threading.Event, repr=False)
    #: While a fenced step runs: until when the attempt holds the job whatever its heartbeats (``fenced``).
    held_until: float = field(default=0.0, repr=False)
    #: CPU seconds spent on the job outside this process: by a Spark application's executors, on its tasks.
    executor_cpu_seconds: float = field(default=0.0, repr=False)
    #: What the job lets go of as it ends, however it ends (``on_end``): the Spark application it holds.
    _on_end: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def load(self) -> Any:
        """A detached copy of the job's entity row."""
        with self.session() as session:
            return session.get(ENTITY_CLASSES[self.kind], self.entity_id)

    def write(self, **values: Any) -> bool:
        """Update the job's row if this attempt still holds it; False (nothing written) if it does not.

        After a lease runs out the job is queued and claimed again, raising ``attempts``: a worker of the
        earlier attempt that is still alive then writes nothing, so two attempts never both record results.
        """
        table = ENTITY_CLASSES[self.kind]
        where = [table.id == self.entity_id, table.status == "INPROGRESS", table.attempts == self.attempt]
        with self.session() as session:
            written = fenced_update(session, table, where, values)
        if not written:
            self.stopped.set()
        return written

    def fenced(self, step: Callable[[], None]) -> None:
        """Run ``step``, a change to what every attempt of the job shares (a datasource's sample and staged
        query result, a model's file, a batch prediction's manifest and results), only while this attempt
        holds the job, and hold it meanwhile; raise ``JobStopped`` (the step not run) when it no longer
        does, and (the step run) when the job's object was deleted while the step ran: what it wrote is
        then removed as a deleted job's results are.

        A look at the row before the step would not do: the runner could give the attempt up between the
        look and the step, and a later attempt publish its output before this one's step overwrote it. The
        look here is a write that reserves the job a little ahead (``reservation_seconds``, its heartbeat
        set that far in the future), renewed on a thread of its own while the step runs, so no runner gives
        the attempt up for silence while its process lives and reaches the metastore; one that dies
        mid-step is given up within a lease, like any silent worker. A runner that stops its workers or
        retries after one died waits for the worker's process to end. The step runs outside any
        transaction: a step that waits on the network (the completion of an S3 upload, a PutObject) no
        longer keeps the metastore's other writers waiting (SQLite: the whole database).
        """
        table = ENTITY_CLASSES[self.kind]
        where = [table.id == self.entity_id, table.status == "INPROGRESS", table.attempts == self.attempt]
        ahead = reservation_seconds(self.settings)

        def reserve() -> bool:
            self.held_until = now() + ahead
            with self.session() as session:
                return fenced_update(session, table, where, {"heartbeat_at": self.held_until})

        try:
            if not reserve():
                self.stopped.set()
                raise JobStopped
            with renewing(reserve, ahead, f"{self.kind} {self.entity_id}"):
                step()
        finally:
            self.held_until = 0.0
        if not self.write(heartbeat_at=now()):
            raise JobStopped

    def heartbeat_moment(self) -> float:
        """The heartbeat to record now: the present, or the end of a fenced step's reservation."""
        return max(now(), self.held_until)

    def record_spark_jobs(self, application: str, job_ids: list[int]) -> None:
        """Add Spark jobs the job ran (on the Spark engine) to its row, with their application."""
        self._spark_jobs.extend(job_ids)
        self.write(spark_application=application, spark_jobs=json.dumps(self._spark_jobs))

    def add_executor_cpu(self, seconds: float) -> None:
        """Count ``seconds`` of CPU time that executors spent on the job's Spark tasks in its ComputeTime."""
        self.executor_cpu_seconds += seconds

    def on_end(self, release: Callable[[], None]) -> None:
        """Have ``release`` called once the job ends, completed or not."""
        self._on_end.append(release)

    def end(self) -> None:
        """Call what ``on_end`` registered, last first."""
        while self._on_end:
            self._on_end.pop()()

    def raise_if_stopped(self) -> None:
        """Raise ``JobStopped`` once the job is to stop (``stopped``); writes nothing."""
        if self.stopped.is_set():
            raise JobStopped

    def note(self, message: str | None) -> None:
        """Record ``message`` as the job's progress message, its progress as it stands (a step's work not
        begun, so no fraction to give: a datasource from a query stands at half once the query is staged).
        Raises ``JobStopped`` when the job is to stop."""
        self.raise_if_stopped()
        if not self.write(progress_message=message, heartbeat_at=self.heartbeat_moment()):
            raise JobStopped

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress in [0, 1]; throttled to a few writes per second. Raises ``JobStopped`` when the
        job is to stop: its object was deleted, or the job was taken over."""
        self.raise_if_stopped()
        moment = time.monotonic()
        if moment - self._last_report < 0.25 and fraction < 1.0:
            return
        self._last_report = moment
        if not self.write(
            progress=min(max(fraction, 0.0), 1.0),
            progress_message=message,
            heartbeat_at=self.heartbeat_moment(),
        ):
            raise JobStopped


#: Job functions by entity kind. Each returns the columns to store with status COMPLETED.
JobFunction = Callable[[JobContext], dict[str, Any]]
JOB_FUNCTIONS: dict[str, JobFunction] = {}
#: By entity kind: removes what a job of that kind may have written outside the metastore (a datasource's
#: sample, a model's file, a batch prediction's output), for a job that ended without completing.
JobDiscard = Callable[[Settings, Any], None]
JOB_DISCARDS: dict[str, JobDiscard] = {}


def job(kind: str) -> Callable[[JobFunction], JobFunction]:
    def register(function: JobFunction) -> JobFunction:
        JOB_FUNCTIONS[kind] = function
        return function

    return register


def discards(kind: str) -> Callable[[JobDiscard], JobDiscard]:
    def register(function: JobDiscard) -> JobDiscard:
        JOB_DISCARDS[kind] = function
        return function

    return register


def discard_results(settings: Settings, kind: str, entity: Any) -> None:
    """Remove what the job of ``entity`` wrote outside the metastore; never raises (the job's outcome is
    recorded already, and an output gone unwritable must not undo it)."""
    from emrml.service import tasks  # noqa: F401  (registers the discard functions; the job code loads late)

    discard = JOB_DISCARDS.get(kind)
    if discard is None or entity is None:
        return
    try:
        discard(settings, entity)
    except Exception:
        log.exception("%s %s: could not remove the results of its unfinished job", kind, entity.id)


def update_unless_held(
    settings: Settings, sessions: Sessions, table: Any, where: list[Any], values: dict[str, Any]
) -> bool:
    """``UPDATE`` the row matching ``where`` once no removal of its results holds it (``discard_failed``),
    waiting meanwhile; False (nothing written) once no row matches ``where``. A holder silent for a lease
    (its process died) holds it no more."""
    while True:
        moment = now()
        free = or_(table.worker.is_(None), table.heartbeat_at < moment - settings.job_lease_seconds)
        with sessions() as session, session.begin():
            if fenced_update(session, table, [*where, free], values):
                return True
            if session.scalar(select(func.count()).select_from(table).where(*where)) == 0:
                return False
        time.sleep(HOLD_POLL_SECONDS)


#: Seconds between looks at a row a removal of results holds (``update_unless_held``).
HOLD_POLL_SECONDS = 0.1


def discard_failed(settings: Settings, sessions: Sessions, kind: str, entity_id: str, attempt: int) -> bool:
    """``discard_results`` of a job that attempt ``attempt`` ended FAILED, while it still is; returns
    whether it was.

    Fenced as ``JobContext.fenced`` is. A FAILED job can be queued again (a pipeline re-run,
    ``JobRunner.requeue_failed``) the moment its failure is recorded, and its next attempt publish its
    sample, model or output; a removal that looked at the row first, or not at all, could then delete what
    the next attempt published, leaving it COMPLETED without its results. So the removal first holds the
    row (its ``worker`` names the removal, its heartbeat reserved ahead and renewed while the removal
    runs), commits, removes outside any transaction (S3 deletions wait on the network: SQLite's other
    writers would wait for the whole database), then lets the row go; a job is queued again only once no
    removal holds it (``update_unless_held``)."""
    table = ENTITY_CLASSES[kind]
    where = [table.id == entity_id, table.status == "FAILED", table.attempts == attempt]
    holder = f"{machine()}:{os.getpid()}:{uuid.uuid4().hex[:8]} removing results"
    ahead = reservation_seconds(settings)
    if not update_unless_held(
        settings, sessions, table, where, {"worker": holder, "heartbeat_at": now() + ahead}
    ):
        return False
    held = [table.id == entity_id, table.worker == holder]

    def renew() -> bool:
        with sessions() as session, session.begin():
            return fenced_update(session, table, held, {"heartbeat_at": now() + ahead})

    try:
        with sessions() as session:
            entity = session.get(table, entity_id)
        with renewing(renew, ahead, f"{kind} {entity_id}"):
            discard_results(settings, kind, entity)
    finally:
        with sessions() as session, session.begin():
            fenced_update(session, table, held, {"worker": None})
    return True


def _heartbeat(context: JobContext, stop: threading.Event) -> None:
    while not stop.wait(context.settings.job_lease_seconds / 4):
        try:
            if not context.write(heartbeat_at=context.heartbeat_moment()):
                return  # the job is no longer this attempt's: its next progress point stops it
        except SQLAlchemyError as exc:
            # The metastore full, or out of reach for a moment: the next beat tries again (the job's own
            # writes fail the job if it lasts); a heartbeat thread ended would have the job taken over.
            log.warning(
                "%s %s: could not record the job's heartbeat: %s", context.kind, context.entity_id, exc
            )


def _cpu_seconds() -> float:
    """CPU time of this process and of the helper processes it waited for (a job may use a pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_job_in_this_process(
    settings: Settings,
    kind: str,
    entity_id: str,
    attempt: int,
    *,
    worker: bool = True,
    stopped: threading.Event | None = None,
) -> None:
    """Run one claimed attempt of a job in this process and record its outcome. ``worker``: this process
    is the job's own worker; else the job runs on a thread of a server (the Spark engine's long-running
    mode), whose signal handling, umask and storage settings are the server's, and ``stopped``, once set,
    stops it at its next progress point (the server is stopping, or its runner saw the job deleted, given up
    or taken over: ``JobRunner._watch_thread``)."""
    from emrml.service import tasks  # noqa: F401  (registers the job functions)

    engine = open_engine(settings.database_url)
    context = JobContext(settings, kind, entity_id, session_factory(engine), attempt)
    if stopped is not None:
        context.stopped = stopped
    if worker:
        # Ctrl-C in the terminal of `emrml serve` is for the server, which stops taking work and stops.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # The runner's request to stop (the object was deleted): the next progress point raises JobStopped.
        signal.signal(signal.SIGTERM, lambda _signal, _frame: context.stopped.set())
        os.umask(OWNER_ONLY_UMASK)  # what a job writes is owner-only (see the constant)
        configure_storage(settings)
    table = ENTITY_CLASSES[kind]
    # The worker's pid beside the runner's id tells an operator, and recovery, which process holds the job.
    if not context.write(worker=func.coalesce(table.worker, "") + f" pid={os.getpid()}"):
        log.warning(
            "%s %s attempt %d: the job was taken over before it started; exiting", kind, entity_id, attempt
        )
        engine.dispose()
        return
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(context, stop), daemon=True).start()
    cpu_seconds = _cpu_seconds if worker else time.thread_time  # a server's other threads are not the job's
    cpu_start = cpu_seconds()
    values: dict[str, Any] | None = None
    try:
        # In a context of its own: what a job sets for its thread (the Spark runner's callbacks into this
        # context) ends with it, not with the thread, which runs the next job of a pipeline.
        # The creator's grants as they are now: its request's check may be long past (a queued job).
        check_job_grants(settings, context.sessions, kind, context.load())
        fields = contextvars.copy_context().run(JOB_FUNCTIONS[kind], context)
        values = {
            "status": "COMPLETED",
            "message": None,
            "progress": 1.0,
            "compute_time": int((cpu_seconds() - cpu_start + context.executor_cpu_seconds) * 1000),
            **fields,
        }
    except JobStopped:
        pass
    except BrokenProcessPool:
        # A process of the job's pool died: killed, most often by the kernel short of memory, which picks
        # the largest process. The attempt died as surely as if the worker had: the runner retries it.
        stop.set()
        if worker:
            sys.exit(POOL_DIED)
        values = {"status": "FAILED", "message": f"{JOB_WORK[kind]} failed: {describe_exit(POOL_DIED)}"}
    except AmazonMLError as exc:
        values = {"status": "FAILED", "message": exc.message}
    except OSError as exc:
        values = {"status": "FAILED", "message": system_failure(settings, kind, entity_id, exc)}
    except Exception as exc:
        if is_full(exc):  # a progress report, or a read the job made, found no room
            log.warning("%s %s failed: %s", kind, entity_id, exc)
            values = {"status": "FAILED", "message": metastore_full(settings, kind)}
        elif busy(settings, exc):
            # Another process held the metastore locked past the busy timeout: no failure of the job's.
            # A worker's attempt ends for its runner to retry, as one whose pool died does.
            stop.set()
            log.warning("%s %s attempt %d: %s", kind, entity_id, attempt, describe_exit(METASTORE_BUSY))
            if worker:
                sys.exit(METASTORE_BUSY)
            values = {
                "status": "FAILED",
                "message": f"{JOB_WORK[kind]} failed: {describe_exit(METASTORE_BUSY)}",
            }
        else:
            values = {"status": "FAILED", "message": internal_failure(settings, kind, entity_id)}
    finally:
        stop.set()
        context.end()
    status = None if values is None else _record_outcome(context, values)
    if status == "FAILED":
        # An earlier attempt that died may have left results this one did not replace.
        discard_failed(settings, context.sessions, kind, entity_id, attempt)
    elif status is None:
        _not_recorded(context, "stopped" if values is None else f"{values['status']} outcome not recorded")
    engine.dispose()


def _record_outcome(context: JobContext, values: dict[str, Any]) -> str | None:
    """Record the job's outcome; returns its status, or None if the attempt no longer holds the job.

    An outcome the metastore has no room for (results are the bulk of it; the write is rolled back whole)
    is recorded as a failure saying so, a few bytes; should even that find no room, the error goes up (a
    worker then ends with ``METASTORE_FULL``, for its runner to tell)."""
    finished = now()
    # An ended job is doing nothing: a FAILED one keeps how far it got, not what it was doing.
    ended = {"finished_at": finished, "last_updated_at": finished, "worker": None, "progress_message": None}
    try:
        return values["status"] if context.write(**ended, **values) else None
    except SQLAlchemyError as exc:
        if not is_full(exc):
            raise
        log.warning(
            "%s %s: no room in the metastore for the job's outcome: %s", context.kind, context.entity_id, exc
        )
    failure = {"status": "FAILED", "message": metastore_full(context.settings, context.kind)}
    return "FAILED" if context.write(**ended, **failure) else None


def _not_recorded(context: JobContext, what: str) -> None:
    """A job that ended without recording its outcome: deleted while it ran (what it wrote is removed), or
    no longer this attempt's, or asked to stop (the next attempt owns the results). The log says which, as
    the job's row tells it."""
    entity = context.load()
    kind, entity_id, attempt = context.kind, context.entity_id, context.attempt
    if entity is None or entity.status == "DELETED":
        if settle_deleted(context.settings, context.sessions, kind, entity_id):
            log.info(
                "%s %s attempt %d: deleted while its job ran (%s); its results are removed",
                kind,
                entity_id,
                attempt,
                what,
            )
    else:
        log.warning("%s %s attempt %d: %s (%s)", kind, entity_id, attempt, _why_ended(entity, attempt), what)


def _why_ended(entity: Any, attempt: int) -> str:
    """Why an attempt whose object is not deleted ended without recording an outcome, as its row tells."""
    if entity.attempts != attempt:
        return f"attempt {entity.attempts} took the job over"
    if entity.status == "PENDING":
        return "the job was queued again"
    if entity.status == "FAILED":
        return "the job was given up"
    if entity.status != "INPROGRESS":
        return f"the job is {entity.status} now"
    # The row is still this attempt's: nothing changed it, so the stop came from a signal, the runner's as
    # it stops or another process's, or (a job on a server's thread) from its server stopping.
    return "asked to stop while the job was still this attempt's (its runner stopping, or a signal)"


def settle_deleted(settings: Settings, sessions: Sessions, kind: str, entity_id: str) -> bool:
    """Remove what the job of an object deleted while it ran wrote; returns whether the object was such a
    one. A DELETED row that still names a worker is one (a job that completed or failed cleared it):
    clearing it first makes exactly one process remove the results, the job's worker as it stops or its
    runner once the worker is gone (killed, it ran no cleanup code)."""
    table = ENTITY_CLASSES[kind]
    where = [table.id == entity_id, table.status == "DELETED", table.worker.is_not(None)]
    with sessions() as session, session.begin():
        if not fenced_update(session, table, where, {"worker": None}):
            return False
        entity = session.get(table, entity_id)
    discard_results(settings, kind, entity)
    return True


def worker_main(settings: Settings, kind: str, entity_id: str, attempt: int, runner_pid: int) -> None:
    """Worker-process entry point. The worker ends with the server or CLI that started it (``runner_pid``):
    a killed server leaves no orphan working behind its back, and its next start retries the job."""
    exit_with(runner_pid)
    try:
        run_job_in_this_process(settings, kind, entity_id, attempt)
    except SQLAlchemyError as exc:
        if busy(settings, exc):  # as the job recorded its outcome: the runner retries it
            log.error("%s %s attempt %d: %s", kind, entity_id, attempt, describe_exit(METASTORE_BUSY))
            sys.exit(METASTORE_BUSY)
        if not is_full(exc):
            raise
        # No room even to record that: the runner, told by the exit code, retries the job or fails it.
        log.error("%s %s attempt %d: %s", kind, entity_id, attempt, metastore_full(settings, kind))
        sys.exit(METASTORE_FULL)
