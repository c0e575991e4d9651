"""The server's background job runner: starts queued jobs, at most ``slots`` at a time.

A dispatcher thread polls the metastore for PENDING jobs (and is woken at once after a ``Create*``
request). Each job it starts gets a daemon thread that calls ``JobRunner.run_if_queued``, which claims the
job atomically and runs it in a worker process — so several servers (or a CLI) on one metastore never run a
job twice — and ends at once when another process claimed it first. A job whose dependencies are still
PENDING or INPROGRESS is left queued until they end, so it does not hold a slot while it waits. Every
``lease`` seconds the dispatcher also requeues jobs whose worker stopped sending heartbeats (a crash, or a
server stopped mid-job).

Stopping stops dispatching and waits up to a timeout for the jobs running here. A job still running after
that is stopped and queued again without counting its attempt (``JobRunner.interrupt``): the next start
runs it anew. (A server killed outright takes its workers with it; its next start retries their jobs at
once, and that attempt counts.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from emrml.service import forkserver
from emrml.service.operations import entity_classes

if TYPE_CHECKING:
    from emrml.service.app import EmrML

log = logging.getLogger(__name__)

Job = tuple[str, str]


class JobScheduler:
    """Runs ``service``'s queued jobs in the background; ``poll_seconds`` between metastore scans."""

    def __init__(self, service: EmrML, slots: int, poll_seconds: float = 1.0) -> None:
        if slots < 1:
            raise ValueError("a job scheduler needs at least one slot")
        self.service = service
        self.slots = slots
        self.poll_seconds = poll_seconds
        self._running: dict[Job, threading.Thread] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._dispatcher: threading.Thread | None = None
        self._next_recovery = 0.0

    @property
    def running(self) -> list[Job]:
        return [job for job, thread in list(self._running.items()) if thread.is_alive()]

    def start(self) -> None:
        if self.service.settings.engine == "spark":
            # Long-running mode: one Spark application for every job, the jobs on this process's threads.
            self.service.jobs.in_process = True
            self.service.jobs.sweep_scratch()  # what the threads of its last run, left to end, left
        # A server runs many jobs: its fork server (started with the first job) imports every engine once.
        forkserver.preload_every_engine()
        self._dispatcher = threading.Thread(target=self._loop, name="emrml-job-dispatcher", daemon=True)
        self._dispatcher.start()

    def wake(self) -> None:
        """Look for new jobs now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float) -> list[Job]:
        """Start no more jobs; wait up to ``timeout`` seconds for the running ones. Returns those left."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._dispatcher is not None:
            self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        for thread in list(self._running.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self.running
        if left:
            # Stopped and queued again, the attempt not counted: a restart is no failure of the job's.
            requeued = self.service.jobs.interrupt()
            log.warning(
                "%d job(s) still running were stopped and run again at the next start: %s",
                len(left),
                ", ".join(f"{kind} {entity_id}" for kind, entity_id in requeued or left),
            )
            for thread in list(self._running.values()):
                thread.join(1.0)
        return left

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._dispatch()
            except Exception:
                # A metastore hiccup must not end job processing for the server's lifetime.
                log.exception("job dispatch failed; retrying in %.1f s", self.poll_seconds)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _dispatch(self) -> None:
        for job, thread in list(self._running.items()):
            if not thread.is_alive():
                del self._running[job]
        if time.monotonic() >= self._next_recovery:
            self.service.jobs.recover()
            self._next_recovery = time.monotonic() + self.service.settings.job_lease_seconds / 4
        free = self.slots - len(self._running)
        if free <= 0:
            return
        for job in self.service.jobs.pending():
            if self._stopping.is_set():
                return
            if job in self._running or not self._dependencies_settled(job):
                continue
            thread = threading.Thread(target=self._run, args=job, name=f"emrml-job-{job[1]}", daemon=True)
            self._running[job] = thread
            thread.start()
            free -= 1
            if free == 0:
                return

    def _dependencies_settled(self, job: Job) -> bool:
        kind, entity_id = job
        with self.service.sessions() as session:
            entity = session.get(entity_classes()[kind], entity_id)
        return entity is None or self.service.jobs.dependencies_settled(kind, entity)

    def _run(self, kind: str, entity_id: str) -> None:
        try:
            self.service.jobs.run_if_queued(kind, entity_id)
        except Exception:
            log.exception("running %s %s failed", kind, entity_id)
