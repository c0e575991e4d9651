"""Durable jobs: each asynchronous operation is an entity row, PENDING → INPROGRESS → COMPLETED/FAILED.

The heavy work of a job runs in a *worker process* (forked from a clean fork server) that
reports progress and a heartbeat through the metastore and writes its results in the same transaction that
marks the entity COMPLETED — so no partial result is ever visible. The runner watches its workers: a worker
that dies (killed, out of memory) or stops sending heartbeats has its job retried, up to
``Settings.job_max_attempts`` tries, then failed with a message saying what happened.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from emrml.config import Settings
from emrml.errors import AmazonMLError, JobAbandoned
from emrml.lifetime import exit_with, process_exists
from emrml.service import forkserver
from emrml.service.confinement import OWNER_ONLY_UMASK
from emrml.service.metastore import ENTITY_CLASSES, fenced_update, now, open_engine, session_factory
from emrml.storage.locations import configure as configure_storage

log = logging.getLogger(__name__)

#: Called by a job's worker with (fraction done, message).
ProgressCallback = Callable[[float, str | None], None]
TERMINAL = ("COMPLETED", "FAILED", "DELETED")


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
    #: Set once a write finds the row no longer this attempt's (deleted, taken over): the work is stopped.
    _abandoned: bool = field(default=False, repr=False)

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
            return fenced_update(session, table, where, values)

    def record_spark_jobs(self, application: str, job_ids: list[int]) -> None:
        """Add Spark jobs the job ran (on the Spark engine) to its row, with their application."""
        self._spark_jobs.extend(job_ids)
        self.write(spark_application=application, spark_jobs=json.dumps(self._spark_jobs))

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress in [0, 1]; throttled to a few writes per second. Raises ``JobAbandoned`` once the
        row is no longer this attempt's: a deleted job stops instead of running on (and a batch prediction
        publishing results for an object that is gone)."""
        moment = time.monotonic()
        if moment - self._last_report >= 0.25 or fraction >= 1.0:
            self._last_report = moment
            values = {"progress": min(max(fraction, 0.0), 1.0), "progress_message": message}
            if not self.write(**values, heartbeat_at=now()):
                self._abandoned = True
        if self._abandoned:
            who = f"{self.kind} {self.entity_id!r} attempt {self.attempt}"
            raise JobAbandoned(f"{who} no longer holds its job")

    def heartbeat(self) -> None:
        if not self.write(heartbeat_at=now()):
            self._abandoned = True


#: Job functions by entity kind. Each returns the columns to store with status COMPLETED.
JobFunction = Callable[[JobContext], dict[str, Any]]
JOB_FUNCTIONS: dict[str, JobFunction] = {}
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


def _heartbeat(context: JobContext, stop: threading.Event) -> None:
    while not stop.wait(context.settings.job_lease_seconds / 4):
        context.heartbeat()


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

    if worker:
        # Ctrl-C in the terminal of `emrml serve` is for the server, which stops taking work and stops.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.umask(OWNER_ONLY_UMASK)  # what a job writes is owner-only (see the constant)
        configure_storage(settings)
    engine = open_engine(settings.database_url)
    context = JobContext(settings, kind, entity_id, session_factory(engine), attempt)
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
    values: dict[str, Any] | None
    try:
        fields = JOB_FUNCTIONS[kind](context)
        values = {
            "status": "COMPLETED",
            "message": None,
            "progress": 1.0,
            "progress_message": None,
            "compute_time": int((cpu_seconds() - cpu_start) * 1000),
            **fields,
        }
    except AmazonMLError as exc:
        values = {"status": "FAILED", "message": exc.message}
    except JobAbandoned:
        values = None
    except Exception:
        values = {"status": "FAILED", "message": internal_failure(settings, kind, entity_id)}
    finally:
        stop.set()
    if values is None:
        log.warning("%s %s attempt %d: deleted or taken over while it ran; stopped", kind, entity_id, attempt)
        engine.dispose()
        return
    finished = now()
    if not context.write(finished_at=finished, last_updated_at=finished, worker=None, **values):
        log.warning(
            "%s %s attempt %d: the job was deleted or taken over by a later attempt; its %s outcome was not "
            "recorded",
            kind,
            entity_id,
            attempt,
            values["status"],
        )
    engine.dispose()


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


def _describe_exit(exitcode: int | None) -> str:
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
        """What a dead attempt of a job given up left on disk (a retry would have replaced it)."""
        if kind != "BatchPrediction":
            return  # other jobs' leftovers are in the scratch folder, which training sweeps
        with self.sessions() as session:
            output_uri = session.get(ENTITY_CLASSES[kind], entity_id).output_uri
        from emrml.engine.batch import discard_partial_results  # the job code: only now it is needed

        try:
            discard_partial_results(output_uri, self.settings, entity_id)
        except Exception:  # the job's outcome is recorded already; an output gone unwritable must not undo it
            log.exception("%s %s: could not remove the partial results of its dead attempt", kind, entity_id)

    def recover(self) -> None:
        """Requeue (or fail) jobs whose worker is gone: at once when its runner was on this machine and
        its processes no longer exist (a crash, a kill), otherwise once its heartbeats stop for a lease."""
        deadline = now() - self.settings.job_lease_seconds
        for kind, table in ENTITY_CLASSES.items():
            with self.sessions() as session:
                running = session.execute(
                    select(table.id, table.attempts, table.worker, table.heartbeat_at).where(
                        table.status == "INPROGRESS"
                    )
                ).all()
            for entity_id, attempt, worker, heartbeat_at in running:
                if _known_dead(worker):
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
        while attempt := self.claim(kind, entity_id):
            if self.in_process:
                run_job_in_this_process(self.settings, kind, entity_id, attempt, worker=False)
                continue
            process = self._spawn.Process(
                target=_worker_main,
                args=(self.settings, kind, entity_id, attempt, os.getpid()),
                name=f"emrml-{kind}-{entity_id}",
                daemon=False,
            )
            with forkserver.main_hidden():
                process.start()
            while process.is_alive():
                process.join(0.2)
                if progress is not None:
                    entity = self._status(kind, entity_id)
                    if entity is not None and entity.status == "INPROGRESS":
                        progress(entity.progress, entity.progress_message)
            if process.exitcode != 0:
                self._retry_or_fail(
                    kind, entity_id, attempt, f"the worker process died ({_describe_exit(process.exitcode)})"
                )

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
        while True:
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
