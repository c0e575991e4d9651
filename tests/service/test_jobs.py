"""Durable jobs: a datasource job runs in a worker process; a killed worker's job is retried or failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.lifetime import machine
from emrml.service.app import EmrML
from emrml.service.jobs import TERMINAL
from emrml.service.metastore import BatchPrediction, DataSource, MLModel

BANK_SCHEMA_NAME = "data.csv.schema"


#: The records of the bank data a retry reads (``shrink_to_a_sample``), a model is trained on
#: (``train_on_a_sample``): the first of the bank data (bank_marketing/data.csv).
SAMPLE_RECORDS = 3_000


def bank_times(shared_datasets: Path, times: int) -> bytes:
    """The bank data with its records ``times`` over."""
    source = (shared_datasets / "bank_marketing" / "data.csv").read_bytes()
    header, _, body = source.partition(b"\n")
    return header + b"\n" + body * times


def bank_sample(shared_datasets: Path) -> bytes:
    """The header and the first ``SAMPLE_RECORDS`` records of the bank data."""
    with open(shared_datasets / "bank_marketing" / "data.csv", "rb") as source:
        return b"".join(line for _, line in zip(range(SAMPLE_RECORDS + 1), source, strict=False))


@pytest.fixture
def big_bank_csv(tmp_path: Path, shared_datasets: Path) -> Path:
    """The bank data 8 times over (~39 MB): long enough to kill a worker in the middle."""
    path = tmp_path / "bank-x8.csv"
    path.write_bytes(bank_times(shared_datasets, 8))
    return path


def shrink_to_a_sample(path: Path, shared_datasets: Path) -> None:
    """Leave a sample of the bank data (``bank_sample``) where the big data was, once the attempt killed in
    the middle of it can no longer read it: the next attempt lists and reads its file anew, all of it (its
    records are the sample's, none of the killed attempt's), and the big data would only make it longer."""
    path.write_bytes(bank_sample(shared_datasets))


def freeze(pid: int) -> None:
    """Stop a process (SIGSTOP), and return once it is stopped (or gone)."""
    os.kill(pid, signal.SIGSTOP)
    while not _stopped(pid):
        time.sleep(0.001)


def kill_then_shrink(pid: int, path: Path, shared_datasets: Path) -> None:
    """SIGKILL a worker busy reading the big data at ``path``, a sample left there for the retry
    (``shrink_to_a_sample``). The worker is stopped (SIGSTOP) while the file changes, so that it
    cannot see the change and fail by itself: its runner starts the retry as soon as it is dead."""
    freeze(pid)
    shrink_to_a_sample(path, shared_datasets)
    os.kill(pid, signal.SIGKILL)


def completed_over_a_sample_then_grown(app: EmrML, entity_id: str, path: Path, shared_datasets: Path) -> None:
    """The COMPLETED datasource ``entity_id`` over ``path``, which then holds the big data: its job reads a
    sample (``bank_sample``), as a job of the big data would only take longer to end the same way, and
    what reads the datasource next (a training, a batch prediction) lists and reads the big data."""
    path.write_bytes(bank_sample(shared_datasets))
    create_bank(app, entity_id, path, shared_datasets)
    assert app.wait("DataSource", entity_id)["Status"] == "COMPLETED"
    path.write_bytes(bank_times(shared_datasets, 8))


def train_on_a_sample(app: EmrML, tag: str, folder: Path, shared_datasets: Path) -> None:
    """The COMPLETED BINARY model ``ml-<tag>``, trained over ``ds-<tag>-sample``: a sample of the bank data
    (``bank_sample``), in ``folder``. A model to score with: training on all 41,188 records takes seconds
    longer, and the tests that score need no better model."""
    sample = folder / f"{tag}-sample.csv"
    sample.write_bytes(bank_sample(shared_datasets))
    create_bank(app, f"ds-{tag}-sample", sample, shared_datasets)
    request = {"MLModelId": f"ml-{tag}", "MLModelType": "BINARY", "TrainingDataSourceId": f"ds-{tag}-sample"}
    app.call("CreateMLModel", request)
    assert app.wait("MLModel", f"ml-{tag}")["Status"] == "COMPLETED"


def create_bank(app: EmrML, entity_id: str, location: Path, shared_datasets: Path) -> None:
    schema = (shared_datasets / "bank_marketing" / BANK_SCHEMA_NAME).read_text()
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": entity_id,
            "DataSpec": {"DataLocationS3": str(location), "DataSchema": schema},
            "ComputeStatistics": True,
        },
    )


def worker_pid(
    app: EmrML, entity_id: str, timeout: float = 60, table: type = DataSource, *, reading: bool = True
) -> int:
    """Wait until the job's worker process is busy reading (``reading``), or only started, and return its
    pid. (A job quick enough may end before the first: who needs it running takes the second.)"""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        with app.sessions() as session:
            entity = session.get(table, entity_id)
            seen = (entity.status, entity.progress, entity.progress_message, entity.worker, entity.message)
            busy = entity.progress > 0.05 or not reading
            if entity.status == "INPROGRESS" and busy and "pid=" in (entity.worker or ""):
                return int(entity.worker.rsplit("pid=", 1)[1])
        time.sleep(0.05 if reading else 0.002)
    raise AssertionError(f"the job never got going: (status, progress, doing, worker, message) {seen}")


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


def _pending_bank(app: EmrML, entity_id: str, shared_datasets: Path) -> None:
    create_bank(app, entity_id, shared_datasets / "bank_marketing" / "data.csv", shared_datasets)


def test_a_batch_prediction_given_up_after_its_worker_died_leaves_no_partial_results(
    settings: Settings, shared_datasets: Path, tmp_path: Path
) -> None:
    """A worker killed mid-scoring runs no cleanup: when its job is given up (its last attempt), the runner
    removes the part files the attempt left in the output, and the results and manifest of an attempt
    killed after publishing them (a FAILED batch prediction leaves no output that looks complete). The
    attempt's death is the runner's own report of it, so that the test does not race a real worker to kill
    it in the middle of its scoring."""
    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 1}))
    _pending_bank(app, "ds-dead", shared_datasets)
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


def _pending_batch_prediction(app: EmrML, tag: str, out: Path, shared_datasets: Path) -> None:
    """The PENDING batch prediction ``bp-<tag>`` into ``out`` of a trained model (``ml-<tag>``, trained on a
    sample beside ``out``: ``train_on_a_sample``) on the COMPLETED bank data (``ds-<tag>``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    train_on_a_sample(app, tag, out.parent, shared_datasets)
    _pending_bank(app, f"ds-{tag}", shared_datasets)
    assert app.wait("DataSource", f"ds-{tag}")["Status"] == "COMPLETED"
    request = {"BatchPredictionId": f"bp-{tag}", "MLModelId": f"ml-{tag}", "OutputUri": str(out) + "/"}
    app.call("CreateBatchPrediction", {**request, "BatchPredictionDataSourceId": f"ds-{tag}"})


def test_a_batch_prediction_deleted_while_it_runs_stops_and_publishes_nothing(
    app: EmrML, shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteBatchPrediction during the scoring: the job's next progress report finds its row gone and
    stops the work, instead of running to the end and writing results and a manifest for a DELETED
    object. (On a server thread, as ``serve --engine spark`` runs jobs; the delete comes from inside the
    job's first scoring report, so that it cannot race the end of the job.)"""
    from emrml.service.worker import JobContext

    out = tmp_path / "out"
    _pending_batch_prediction(app, "del", out, shared_datasets)
    report = JobContext.progress

    def deleted_while_scoring(context: JobContext, fraction: float, message: str | None = None) -> None:
        if context.kind == "BatchPrediction" and fraction > 0:
            app.call("DeleteBatchPrediction", {"BatchPredictionId": "bp-del"})
        report(context, fraction, message)

    monkeypatch.setattr(JobContext, "progress", deleted_while_scoring)
    app.jobs.in_process = True
    app.wait("BatchPrediction", "bp-del")
    described = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-del"})
    assert described["Status"] == "DELETED" and "TotalRecordCount" not in described
    assert sorted(path.name for path in out.rglob("*") if path.is_file()) == []


def test_a_batch_prediction_deleted_while_it_publishes_leaves_no_results_and_no_manifest(
    app: EmrML, shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteBatchPrediction as the job publishes its results (after its last scoring report): the job
    still writes the results and the manifest, then finds its row gone; neither stays in the output."""
    from emrml.service.worker import JobContext

    out = tmp_path / "out"
    _pending_batch_prediction(app, "pub", out, shared_datasets)
    report = JobContext.progress
    messages: list[str | None] = []

    def deleted_while_publishing(context: JobContext, fraction: float, message: str | None = None) -> None:
        report(context, fraction, message)
        messages.append(message)
        if context.kind == "BatchPrediction" and message == "publishing the results":
            app.call("DeleteBatchPrediction", {"BatchPredictionId": "bp-pub"})

    monkeypatch.setattr(JobContext, "progress", deleted_while_publishing)
    app.jobs.in_process = True
    app.wait("BatchPrediction", "bp-pub")
    assert "publishing the results" in messages
    described = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-pub"})
    assert described["Status"] == "DELETED" and "TotalRecordCount" not in described
    assert sorted(path.name for path in out.rglob("*") if path.is_file()) == []


def test_a_batch_prediction_stopped_after_publishing_removes_its_results_and_manifest(
    app: EmrML, shared_datasets: Path, tmp_path: Path
) -> None:
    """The job's last progress point comes after the results and the manifest are written: a job stopped
    there (its object deleted while it published) removes both itself, as it removes the results of any
    step that fails after publishing."""
    from emrml.core.schema import parse_schema
    from emrml.engine.batch import batch_predict
    from emrml.engine.training import DatasourceData
    from emrml.service.worker import JobStopped

    train_on_a_sample(app, "stop", tmp_path, shared_datasets)
    messages: list[str | None] = []

    def stopped_at_the_end(fraction: float, message: str | None) -> None:
        messages.append(message)
        if fraction == 1.0:
            # (the job's hidden files, its marker of the folders it made, apart)
            visible = [path for path in out.rglob("*") if path.is_file() and not path.name.startswith(".")]
            assert sorted(path.name for path in visible) == [
                "bp-stop-data.csv.gz",
                "bp-stop.manifest",
            ]
            raise JobStopped

    out = tmp_path / "out"
    schema = (shared_datasets / "bank_marketing" / BANK_SCHEMA_NAME).read_text()
    with pytest.raises(JobStopped):
        batch_predict(
            batch_prediction_id="bp-stop",
            artifact_location=app.settings.home / "models" / "ml-stop.zip",
            data=DatasourceData(
                str(shared_datasets / "bank_marketing" / "data.csv"), parse_schema(schema), None
            ),
            output_uri=str(out),
            score_threshold=0.5,
            settings=app.settings,
            progress=stopped_at_the_end,
        )
    assert "publishing the results" in messages
    assert sorted(path.name for path in out.rglob("*") if path.is_file()) == []


def test_a_stale_attempt_writes_nothing(app: EmrML, shared_datasets: Path) -> None:
    """After a lease runs out and the job is claimed again, the first attempt's writes change nothing."""
    from emrml.service.worker import JobContext, JobStopped

    _pending_bank(app, "ds-fenced", shared_datasets)
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

    _pending_bank(app, "ds-orphan", shared_datasets)
    _pending_bank(app, "ds-remote", shared_datasets)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


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
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "the worker outlived its server"
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


def test_a_job_stops_at_its_next_progress_point_once_its_object_is_deleted(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker notices the delete at a progress point, unwinds through the job's cleanup, records nothing
    and removes what it wrote: the object stays DELETED."""
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers the job functions)

    unwound: list[str] = []
    working = threading.Event()

    def endless(context: worker.JobContext) -> dict:
        try:
            while True:
                context.progress(0.5, "working")
                working.set()
                time.sleep(0.05)
        finally:
            unwound.append("cleanup ran")

    removed: list[str] = []
    _pending_bank(app, "ds-doomed", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-doomed")
    monkeypatch.setitem(worker.JOB_FUNCTIONS, "DataSource", endless)

    def discard(_settings: Settings, entity: DataSource) -> None:
        removed.append(entity.id)

    monkeypatch.setitem(worker.JOB_DISCARDS, "DataSource", discard)
    deleted: list[float] = []

    def delete_once_working() -> None:
        # Once the job works: deleted before it started (a loaded machine), it would never run at all.
        assert working.wait(120)
        app.call("DeleteDataSource", {"DataSourceId": "ds-doomed"})
        deleted.append(time.monotonic())

    deleter = threading.Thread(target=delete_once_working)
    deleter.start()
    worker.run_job_in_this_process(app.settings, "DataSource", "ds-doomed", attempt, worker=False)
    deleter.join(60)
    assert deleted and time.monotonic() - deleted[0] < 5
    assert unwound == ["cleanup ran"] and removed == ["ds-doomed"]
    result = app.call("GetDataSource", {"DataSourceId": "ds-doomed"})
    assert result["Status"] == "DELETED" and "TotalRecordCount" not in result


def _start_big_batch_prediction(
    app: EmrML, prediction_id: str, out: Path, big_bank_csv: Path, shared_datasets: Path
) -> tuple[threading.Thread, int]:
    """A batch prediction of the big bank data (scored by a pool of processes) running on a thread of the
    test, once its worker is busy: the thread and the worker's pid."""
    train_on_a_sample(app, "small", big_bank_csv.parent, shared_datasets)
    completed_over_a_sample_then_grown(app, "ds-big", big_bank_csv, shared_datasets)
    request = {"BatchPredictionId": prediction_id, "MLModelId": "ml-small", "OutputUri": str(out)}
    app.call("CreateBatchPrediction", {**request, "BatchPredictionDataSourceId": "ds-big"})
    runner = threading.Thread(target=app.jobs.run, args=("BatchPrediction", prediction_id))
    runner.start()
    return runner, worker_pid(app, prediction_id, table=BatchPrediction, reading=False)


def test_deleting_a_batch_prediction_while_it_runs_stops_its_worker_and_leaves_no_output(
    app: EmrML, big_bank_csv: Path, shared_datasets: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    runner, pid = _start_big_batch_prediction(app, "bp-doomed", out, big_bank_csv, shared_datasets)
    app.call("DeleteBatchPrediction", {"BatchPredictionId": "bp-doomed"})
    deleted = time.monotonic()
    runner.join(timeout=60)
    assert not runner.is_alive() and time.monotonic() - deleted < 15
    assert not _alive(pid), "the worker went on after the delete"
    result = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-doomed"})
    assert result["Status"] == "DELETED", result
    assert [path.name for path in out.rglob("*") if not path.is_dir()] == []
    with app.sessions() as session:
        assert session.get(BatchPrediction, "bp-doomed").total_records is None


def test_jobs_queued_behind_a_deleted_object_fail_naming_it(
    app: EmrML, big_bank_csv: Path, shared_datasets: Path
) -> None:
    create_bank(app, "ds-big", big_bank_csv, shared_datasets)
    request = {"MLModelId": "ml-behind", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-big"}
    app.call("CreateMLModel", request)
    runner = threading.Thread(target=app.jobs.wait, args=("MLModel", "ml-behind"))
    runner.start()
    pid = worker_pid(app, "ds-big")
    app.call("DeleteDataSource", {"DataSourceId": "ds-big"})
    runner.join(timeout=60)
    assert not runner.is_alive() and not _alive(pid)
    assert app.call("GetDataSource", {"DataSourceId": "ds-big"})["Status"] == "DELETED"
    assert not (app.settings.home / "datasources" / "ds-big.sample.arrow").exists()
    model = app.call("GetMLModel", {"MLModelId": "ml-behind"})
    assert model["Status"] == "FAILED" and "DataSource 'ds-big' is DELETED" in model["Message"]


def test_a_job_short_of_disk_space_fails_saying_so_and_leaves_no_scratch(
    tmp_path: Path, shared_datasets: Path
) -> None:
    """A file size limit (RLIMIT_FSIZE) stands for a full disk: training's scratch copy of the records does
    not fit, and the model fails with what to do, not an internal error to look up in the log."""
    import resource

    home = tmp_path / "home"
    app = EmrML(Settings.load(environ={}, home=home))
    _pending_bank(app, "ds-room", shared_datasets)
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
    assert not _alive(pid)
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


def test_a_job_deleted_after_its_runner_died_has_its_leftovers_removed_by_recovery(
    app: EmrML, shared_datasets: Path, tmp_path: Path
) -> None:

    _pending_bank(app, "ds-orphan", shared_datasets)
    request = {"MLModelId": "ml-orphan", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-orphan"}
    app.call("CreateMLModel", request)
    out = tmp_path / "out"
    request = {"BatchPredictionId": "bp-orphan", "MLModelId": "ml-orphan", "OutputUri": str(out)}
    app.call("CreateBatchPrediction", {**request, "BatchPredictionDataSourceId": "ds-orphan"})
    app.jobs.claim("BatchPrediction", "bp-orphan")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with app.sessions() as session, session.begin():
        session.get(BatchPrediction, "bp-orphan").worker = f"{machine()}:{gone.pid}:0 pid={gone.pid}"
    parts = out / "batch-prediction" / ".tmp-bp-orphan+attempt-1"  # what the dead attempt left
    parts.mkdir(parents=True)
    (parts / "part-000000-000000.gz").write_bytes(b"partial")
    app.call("DeleteBatchPrediction", {"BatchPredictionId": "bp-orphan"})
    app.jobs.recover()
    assert [path for path in out.rglob("*") if not path.is_dir()] == []
    with app.sessions() as session:
        row = session.get(BatchPrediction, "bp-orphan")
        assert (row.status, row.worker) == ("DELETED", None)


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


def _stopped(pid: int) -> bool:
    """Whether a process is stopped (SIGSTOP), or gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("T", "t", "Z", "X")


def _pool_stopped_as_it_starts(worker: int) -> list[int]:
    """Stop (SIGSTOP) the pool processes of a worker as soon as they appear: the pool starts with units
    handed out, none of which can return while it is stopped, so killing one of them breaks the pool.
    (Later, a pool whose units have all returned could die without breaking anything.)"""
    while _alive(worker):
        pool = _pool_processes(worker)
        if pool:
            for process in pool:
                with suppress(ProcessLookupError):
                    os.kill(process, signal.SIGSTOP)
            while not all(_stopped(process) for process in pool):
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
    runner, pid = _start_big_batch_prediction(app, "bp-oom", out, big_bank_csv, shared_datasets)
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
