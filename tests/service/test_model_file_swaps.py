"""A model's file swapped for another model's (or edited into another model type) is refused by every door
that loads it for the model, with an error naming the model and what differs, rather than scored: real-time
Predict, batch predictions, evaluations, insights and ``emrml.load_model``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from endpoints_helpers import Trained, predict

from emrml.config import Settings
from emrml.errors import InvalidInputException, PredictorNotMountedException
from emrml.loading import load_model
from emrml.service.app import EmrML
from emrml.service.rows import MLModel


def file_of(app: EmrML, model_id: str) -> Path:
    with app.sessions() as session:
        return Path(session.get(MLModel, model_id).artifact_location)


def clone(app: EmrML, model_id: str, artifact: Path, *, holding: str, **columns: Any) -> None:
    """A copy of ml-binary's metastore row under ``model_id`` whose file is a copy of ``holding``'s: the
    BINARY model's file swapped for that model's."""
    shutil.copyfile(file_of(app, holding), artifact)
    with app.sessions() as session, session.begin():
        model = session.get(MLModel, "ml-binary")
        values = {c.name: getattr(model, c.name) for c in MLModel.__table__.columns}
        values.update(id=model_id, artifact_location=str(artifact), **columns)
        session.add(MLModel(**values))


def swapped(model_id: str, artifact: Path, kind: str) -> str:
    return (
        f"the model file {artifact} is not that of MLModel {model_id!r}: "
        f"it holds a {kind} model; the MLModel is BINARY"
    )


def test_an_endpoint_refuses_another_types_file(trained: Trained, tmp_path: Path) -> None:
    app, artifact = trained.app, tmp_path / "swapped.zip"
    clone(app, "ml-swap-endpoint", artifact, holding="ml-regression")
    info = app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-swap-endpoint"})["RealtimeEndpointInfo"]
    try:
        assert info["EndpointStatus"] == "FAILED"
        message = app.call("GetMLModel", {"MLModelId": "ml-swap-endpoint"})["Message"]
        assert swapped("ml-swap-endpoint", artifact, "REGRESSION") in message
        with pytest.raises(
            PredictorNotMountedException, match="FAILED: the real-time endpoint could not load"
        ):
            predict(app, "ml-swap-endpoint", {"x": "7", "words": "good day"})
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-swap-endpoint"})


def test_a_server_starting_after_the_swap_does_not_serve_the_swapped_file(
    trained: Trained, tmp_path: Path
) -> None:
    """The endpoint was created with the model's own file; a server that loads it after the file was swapped
    (one started since, or one whose copy was dropped) says why it cannot serve."""
    app, artifact = trained.app, tmp_path / "swapped.zip"
    clone(app, "ml-swap-later", artifact, holding="ml-binary")
    app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-swap-later"})
    other = EmrML(Settings.load(environ={}, home=trained.home))
    try:
        assert predict(app, "ml-swap-later", {"x": "7", "words": "good day"})["predictedLabel"] in ("0", "1")
        shutil.copyfile(file_of(app, "ml-multiclass"), artifact)
        with pytest.raises(PredictorNotMountedException) as raised:
            predict(other, "ml-swap-later", {"x": "7", "words": "good day"})
        assert raised.value.message.endswith(
            swapped("ml-swap-later", artifact, "MULTICLASS")
            + "; it predicts the target 'fruit'; the MLModel predicts 'y'; its recipe is not the MLModel's"
        )
    finally:
        other.close()
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-swap-later"})


def test_a_batch_prediction_fails_on_another_types_file(trained: Trained, tmp_path: Path) -> None:
    app, artifact = trained.app, tmp_path / "swapped.zip"
    clone(app, "ml-swap-batch", artifact, holding="ml-regression")
    request = {
        "BatchPredictionId": "bp-swap",
        "MLModelId": "ml-swap-batch",
        "BatchPredictionDataSourceId": "ds-binary",
        "OutputUri": f"{tmp_path / 'out'}/",
    }
    app.call("CreateBatchPrediction", request)
    app.jobs.run_pending()
    described = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-swap"})
    assert described["Status"] == "FAILED"
    assert swapped("ml-swap-batch", artifact, "REGRESSION") in described["Message"]
    assert not list((tmp_path / "out").rglob("*.gz"))  # nothing scored with the other model


def test_an_evaluation_fails_on_another_types_file(trained: Trained, tmp_path: Path) -> None:
    app, artifact = trained.app, tmp_path / "swapped.zip"
    clone(app, "ml-swap-evaluation", artifact, holding="ml-regression")
    request = {
        "EvaluationId": "ev-swap",
        "MLModelId": "ml-swap-evaluation",
        "EvaluationDataSourceId": "ds-binary",
    }
    app.call("CreateEvaluation", request)
    app.jobs.run_pending()
    described = app.call("GetEvaluation", {"EvaluationId": "ev-swap"})
    assert described["Status"] == "FAILED" and "PerformanceMetrics" not in described
    assert swapped("ml-swap-evaluation", artifact, "REGRESSION") in described["Message"]


def test_insights_and_load_model_refuse_another_types_file(trained: Trained, tmp_path: Path) -> None:
    app, artifact = trained.app, tmp_path / "swapped.zip"
    clone(app, "ml-swap-library", artifact, holding="ml-regression")
    expected = swapped("ml-swap-library", artifact, "REGRESSION")
    with pytest.raises(InvalidInputException) as raised:
        app.call("GetMLModelInsights", {"MLModelId": "ml-swap-library"})
    assert raised.value.message.startswith(expected)
    with pytest.raises(InvalidInputException) as raised:
        load_model("ml-swap-library", home=trained.home)
    assert raised.value.message.startswith(expected)
    assert load_model(artifact).model_type == "REGRESSION"  # a file alone is whatever it says


def test_a_same_type_models_file_is_refused_by_its_training_parameters(
    trained: Trained, tmp_path: Path
) -> None:
    """ml-binary's file copied over that of a BINARY model trained on the same data with another L2 amount:
    the type, schema and recipe agree; the parameters tell them apart."""
    app, artifact = trained.app, tmp_path / "copied.zip"
    with app.sessions() as session:
        parameters = json.loads(session.get(MLModel, "ml-binary").training_parameters)
    ours = parameters["sgd.l2RegularizationAmount"]
    other = {**parameters, "sgd.l2RegularizationAmount": "0.5"}
    clone(app, "ml-copied", artifact, holding="ml-binary", training_parameters=json.dumps(other))
    with pytest.raises(InvalidInputException) as raised:
        load_model("ml-copied", home=trained.home)
    assert raised.value.message == (
        f"the model file {artifact} is not that of MLModel 'ml-copied': "
        f"its sgd.l2RegularizationAmount is {ours!r}; the MLModel's is '0.5'"
    )
