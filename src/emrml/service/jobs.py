"""Durable jobs: each asynchronous operation is an entity row, PENDING → INPROGRESS → COMPLETED/FAILED.

The heavy work of a job runs in a *worker process* (forked from a clean fork server) that
reports progress and a heartbeat through the metastore and writes its results in the same transaction that
marks the entity COMPLETED — so no partial result is ever visible. The runner watches its workers: a worker
that dies (killed, out of memory) or stops sending heartbeats has its job retried, up to
``Settings.job_max_attempts`` tries, then failed with a message saying what happened.

A job whose object is deleted while it runs stops: its runner, which watches the row, asks the worker to stop
(SIGTERM), and the worker stops at its next progress point (``JobStopped``), unwinding through the job's own
cleanup; a worker that has not stopped after ``STOP_GRACE_SECONDS`` is killed. Either way what the job
wrote is removed (``discard_results``) and the object stays DELETED. A job that ends without completing —
FAILED, given up, deleted — leaves none of its results behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from emrml.config import Settings
from emrml.errors import AmazonMLError
from emrml.lifetime import exit_with, process_exists
from emrml.service import forkserver
from emrml.service.confinement import OWNER_ONLY_UMASK
from emrml.service.metastore import ENTITY_CLASSES, fenced_update, now, open_engine, session_factory
from emrml.storage.locations import configure as configure_storage

log = logging.getLogger(__name__)

#: Called by a job's worker with (fraction done, message).
ProgressCallback = Callable[[float, str | None], None]
TERMINAL = ("COMPLETED", "FAILED", "DELETED")
#: Seconds a worker asked to stop (its object was deleted) has to reach a progress point before it is killed.
STOP_GRACE_SECONDS = 10.0
#: Seconds between a runner's looks at the row of a job its worker runs (was it deleted?).
WATCH_SECONDS = 1.0


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
    sessions: sessionmaker
    #: The attempt this worker runs (the ``attempts`` count its claim set): every write is fenced by it.
    attempt: int = 0
    _last_report: float = field(default=0.0, repr=False)
    _spark_jobs: list[int] = field(default_factory=list, repr=False)
    #: Set once a write found the row no longer this attempt's, or the runner asked the worker to stop.
    stopped: threading.Event = field(default_factory=threading.Event, repr=False)

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

    def record_spark_jobs(self, application: str, job_ids: list[int]) -> None:
        """Add Spark jobs the job ran (on the Spark engine) to its row, with their application."""
        self._spark_jobs.extend(job_ids)
        self.write(spark_application=application, spark_jobs=json.dumps(self._spark_jobs))

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress in [0, 1]; throttled to a few writes per second. Raises ``JobStopped`` when the
        job is to stop: its object was deleted, or the job was taken over."""
        if self.stopped.is_set():
            raise JobStopped
        moment = time.monotonic()
        if moment - self._last_report < 0.25 and fraction < 1.0:
            return
        self._last_report = moment
        if not self.write(
            progress=min(max(fraction, 0.0), 1.0), progress_message=message, heartbeat_at=now()
        ):
            raise JobStopped


#: Job functions by entity kind. Each returns the columns to store with status COMPLETED.
JobFunction = Callable[[JobContext], dict[str, Any]]
JOB_FUNCTIONS: dict[str, JobFunction] = {}
#: By entity kind: removes what a job of that kind may have written outside the metastore (a datasource's
#: sample, a model's file, a batch prediction's output), for a job that ended without completing.
JobDiscard = Callable[[Settings, Any], None]
JOB_DISCARDS: dict[str, JobDiscard] = {}
#: The objects a job needs COMPLETED before it can start (spec 4.3), by entity kind: the kind of each and
#: the entity column holding its id. A table here, not in ``tasks``: waiting must not import the job code.
JOB_DEPENDENCIES: dict[str, tuple[tuple[str, str], ...]] = {
    "MLModel": (("DataSource", "training_data_source_id"),),
    "Evaluation": (("MLModel", "ml_model_id"), ("DataSource", "evaluation_data_source_id")),
    "BatchPrediction": (("MLModel", "ml_model_id"), ("DataSource", "batch_prediction_data_source_id")),
}


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


def _heartbeat(context: JobContext, stop: threading.Event) -> None:
    while not stop.wait(context.settings.job_lease_seconds / 4):
        if not context.write(heartbeat_at=now()):
            return  # the job is no longer this attempt's: its next progress point stops it


def _cpu_seconds() -> float:
    """CPU time of this process and of the helper processes it waited for (a job may use a pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_job_in_this_process(
    settings: Settings, kind: str, entity_id: str, attempt: int, *, worker: bool = True
) -> None:
    """Run one claimed attempt of a job in this process and record its outcome. ``worker``: this process
    is the job's own worker; else the job runs on a thread of a server (the Spark engine's long-running
    mode), whose signal handling, umask and storage settings are the server's."""
    from emrml.service import tasks  # noqa: F401  (registers the job functions)

    engine = open_engine(settings.database_url)
    context = JobContext(settings, kind, entity_id, session_factory(engine), attempt)
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
        fields = JOB_FUNCTIONS[kind](context)
        values = {
            "status": "COMPLETED",
            "message": None,
            "progress": 1.0,
            "compute_time": int((cpu_seconds() - cpu_start) * 1000),
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
        values = {"status": "FAILED", "message": f"{JOB_WORK[kind]} failed: {_describe_exit(POOL_DIED)}"}
    except AmazonMLError as exc:
        values = {"status": "FAILED", "message": exc.message}
    except OSError as exc:
        values = {"status": "FAILED", "message": _system_failure(settings, kind, entity_id, exc)}
    except Exception:
        values = {"status": "FAILED", "message": internal_failure(settings, kind, entity_id)}
    finally:
        stop.set()
    finished = now()
    # An ended job is doing nothing: a FAILED one keeps how far it got, not what it was doing.
    if values is not None and context.write(
        finished_at=finished, last_updated_at=finished, worker=None, progress_message=None, **values
    ):
        if values["status"] == "FAILED":
            # An earlier attempt that died may have left results this one did not replace.
            discard_results(settings, kind, context.load())
    else:
        _not_recorded(context, "stopped" if values is None else f"{values['status']} outcome not recorded")
    engine.dispose()


def _not_recorded(context: JobContext, what: str) -> None:
    """A job that ended without recording its outcome: deleted while it ran (what it wrote is removed), or
    taken over by a later attempt or stopped by its stopping runner (the next attempt owns the results)."""
    entity = context.load()
    kind, entity_id, attempt = context.kind, context.entity_id, context.attempt
    if entity is None or entity.status == "DELETED":
        log.info(
            "%s %s attempt %d: deleted while its job ran (%s); its results are removed",
            kind,
            entity_id,
            attempt,
            what,
        )
        discard_results(context.settings, kind, entity)
    else:
        log.warning(
            "%s %s attempt %d: the job was taken over by a later attempt, or its runner is stopping (%s)",
            kind,
            entity_id,
            attempt,
            what,
        )


def _worker_main(settings: Settings, kind: str, entity_id: str, attempt: int, runner_pid: int) -> None:
    """Worker-process entry point. The worker ends with the server or CLI that started it (``runner_pid``):
    a killed server leaves no orphan working behind its back, and its next start retries the job."""
    exit_with(runner_pid)
    run_job_in_this_process(settings, kind, entity_id, attempt)


#: What each kind of job does, in the words a user knows it by.
JOB_WORK = {
    "DataSource": "Reading the data and computing its statistics",
    "MLModel": "Training the model",
    "Evaluation": "Evaluating the model",
    "BatchPrediction": "Scoring the batch prediction",
}


def internal_failure(settings: Settings, kind: str, entity_id: str) -> str:
    """Log the exception being handled under a new reference; return the message the user sees.

    Exception text can carry paths, SQL or other users' data: it goes to the log only (the process's log
    and ``<home>/logs/jobs.log``, owner-only, which a CLI user without a server reads too), and the
    message says what failed and the reference that finds the entry.
    """
    reference = uuid.uuid4().hex[:12]
    entry = f"job {kind} {entity_id} failed (reference {reference}):\n{traceback.format_exc()}"
    log.error("%s", entry)
    folder = settings.home / "logs"
    with suppress(OSError):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(folder / "jobs.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as stream:
            stream.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {entry}\n")
    work = JOB_WORK.get(kind, f"The {kind} job")
    return (
        f"{work} failed with an internal error; the log ({folder / 'jobs.log'} on the machine that ran it) "
        f"has the details under reference {reference}"
    )


#: Errors of a disk that is full or past a limit (a quota, a file size limit): no bug, no retry helps.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: Errors of a folder the job may not write (read-only file system, permissions).
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def _system_failure(settings: Settings, kind: str, entity_id: str, exc: OSError) -> str:
    """The message of a job that failed for want of disk space or of a writable folder, telling what to
    do; any other system error is an internal failure (logged, with a reference)."""
    if exc.errno not in _NO_ROOM | _NOT_WRITABLE:
        return internal_failure(settings, kind, entity_id)
    log.warning("%s %s failed: %s", kind, entity_id, exc)
    work = JOB_WORK.get(kind, f"The {kind} job")
    where = f" ({exc.filename})" if exc.filename else ""
    reason = f"{os.strerror(exc.errno)}{where}"
    if exc.errno in _NO_ROOM:
        return (
            f"{work} failed: {reason}: the disk of the emrml home ({settings.home}) or of its scratch folder "
            f"({settings.scratch_dir}) is full or past a size limit; free some space and run it again"
        )
    return f"{work} failed: a file could not be written: {reason}"


#: The exit code of a worker whose pool lost a process (``run_job_in_this_process``).
POOL_DIED = 75


def _describe_exit(exitcode: int | None) -> str:
    if exitcode == POOL_DIED:
        return "one of its processes was killed, perhaps by the system short of memory"
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _known_dead(worker: str | None) -> bool:
    """Whether the runner and worker named in a job's ``worker`` column are known to be gone.

    The column reads ``host:runner-pid:nonce pid=worker-pid``. Only processes of this machine can be
    checked; a pid that exists may have been reused, so "alive" is not proven, only "dead" is.
    """
    if not worker:
        return False
    runner, _, rest = worker.partition(" ")
    host, _, runner_pid = runner.partition(":")
    runner_pid = runner_pid.partition(":")[0]
    if host != socket.gethostname() or not runner_pid.isdigit():
        return False
    pids = [int(runner_pid)] + [int(p) for p in rest.replace("pid=", " ").split() if p.isdigit()]
    return not any(process_exists(pid) for pid in pids)


class JobRunner:
    """Claims queued jobs and runs each in a worker process; recovers jobs whose worker died."""

    def __init__(self, settings: Settings, sessions: sessionmaker) -> None:
        self.settings = settings
        self.sessions = sessions
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Run jobs on the calling thread instead of a worker process: a server on the Spark engine keeps
        #: one Spark application (a JVM per process) for all its jobs (``emrml serve --engine spark``).
        self.in_process = False
        if settings.s3_configured:
            forkserver.preload_s3()
        self._spawn = forkserver.context()
        #: The worker processes running here, with their attempts, by job (``interrupt`` stops them).
        self._workers: dict[tuple[str, str], tuple[Any, int]] = {}
        self._lock = threading.Lock()
        #: Set by ``interrupt``: no more jobs are claimed here.
        self.stopping = threading.Event()

    def _status(self, kind: str, entity_id: str) -> Any:
        with self.sessions() as session:
            return session.get(ENTITY_CLASSES[kind], entity_id)

    def claim(self, kind: str, entity_id: str) -> int:
        """Move a PENDING job to INPROGRESS for this runner; returns the attempt's number, or 0 if
        someone else got it first."""
        table = ENTITY_CLASSES[kind]
        moment = now()
        with self.sessions() as session, session.begin():
            claimed = session.execute(
                update(table)
                .where(table.id == entity_id, table.status == "PENDING")
                .values(
                    status="INPROGRESS",
                    started_at=moment,
                    last_updated_at=moment,
                    heartbeat_at=moment,
                    worker=self.worker_id,
                    progress=0.0,
                    attempts=table.attempts + 1,
                )
            )
            if claimed.rowcount != 1:
                return 0
            return int(session.scalar(select(table.attempts).where(table.id == entity_id)))

    def requeue_failed(self, kind: str, entity_id: str) -> bool:
        """Queue a FAILED job again, as new (a pipeline re-run retries what failed: a cluster lost, a file
        mended since); whether it was FAILED. Its partial results went with the failure."""
        table = ENTITY_CLASSES[kind]
        values: dict[str, Any] = {
            "status": "PENDING", "message": None, "progress": 0.0, "progress_message": None, "attempts": 0,
            "started_at": None, "finished_at": None, "worker": None, "last_updated_at": now(),
        }  # fmt: skip
        with self.sessions() as session, session.begin():
            return fenced_update(session, table, [table.id == entity_id, table.status == "FAILED"], values)

    def _retry_or_fail(self, kind: str, entity_id: str, attempt: int, what_happened: str) -> bool:
        """Attempt ``attempt`` ended without recording an outcome: queue the job again or give up.

        Fenced like the workers' writes: nothing changes unless that attempt still holds the job.
        Returns whether it did.
        """
        table = ENTITY_CLASSES[kind]
        limit = self.settings.job_max_attempts
        moment = now()
        values: dict[str, Any] = {
            "worker": None,
            "progress": 0.0,
            "progress_message": None,
            "last_updated_at": moment,
        }
        if attempt < limit:
            message = f"{what_happened} on attempt {attempt} of {limit}; the job will be retried"
            values.update(status="PENDING", message=message, started_at=None)
        else:
            message = (
                f"{what_happened} on attempt {attempt} of {limit}; giving up (no partial result was kept)"
            )
            values.update(status="FAILED", message=message, finished_at=moment)
        where = [table.id == entity_id, table.status == "INPROGRESS", table.attempts == attempt]
        with self.sessions() as session, session.begin():
            changed = fenced_update(session, table, where, values)
        if changed:
            log.warning("%s %s: %s", kind, entity_id, message)
            if attempt >= limit:
                self._discard_partial_results(kind, entity_id)
        return changed

    def _discard_partial_results(self, kind: str, entity_id: str) -> None:
        """What a dead attempt of a job given up or deleted left (a retry would have replaced it): it ran no
        cleanup code, and its results must not outlive a job that did not complete."""
        discard_results(self.settings, kind, self._status(kind, entity_id))

    def recover(self) -> None:
        """Requeue (or fail) jobs whose worker is gone: at once when its runner was on this machine and
        its processes no longer exist (a crash, a kill), otherwise once its heartbeats stop for a lease."""
        deadline = now() - self.settings.job_lease_seconds
        for kind, table in ENTITY_CLASSES.items():
            with self.sessions() as session:
                running = session.execute(
                    select(table.id, table.status, table.attempts, table.worker, table.heartbeat_at).where(
                        or_(
                            table.status == "INPROGRESS",
                            # Deleted while it ran, and not yet settled: its runner died meanwhile.
                            and_(table.status == "DELETED", table.worker.is_not(None)),
                        )
                    )
                ).all()
            for entity_id, status, attempt, worker, heartbeat_at in running:
                if status == "DELETED":
                    if _known_dead(worker) or (heartbeat_at is not None and heartbeat_at < deadline):
                        self._settle_deleted(kind, entity_id)
                elif _known_dead(worker):
                    self._retry_or_fail(
                        kind, entity_id, attempt, f"the process running this job ({worker}) is gone"
                    )
                elif heartbeat_at is not None and heartbeat_at < deadline:
                    self._retry_or_fail(
                        kind, entity_id, attempt, "the worker running this job stopped responding"
                    )

    def run(self, kind: str, entity_id: str, progress: ProgressCallback | None = None) -> None:
        """Run one PENDING job to its end in worker processes, retrying after a worker dies (or on this
        thread, with ``in_process``)."""
        while not self.stopping.is_set() and (attempt := self.claim(kind, entity_id)):
            if self.in_process:
                run_job_in_this_process(self.settings, kind, entity_id, attempt, worker=False)
                continue
            process = self._spawn.Process(
                target=_worker_main,
                args=(self.settings, kind, entity_id, attempt, os.getpid()),
                name=f"emrml-{kind}-{entity_id}",
                daemon=False,
            )
            with self._lock:
                if self.stopping.is_set():
                    self._requeue(kind, entity_id, attempt)
                    return
                self._workers[kind, entity_id] = (process, attempt)
            try:
                with forkserver.main_hidden():
                    process.start()
                if self._watch(process, kind, entity_id, attempt, progress):
                    continue  # stopped: deleted (the claim finds nothing to run), taken over, or interrupted
            finally:
                with self._lock:
                    self._workers.pop((kind, entity_id), None)
            if process.exitcode != 0 and not self.stopping.is_set():  # (``interrupt`` queues it again)
                self._retry_or_fail(
                    kind, entity_id, attempt, f"the worker process died ({_describe_exit(process.exitcode)})"
                )

    def interrupt(self) -> list[tuple[str, str]]:
        """Stop the jobs running here and queue them again, their attempts not counted: the server is
        stopping (a restart is no failure of the job's, and two restarts during a long training must not use
        up its attempts). Each worker is asked to stop (it removes its temporaries as it does), killed after
        ``STOP_GRACE_SECONDS``, and only then is its job queued again, so that no worker of an attempt is
        left when the same attempt number is claimed anew. Returns the jobs queued again."""
        with self._lock:
            self.stopping.set()
            running = dict(self._workers)
        for process, _attempt in running.values():
            if process.is_alive():
                with suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process, _attempt in running.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        return [job for job, (_process, attempt) in running.items() if self._requeue(*job, attempt)]

    def _requeue(self, kind: str, entity_id: str, attempt: int) -> bool:
        """Queue again a job whose attempt here was interrupted, as if it had not been claimed."""
        table = ENTITY_CLASSES[kind]
        where = [table.id == entity_id, table.status == "INPROGRESS", table.attempts == attempt]
        values = {
            "status": "PENDING",
            "attempts": attempt - 1,
            "worker": None,
            "progress": 0.0,
            "progress_message": None,
            "started_at": None,
            "last_updated_at": now(),
            "message": "the server running this job stopped before it ended; the job will run again",
        }
        with self.sessions() as session, session.begin():
            requeued = fenced_update(session, table, where, values)
        if requeued:
            log.warning("%s %s: interrupted by the server's stop; queued again", kind, entity_id)
        return requeued

    def _watch(
        self, process: Any, kind: str, entity_id: str, attempt: int, progress: ProgressCallback | None
    ) -> bool:
        """Wait for a worker to end, reporting progress; stop it when its job is no longer this attempt's
        (the object was deleted, or a later attempt took the job over). Returns whether it was stopped."""
        next_look = 0.0
        while process.is_alive():
            process.join(0.2)
            if progress is None and time.monotonic() < next_look:
                continue
            next_look = time.monotonic() + WATCH_SECONDS
            entity = self._status(kind, entity_id)
            if entity is None or entity.status == "DELETED" or entity.attempts != attempt:
                self._stop(process, kind, entity_id, attempt)
                return True
            if progress is not None and entity.status == "INPROGRESS":
                progress(entity.progress, entity.progress_message)
        # Deleted as the worker stopped by itself (it saw the delete first): its results go all the same.
        return self._settle_deleted(kind, entity_id)

    def _stop(self, process: Any, kind: str, entity_id: str, attempt: int) -> None:
        """Stop a worker whose job is no longer its attempt's: SIGTERM, which it answers at its next progress
        point, then SIGKILL after ``STOP_GRACE_SECONDS``. A deleted job's results are then removed (a killed
        worker ran no cleanup code)."""
        if process.is_alive():
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        process.join(STOP_GRACE_SECONDS)
        if process.is_alive():
            log.warning(
                "%s %s attempt %d: the worker did not stop when asked; killing it", kind, entity_id, attempt
            )
            process.kill()
            process.join()
        if self._settle_deleted(kind, entity_id):
            log.info("%s %s: deleted while its job ran; the job was stopped", kind, entity_id)

    def _settle_deleted(self, kind: str, entity_id: str) -> bool:
        """Once its worker is gone, remove what the job of an object deleted while it ran wrote; returns
        whether the object was such a one. A DELETED row that still names a worker is one (a job that
        completed or failed cleared it): clearing it first makes one runner, exactly, remove the results."""
        table = ENTITY_CLASSES[kind]
        where = [table.id == entity_id, table.status == "DELETED", table.worker.is_not(None)]
        with self.sessions() as session, session.begin():
            if not fenced_update(session, table, where, {"worker": None}):
                return False
        self._discard_partial_results(kind, entity_id)
        return True

    def dependencies_settled(self, kind: str, entity: Any) -> bool:
        """False while an object the job needs is still PENDING or INPROGRESS."""
        for dependency_kind, dependency_id in self._dependencies(kind, entity):
            dependency = self._status(dependency_kind, dependency_id)
            if dependency is not None and dependency.status in ("PENDING", "INPROGRESS"):
                return False
        return True

    @staticmethod
    def _dependencies(kind: str, entity: Any) -> list[tuple[str, str]]:
        return [(other, getattr(entity, column)) for other, column in JOB_DEPENDENCIES.get(kind, ())]

    def _dependencies_met(self, kind: str, entity: Any, progress: ProgressCallback | None) -> bool:
        """Finish what the job depends on first; fail the job if a dependency did not complete."""
        for dependency_kind, dependency_id in self._dependencies(kind, entity):
            self.wait(dependency_kind, dependency_id, progress)
            dependency = self._status(dependency_kind, dependency_id)
            if dependency is None or dependency.status != "COMPLETED":
                status = "missing" if dependency is None else dependency.status
                reason = f": {dependency.message}" if dependency is not None and dependency.message else ""
                self._fail_pending(
                    kind, entity.id, f"{dependency_kind} {dependency_id!r} is {status}{reason}"
                )
                return False
        return True

    def _fail_pending(self, kind: str, entity_id: str, message: str) -> None:
        table = ENTITY_CLASSES[kind]
        moment = now()
        with self.sessions() as session, session.begin():
            session.execute(
                update(table)
                .where(table.id == entity_id, table.status == "PENDING")
                .values(status="FAILED", message=message, finished_at=moment, last_updated_at=moment)
            )

    def wait(self, kind: str, entity_id: str, progress: ProgressCallback | None = None) -> None:
        """Block until the entity is COMPLETED, FAILED or DELETED, running it here if it is queued."""
        while not self.stopping.is_set():
            self.recover()
            entity = self._status(kind, entity_id)
            if entity is None or entity.status in TERMINAL:
                return
            if entity.status == "PENDING":
                if self._dependencies_met(kind, entity, progress):
                    self.run(kind, entity_id, progress)
                continue
            if progress is not None:
                progress(entity.progress, entity.progress_message)
            time.sleep(0.2)

    def pending(self) -> list[tuple[str, str]]:
        """Queued jobs, oldest first."""
        jobs: list[tuple[float, str, str]] = []
        with self.sessions() as session:
            for kind, table in ENTITY_CLASSES.items():
                rows = session.execute(select(table.created_at, table.id).where(table.status == "PENDING"))
                jobs.extend((created, kind, entity_id) for created, entity_id in rows)
        return [(kind, entity_id) for _, kind, entity_id in sorted(jobs)]

    def run_pending(self) -> None:
        """Run every queued job to its end (used by the CLI and tests; the server runs jobs concurrently)."""
        for kind, entity_id in self.pending():
            self.wait(kind, entity_id)
