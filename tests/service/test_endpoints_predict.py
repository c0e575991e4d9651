"""Predict through a real-time endpoint: each model type's answer agrees with the batch path's scores,
records and requests are checked as Amazon ML checks them, and the banking tutorial's record."""

from __future__ import annotations

import json
from typing import Any

import pytest
from endpoints_helpers import URL, Trained, batch_scores, predict

from emrml.config import Settings
from emrml.errors import (
    AmazonMLError,
    InvalidInputException,
    PredictorNotMountedException,
    ResourceNotFoundException,
)
from emrml.service.app import EmrML
from emrml.service.predicting import serve_predict
from emrml.service.validation import validate_request

TUTORIAL_RECORD = (
    "32,services,divorced,basic.9y,no,unknown,yes,cellular,dec,mon,110,1,11,0,nonexistent,-1.8,94.465,"
    "-36.1,0.883,5228.1"
)


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
