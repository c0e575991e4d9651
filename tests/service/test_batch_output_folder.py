"""The ``batch-prediction/`` folder of a local output: a batch prediction that does not complete removes the
one its job made, once nothing else is in it, and never one the user had."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_jobs import create_bank

from emrml.config import Settings
from emrml.errors import AmazonMLError
from emrml.service.app import EmrML
from emrml.service.worker import JobContext, run_job_in_this_process


@pytest.fixture
def trained(tmp_path: Path, shared_datasets: Path) -> Iterator[EmrML]:
    """A trained model ``ml``, and ``ds-copy`` over a copy of the bank data (``copy.csv``) to score; a job
    is tried once, on a thread of the test (where its progress reports can be hooked)."""
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home", job_max_attempts=1))
    create_bank(app, "ds", shared_datasets / "bank_marketing" / "data.csv", shared_datasets)
    app.call("CreateMLModel", {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds"})
    assert app.wait("MLModel", "ml")["Status"] == "COMPLETED"
    shutil.copy(shared_datasets / "bank_marketing" / "data.csv", tmp_path / "copy.csv")
    create_bank(app, "ds-copy", tmp_path / "copy.csv", shared_datasets)
    assert app.wait("DataSource", "ds-copy")["Status"] == "COMPLETED"
    app.jobs.in_process = True
    yield app
    app.close()


def _predict(app: EmrML, entity_id: str, out: Path) -> None:
    request = {"BatchPredictionId": entity_id, "MLModelId": "ml", "BatchPredictionDataSourceId": "ds-copy"}
    app.call("CreateBatchPrediction", {**request, "OutputUri": f"{out}/"})


def _on_scoring(monkeypatch: pytest.MonkeyPatch, act: Callable[[JobContext], None]) -> None:
    """Have ``act`` called at a batch prediction's first scoring report."""
    report = JobContext.progress
    acted: list[str] = []

    def hooked(context: JobContext, fraction: float, message: str | None = None) -> None:
        if message == "scoring records" and context.entity_id not in acted:
            acted.append(context.entity_id)
            act(context)
        report(context, fraction, message)

    monkeypatch.setattr(JobContext, "progress", hooked)


def test_a_failed_batch_prediction_removes_the_output_folder_its_job_made_only(
    trained: EmrML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data file cut short while scored fails the job: the ``batch-prediction/`` folder its job made
    goes with the temporaries in it; an empty one the user had stays."""
    copy = tmp_path / "copy.csv"
    whole = copy.read_bytes()
    _on_scoring(monkeypatch, lambda _context: os.truncate(copy, len(whole) // 2))
    made, had = tmp_path / "made", tmp_path / "had"
    (had / "batch-prediction").mkdir(parents=True)
    for entity_id, out in (("bp-made", made), ("bp-had", had)):
        copy.write_bytes(whole)
        _predict(trained, entity_id, out)
        failed = trained.wait("BatchPrediction", entity_id)
        assert failed["Status"] == "FAILED" and "changed while it was being read" in failed["Message"]
    assert list(made.rglob("*")) == []
    assert list(had.rglob("*")) == [had / "batch-prediction"]


def test_a_batch_prediction_deleted_while_it_runs_removes_the_output_folder_its_job_made(
    trained: EmrML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _on_scoring(
        monkeypatch, lambda _context: trained.call("DeleteBatchPrediction", {"BatchPredictionId": "bp"})
    )
    _predict(trained, "bp", out)
    assert trained.wait("BatchPrediction", "bp")["Status"] == "DELETED"
    assert list(out.rglob("*")) == []


def test_a_batch_prediction_given_up_after_its_worker_died_removes_the_output_folder_its_job_made(
    trained: EmrML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed runs no cleanup code: the runner, giving its job up, removes the folder the job made
    (and leaves one the user had). The attempt stands for one killed mid-scoring: stopped there, its own
    removal of the folder left out."""
    from emrml.engine import batch

    _on_scoring(monkeypatch, lambda context: context.stopped.set())
    monkeypatch.setattr(batch, "remove_made", lambda _made, keep_marker: None)
    made, had = tmp_path / "made", tmp_path / "had"
    (had / "batch-prediction").mkdir(parents=True)
    attempts = {}
    for entity_id, out in (("bp-made", made), ("bp-had", had)):
        _predict(trained, entity_id, out)
        attempts[entity_id] = trained.jobs.claim("BatchPrediction", entity_id)
        run_job_in_this_process(
            trained.settings, "BatchPrediction", entity_id, attempts[entity_id], worker=False
        )
        assert (out / "batch-prediction").is_dir()
    monkeypatch.undo()
    for entity_id, attempt in attempts.items():
        assert trained.jobs._retry_or_fail("BatchPrediction", entity_id, attempt, "the worker process died")
        assert trained.call("GetBatchPrediction", {"BatchPredictionId": entity_id})["Status"] == "FAILED"
    assert list(made.rglob("*")) == []
    assert list(had.rglob("*")) == [had / "batch-prediction"]


def test_a_failed_batch_prediction_on_the_spark_engine_removes_the_output_folder_it_made(
    trained: EmrML,
    tmp_path: Path,
    shared_datasets: Path,
    spark: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Spark engine's scoring writes to the same folders, and fails the same way: nothing stays. The
    file is cut just after the job has listed it (the Spark step's progress comes from a thread polling
    every half second, so a step quicker than that reports nothing to cut it on)."""
    from emrml.core.schema import parse_schema
    from emrml.engine import batch
    from emrml.engine.training import DatasourceData

    copy = tmp_path / "copy.csv"
    schema = parse_schema((shared_datasets / "bank_marketing" / "data.csv.schema").read_text())
    cut: list[bool] = []
    listed = batch.list_files

    def list_then_cut(location: str) -> Any:
        files = listed(location)
        cut.append(True)
        os.truncate(copy, copy.stat().st_size // 2)
        return files

    monkeypatch.setattr(batch, "list_files", list_then_cut)

    out = tmp_path / "out"
    with pytest.raises(AmazonMLError, match="changed while it was being read"):
        batch.batch_predict(
            batch_prediction_id="bp-spark",
            artifact_location=trained.settings.home / "models" / "ml.zip",
            data=DatasourceData(str(copy), schema, None),
            output_uri=f"{out}/",
            score_threshold=0.5,
            settings=trained.settings,
            progress=lambda _fraction, _message: None,
            spark=spark,
        )
    assert cut and list(out.rglob("*")) == []
