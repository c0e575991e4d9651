"""Jobs of deleted objects: a job whose object is deleted while it runs stops, publishes nothing and
removes what it wrote; the jobs queued behind it fail naming it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from jobs_helpers import (
    BANK_SCHEMA_NAME,
    alive,
    create_bank,
    pending_bank,
    pending_batch_prediction,
    start_big_batch_prediction,
    train_on_a_sample,
    worker_pid,
)

from emrml.config import Settings
from emrml.lifetime import machine
from emrml.service.app import EmrML
from emrml.service.rows import BatchPrediction, DataSource


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
    pending_bank(app, "ds-doomed", shared_datasets)
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


def test_a_batch_prediction_deleted_while_it_runs_stops_and_publishes_nothing(
    app: EmrML, shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DeleteBatchPrediction during the scoring: the job's next progress report finds its row gone and
    stops the work, instead of running to the end and writing results and a manifest for a DELETED
    object. (On a server thread, as ``serve --engine spark`` runs jobs; the delete comes from inside the
    job's first scoring report, so that it cannot race the end of the job.)"""
    from emrml.service.worker import JobContext

    out = tmp_path / "out"
    pending_batch_prediction(app, "del", out, shared_datasets)
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
    pending_batch_prediction(app, "pub", out, shared_datasets)
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


def test_deleting_a_batch_prediction_while_it_runs_stops_its_worker_and_leaves_no_output(
    app: EmrML, big_bank_csv: Path, shared_datasets: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    runner, pid = start_big_batch_prediction(app, "bp-doomed", out, big_bank_csv, shared_datasets)
    app.call("DeleteBatchPrediction", {"BatchPredictionId": "bp-doomed"})
    deleted = time.monotonic()
    runner.join(timeout=60)
    assert not runner.is_alive() and time.monotonic() - deleted < 15
    assert not alive(pid), "the worker went on after the delete"
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
    assert not runner.is_alive() and not alive(pid)
    assert app.call("GetDataSource", {"DataSourceId": "ds-big"})["Status"] == "DELETED"
    assert not (app.settings.home / "datasources" / "ds-big.sample.arrow").exists()
    model = app.call("GetMLModel", {"MLModelId": "ml-behind"})
    assert model["Status"] == "FAILED" and "DataSource 'ds-big' is DELETED" in model["Message"]


def test_a_job_deleted_after_its_runner_died_has_its_leftovers_removed_by_recovery(
    app: EmrML, shared_datasets: Path, tmp_path: Path
) -> None:

    pending_bank(app, "ds-orphan", shared_datasets)
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
