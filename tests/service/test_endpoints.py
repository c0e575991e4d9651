"""Real-time endpoints and Predict through the operations, on models trained by the real jobs."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from emrml.config import Settings
from emrml.core.predict import Predictor
from emrml.errors import (
    AmazonMLError,
    InvalidInputException,
    LimitExceededException,
    PredictorNotMountedException,
    ResourceNotFoundException,
)
from emrml.service import endpoints, models
from emrml.service.app import EmrML
from emrml.service.endpoints import serve_predict
from emrml.service.metastore import MLModel
from emrml.service.mounted import REVALIDATE_SECONDS, MountedModels, TokenBucket
from emrml.service.validation import validate_request

URL = "http://127.0.0.1:8080"
BANK = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "bank_marketing"
TUTORIAL_RECORD = (
    "32,services,divorced,basic.9y,no,unknown,yes,cellular,dec,mon,110,1,11,0,nonexistent,-1.8,94.465,"
    "-36.1,0.883,5228.1"
)


def _schema(target: str, *attributes: tuple[str, str]) -> str:
    return json.dumps(
        {
            "version": "1.0",
            "targetAttributeName": target,
            "dataFileContainsHeader": True,
            "attributes": [{"attributeName": n, "attributeType": t} for n, t in attributes],
        }
    )


#: Small generated datasets: (folder name, model type, schema, CSV text).
DATASETS = {
    "binary": (
        "BINARY",
        _schema("y", ("x", "NUMERIC"), ("words", "TEXT"), ("y", "BINARY")),
        # One row in seven is labelled against its words: scores stay clear of 0 and 1 (a threshold of
        # 0.999 is above every score), as on real data, where a model fitted to the end would near them.
        "x,words,y\n"
        + "".join(f"{i},{'good day' if i % 2 else 'bad day'},{(i + (i % 7 == 0)) % 2}\n" for i in range(300)),
    ),
    "multiclass": (
        "MULTICLASS",
        _schema("fruit", ("x", "NUMERIC"), ("colour", "CATEGORICAL"), ("fruit", "CATEGORICAL")),
        "x,colour,fruit\n"
        + "".join(
            f"{i},{colour},{fruit}\n"
            for i in range(100)
            for colour, fruit in (("red", "apple"), ("green", "pear"), ("blue", "plum"))
        ),
    ),
    "regression": (
        "REGRESSION",
        _schema("y", ("x", "NUMERIC"), ("y", "NUMERIC")),
        "x,y\n" + "".join(f"{i},{3 * i + 10}\n" for i in range(300)),
    ),
}


def _datasource(app: EmrML, entity_id: str, location: Path, schema: str) -> None:
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": entity_id,
            "DataSpec": {"DataLocationS3": str(location), "DataSchema": schema},
            "ComputeStatistics": True,
        },
    )


def train_small(app: EmrML, folder: Path, name: str, recipe: str | None = None) -> str:
    """Create the datasource and model of a generated dataset (jobs not run); returns the model id."""
    model_type, schema, text = DATASETS[name]
    (folder / f"{name}.csv").write_text(text)
    _datasource(app, f"ds-{name}", folder / f"{name}.csv", schema)
    request = {"MLModelId": f"ml-{name}", "MLModelType": model_type, "TrainingDataSourceId": f"ds-{name}"}
    if recipe is not None:
        request["Recipe"] = recipe
    app.call("CreateMLModel", request)
    return f"ml-{name}"


@dataclass
class Trained:
    app: EmrML
    home: Path
    bank_header: list[str] | None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One SQLite installation with a BINARY, a MULTICLASS, a REGRESSION and (when the shared datasets are
    there) a bank-marketing model, all COMPLETED."""
    folder = tmp_path_factory.mktemp("endpoints")
    app = EmrML(Settings.load(environ={}, home=folder / "home"))
    train_small(app, folder, "binary")
    train_small(app, folder, "multiclass")
    train_small(app, folder, "regression", recipe='{"outputs": ["normalize(x)"]}')
    header = None
    if BANK.is_dir():
        _datasource(app, "ds-bank", BANK / "data.csv", (BANK / "data.csv.schema").read_text())
        app.call(
            "CreateMLModel",
            {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"},
        )
        header = (BANK / "data.csv").open().readline().strip().split(",")
    app.jobs.run_pending()
    for model in app.call("DescribeMLModels", {})["Results"]:
        assert model["Status"] == "COMPLETED", model.get("Message")
    yield Trained(app, folder / "home", header)
    app.close()


@pytest.fixture
def endpoint(trained: Trained, request: pytest.FixtureRequest) -> Iterator[str]:
    """A READY endpoint on the model named by the test's parameter (default ml-binary), removed after."""
    model_id = getattr(request, "param", "ml-binary")
    trained.app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})
    yield model_id
    trained.app.call("DeleteRealtimeEndpoint", {"MLModelId": model_id})


def predict(app: EmrML, model_id: str, record: dict[str, Any], endpoint: str = URL) -> dict[str, Any]:
    response = app.call("Predict", {"MLModelId": model_id, "Record": record, "PredictEndpoint": endpoint})
    assert list(response) == ["Prediction"]
    return response["Prediction"]


def batch_scores(app: EmrML, model_id: str, records: list[dict[str, str]]) -> np.ndarray:
    """The batch path's scores for the same records: Predict must agree with it."""
    with app.sessions() as session:
        location = session.get(MLModel, model_id).artifact_location
    predictor = Predictor.load(Path(location))
    names = [a.name for a in predictor.schema.attributes]
    batch = pa.RecordBatch.from_pydict({n: [r.get(n, "") for r in records] for n in names})
    return predictor.score_batch(batch)


# --- Lifecycle -----------------------------------------------------------------------------------------


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


# --- Predict ---------------------------------------------------------------------------------------------


def test_binary_prediction(trained: Trained, endpoint: str) -> None:
    app = trained.app
    records = [{"x": "7", "words": "good day"}, {"x": "8", "words": "bad day"}, {"x": "9"}]
    expected = batch_scores(app, endpoint, records)
    for record, score in zip(records, expected, strict=True):
        prediction = predict(app, endpoint, record)
        label = "1" if score >= 0.5 else "0"
        assert prediction == {
            "details": {"PredictiveModelType": "BINARY", "Algorithm": "SGD"},
            "predictedLabel": label,
            "predictedScores": {label: pytest.approx(score, abs=1e-12)},
        }
    assert predict(app, endpoint, records[0])["predictedLabel"] == "1"
    assert predict(app, endpoint, records[1])["predictedLabel"] == "0"


@pytest.mark.parametrize("endpoint", ["ml-multiclass"], indirect=True)
def test_multiclass_prediction(trained: Trained, endpoint: str) -> None:
    app = trained.app
    records = [{"x": "5", "colour": "blue"}, {"x": "5", "colour": "red"}, {"colour": "mauve"}]
    expected = batch_scores(app, endpoint, records)
    for record, scores in zip(records, expected, strict=True):
        prediction = predict(app, endpoint, record)
        assert list(prediction) == ["details", "predictedLabel", "predictedScores"]
        assert prediction["details"] == {"PredictiveModelType": "MULTICLASS", "Algorithm": "SGD"}
        assert list(prediction["predictedScores"]) == ["apple", "pear", "plum"]
        assert list(prediction["predictedScores"].values()) == pytest.approx(scores, abs=1e-12)
        best = max(prediction["predictedScores"], key=prediction["predictedScores"].get)
        assert prediction["predictedLabel"] == best
    assert predict(app, endpoint, records[0])["predictedLabel"] == "plum"
    assert predict(app, endpoint, records[1])["predictedLabel"] == "apple"


@pytest.mark.parametrize("endpoint", ["ml-regression"], indirect=True)
def test_regression_prediction(trained: Trained, endpoint: str) -> None:
    app = trained.app
    prediction = predict(app, endpoint, {"x": "150"})
    assert list(prediction) == ["details", "predictedValue"]
    assert prediction["details"] == {"PredictiveModelType": "REGRESSION", "Algorithm": "SGD"}
    assert prediction["predictedValue"] == pytest.approx(batch_scores(app, endpoint, [{"x": "150"}])[0])
    assert prediction["predictedValue"] == pytest.approx(3 * 150 + 10, rel=0.05)
    assert isinstance(prediction["predictedValue"], float)


def test_record_attributes(trained: Trained, endpoint: str) -> None:
    app = trained.app
    record = {"x": "7", "words": "good day"}
    plain = predict(app, endpoint, record)
    # Unknown attributes and the target are ignored.
    assert predict(app, endpoint, {**record, "colour": "red", "y": "0"}) == plain
    # Missing attributes are missing values, like empty ones.
    missing = predict(app, endpoint, {})
    empty = predict(app, endpoint, {"x": "", "words": ""})
    assert missing["predictedScores"] == empty["predictedScores"]
    assert missing["predictedScores"] != plain["predictedScores"]
    # ... but a record naming no attribute at all is flagged in the details (an empty value is not).
    assert missing["details"]["NoSchemaAttributes"] == "true" and "NoSchemaAttributes" not in empty["details"]


def test_predict_errors(trained: Trained, endpoint: str) -> None:
    app = trained.app
    record = {"x": "7", "words": "good day"}
    with pytest.raises(ResourceNotFoundException, match="ml-none"):
        predict(app, "ml-none", record)
    with pytest.raises(PredictorNotMountedException, match="ml-multiclass"):
        predict(app, "ml-multiclass", record)
    with pytest.raises(InvalidInputException, match="PredictEndpoint 'http://localhost:9090' is not the"):
        predict(app, endpoint, record, endpoint="http://localhost:9090")
    assert predict(app, endpoint, record, endpoint=URL + "/") == predict(app, endpoint, record)
    for value in (7, None, ["a"], 1.5):
        with pytest.raises(InvalidInputException, match=r"Record\['x'\] must be a string"):
            predict(app, endpoint, {**record, "x": value})
    for bad in (
        {"Record": record},
        {"MLModelId": endpoint, "Record": record, "PredictEndpoint": URL, "Extra": 1},
    ):
        with pytest.raises(InvalidInputException):
            app.call("Predict", bad)


def test_record_size_limit(trained: Trained, endpoint: str) -> None:
    app = trained.app
    limit = app.settings.max_record_bytes
    overhead = len(json.dumps({"x": "7", "words": ""}, separators=(",", ":")))
    fits = {"x": "7", "words": "a" * (limit - overhead)}
    assert len(json.dumps(fits, separators=(",", ":"))) == limit
    assert predict(app, endpoint, fits)["predictedLabel"] in ("0", "1")
    with pytest.raises(InvalidInputException, match=f"larger than {limit} bytes"):
        predict(app, endpoint, {**fits, "words": fits["words"] + "a"})
    # The limit counts UTF-8 bytes, not characters.
    with pytest.raises(InvalidInputException, match="larger than"):
        predict(app, endpoint, {"x": "7", "words": "é" * (limit // 2)})


def test_predict_endpoint_check_can_be_lenient(trained: Trained, endpoint: str) -> None:
    lenient = EmrML(Settings.load(environ={}, home=trained.home, predict_endpoint_check="lenient"))
    try:
        record = {"x": "7", "words": "good day"}
        assert predict(lenient, endpoint, record, "https://elsewhere.example") == predict(
            trained.app, endpoint, record
        )
    finally:
        lenient.close()
    with pytest.raises(InvalidInputException, match="predict_endpoint_check"):
        Settings.load(environ={}, home=trained.home, predict_endpoint_check="sometimes")


def test_each_server_shows_and_accepts_its_own_endpoint_url(trained: Trained, endpoint: str) -> None:
    # The endpoint was created by a process whose public URL is the default (as the CLI's is): a server at
    # another URL showed that one, which does not reach it, and refused Predict naming its own.
    server = EmrML(Settings.load(environ={}, home=trained.home, public_url="http://127.0.0.1:9123/"))
    try:
        shown = server.call("GetMLModel", {"MLModelId": endpoint})["EndpointInfo"]["EndpointUrl"]
        assert shown == "http://127.0.0.1:9123"
        (described,) = [
            model["EndpointInfo"]["EndpointUrl"]
            for model in server.call("DescribeMLModels", {})["Results"]
            if model["MLModelId"] == endpoint
        ]
        assert described == shown
        created = server.call("CreateRealtimeEndpoint", {"MLModelId": endpoint})
        assert created["RealtimeEndpointInfo"]["EndpointUrl"] == shown
        record = {"x": "7", "words": "good day"}
        assert predict(server, endpoint, record, shown) == predict(trained.app, endpoint, record, URL)
        with pytest.raises(InvalidInputException, match=r"\('http://127\.0\.0\.1:9123'\)"):
            predict(server, endpoint, record, URL)
    finally:
        server.close()


# --- Request checking: the Predict fast path gives the generic validator's errors ------------------------


GOOD = {"MLModelId": "ml-binary", "Record": {"x": "1"}, "PredictEndpoint": "https://a.amazonaws.com"}


@pytest.mark.parametrize(
    "request_",
    [
        {},
        [],
        "text",
        {k: v for k, v in GOOD.items() if k != "Record"},
        {k: v for k, v in GOOD.items() if k != "MLModelId"},
        {**GOOD, "Extra": "x"},
        {**GOOD, "MLModelId": None},
        {**GOOD, "MLModelId": 7},
        {**GOOD, "MLModelId": ""},
        {**GOOD, "MLModelId": "bad id!"},
        {**GOOD, "MLModelId": "m" * 65},
        {**GOOD, "Record": []},
        {**GOOD, "Record": "x=1"},
        {**GOOD, "Record": {"x": 1}},
        {**GOOD, "Record": {"x": None}},
        {**GOOD, "Record": {1: "x"}},
        {**GOOD, "PredictEndpoint": 80},
        {**GOOD, "PredictEndpoint": "https://a.amazonaws.com/" + "p" * 2048},
    ],
)
def test_fast_request_check_matches_the_generic_validator(trained: Trained, request_: Any) -> None:
    with pytest.raises(AmazonMLError) as generic:
        validate_request("Predict", request_)
    with pytest.raises(type(generic.value)) as fast:
        serve_predict(trained.app, request_)
    assert fast.value.message == generic.value.message


# --- Admission -------------------------------------------------------------------------------------------


def test_token_bucket() -> None:
    bucket = TokenBucket(5, now=100.0)
    assert [bucket.admit(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.admit(100.1) is False  # half a token
    assert bucket.admit(100.2) is True
    assert [bucket.admit(200.0) for _ in range(6)] == [True] * 5 + [False]  # bursts stay within the rate


def _burst(app: EmrML, model_id: str, calls: int) -> tuple[int, float, LimitExceededException | None]:
    record = {"x": "7", "words": "good day"}
    admitted, refused = 0, None
    started = time.monotonic()
    for _ in range(calls):
        try:
            predict(app, model_id, record)
            admitted += 1
        except LimitExceededException as exc:
            refused = exc
    return admitted, time.monotonic() - started, refused


def test_rate_limit_per_endpoint(trained: Trained, endpoint: str) -> None:
    admitted, seconds, refused = _burst(trained.app, endpoint, 400)
    # 200 at once, then 200 per second.
    assert refused is not None and "more than 200 requests per second" in refused.message
    assert 200 <= admitted <= 200 + 200 * seconds + 1


def test_rate_limits_are_settings(trained: Trained) -> None:
    small = EmrML(Settings.load(environ={}, home=trained.home, peak_requests_per_second=5))
    try:
        small.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        info = small.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})["RealtimeEndpointInfo"]
        assert info["PeakRequestsPerSecond"] == 5
        admitted, _, refused = _burst(small, "ml-binary", 8)
        assert admitted == 5 and refused is not None
        time.sleep(0.25)  # one token back
        assert _burst(small, "ml-binary", 2)[0] == 1
        small.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
    finally:
        small.close()
    total = EmrML(Settings.load(environ={}, home=trained.home, total_requests_per_second=3))
    try:
        total.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        admitted, _, refused = _burst(total, "ml-binary", 5)
        assert admitted == 3 and refused is not None and "in total" in refused.message
        total.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
    finally:
        total.close()


# --- Several processes ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_another_process_sees_endpoint_changes(trained: Trained) -> None:
    """A second installation object on the same home stands for another server process or the CLI."""
    app = trained.app
    other = EmrML(Settings.load(environ={}, home=trained.home))
    clock = FakeClock()
    other.mounted = MountedModels(other.sessions, total_requests_per_second=10_000, clock=clock)
    record = {"x": "7", "words": "good day"}
    try:
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        served = predict(other, "ml-binary", record)  # loaded on first use
        assert served == predict(app, "ml-binary", record) and "ml-binary" in other.mounted

        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        assert predict(other, "ml-binary", record) == served  # trusted for up to a second
        assert other.mounted.fresh("ml-binary") and not other.mounted.fresh("ml-multiclass")
        clock.now += REVALIDATE_SECONDS
        assert not other.mounted.fresh("ml-binary")
        with pytest.raises(PredictorNotMountedException):
            predict(other, "ml-binary", record)
        assert "ml-binary" not in other.mounted

        # Created again here: loaded there on first use. Then created again with another threshold:
        # reloaded with it after the next check.
        other.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        assert predict(app, "ml-binary", record) == served
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        app.call("UpdateMLModel", {"MLModelId": "ml-binary", "ScoreThreshold": 0.9999})
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        assert predict(other, "ml-binary", record) == served
        clock.now += REVALIDATE_SECONDS
        assert predict(other, "ml-binary", record)["predictedLabel"] == "0"
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        app.call("UpdateMLModel", {"MLModelId": "ml-binary", "ScoreThreshold": 0.5})
        other.close()


def test_a_model_given_to_another_user_is_theirs_to_predict_with_on_a_running_server(
    trained: Trained,
) -> None:
    app = trained.app
    server = EmrML(Settings.load(environ={}, home=trained.home))
    clock = FakeClock()
    server.mounted = MountedModels(server.sessions, total_requests_per_second=10_000, clock=clock)
    app.access.create_user("ivy")
    app.access.create_user("hal")
    hal = app.access.user_arn("hal")
    request = {"MLModelId": "ml-binary", "Record": {"x": "7", "words": "good day"}, "PredictEndpoint": URL}
    with app.sessions() as session, session.begin():  # as if ivy had trained it
        session.get(MLModel, "ml-binary").created_by = app.access.user_arn("ivy")
    try:
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        with pytest.raises(ResourceNotFoundException):  # not his: as if there were no such model
            server.call("Predict", request, caller=hal)
        app.access.delete_user("ivy")
        app.access.reassign_objects("ivy", "hal")
        clock.now += REVALIDATE_SECONDS  # the server checks its mounted models this often
        assert "Prediction" in server.call("Predict", request, caller=hal)
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        with app.sessions() as session, session.begin():
            session.get(MLModel, "ml-binary").created_by = app.call(
                "GetMLModel", {"MLModelId": "ml-regression"}
            )["CreatedByIamUser"]
        app.access.delete_user("hal")
        server.close()


def test_a_worker_whose_share_of_the_rate_is_below_one_a_second_still_predicts(trained: Trained) -> None:
    """``emrml serve --workers 4`` with PeakRequestsPerSecond 2: each process admits half a request a
    second, one at a time, rather than refusing every Predict."""
    worker = EmrML(Settings.load(environ={}, home=trained.home, peak_requests_per_second=2))
    clock = FakeClock()
    worker.mounted = MountedModels(worker.sessions, total_requests_per_second=10_000, clock=clock, share=0.25)
    record = {"x": "7", "words": "good day"}
    try:
        worker.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        admitted = []
        for _ in range(8):  # four seconds, a request every half second
            try:
                predict(worker, "ml-binary", record)
                admitted.append(True)
            except LimitExceededException as exc:
                assert "more than 2 requests per second" in exc.message
                admitted.append(False)
            clock.now += 0.5
        assert admitted == [True, False, False, False, True, False, False, False]
    finally:
        worker.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        worker.close()


def test_a_server_keeps_models_fresh_off_the_request_path(trained: Trained) -> None:
    """``keep_fresh`` (a server's background thread) loads READY endpoints at start and is the only reader
    of the metastore afterwards; a change by another process still takes effect within a second."""
    app = trained.app
    other = EmrML(Settings.load(environ={}, home=trained.home))
    readers: list[str] = []
    sessions = other.mounted._sessions

    def recording_sessions() -> Any:
        readers.append(threading.current_thread().name)
        return sessions()

    other.mounted._sessions = recording_sessions  # type: ignore[assignment]
    record = {"x": "7", "words": "good day"}
    stop = threading.Event()
    keeper = threading.Thread(target=other.mounted.keep_fresh, args=(stop, 0.05), name="keeper")
    app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
    frozen = gc.get_freeze_count()
    try:
        keeper.start()
        deadline = time.monotonic() + 30
        while "ml-binary" not in other.mounted:  # loaded at start, before any request
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert gc.get_freeze_count() > frozen  # the loaded model is out of the collector's way
        served = predict(other, "ml-binary", record)
        until = time.monotonic() + 1.5 * REVALIDATE_SECONDS
        while time.monotonic() < until:
            assert predict(other, "ml-binary", record) == served
            time.sleep(0.01)  # under the endpoint's 200 requests per second
        assert readers and set(readers) == {"keeper"}

        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        deadline = time.monotonic() + 10
        while "ml-binary" in other.mounted:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with pytest.raises(PredictorNotMountedException):
            predict(other, "ml-binary", record)
    finally:
        stop.set()
        keeper.join()
        gc.unfreeze()
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        other.close()


def test_one_query_checks_every_mounted_model(trained: Trained) -> None:
    app = trained.app
    models = ["ml-binary", "ml-multiclass", "ml-regression"]
    other = EmrML(Settings.load(environ={}, home=trained.home))
    statements: list[str] = []

    def count(connection: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements.append(statement)

    try:
        for model_id in models:
            app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})
            other.mounted.get(model_id)
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-regression"})
        orm: list[object] = []

        def note(state: object) -> None:
            orm.append(state)

        event.listen(other.engine, "before_cursor_execute", count)
        event.listen(Session, "do_orm_execute", note)
        try:
            other.mounted._check_all()  # what keep_fresh does every half second
        finally:
            event.remove(other.engine, "before_cursor_execute", count)
            event.remove(Session, "do_orm_execute", note)
        # One statement, through a Core connection: no ORM session holding the interpreter lock longer.
        assert len(statements) == 1 and orm == []
        assert "ml-binary" in other.mounted and "ml-multiclass" in other.mounted
        assert "ml-regression" not in other.mounted  # its endpoint went: no longer served here
    finally:
        for model_id in models:
            app.call("DeleteRealtimeEndpoint", {"MLModelId": model_id})
        other.close()


def test_a_server_does_not_reload_a_model_it_just_mounted_itself(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's CreateRealtimeEndpoint loads the model, then records the endpoint READY. A check of its
    mounted models (``keep_fresh``, every half second) that comes in between reads the endpoint UPDATING,
    the server's own change under way: the model it loaded is kept, not dropped and loaded again."""
    from emrml.service import mounted

    server = EmrML(Settings.load(environ={}, home=trained.home))
    loads: list[str] = []
    load = mounted._load

    def counted(model_id: str, *args: Any, **kwargs: Any) -> Any:
        loads.append(model_id)
        return load(model_id, *args, **kwargs)

    monkeypatch.setattr(mounted, "_load", counted)
    mount = server.mounted.load

    def checked_right_after(model_id: str, state: Any) -> Any:
        loaded = mount(model_id, state)
        server.mounted._check_all()  # keep_fresh's thread, waiting for the lock the load held
        return loaded

    monkeypatch.setattr(server.mounted, "load", checked_right_after)
    try:
        server.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})
        server.mounted._check_all()  # the next check: READY
        predict(server, "ml-binary", {"x": "7", "words": "good day"})
        assert loads == ["ml-binary"]
    finally:
        server.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        server.close()


def test_each_of_n_processes_admits_its_share_of_the_rates(trained: Trained) -> None:
    app = trained.app
    share = EmrML(Settings.load(environ={}, home=trained.home), rate_share=0.25)
    app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-binary"})  # PeakRequestsPerSecond 200
    try:
        admitted = 0
        for _ in range(120):
            try:
                predict(share, "ml-binary", {"x": "1"})
                admitted += 1
            except LimitExceededException as exc:
                assert "more than 200 requests per second" in exc.message  # the endpoint's own rate
                break
        assert 50 <= admitted <= 52  # a quarter of 200, plus what refilled meanwhile
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-binary"})
        share.close()


# --- The banking tutorial ------------------------------------------------------------------------------


def test_tutorial_record_through_the_bank_model(trained: Trained) -> None:
    if trained.bank_header is None:
        pytest.skip("the shared datasets are not beside the checkout")
    app = trained.app
    record = dict(zip(trained.bank_header[:-1], TUTORIAL_RECORD.split(","), strict=True))
    info = app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-bank"})["RealtimeEndpointInfo"]
    try:
        prediction = predict(app, "ml-bank", record, info["EndpointUrl"])
    finally:
        app.call("DeleteRealtimeEndpoint", {"MLModelId": "ml-bank"})
    # Amazon ML's tutorial model answered label 0 with score 0.0335.
    assert prediction["predictedLabel"] == "0"
    (score,) = prediction["predictedScores"].values()
    assert 0.0 < score < 0.2
    assert score == pytest.approx(batch_scores(app, "ml-bank", [record])[0], abs=1e-12)
