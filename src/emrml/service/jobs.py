"""Durable jobs: each asynchronous operation is an entity row, PENDING → INPROGRESS → COMPLETED/FAILED.

The heavy work of a job runs in a *worker process* (forked from a clean fork server) that
reports progress and a heartbeat through the metastore and writes its results in the same transaction that
marks the entity COMPLETED — so no partial result is ever visible. The runner watches its workers: a worker
that dies (killed, out of memory) or stops sending heartbeats has its job retried, up to
``Settings.job_max_attempts`` tries, then failed with a message saying what happened.
"""

from __future__ import annotations

import logging
import multiprocessing
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
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from emrml.config import Settings
from emrml.errors import AmazonMLError
from emrml.service.metastore import ENTITY_CLASSES, now, open_engine, session_factory

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
    _last_report: float = field(default=0.0, repr=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session, session.begin():
            yield session

    def load(self) -> Any:
        """A detached copy of the job's entity row."""
        with self.session() as session:
            return session.get(ENTITY_CLASSES[self.kind], self.entity_id)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Record progress in [0, 1]; throttled to a few writes per second."""
        moment = time.monotonic()
        if moment - self._last_report < 0.25 and fraction < 1.0:
            return
        self._last_report = moment
        table = ENTITY_CLASSES[self.kind]
        with self.session() as session:
            session.execute(
                update(table)
                .where(table.id == self.entity_id, table.status == "INPROGRESS")
                .values(progress=min(max(fraction, 0.0), 1.0), progress_message=message, heartbeat_at=now())
            )


#: Job functions by entity kind. Each returns the columns to store with status COMPLETED.
JobFunction = Callable[[JobContext], dict[str, Any]]
JOB_FUNCTIONS: dict[str, JobFunction] = {}
#: The objects a job needs COMPLETED before it can start (spec 4.3), by entity kind.
Dependencies = Callable[[Any], list[tuple[str, str]]]
JOB_DEPENDENCIES: dict[str, Dependencies] = {}


def job(kind: str, depends_on: Dependencies | None = None) -> Callable[[JobFunction], JobFunction]:
    def register(function: JobFunction) -> JobFunction:
        JOB_FUNCTIONS[kind] = function
        if depends_on is not None:
            JOB_DEPENDENCIES[kind] = depends_on
        return function

    return register


def _heartbeat(context: JobContext, stop: threading.Event) -> None:
    table = ENTITY_CLASSES[context.kind]
    while not stop.wait(context.settings.job_lease_seconds / 4):
        with context.session() as session:
            session.execute(
                update(table)
                .where(table.id == context.entity_id, table.status == "INPROGRESS")
                .values(heartbeat_at=now())
            )


def _cpu_seconds() -> float:
    """CPU time of this process and of the helper processes it waited for (a job may use a pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_job_in_this_process(settings: Settings, kind: str, entity_id: str) -> None:
    """Worker-process entry point: run one claimed job and record its outcome."""
    from emrml.service import tasks  # noqa: F401  (registers the job functions)

    # Ctrl-C in the terminal of `emrml serve` is for the server: it stops taking work, and a job in
    # progress finishes (or is retried after a restart) rather than dying with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    engine = open_engine(settings.database_url)
    context = JobContext(settings, kind, entity_id, session_factory(engine))
    table = ENTITY_CLASSES[kind]
    with context.session() as session:
        # The worker's pid beside the runner's id tells an operator which process holds the job.
        session.execute(
            update(table)
            .where(table.id == entity_id, table.status == "INPROGRESS")
            .values(worker=func.coalesce(table.worker, "") + f" pid={os.getpid()}")
        )
    stop = threading.Event()
    threading.Thread(target=_heartbeat, args=(context, stop), daemon=True).start()
    cpu_start = _cpu_seconds()
    try:
        fields = JOB_FUNCTIONS[kind](context)
        values = {
            "status": "COMPLETED",
            "message": None,
            "progress": 1.0,
            "progress_message": None,
            "compute_time": int((_cpu_seconds() - cpu_start) * 1000),
            **fields,
        }
    except AmazonMLError as exc:
        values = {"status": "FAILED", "message": exc.message}
    except Exception:
        values = {"status": "FAILED", "message": internal_failure(settings, kind, entity_id)}
    finally:
        stop.set()
    finished = now()
    with context.session() as session:
        session.execute(
            update(table)
            .where(table.id == entity_id, table.status == "INPROGRESS")
            .values(finished_at=finished, last_updated_at=finished, worker=None, **values)
        )
    engine.dispose()


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


_MAIN_LOCK = threading.Lock()


def _start_without_main(process: multiprocessing.process.BaseProcess) -> None:
    """Start a worker without making it re-run the caller's ``__main__`` script.

    multiprocessing re-imports the parent's main script in every forkserver child, so a user script that
    calls emrml at top level (no ``if __name__ == "__main__"`` guard) would run again inside each worker.
    Workers need nothing from ``__main__``; hiding its file while the start request is built avoids that.
    """
    main = sys.modules["__main__"]
    with _MAIN_LOCK:
        saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            process.start()
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


class JobRunner:
    """Claims queued jobs and runs each in a worker process; recovers jobs whose worker died."""

    def __init__(self, settings: Settings, sessions: sessionmaker) -> None:
        self.settings = settings
        self.sessions = sessions
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A fork server starts clean (no database connections or threads of ours), imports the job code
        # once, and then forks each worker from itself: workers start in milliseconds, not seconds.
        self._spawn = multiprocessing.get_context("forkserver")
        self._spawn.set_forkserver_preload(["emrml.service.tasks"])

    def _status(self, kind: str, entity_id: str) -> Any:
        with self.sessions() as session:
            return session.get(ENTITY_CLASSES[kind], entity_id)

    def claim(self, kind: str, entity_id: str) -> bool:
        """Move a PENDING job to INPROGRESS for this runner; False if someone else got it first."""
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
            return claimed.rowcount == 1

    def _retry_or_fail(self, kind: str, entity_id: str, what_happened: str) -> None:
        """A worker vanished without recording an outcome: queue the job again or give up."""
        table = ENTITY_CLASSES[kind]
        with self.sessions() as session, session.begin():
            entity = session.get(table, entity_id)
            if entity is None or entity.status != "INPROGRESS":
                return
            moment = now()
            attempts, limit = entity.attempts, self.settings.job_max_attempts
            if attempts < limit:
                entity.status = "PENDING"
                entity.message = f"{what_happened} on attempt {attempts} of {limit}; the job will be retried"
                entity.started_at = None
            else:
                entity.status = "FAILED"
                entity.message = (
                    f"{what_happened} on attempt {attempts} of {limit}; "
                    "giving up (no partial result was kept)"
                )
                entity.finished_at = moment
            entity.worker = None
            entity.progress = 0.0
            entity.progress_message = None
            entity.last_updated_at = moment

    def recover(self) -> None:
        """Requeue (or fail) jobs whose worker stopped sending heartbeats, e.g. after a crash or restart."""
        deadline = now() - self.settings.job_lease_seconds
        for kind, table in ENTITY_CLASSES.items():
            with self.sessions() as session:
                stale = session.scalars(
                    select(table.id).where(table.status == "INPROGRESS", table.heartbeat_at < deadline)
                ).all()
            for entity_id in stale:
                self._retry_or_fail(kind, entity_id, "the worker running this job stopped responding")

    def run(self, kind: str, entity_id: str, progress: ProgressCallback | None = None) -> None:
        """Run one PENDING job to its end in worker processes, retrying after a worker dies."""
        while self.claim(kind, entity_id):
            process = self._spawn.Process(
                target=run_job_in_this_process,
                args=(self.settings, kind, entity_id),
                name=f"emrml-{kind}-{entity_id}",
                daemon=False,
            )
            _start_without_main(process)
            while process.is_alive():
                process.join(0.2)
                if progress is not None:
                    entity = self._status(kind, entity_id)
                    if entity is not None and entity.status == "INPROGRESS":
                        progress(entity.progress, entity.progress_message)
            if process.exitcode != 0:
                self._retry_or_fail(
                    kind, entity_id, f"the worker process died ({_describe_exit(process.exitcode)})"
                )

    def _dependencies_met(self, kind: str, entity: Any, progress: ProgressCallback | None) -> bool:
        """Finish what the job depends on first; fail the job if a dependency did not complete."""
        from emrml.service import tasks  # noqa: F401  (registers the dependencies)

        depends_on = JOB_DEPENDENCIES.get(kind)
        for dependency_kind, dependency_id in depends_on(entity) if depends_on else []:
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
