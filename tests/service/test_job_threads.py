"""Jobs on the threads of a server on the Spark engine (``JobRunner.in_process``): a thread cannot be
killed, so one that does not stop when its job is given up is left to end by itself, its job slot freed,
and a server with too many of them takes no more jobs, saying why."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from jobs_helpers import pending_bank
from sqlalchemy.exc import OperationalError

from emrml.config import Settings
from emrml.service import jobs, tasks, worker
from emrml.service.app import EmrML
from emrml.service.rows import DataSource
from emrml.service.worker import JOB_FUNCTIONS, JobContext


def test_a_hung_thread_of_a_job_given_up_frees_its_job_slot_and_too_many_hold_new_jobs(
    tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A job's thread stuck in a call that never returns, deaf to the request to stop, has its job given up
    (FAILED: its heartbeats stopped, as seen by another server): its runner returns all the same, so the
    server's scheduler, which counts a job as running until its runner returns, can start another in its
    slot. The thread, which cannot be killed, records nothing when it ends at last. Past
    ``MAX_ABANDONED_THREADS`` such threads, the server takes no more jobs: a queued one stays PENDING,
    its Message saying why, until they end."""
    monkeypatch.setattr(jobs, "STOP_GRACE_SECONDS", 0.5)
    monkeypatch.setattr(jobs, "MAX_ABANDONED_THREADS", 1)
    assert tasks.build is JOB_FUNCTIONS["DataSource"]  # registered as ``tasks`` is imported
    build = tasks.build
    hanging, release = threading.Event(), threading.Event()

    def hangs(context: JobContext) -> dict[str, Any]:
        if context.entity_id == "ds-hangs":
            hanging.set()
            release.wait(120)  # a call that never returns, and no progress point
        return build(context)

    monkeypatch.setitem(JOB_FUNCTIONS, "DataSource", hangs)
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home", job_max_attempts=1))
    app.jobs.in_process = True
    try:
        pending_bank(app, "ds-hangs", shared_datasets)
        pending_bank(app, "ds-next", shared_datasets)
        runner = threading.Thread(target=app.jobs.run_if_queued, args=("DataSource", "ds-hangs"), daemon=True)
        runner.start()
        assert hanging.wait(60)
        with app.sessions() as session:
            attempt = session.get(DataSource, "ds-hangs").attempts
        with caplog.at_level(logging.WARNING, logger="emrml.service.jobs"):
            assert app.jobs._retry_or_fail("DataSource", "ds-hangs", attempt, "the worker stopped responding")
            runner.join(30)
            assert not runner.is_alive(), "the runner waits for a thread that will not stop"
        assert "its job is FAILED but its thread did not stop when asked" in caplog.text

        app.jobs.run_if_queued("DataSource", "ds-next")
        held = app.call("GetDataSource", {"DataSourceId": "ds-next"})
        assert held["Status"] == "PENDING"
        assert "takes no more jobs while 1 threads of jobs it stopped have not ended" in held["Message"]
        assert "(DataSource ds-hangs)" in held["Message"]

        release.set()
        deadline = time.monotonic() + 120
        while app.jobs._abandoned_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not app.jobs._abandoned_alive()
        failed = app.call("GetDataSource", {"DataSourceId": "ds-hangs"})
        assert failed["Status"] == "FAILED" and "giving up" in failed["Message"]  # its late outcome: nothing
        app.jobs.run_if_queued("DataSource", "ds-next")
        assert app.call("GetDataSource", {"DataSourceId": "ds-next"})["Status"] == "COMPLETED"
    finally:
        release.set()
        app.close()


def test_a_spark_servers_start_removes_the_scratch_its_threads_left(tmp_path: Path) -> None:
    """A job's thread left to end by itself that is still busy when its server stops ends without its
    cleanup code: its training folder (a copy of the data) and its batch prediction folder stay. The
    server's next start removes them, but not those of jobs still running (here, or on a server sharing
    the home)."""
    from emrml.engine.training import SCRATCH_OWNER
    from emrml.lifetime import machine
    from emrml.service.metastore import now
    from emrml.service.rows import BatchPrediction
    from emrml.web.scheduler import JobScheduler

    app = EmrML(Settings.load(environ={}, home=tmp_path / "home", engine="spark"))
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    scratch = app.settings.scratch_dir
    folders = {
        "train-ml-gone-1": f"{machine()} {dead_pid.pid}",
        "train-ml-running-2": f"{machine()} {os.getpid()}",
        "batch-bp-gone+attempt-1": None,
        "batch-bp-running+attempt-1": None,  # an earlier attempt's
        "batch-bp-running+attempt-2": None,
    }
    for name, owner in folders.items():
        (scratch / name).mkdir(parents=True)
        (scratch / name / ("records.arrow" if owner else "part-0")).write_bytes(b"data")
        if owner:
            (scratch / name / SCRATCH_OWNER).write_text(owner)
    moment = now()
    with app.sessions() as session, session.begin():
        session.add(
            BatchPrediction(
                id="bp-running", name="", status="INPROGRESS", created_by="alice", created_at=moment,
                last_updated_at=moment, request="{}", attempts=2, ml_model_id="ml", output_uri="s3://b/o/",
                batch_prediction_data_source_id="ds",
            )
        )  # fmt: skip
    scheduler = JobScheduler(app, slots=1, poll_seconds=0.05)
    try:
        scheduler.start()
        assert sorted(entry.name for entry in scratch.iterdir()) == [
            "batch-bp-running+attempt-2",
            "train-ml-running-2",
        ]
    finally:
        scheduler.stop(5.0)
        app.close()


def test_a_jobs_thread_that_fails_recording_its_outcome_has_its_job_retried_at_once(
    tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's thread whose outcome could not be written (the metastore out of reach for that moment) ends
    with its job still INPROGRESS: its runner retries the job at once, rather than leaving it until its
    lease runs out, and the retry completes it."""
    record_outcome = worker._record_outcome
    failures = []

    def out_of_reach_once(context: JobContext, values: dict[str, Any]) -> str | None:
        if not failures:
            failures.append(context.attempt)
            raise OperationalError(
                "UPDATE data_sources", {}, ConnectionError("the metastore is out of reach")
            )
        return record_outcome(context, values)

    monkeypatch.setattr(worker, "_record_outcome", out_of_reach_once)
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    app.jobs.in_process = True
    try:
        pending_bank(app, "ds-retried", shared_datasets)
        app.jobs.run("DataSource", "ds-retried")
        assert failures == [1]
        result = app.call("GetDataSource", {"DataSourceId": "ds-retried"})
        assert result["Status"] == "COMPLETED", result.get("Message")
        with app.sessions() as session:
            assert session.get(DataSource, "ds-retried").attempts == 2
    finally:
        app.close()
