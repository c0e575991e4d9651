"""Failed jobs: a job given up (its worker killed or stopped on its last attempt, an internal error, a
full disk) fails with a clear message and leaves no partial result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from jobs_helpers import create_bank, pending_bank, worker_pid

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.rows import DataSource


def test_worker_killed_on_the_last_attempt_fails_the_job_with_a_clear_message(
    settings: Settings, big_bank_csv: Path, shared_datasets: Path
) -> None:
    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 1}))
    create_bank(app, "ds-big", big_bank_csv, shared_datasets)
    runner = threading.Thread(target=app.jobs.run, args=("DataSource", "ds-big"))
    runner.start()
    os.kill(worker_pid(app, "ds-big"), signal.SIGKILL)
    runner.join(timeout=120)
    result = app.call("GetDataSource", {"DataSourceId": "ds-big"})
    assert result["Status"] == "FAILED"
    assert "worker process died (killed by signal SIGKILL) on attempt 1 of 1" in result["Message"]
    assert "no partial result" in result["Message"]
    assert "TotalRecordCount" not in result and "ComputeTime" not in result
    assert "Statistics" not in app.call("GetDataSourceStatistics", {"DataSourceId": "ds-big"})
    app.close()


def test_a_worker_stopped_from_outside_has_its_job_retried_at_once(
    settings: Settings, big_bank_csv: Path, shared_datasets: Path
) -> None:
    """A worker sent SIGTERM by someone other than its runner stops at its next progress point, cleanly,
    recording nothing: the runner retries the job (here: fails it, its last attempt) as soon as the worker
    is gone, rather than leaving it INPROGRESS until its lease runs out."""
    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 1}))
    create_bank(app, "ds-big", big_bank_csv, shared_datasets)
    runner = threading.Thread(target=app.jobs.run, args=("DataSource", "ds-big"))
    runner.start()
    os.kill(worker_pid(app, "ds-big"), signal.SIGTERM)
    runner.join(timeout=120)
    result = app.call("GetDataSource", {"DataSourceId": "ds-big"})
    assert result["Status"] == "FAILED"
    assert result["Message"] == (
        "the worker process ended without recording the job's outcome (asked to stop by a signal) on attempt "
        "1 of 1; giving up (no partial result was kept)"
    )
    assert "Statistics" not in app.call("GetDataSourceStatistics", {"DataSourceId": "ds-big"})
    app.close()


def test_an_internal_failure_tells_the_user_what_failed_and_logs_the_details(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers the job functions)

    def broken(_context: worker.JobContext) -> dict:
        raise RuntimeError("root:$6$secret-hash:19000:0:99999:7:::")  # e.g. a line of a file read by mistake

    create_bank(app, "ds-broken", shared_datasets / "bank_marketing" / "data.csv", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-broken")
    monkeypatch.setitem(worker.JOB_FUNCTIONS, "DataSource", broken)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        worker.run_job_in_this_process(app.settings, "DataSource", "ds-broken", attempt)
    finally:
        signal.signal(signal.SIGINT, sigint)
    failed = app.call("GetDataSource", {"DataSourceId": "ds-broken"})
    assert failed["Status"] == "FAILED"
    message = failed["Message"]
    assert message.startswith("Reading the data and computing its statistics failed with an internal error")
    assert "secret-hash" not in message and "RuntimeError" not in message
    reference = message.rsplit("reference ", 1)[1]
    logged = [record for record in caplog.records if reference in record.getMessage()]
    assert logged and "secret-hash" in logged[0].getMessage()
    log_file = app.settings.home / "logs" / "jobs.log"
    assert str(log_file) in message
    assert f"reference {reference}" in log_file.read_text() and "RuntimeError" in log_file.read_text()
    assert log_file.stat().st_mode & 0o777 == 0o600


def test_a_failed_job_keeps_no_progress_message(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that fails after reporting what it was doing: FAILED beside "reading …" would tell the user
    the job is still at it. Its progress message goes, as a completed job's does; its progress stays."""
    from emrml.errors import InvalidInputException
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers the job functions)

    def failing(context: worker.JobContext) -> dict:
        context.progress(0.4, "reading data.csv")
        raise InvalidInputException("the data was bad")

    create_bank(app, "ds-failing", shared_datasets / "bank_marketing" / "data.csv", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-failing")
    monkeypatch.setitem(worker.JOB_FUNCTIONS, "DataSource", failing)
    worker.run_job_in_this_process(app.settings, "DataSource", "ds-failing", attempt, worker=False)
    with app.sessions() as session:
        failed = session.get(DataSource, "ds-failing")
        assert (failed.status, failed.message) == ("FAILED", "the data was bad")
        assert failed.progress_message is None and failed.progress == pytest.approx(0.4)


def test_a_job_short_of_disk_space_fails_saying_so_and_leaves_no_scratch(
    tmp_path: Path, shared_datasets: Path
) -> None:
    """A file size limit (RLIMIT_FSIZE) stands for a full disk: training's scratch copy of the records does
    not fit, and the model fails with what to do, not an internal error to look up in the log."""
    import resource

    home = tmp_path / "home"
    app = EmrML(Settings.load(environ={}, home=home))
    pending_bank(app, "ds-room", shared_datasets)
    assert app.wait("DataSource", "ds-room")["Status"] == "COMPLETED"
    app.call(
        "CreateMLModel", {"MLModelId": "ml-room", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-room"}
    )
    script = (
        "import sys; from emrml.config import Settings; from emrml.service.app import EmrML; "
        "EmrML(Settings.load(environ={}, home=sys.argv[1])).jobs.run('MLModel', 'ml-room')"
    )
    limit = 2 << 20  # the metastore fits; the records' scratch copy (about 5 MB) does not

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    subprocess.run([sys.executable, "-c", script, str(home)], preexec_fn=limited, check=True, timeout=300)
    result = app.call("GetMLModel", {"MLModelId": "ml-room"})
    assert result["Status"] == "FAILED"
    assert result["Message"].startswith("Training the model failed: File too large")
    assert f"scratch folder ({app.settings.scratch_dir}) is full or past a size limit" in result["Message"]
    assert list(app.settings.scratch_dir.iterdir()) == []
    assert not (home / "models" / "ml-room.zip").exists()
    app.close()


def test_a_batch_prediction_given_up_after_its_worker_died_leaves_no_partial_results(
    settings: Settings, shared_datasets: Path, tmp_path: Path
) -> None:
    """A worker killed mid-scoring runs no cleanup: when its job is given up (its last attempt), the runner
    removes the part files the attempt left in the output, and the results and manifest of an attempt
    killed after publishing them (a FAILED batch prediction leaves no output that looks complete). The
    attempt's death is the runner's own report of it, so that the test does not race a real worker to kill
    it in the middle of its scoring."""
    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 1}))
    pending_bank(app, "ds-dead", shared_datasets)
    request = {"MLModelId": "ml-dead", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-dead"}
    app.call("CreateMLModel", request)
    out = tmp_path / "out"
    request = {"BatchPredictionId": "bp-dead", "MLModelId": "ml-dead", "OutputUri": str(out)}
    app.call("CreateBatchPrediction", {**request, "BatchPredictionDataSourceId": "ds-dead"})
    attempt = app.jobs.claim("BatchPrediction", "bp-dead")
    parts = (
        out / "batch-prediction" / ".tmp-bp-dead+attempt-1"
    )  # what a killed attempt leaves (engine/batch.py)
    parts.mkdir(parents=True)
    (parts / "part-00000.gz").write_bytes(b"partial")
    # ...or, killed after publishing but before its status was set, the whole output: a FAILED job keeps none.
    (out / "batch-prediction" / "result").mkdir()
    result = out / "batch-prediction" / "result" / "bp-dead-data.csv.gz"
    result.write_bytes(b"whole")
    manifest = out / "batch-prediction" / "bp-dead.manifest"
    # The manifest lies in the user's folder: an entry leading out of the results by '..' is not removed.
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep")
    (out / "batch-prediction" / "result" / "bp-dead-").mkdir()
    sneaky = f"{out}/batch-prediction/result/bp-dead-/../../../../elsewhere.txt"
    manifest.write_text(json.dumps({"data.csv": str(result), "x.csv": sneaky}))
    (out / "batch-prediction" / "result" / "bp-other-data.csv.gz").write_bytes(b"not this job's")
    assert app.jobs._retry_or_fail("BatchPrediction", "bp-dead", attempt, "the worker process died")
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-dead"})["Status"] == "FAILED"
    left = [path.name for path in (out / "batch-prediction").rglob("*") if not path.is_dir()]
    assert left == ["bp-other-data.csv.gz"]
    assert elsewhere.read_text() == "keep"


def test_a_manifest_nested_too_deeply_does_not_stop_removing_what_a_failed_batch_prediction_wrote(
    tmp_path: Path,
) -> None:
    """The manifest lies in the user's folder: one nested deeper than Python's JSON parser reads is left
    as an unreadable one is, and the results named after the datasource's files are still removed."""
    from emrml.engine.batch_output import discard_output

    settings = Settings.load(environ={}, home=tmp_path / "home")
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")
    out = tmp_path / "out"
    (out / "batch-prediction" / "result").mkdir(parents=True)
    result = out / "batch-prediction" / "result" / "bp-deep-data.csv.gz"
    result.write_bytes(b"whole")
    manifest = out / "batch-prediction" / "bp-deep.manifest"
    manifest.write_text("[" * 100_000 + "]" * 100_000)
    discard_output(f"{out}/", settings, "bp-deep", str(data))
    assert not result.exists()
