"""Durable jobs: a datasource job runs in a worker process; a killed worker's job is retried, and a job
whose runner or server died is recovered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest
from jobs_helpers import (
    SAMPLE_RECORDS,
    alive,
    completed_over_a_sample_then_grown,
    create_bank,
    freeze,
    kill_then_shrink,
    pending_bank,
    shrink_to_a_sample,
    start_big_batch_prediction,
    stopped,
    worker_pid,
)

from emrml.config import Settings
from emrml.lifetime import machine
from emrml.service.app import EmrML
from emrml.service.jobs import TERMINAL
from emrml.service.rows import BatchPrediction, DataSource, MLModel


def test_datasource_job_completes_with_timing_fields(app: EmrML, shared_datasets: Path) -> None:
    create_bank(app, "ds-bank", shared_datasets / "bank_marketing" / "data.csv", shared_datasets)
    seen: list[float] = []
    result = app.wait("DataSource", "ds-bank", progress=lambda fraction, _message: seen.append(fraction))
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == 41_188 and result["InvalidRecordCount"] == 0
    assert result["NumberOfFiles"] == 1 and result["DataSizeInBytes"] == 4_841_729
    assert result["StartedAt"] <= result["FinishedAt"] and result["ComputeTime"] > 0
    assert seen == sorted(seen)


def test_killed_worker_is_retried_and_no_partial_result_is_visible(
    app: EmrML, big_bank_csv: Path, shared_datasets: Path
) -> None:
    create_bank(app, "ds-big", big_bank_csv, shared_datasets)
    runner = threading.Thread(target=app.jobs.run, args=("DataSource", "ds-big"))
    runner.start()
    pid = worker_pid(app, "ds-big")
    freeze(pid)
    # Nothing of the attempt in the middle of its reading is visible, nor will be once it is killed (the
    # retry, reading a sample, may be over by the time a look after the kill is done).
    statistics = app.call("GetDataSourceStatistics", {"DataSourceId": "ds-big"})
    assert "Statistics" not in statistics and "TotalRecordCount" not in statistics
    kill_then_shrink(pid, big_bank_csv, shared_datasets)
    runner.join(timeout=300)
    result = app.call("GetDataSource", {"DataSourceId": "ds-big"})
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == SAMPLE_RECORDS  # the retry's records alone, none of the first's
    with app.sessions() as session:
        assert session.get(DataSource, "ds-big").attempts == 2


def test_a_killed_training_leaves_no_scratch_files_behind(
    app: EmrML, big_bank_csv: Path, shared_datasets: Path
) -> None:
    completed_over_a_sample_then_grown(app, "ds-big", big_bank_csv, shared_datasets)
    request = {"MLModelId": "ml-big", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-big"}
    app.call("CreateMLModel", request)
    runner = threading.Thread(target=app.jobs.run, args=("MLModel", "ml-big"))
    runner.start()
    # The first attempt is killed once it has copied records into its scratch folder; the retry removes it.
    kill_then_shrink(worker_pid(app, "ml-big", table=MLModel), big_bank_csv, shared_datasets)
    runner.join(timeout=300)
    result = app.call("GetMLModel", {"MLModelId": "ml-big"})
    assert result["Status"] == "COMPLETED", result.get("Message")
    with app.sessions() as session:
        assert session.get(MLModel, "ml-big").attempts == 2
    assert list(app.settings.scratch_dir.iterdir()) == []


def test_a_job_whose_whole_runner_died_is_recovered_after_restart(
    settings: Settings, big_bank_csv: Path, shared_datasets: Path
) -> None:
    app = EmrML(Settings(**{**settings.__dict__, "job_lease_seconds": 2.0}))
    create_bank(app, "ds-big", big_bank_csv, shared_datasets)
    # The runner is another process (like `emrml datasource create`); kill it and its worker together.
    script = (
        "import sys; from emrml.config import Settings; from emrml.service.app import EmrML; "
        "EmrML(Settings.load(environ={}, home=sys.argv[1], metastore_url=sys.argv[2]))"
        ".jobs.run('DataSource', 'ds-big')"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script, str(settings.home), settings.database_url], start_new_session=True
    )
    worker_pid(app, "ds-big")
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    assert app.call("GetDataSource", {"DataSourceId": "ds-big"})["Status"] == "INPROGRESS"
    shrink_to_a_sample(big_bank_csv, shared_datasets)
    # Recovered once the dead worker's lease runs out: ``wait`` looks again until then.
    result = app.wait("DataSource", "ds-big")
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == SAMPLE_RECORDS
    app.close()


def test_a_stale_attempt_writes_nothing(app: EmrML, shared_datasets: Path) -> None:
    """After a lease runs out and the job is claimed again, the first attempt's writes change nothing."""
    from emrml.service.worker import JobContext, JobStopped

    pending_bank(app, "ds-fenced", shared_datasets)
    first = app.jobs.claim("DataSource", "ds-fenced")
    assert first == 1
    stale = JobContext(app.settings, "DataSource", "ds-fenced", app.sessions, first)
    assert app.jobs._retry_or_fail("DataSource", "ds-fenced", first, "the worker stopped responding")
    second = app.jobs.claim("DataSource", "ds-fenced")
    assert second == 2
    assert not stale.write(status="COMPLETED", total_records=1, message=None)
    with pytest.raises(JobStopped):  # refused too, and the stale worker is told to stop
        stale.progress(1.0, "done")
    with app.sessions() as session:
        row = session.get(DataSource, "ds-fenced")
        assert (row.status, row.attempts, row.total_records, row.progress) == ("INPROGRESS", 2, None, 0.0)
    # A late "the worker died" from the first attempt's runner does not requeue the second attempt either.
    assert not app.jobs._retry_or_fail("DataSource", "ds-fenced", first, "the worker process died")
    current = JobContext(app.settings, "DataSource", "ds-fenced", app.sessions, second)
    assert current.write(status="COMPLETED", total_records=7, message=None)
    assert app.call("GetDataSource", {"DataSourceId": "ds-fenced"})["Status"] == "COMPLETED"


def test_recovery_retries_at_once_when_the_owner_is_known_dead(
    app: EmrML, shared_datasets: Path, caplog: pytest.LogCaptureFixture
) -> None:

    pending_bank(app, "ds-orphan", shared_datasets)
    pending_bank(app, "ds-remote", shared_datasets)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer exists
    with app.sessions() as session, session.begin():
        for entity_id, worker in (
            ("ds-orphan", f"{machine()}:{gone.pid}:0123abcd pid={gone.pid}"),
            ("ds-remote", "another-host:4242:0123abcd pid=4243"),  # can't be checked: wait for its lease
        ):
            row = session.get(DataSource, entity_id)
            row.status, row.worker, row.heartbeat_at = "INPROGRESS", worker, time.time()
            row.attempts = row.tries = 1  # claimed once
    with caplog.at_level("WARNING", logger="emrml.service.jobs"):
        app.jobs.recover()
    assert app.call("GetDataSource", {"DataSourceId": "ds-orphan"})["Status"] == "PENDING"
    assert app.call("GetDataSource", {"DataSourceId": "ds-remote"})["Status"] == "INPROGRESS"
    [logged] = [r.getMessage() for r in caplog.records if "ds-orphan" in r.getMessage()]
    assert "is gone on attempt 1 of 2; the job will be retried" in logged


def _serve(home: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "emrml", "--home", str(home), "serve", "--port", str(port), "--no-auth"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_killed_server_leaves_no_worker_and_its_restart_retries_the_job(
    tmp_path: Path, big_bank_csv: Path, shared_datasets: Path
) -> None:
    home = tmp_path / "home"
    app = EmrML(Settings.load(environ={}, home=home))
    create_bank(app, "ds-big", big_bank_csv, shared_datasets)
    server = _serve(home, _free_port())
    try:
        pid = worker_pid(app, "ds-big", timeout=120)
        server.kill()  # SIGKILL: no shutdown code runs
        server.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), "the worker outlived its server"
        assert app.call("GetDataSource", {"DataSourceId": "ds-big"})["Status"] == "INPROGRESS"
    finally:
        if server.poll() is None:
            server.kill()
    shrink_to_a_sample(big_bank_csv, shared_datasets)
    restarted = _serve(home, _free_port())
    try:
        # The restarted server finds the job and runs it; the test only watches (app.wait would run it here).
        deadline = time.monotonic() + 240
        while (result := app.call("GetDataSource", {"DataSourceId": "ds-big"}))["Status"] not in TERMINAL:
            assert time.monotonic() < deadline and restarted.poll() is None, result
            time.sleep(0.2)
    finally:
        restarted.send_signal(signal.SIGINT)
        output = restarted.communicate(timeout=60)[0]
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == SAMPLE_RECORDS
    with app.sessions() as session:
        assert session.get(DataSource, "ds-big").attempts == 2
    assert "ds-big: the process running this job" in output and "is gone on attempt 1 of 2" in output
    app.close()


def test_a_server_stopping_during_a_job_queues_it_again_without_using_an_attempt(
    settings: Settings, big_bank_csv: Path, shared_datasets: Path
) -> None:
    """A restart is no failure of the job's: with one attempt allowed, a job interrupted by the server's
    stop still runs to its end at the next start."""
    from emrml.web.scheduler import JobScheduler

    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 1}))
    create_bank(app, "ds-big", big_bank_csv, shared_datasets)
    scheduler = JobScheduler(app, slots=1, poll_seconds=0.1)
    scheduler.start()
    pid = worker_pid(app, "ds-big")
    assert scheduler.stop(timeout=0) == [("DataSource", "ds-big")]
    assert not alive(pid)
    interrupted = app.call("GetDataSource", {"DataSourceId": "ds-big"})
    assert interrupted["Status"] == "PENDING" and "server running this job stopped" in interrupted["Message"]
    with app.sessions() as session:
        row = session.get(DataSource, "ds-big")
        assert (row.attempts, row.tries) == (1, 0)  # the try is not counted; the attempt's number stays used
    shrink_to_a_sample(big_bank_csv, shared_datasets)
    restarted = EmrML(app.settings)  # the next start
    result = restarted.wait("DataSource", "ds-big")
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == SAMPLE_RECORDS
    restarted.close()
    app.close()


def _pool_processes(pid: int) -> list[int]:
    """The processes a worker forked for its pool (not multiprocessing's resource tracker, say)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        for child in children:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in command:
                found.append(int(child))
    return found


def _pool_stopped_as_it_starts(worker: int) -> list[int]:
    """Stop (SIGSTOP) the pool processes of a worker as soon as they appear: the pool starts with units
    handed out, none of which can return while it is stopped, so killing one of them breaks the pool.
    (Later, a pool whose units have all returned could die without breaking anything.)"""
    while alive(worker):
        pool = _pool_processes(worker)
        if pool:
            for process in pool:
                with suppress(ProcessLookupError):
                    os.kill(process, signal.SIGSTOP)
            while not all(stopped(process) for process in pool):
                time.sleep(0.001)
            return pool
        time.sleep(0.001)
    raise AssertionError("the worker ended before its pool started")


def test_a_batch_prediction_whose_pool_process_is_killed_is_retried(
    sqlite_app: EmrML, big_bank_csv: Path, shared_datasets: Path, tmp_path: Path
) -> None:
    """The kernel short of memory kills the largest process, often one of a batch prediction's pool: the
    attempt died as surely as if its worker had, and is retried (it was an internal error, for good). The
    pool is killed while a unit is certainly unfinished: a pool whose units have all returned is of no
    more use, and its death breaks nothing. (On SQLite alone: the retry of a dead worker's job is
    ``test_killed_worker_is_retried_and_no_partial_result_is_visible``'s on every metastore; what this one
    adds, the pool's death counted as the worker's, is the worker's own, and its retry scores the big data
    through again.)"""
    app = sqlite_app
    out = tmp_path / "out"
    runner, pid = start_big_batch_prediction(app, "bp-oom", out, big_bank_csv, shared_datasets)
    pool = _pool_stopped_as_it_starts(pid)
    os.kill(pool[0], signal.SIGKILL)
    for process in pool:
        with suppress(ProcessLookupError):
            os.kill(process, signal.SIGCONT)
    runner.join(timeout=300)
    result = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-oom"})
    assert result["Status"] == "COMPLETED", result.get("Message")
    with app.sessions() as session:
        assert session.get(BatchPrediction, "bp-oom").attempts == 2
    assert result["TotalRecordCount"] == 8 * 41_188
