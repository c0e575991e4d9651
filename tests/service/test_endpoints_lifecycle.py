"""Real-time endpoints created and deleted through the operations, on models trained by the real jobs:
their states, the races between servers, and artifacts that cannot be served."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from endpoints_helpers import URL, Trained, predict, train_small

from emrml.config import Settings
from emrml.errors import (
    InvalidInputException,
    PredictorNotMountedException,
    ResourceNotFoundException,
)
from emrml.service import endpoints, models
from emrml.service.app import EmrML
from emrml.service.rows import MLModel


def test_endpoint_lifecycle(app: EmrML, tmp_path: Path) -> None:
    model_id = train_small(app, tmp_path, "binary")
    with pytest.raises(PredictorNotMountedException, match="no real-time endpoint"):
        predict(app, model_id, {"x": "1"})  # the model is still PENDING
    assert app.wait("MLModel", model_id)["EndpointInfo"] == {
        "EndpointStatus": "NONE",
        "PeakRequestsPerSecond": 0,
    }
    with pytest.raises(PredictorNotMountedException, match="call CreateRealtimeEndpoint first"):
        predict(app, model_id, {"x": "1"})

    before = time.time()
    created = app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})
    assert list(created) == ["MLModelId", "RealtimeEndpointInfo"] and created["MLModelId"] == model_id
    info = created["RealtimeEndpointInfo"]
    assert info == {
        "EndpointStatus": "READY",
        "PeakRequestsPerSecond": 200,
        "EndpointUrl": URL,
        "CreatedAt": info["CreatedAt"],
    }
    assert before - 1 <= info["CreatedAt"] <= time.time() + 1
    assert app.call("GetMLModel", {"MLModelId": model_id})["EndpointInfo"] == info
    assert app.call("DescribeMLModels", {})["Results"][0]["EndpointInfo"] == info
    assert app.call("CreateRealtimeEndpoint", {"MLModelId": model_id}) == created  # the current info

    # "delete it first" read as deleting the model.
    with pytest.raises(InvalidInputException, match=r"endpoint; delete the endpoint first \(Delete"):
        app.call("UpdateMLModel", {"MLModelId": model_id, "ScoreThreshold": 0.9})
    app.call("UpdateMLModel", {"MLModelId": model_id, "MLModelName": "renamed"})
    good = predict(app, model_id, {"x": "7", "words": "good day"})
    assert good["predictedLabel"] == "1"

    none = {"EndpointStatus": "NONE", "PeakRequestsPerSecond": 0}
    deleted = app.call("DeleteRealtimeEndpoint", {"MLModelId": model_id})
    assert deleted == {"MLModelId": model_id, "RealtimeEndpointInfo": none}
    assert app.call("GetMLModel", {"MLModelId": model_id})["EndpointInfo"] == none
    with pytest.raises(PredictorNotMountedException):
        predict(app, model_id, {"x": "7", "words": "good day"})
    assert app.call("DeleteRealtimeEndpoint", {"MLModelId": model_id}) == deleted

    # With the endpoint gone the threshold may change, and a new endpoint predicts with it.
    app.call("UpdateMLModel", {"MLModelId": model_id, "ScoreThreshold": 0.999})
    app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})
    strict = predict(app, model_id, {"x": "7", "words": "good day"})
    (score,) = strict["predictedScores"].values()
    assert score == pytest.approx(good["predictedScores"]["1"]) and score < 0.999
    assert strict["predictedLabel"] == "0" and list(strict["predictedScores"]) == ["0"]

    # A deleted model takes its endpoint along at once (open question 25).
    app.call("DeleteMLModel", {"MLModelId": model_id})
    with pytest.raises(PredictorNotMountedException, match="DELETED"):
        predict(app, model_id, {"x": "7"})
    assert app.call("GetMLModel", {"MLModelId": model_id})["EndpointInfo"] == none
    with pytest.raises(InvalidInputException, match="is DELETED"):
        app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})


@contextmanager
def _two_servers_and_a_model(settings: Settings, tmp_path: Path) -> Iterator[tuple[list[EmrML], str]]:
    """Two servers of one installation (two ``EmrML`` on one metastore) and a trained BINARY model."""
    apps = [EmrML(settings), EmrML(settings)]
    try:
        model_id = train_small(apps[0], tmp_path, "binary")
        apps[0].wait("MLModel", model_id)
        yield apps, model_id
    finally:
        for app in apps:
            app.close()


def _slowed(function: Any) -> Any:
    """``function`` taking half a second more: the other call of a race starts meanwhile."""
    return lambda *args: (function(*args), time.sleep(0.5))[0]


def test_threshold_change_and_endpoint_creation_do_not_interleave(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # UpdateMLModel found no endpoint, CreateRealtimeEndpoint then loaded the model with the old threshold,
    # and UpdateMLModel changed it: an endpoint serving another threshold than the model's. Reading the
    # model in UpdateMLModel is slowed so that CreateRealtimeEndpoint starts meanwhile.
    with _two_servers_and_a_model(settings, tmp_path) as (apps, model_id):
        monkeypatch.setattr(models, "find_live", _slowed(models.find_live))
        with ThreadPoolExecutor(1) as pool:
            update = pool.submit(
                apps[0].call, "UpdateMLModel", {"MLModelId": model_id, "ScoreThreshold": 0.999}
            )
            time.sleep(0.2)
            apps[1].call("CreateRealtimeEndpoint", {"MLModelId": model_id})
            update.result()  # the threshold changed before the endpoint was created
        monkeypatch.undo()
        model = apps[1].call("GetMLModel", {"MLModelId": model_id})
        assert model["ScoreThresholdLastUpdatedAt"] <= model["EndpointInfo"]["CreatedAt"]
        assert predict(apps[1], model_id, {"x": "7", "words": "good day"})["predictedLabel"] == "0"


def test_endpoint_deletion_waits_for_an_endpoint_creation_under_way(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DeleteRealtimeEndpoint read the model while CreateRealtimeEndpoint was marking the endpoint UPDATING,
    # found no endpoint, and returned: the endpoint created meanwhile was READY after its deletion. Reading
    # the model in CreateRealtimeEndpoint is slowed so that DeleteRealtimeEndpoint starts meanwhile.
    with _two_servers_and_a_model(settings, tmp_path) as (apps, model_id):
        monkeypatch.setattr(endpoints, "find", _slowed(endpoints.find))
        with ThreadPoolExecutor(1) as pool:
            create = pool.submit(apps[1].call, "CreateRealtimeEndpoint", {"MLModelId": model_id})
            time.sleep(0.2)
            apps[0].call("DeleteRealtimeEndpoint", {"MLModelId": model_id})
            create.result()  # the endpoint was created before it was deleted
        monkeypatch.undo()
        assert apps[1].call("GetMLModel", {"MLModelId": model_id})["EndpointInfo"]["EndpointStatus"] == "NONE"
        with pytest.raises(PredictorNotMountedException):
            predict(apps[1], model_id, {"x": "7"})


def clone_model(app: EmrML, model_id: str, artifact: Path, **columns: Any) -> None:
    """A copy of ml-binary's metastore row under ``model_id`` with its own artifact file: a model to break
    without breaking the shared one."""
    with app.sessions() as session, session.begin():
        model = session.get(MLModel, "ml-binary")
        values = {c.name: getattr(model, c.name) for c in MLModel.__table__.columns}
        artifact.write_bytes(Path(model.artifact_location).read_bytes())
        values.update(id=model_id, artifact_location=str(artifact), **columns)
        session.add(MLModel(**values))


def test_unusable_artifact_fails_the_endpoint(trained: Trained, tmp_path: Path) -> None:
    app = trained.app
    clone_model(app, "ml-broken", tmp_path / "broken.zip")
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    info = app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-broken"})["RealtimeEndpointInfo"]
    assert info["EndpointStatus"] == "FAILED"
    model = app.call("GetMLModel", {"MLModelId": "ml-broken"})
    assert model["Status"] == "COMPLETED" and "not a zip archive" in model["Message"]
    with pytest.raises(PredictorNotMountedException, match="FAILED: the real-time endpoint could not load"):
        predict(app, "ml-broken", {"x": "1"})
    app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-broken"})
    assert "Message" not in app.call("GetMLModel", {"MLModelId": "ml-broken"})


def test_artifact_damaged_after_the_endpoint_was_created(trained: Trained, tmp_path: Path) -> None:
    app = trained.app
    clone_model(app, "ml-damaged", tmp_path / "damaged.zip")
    app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-damaged"})
    served = predict(app, "ml-damaged", {"x": "7"})
    (tmp_path / "damaged.zip").write_bytes(b"PK damaged")
    assert predict(app, "ml-damaged", {"x": "7"}) == served  # this process holds it in memory
    other = EmrML(Settings.load(environ={}, home=trained.home))
    try:
        with pytest.raises(PredictorNotMountedException, match=r"cannot serve: .*damaged\.zip"):
            predict(other, "ml-damaged", {"x": "7"})
    finally:
        other.close()
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-damaged"})


def test_create_endpoint_on_a_failed_model(trained: Trained, tmp_path: Path) -> None:
    app = trained.app
    clone_model(app, "ml-failed", tmp_path / "failed.zip", status="FAILED", message="the data was bad")
    with pytest.raises(
        InvalidInputException, match="'ml-failed' is FAILED: the data was bad; only a COMPLETED"
    ):
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-failed"})


def test_create_endpoint_needs_a_completed_model(trained: Trained, tmp_path: Path) -> None:
    app = trained.app
    with pytest.raises(ResourceNotFoundException, match="ml-none"):
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-none"})
    with pytest.raises(ResourceNotFoundException, match="ml-none"):
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-none"})
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-queued", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-binary"},
    )
    with pytest.raises(InvalidInputException, match="'ml-queued' is PENDING; only a COMPLETED model"):
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-queued"})
    assert app.call("GetMLModel", {"MLModelId": "ml-queued"})["EndpointInfo"]["EndpointStatus"] == "NONE"
    with pytest.raises(InvalidInputException, match="MLModelId"):
        app.call("CreateRealtimeEndpoint", {"MLModelId": "bad id!"})
