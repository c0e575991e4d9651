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

This module is the runner's side; what runs in the worker (the job's context, its outcome) is
``service.worker``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from sqlalchemy import and_, or_, select, update

from emrml.config import Settings
from emrml.lifetime import machine, process_exists
from emrml.service import forkserver
from emrml.service.job_failures import describe_exit
from emrml.service.metastore import Sessions, fenced_update, now
from emrml.service.rows import ENTITY_CLASSES
from emrml.service.worker import (
    discard_failed,
    run_job_in_this_process,
    settle_deleted,
    update_unless_held,
    worker_main,
)

log = logging.getLogger(__name__)

#: Called by a job's worker with (fraction done, message).
ProgressCallback = Callable[[float, str | None], None]
TERMINAL = ("COMPLETED", "FAILED", "DELETED")
#: Seconds a worker asked to stop (its object was deleted) has to reach a progress point before it is killed.
STOP_GRACE_SECONDS = 10.0
#: Seconds between a runner's looks at the row of a job its worker runs (was it deleted?).
WATCH_SECONDS = 1.0
#: Threads of jobs that did not stop when asked (their job given up, deleted or taken over) a runner leaves
#: running before it takes no more jobs (``in_process``): a thread cannot be killed, and each may hold a
#: Spark job's resources or memory until it ends by itself.
MAX_ABANDONED_THREADS = 4


#: The objects a job needs COMPLETED before it can start (spec 4.3), by entity kind: the kind of each and
#: the entity column holding its id. A table here, not in ``tasks``: waiting must not import the job code.
JOB_DEPENDENCIES: dict[str, tuple[tuple[str, str], ...]] = {
    "MLModel": (("DataSource", "training_data_source_id"),),
    "Evaluation": (("MLModel", "ml_model_id"), ("DataSource", "evaluation_data_source_id")),
    "BatchPrediction": (("MLModel", "ml_model_id"), ("DataSource", "batch_prediction_data_source_id")),
}


def _terminate(processes: list[Any]) -> list[Any]:
    """Ask worker processes to stop (SIGTERM: each stops at its next progress point, running its cleanup)
    and kill those still running after ``STOP_GRACE_SECONDS``; returns the ones killed."""
    for process in processes:
        if process.is_alive():
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    killed = []
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
            killed.append(process)
    return killed


def _worker_end(exitcode: int | None) -> str:
    """How a worker process ended, said of an attempt it left without an outcome (``_retry_or_fail``, which
    changes nothing when the worker recorded one). One that exits cleanly without an outcome was stopped by
    a SIGTERM not its runner's (an operator's ``kill``): its job would otherwise sit INPROGRESS, its
    heartbeats stopped, until its lease ran out."""
    if exitcode == 0:
        return "the worker process ended without recording the job's outcome (asked to stop by a signal)"
    return f"the worker process died ({describe_exit(exitcode)})"


def _known_dead(worker: str | None) -> bool:
    """Whether the runner and worker named in a job's ``worker`` column are known to be gone.

    The column reads ``machine:runner-pid:nonce pid=worker-pid`` (``lifetime.machine``). Only processes of
    this machine (and pid namespace) can be checked; a pid that exists may have been reused, so "alive" is
    not proven, only "dead" is.
    """
    if not worker:
        return False
    runner, _, rest = worker.partition(" ")
    host, _, runner_pid = runner.partition(":")
    runner_pid = runner_pid.partition(":")[0]
    if host != machine() or not runner_pid.isdigit():
        return False
    pids = [int(runner_pid)] + [int(p) for p in rest.replace("pid=", " ").split() if p.isdigit()]
    return not any(process_exists(pid) for pid in pids)


class JobRunner:
    """Claims queued jobs and runs each in a worker process; recovers jobs whose worker died."""

    def __init__(self, settings: Settings, sessions: Sessions) -> None:
        self.settings = settings
        self.sessions = sessions
        self.worker_id = f"{machine()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: Run jobs on the calling thread instead of a worker process: a server on the Spark engine keeps
        #: one Spark application (a JVM per process) for all its jobs (``emrml serve --engine spark``).
        self.in_process = False
        if settings.s3_configured:
            forkserver.preload_s3()
        self._spawn = forkserver.context()
        #: The worker processes running here, with their attempts, by job (``interrupt`` stops them).
        self._workers: dict[tuple[str, str], tuple[Any, int]] = {}
        #: The jobs running on threads here (``in_process``), by job: the event that stops each at its next
        #: progress point, the event set when its thread is done with it, and its attempt.
        self._threads: dict[tuple[str, str], tuple[threading.Event, threading.Event, int]] = {}
        #: Threads of attempts that did not stop when asked, left to end by themselves (``_watch_thread``).
        self._abandoned: dict[tuple[str, str, int], threading.Thread] = {}
        self._lock = threading.Lock()
        #: Set by ``interrupt``: no more jobs are claimed here.
        self.stopping = threading.Event()

    def _entity(self, kind: str, entity_id: str) -> Any:
        """The object's row as it stands now (its status, attempt, progress), or None: there is none."""
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
                    tries=table.tries + 1,
                )
            )
            if claimed.rowcount != 1:
                return 0
            return int(session.scalar(select(table.attempts).where(table.id == entity_id)))

    def requeue_failed(self, kind: str, entity_id: str) -> bool:
        """Queue a FAILED job again, as new (a pipeline re-run retries what failed: a cluster lost, a file
        mended since); whether it was FAILED. Its partial results went with the failure. Its tries start
        anew; its attempt numbers go on from the last (a worker of an earlier attempt may still be alive).
        Waits while the removal of its failed attempt's results runs (``worker.discard_failed``)."""
        table = ENTITY_CLASSES[kind]
        values: dict[str, Any] = {
            "status": "PENDING", "message": None, "progress": 0.0, "progress_message": None, "tries": 0,
            "started_at": None, "finished_at": None, "worker": None, "last_updated_at": now(),
        }  # fmt: skip
        # (Once the removal of its failed attempt's results, if one runs, is done: ``discard_failed``.)
        where = [table.id == entity_id, table.status == "FAILED"]
        return update_unless_held(self.settings, self.sessions, table, where, values)

    def _retry_or_fail(self, kind: str, entity_id: str, attempt: int, what_happened: str) -> bool:
        """Attempt ``attempt`` ended without recording an outcome: queue the job again or give up.

        Fenced like the workers' writes: nothing changes unless that attempt still holds the job.
        Returns whether it did. The job's tries, not its attempt number, count against the limit.
        """
        table = ENTITY_CLASSES[kind]
        limit = self.settings.job_max_attempts
        moment = now()
        values: dict[str, Any] = {"worker": None, "progress_message": None, "last_updated_at": moment}
        where = [table.id == entity_id, table.status == "INPROGRESS", table.attempts == attempt]
        with self.sessions() as session, session.begin():
            tries = session.scalar(select(table.tries).where(*where))
            if tries is None:
                return False
            if tries < limit:
                message = f"{what_happened} on attempt {tries} of {limit}; the job will be retried"
                values.update(status="PENDING", message=message, started_at=None, progress=0.0)
            else:
                # Its progress stays, as a job that fails by itself keeps its own: how far it got.
                message = (
                    f"{what_happened} on attempt {tries} of {limit}; giving up (no partial result was kept)"
                )
                values.update(status="FAILED", message=message, finished_at=moment)
            changed = fenced_update(session, table, [*where, table.tries == tries], values)
        if changed:
            log.warning("%s %s: %s", kind, entity_id, message)
            if tries >= limit:
                # What the dead attempt left (a retry would have replaced it): it ran no cleanup code, and
                # its results must not outlive a job that did not complete.
                discard_failed(self.settings, self.sessions, kind, entity_id, attempt)
        return changed

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
        if self.in_process and self._held(kind, entity_id):
            time.sleep(WATCH_SECONDS)  # (``wait`` asks again at once)
            return
        while not self.stopping.is_set() and (attempt := self.claim(kind, entity_id)):
            if self.in_process:
                self._run_on_a_thread(kind, entity_id, attempt, progress)
                continue
            process = self._spawn.Process(
                target=worker_main,
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
            if not self.stopping.is_set():  # (``interrupt`` queues it again)
                self._retry_or_fail(kind, entity_id, attempt, _worker_end(process.exitcode))

    def _run_on_a_thread(
        self, kind: str, entity_id: str, attempt: int, progress: ProgressCallback | None
    ) -> None:
        """Run an attempt on a thread of this process, where ``interrupt`` can stop it as it stops a worker,
        and watch it as ``_watch`` watches a worker (``_watch_thread``)."""
        stop, done = threading.Event(), threading.Event()
        with self._lock:
            if self.stopping.is_set():
                self._requeue(kind, entity_id, attempt)
                return
            self._threads[kind, entity_id] = (stop, done, attempt)

        def attempt_main() -> None:
            try:
                run_job_in_this_process(self.settings, kind, entity_id, attempt, worker=False, stopped=stop)
            except Exception:
                log.exception("%s %s attempt %d: the job's thread failed", kind, entity_id, attempt)
            finally:
                done.set()

        thread = threading.Thread(target=attempt_main, name=f"emrml-job-{kind}-{entity_id}", daemon=True)
        thread.start()
        try:
            self._watch_thread(thread, kind, entity_id, attempt, stop, progress)
        finally:
            with self._lock:
                self._threads.pop((kind, entity_id), None)
        if not self.stopping.is_set():  # (``interrupt`` queues it again)
            # A thread that failed past the job's own handling (the metastore out of reach as it recorded
            # the outcome) left its job INPROGRESS, its heartbeats stopped, until its lease ran out.
            self._retry_or_fail(
                kind, entity_id, attempt, "the job's thread ended without recording its outcome"
            )

    def _watch_thread(
        self,
        thread: threading.Thread,
        kind: str,
        entity_id: str,
        attempt: int,
        stop: threading.Event,
        progress: ProgressCallback | None,
    ) -> None:
        """Wait for a job's thread to end, reporting progress; when its job is no longer this attempt's
        (deleted, taken over), or was queued again or given up, ask it to stop (its next progress point
        raises ``JobStopped``; on Spark, the step's Spark jobs are cancelled). A thread, unlike a worker,
        cannot be killed: one still running ``STOP_GRACE_SECONDS`` later is left to end by itself; this runner
        returns, so that a server's job slot is not held for good by a job that no longer runs (whatever
        the thread still writes is fenced by its attempt: it can neither record an outcome nor publish
        results). Past ``MAX_ABANDONED_THREADS`` of them the runner takes no more jobs (``_held``)."""
        while thread.is_alive():
            thread.join(WATCH_SECONDS)
            if not thread.is_alive():
                break
            entity = self._entity(kind, entity_id)
            if (
                entity is None
                or entity.status in ("DELETED", "PENDING", "FAILED")
                or entity.attempts != attempt
            ):
                stop.set()
                thread.join(STOP_GRACE_SECONDS)
                if thread.is_alive():
                    with self._lock:
                        self._abandoned[kind, entity_id, attempt] = thread
                    log.warning(
                        "%s %s attempt %d: its job is %s but its thread did not stop when asked (%g s); "
                        "it is left to end by itself, its writes fenced, and its job slot freed (%d such "
                        "thread(s) running; past %d this server takes no more jobs until they end or it "
                        "restarts)",
                        kind, entity_id, attempt,
                        "no longer this attempt's" if entity is None else entity.status,
                        STOP_GRACE_SECONDS, len(self._abandoned_alive()), MAX_ABANDONED_THREADS,
                    )  # fmt: skip
                break
            if progress is not None and entity.status == "INPROGRESS":
                progress(entity.progress, entity.progress_message)
        self._settle_deleted(kind, entity_id)

    def sweep_scratch(self) -> None:
        """Remove the scratch files of jobs not running (``tasks.sweep_scratch``), at the start of a runner
        whose jobs run on its threads (``in_process``): a thread left to end by itself (``_watch_thread``)
        that was still busy when its server stopped ended without its cleanup code."""
        from emrml.service.tasks import sweep_scratch  # the job code: loaded by such a runner anyway

        sweep_scratch(self.settings, self.sessions)

    def _abandoned_alive(self) -> list[tuple[str, str, int]]:
        """The attempts whose threads were left running (``_watch_thread``) and still run."""
        with self._lock:
            for key, thread in list(self._abandoned.items()):
                if not thread.is_alive():
                    del self._abandoned[key]
            return list(self._abandoned)

    def _held(self, kind: str, entity_id: str) -> bool:
        """Whether this runner takes no more jobs, ``MAX_ABANDONED_THREADS`` threads of given-up attempts
        still running here: the queued job says why, and waits (another server may run it)."""
        alive = self._abandoned_alive()
        if len(alive) < MAX_ABANDONED_THREADS:
            return False
        names = ", ".join(f"{k} {e}" for k, e, _attempt in alive)
        message = (
            f"waiting: the server {self.worker_id} takes no more jobs while {len(alive)} threads of jobs it "
            f"stopped have not ended ({names}); they end by themselves, or restart the server"
        )
        table = ENTITY_CLASSES[kind]
        with self.sessions() as session, session.begin():
            said = session.execute(
                update(table)
                .where(
                    table.id == entity_id, table.status == "PENDING", table.message.is_distinct_from(message)
                )
                .values(message=message)
            )
        if said.rowcount:
            log.warning("%s %s: %s", kind, entity_id, message)
        return True

    def interrupt(self) -> list[tuple[str, str]]:
        """Stop the jobs running here and queue them again, their attempts not counted: the server is
        stopping (a restart is no failure of the job's, and two restarts during a long training must not use
        up its attempts). Each worker is asked to stop (it removes its temporaries as it does), killed after
        ``STOP_GRACE_SECONDS``, and only then is its job queued again, so that no worker of it is left
        running beside the next attempt. A job on one of this process's threads (``in_process``) is asked
        likewise, and queued again once it stopped or the grace ended. Returns the jobs queued again."""
        with self._lock:
            self.stopping.set()
            running = {job: attempt for job, (_process, attempt) in self._workers.items()}
            processes = [process for process, _attempt in self._workers.values()]
            threads = dict(self._threads)
        # Jobs on this process's threads (``in_process``) stop at their next progress point, as a worker
        # does on SIGTERM; one still busy when the grace ends is queued again all the same: its writes,
        # fenced by its attempt, find the job no longer INPROGRESS, and the process is about to end.
        for stop, _done, _attempt in threads.values():
            stop.set()
        _terminate(processes)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for job, (_stop, done, attempt) in threads.items():
            done.wait(max(0.0, deadline - time.monotonic()))
            running[job] = attempt
        return [job for job, attempt in running.items() if self._requeue(*job, attempt)]

    def _requeue(self, kind: str, entity_id: str, attempt: int) -> bool:
        """Queue again a job whose attempt here was interrupted, its try not counted (its attempt number
        stays used: the next attempt gets a new one)."""
        table = ENTITY_CLASSES[kind]
        where = [table.id == entity_id, table.status == "INPROGRESS", table.attempts == attempt]
        values = {
            "status": "PENDING",
            "tries": table.tries - 1,
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
        (the object was deleted, or a later attempt took the job over), or is queued again or FAILED
        (given up after its heartbeats stopped: the next attempt is claimed here once this worker is gone,
        so one hung would keep the job queued for good, and a job given up would keep its job slot — the
        server's scheduler starts no other job in it while this runner waits). Returns whether it was
        stopped."""
        next_look = 0.0
        while process.is_alive():
            process.join(0.2)
            if progress is None and time.monotonic() < next_look:
                continue
            next_look = time.monotonic() + WATCH_SECONDS
            entity = self._entity(kind, entity_id)
            if (
                entity is None
                or entity.status in ("DELETED", "PENDING", "FAILED")
                or entity.attempts != attempt
            ):
                # (A worker that recorded its own failure is ending: SIGTERM changes nothing for it, and the
                # grace lets it finish removing its results.)
                self._stop(process, kind, entity_id, attempt)
                return True
            if progress is not None and entity.status == "INPROGRESS":
                progress(entity.progress, entity.progress_message)
        # Deleted as the worker stopped by itself (it saw the delete first): its results go all the same.
        return self._settle_deleted(kind, entity_id)

    def _stop(self, process: Any, kind: str, entity_id: str, attempt: int) -> None:
        """Stop a worker whose job is no longer its attempt's, or was given up: SIGTERM, which it answers at
        its next progress point, then SIGKILL after ``STOP_GRACE_SECONDS``. A deleted or failed job's
        results are then removed (a killed worker ran no cleanup code)."""
        if _terminate([process]):
            log.warning("%s %s attempt %d: killed, not stopped when asked", kind, entity_id, attempt)
            # A worker of a job given up may have written on after its results were removed.
            discard_failed(self.settings, self.sessions, kind, entity_id, attempt)
        if self._settle_deleted(kind, entity_id):
            log.info("%s %s: deleted while its job ran; the job was stopped", kind, entity_id)

    def _settle_deleted(self, kind: str, entity_id: str) -> bool:
        """Once its worker is gone, ``worker.settle_deleted`` (unless the worker did as it stopped)."""
        return settle_deleted(self.settings, self.sessions, kind, entity_id)

    def dependencies_settled(self, kind: str, entity: Any) -> bool:
        """False while an object the job needs is still PENDING or INPROGRESS."""
        for dependency_kind, dependency_id in self._dependencies(kind, entity):
            dependency = self._entity(dependency_kind, dependency_id)
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
            dependency = self._entity(dependency_kind, dependency_id)
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
        # An ended job needs no recovery: looked at before the scan of every kind's running jobs
        # (``recover``, 2 ms), as each ended dependency of a job is, and the job after its run here.
        entity = self._entity(kind, entity_id)
        while not self.stopping.is_set():
            if entity is None or entity.status in TERMINAL:
                return
            self.recover()  # its worker or runner may be gone
            entity = self._entity(kind, entity_id)
            if entity is None or entity.status in TERMINAL:
                return
            if entity.status == "PENDING":
                if self._dependencies_met(kind, entity, progress):
                    self.run(kind, entity_id, progress)
                entity = self._entity(kind, entity_id)
                continue
            if progress is not None:
                progress(entity.progress, entity.progress_message)
            time.sleep(0.2)

    def run_if_queued(self, kind: str, entity_id: str) -> None:
        """Run the job here if it is still queued and what it needs has ended (failing it when something it
        needs did not complete); return at once otherwise. A server's scheduler calls this for each job it
        listed as queued: another process (a server of ``--workers``, a CLI) may claim it first, and waiting
        for that process's run, as ``wait`` does, would hold one of this server's job slots all along."""
        entity = self._entity(kind, entity_id)
        if entity is None or entity.status != "PENDING" or not self.dependencies_settled(kind, entity):
            return
        if self._dependencies_met(kind, entity, None):
            self.run(kind, entity_id)

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
