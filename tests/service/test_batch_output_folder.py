"""The folders of a local output: a batch prediction that does not complete removes those its job made (the
output folder, the folders above it, ``batch-prediction/``, ``result/``), once nothing else is in them, and
never one the user had."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobs_helpers import bank_sample, create_bank

from emrml.config import Settings
from emrml.engine.batch_output import make_output_folders, remove_made
from emrml.errors import AmazonMLError
from emrml.service.app import EmrML
from emrml.service.worker import JobContext, run_job_in_this_process


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory, shared_datasets: Path) -> Path:
    """A home with a model ``ml`` trained on a sample of the bank data (over ``ds``), built once for the
    module: each test works on a copy of it (``trained``), whose jobs and objects are its own."""
    folder = tmp_path_factory.mktemp("trained")
    app = EmrML(Settings.load(environ={}, home=folder / "home"))
    (folder / "sample.csv").write_bytes(bank_sample(shared_datasets))
    create_bank(app, "ds", folder / "sample.csv", shared_datasets)
    app.call("CreateMLModel", {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds"})
    assert app.wait("MLModel", "ml")["Status"] == "COMPLETED"
    app.close()
    return folder / "home"


@pytest.fixture
def trained(tmp_path: Path, shared_datasets: Path, trained_home: Path) -> Iterator[EmrML]:
    """A copy of ``trained_home`` (its model ``ml``), and ``ds-copy`` over a copy of the bank data
    (``copy.csv``) to score; a job is tried once, on a thread of the test (where its progress reports can
    be hooked). ``ds-copy``'s job reads a sample before the whole bank data is copied in its place: a batch
    prediction lists and reads its data anew, and the datasource's job need not take the whole data's
    time."""
    shutil.copytree(trained_home, tmp_path / "home")
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home", job_max_attempts=1))
    (tmp_path / "copy.csv").write_bytes(bank_sample(shared_datasets))
    create_bank(app, "ds-copy", tmp_path / "copy.csv", shared_datasets)
    assert app.wait("DataSource", "ds-copy")["Status"] == "COMPLETED"
    shutil.copy(shared_datasets / "bank_marketing" / "data.csv", tmp_path / "copy.csv")
    app.jobs.in_process = True
    yield app
    app.close()


def _predict(app: EmrML, entity_id: str, out: Path) -> None:
    request = {"BatchPredictionId": entity_id, "MLModelId": "ml", "BatchPredictionDataSourceId": "ds-copy"}
    app.call("CreateBatchPrediction", {**request, "OutputUri": f"{out}/"})


def _on_scoring(
    monkeypatch: pytest.MonkeyPatch, act: Callable[[JobContext], None], *, last: bool = False
) -> None:
    """Have ``act`` called at a batch prediction's first scoring report (``last``: at its last report, once
    its results are published)."""
    report = JobContext.progress
    acted: list[str] = []

    def hooked(context: JobContext, fraction: float, message: str | None = None) -> None:
        due = fraction == 1.0 if last else message == "scoring records"
        if due and context.entity_id not in acted:
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
    made, deeper = tmp_path / "made", tmp_path / "new" / "deeper"
    empty, had = tmp_path / "empty", tmp_path / "had"
    empty.mkdir()
    (had / "batch-prediction").mkdir(parents=True)
    for entity_id, out in (("bp-made", made), ("bp-deeper", deeper), ("bp-empty", empty), ("bp-had", had)):
        copy.write_bytes(whole)
        _predict(trained, entity_id, out)
        failed = trained.wait("BatchPrediction", entity_id)
        assert failed["Status"] == "FAILED" and "changed while it was being read" in failed["Message"]
    # The output folders the jobs made went too (they stayed, empty); the user's stay as they were.
    assert not made.exists() and not (tmp_path / "new").exists()
    assert empty.is_dir() and list(empty.rglob("*")) == []
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
    assert not out.exists()


def test_a_batch_prediction_deleted_once_published_removes_the_result_folder_its_job_made(
    trained: EmrML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deleted at its last progress point, its results published: they go, and the ``result/`` folder the
    job made in a ``batch-prediction/`` the user had goes with them (it stayed, empty); the user's file and
    folder stay, and a ``result/`` the user had stays too."""
    _on_scoring(
        monkeypatch,
        lambda context: trained.call("DeleteBatchPrediction", {"BatchPredictionId": context.entity_id}),
        last=True,
    )
    had, had_result = tmp_path / "had", tmp_path / "had-result"
    (had / "batch-prediction").mkdir(parents=True)
    (had / "batch-prediction" / "notes.txt").write_text("mine")
    (had_result / "batch-prediction" / "result").mkdir(parents=True)
    for entity_id, out in (("bp-had", had), ("bp-had-result", had_result)):
        _predict(trained, entity_id, out)
        assert trained.wait("BatchPrediction", entity_id)["Status"] == "DELETED"
    assert sorted(had.rglob("*")) == [had / "batch-prediction", had / "batch-prediction" / "notes.txt"]
    assert sorted(had_result.rglob("*")) == [
        had_result / "batch-prediction",
        had_result / "batch-prediction" / "result",
    ]


@pytest.mark.parametrize("last", [False, True], ids=["scoring", "published"])
def test_a_batch_prediction_given_up_after_its_worker_died_removes_the_output_folder_its_job_made(
    trained: EmrML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, last: bool
) -> None:
    """A worker killed runs no cleanup code: the runner, giving its job up, removes the folders the job made
    (and leaves one the user had). The attempt stands for one killed mid-scoring, or once it has published
    (its ``result/`` made): stopped there, its own removal of the folders left out."""
    from emrml.engine import batch

    _on_scoring(monkeypatch, lambda context: context.stopped.set(), last=last)
    monkeypatch.setattr(batch, "remove_made", lambda _made, _settings, keep_marker: None)
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
    assert list(had.rglob("*")) == [had / "batch-prediction"]
    assert not made.exists()


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
    assert cut and not out.exists()


def _settings(tmp_path: Path) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home")


def test_a_job_given_up_beside_another_jobs_results_leaves_them_and_no_marker(tmp_path: Path) -> None:
    """The ``result/`` the job made holds another job's results when it is given up: it stays, with the
    folders above it; the marker stays only while the job may run again."""
    out = tmp_path / "out"
    made = out / "batch-prediction" / ".tmp-bp+made"
    make_output_folders(made)
    other = out / "batch-prediction" / "result" / "bp-other-data.csv.gz"
    other.parent.mkdir()
    other.write_bytes(b"not this job's")
    remove_made(made, _settings(tmp_path), keep_marker=True)
    assert made.is_file()  # the next attempt removes what the job made, should the other results go
    remove_made(made, _settings(tmp_path), keep_marker=False)
    assert sorted(out.rglob("*")) == [made.parent, other.parent, other]


def test_a_marker_this_version_did_not_write_removes_nothing_but_itself(tmp_path: Path) -> None:
    made = tmp_path / "out" / "batch-prediction" / ".tmp-bp+made"
    made.parent.mkdir(parents=True)
    for text in ("", "[1]", '{"levels": true, "result": true}', '{"levels": -1, "result": true}'):
        made.write_text(text)
        remove_made(made, _settings(tmp_path), keep_marker=True)
        assert made.exists()
        remove_made(made, _settings(tmp_path), keep_marker=False)
        assert sorted(tmp_path.rglob("*")) == [tmp_path / "out", made.parent], text


def test_the_result_folder_a_job_made_stays_while_another_job_runs_beside_it(tmp_path: Path) -> None:
    """Another batch prediction writing to the same folder may be about to publish into ``result/``."""
    out = tmp_path / "out"
    made = out / "batch-prediction" / ".tmp-bp+made"
    make_output_folders(made)
    (made.parent / "result").mkdir()
    running = made.parent / ".tmp-bp-other+attempt-1"
    running.mkdir()
    remove_made(made, _settings(tmp_path), keep_marker=False)
    assert sorted(out.rglob("*")) == [made.parent, running, made.parent / "result"]


def test_a_rewritten_marker_removes_no_data_root_nor_a_folder_holding_one(tmp_path: Path) -> None:
    """The marker lies in the user's output folder, where the user may rewrite it while the job runs: made
    to say that the job made a hundred levels of folders, it had the cleanup of a job that failed remove
    the data root, once empty, and the folders above it up to the first that held anything else."""
    root = tmp_path / "srv" / "data"
    (root / "alice").mkdir(parents=True)
    settings = Settings.load(environ={}, home=tmp_path / "home", data_roots=(root,))
    made = root / "alice" / "out" / "batch-prediction" / ".tmp-bp+made"
    make_output_folders(made)
    made.write_text('{"levels": 100, "result": true}')
    remove_made(made, settings, keep_marker=False)
    assert sorted(tmp_path.rglob("*")) == [tmp_path / "srv", root]
