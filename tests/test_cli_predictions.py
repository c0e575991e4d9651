"""The ``emrml`` batch-prediction, endpoint and predict commands, against the real service."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cli_helpers import cli, cli_json, error_line


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_datasets: Path) -> Path:
    """A home with the SMS spam data as a datasource and a BINARY model trained on it."""
    home = tmp_path_factory.mktemp("predictions")
    folder = shared_datasets / "sms_spam"
    data, schema = str(folder / "data.csv"), str(folder / "data.csv.schema")
    cli(home, "datasource", "create", "--id", "ds-sms", "--data", data, "--schema", schema)
    cli(home, "model", "create", "--id", "ml-sms", "--type", "BINARY", "--datasource", "ds-sms")
    return home


def test_batch_prediction_writes_results_and_manifest(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shown = cli_json(
        trained,
        "batch-prediction",
        "create",
        "--id",
        "bp-1",
        "--model",
        "ml-sms",
        "--datasource",
        "ds-sms",
        "--output-uri",
        str(out),
    )["GetBatchPrediction"]
    assert shown["Status"] == "COMPLETED" and shown["TotalRecordCount"] == 5_574
    manifest = json.loads(Path(shown["ManifestLocation"]).read_text())
    result = Path(next(iter(manifest.values())))
    assert result.parent == out / "batch-prediction" / "result"
    lines = gzip.decompress(result.read_bytes()).decode().splitlines()
    assert lines[0] == "trueLabel,bestAnswer,score" and len(lines) == 5_575
    table = cli(trained, "batch-prediction", "show", "bp-1").stdout
    assert "5,574" in table and "COMPLETED" in table
    assert "bp-1" in cli(trained, "batch-prediction", "list").stdout


def test_endpoint_and_predict(trained: Path) -> None:
    record = json.dumps({"message": "WINNER!! Claim your free prize now, call 09061701461"})
    refused = cli(trained, "predict", "ml-sms", "--record", record, code=6)
    assert "PredictorNotMountedException" in error_line(refused)
    assert error_line(refused).endswith("(emrml endpoint create ml-sms)")
    info = cli_json(trained, "endpoint", "create", "ml-sms")["RealtimeEndpointInfo"]
    assert info["EndpointStatus"] == "READY" and info["PeakRequestsPerSecond"] == 200
    # Another process (this invocation) mounts the endpoint from the metastore.
    prediction = cli_json(trained, "predict", "ml-sms", "--record", record)["Prediction"]
    assert prediction["predictedLabel"] == "1" and prediction["details"]["PredictiveModelType"] == "BINARY"
    shown = cli(trained, "predict", "ml-sms", "--record", record)
    assert "Predicted label" in shown.stdout and "warning" not in shown.stderr
    # A record naming no attribute of the schema is answered, with a warning on stderr.
    stranger = cli(trained, "predict", "ml-sms", "--record", '{"msg": "hello"}')
    assert "Predicted label" in stranger.stdout
    assert stranger.stderr.startswith("warning: the record names none of the model's attributes")
    # A misspelt name is ignored by Predict without a word: the CLI names it, with the attribute meant.
    misspelt = cli(trained, "predict", "ml-sms", "--record", '{"mesage": "hi", "other": "x"}').stderr
    assert (
        "warning: 'mesage' is not an attribute of the model (did you mean 'message'?); it was ignored\n"
        in misspelt
    )
    assert "warning: 'other' is not an attribute of the model; it was ignored\n" in misspelt
    flagged = cli_json(trained, "predict", "ml-sms", "--record", '{"msg": "hello"}')["Prediction"]
    assert flagged["details"]["NoSchemaAttributes"] == "true"
    assert "valid JSON" in error_line(cli(trained, "predict", "ml-sms", "--record", "{nope", code=2))
    # JSON numbers and booleans are sent as their text: the prediction of the record written in strings.
    typed = cli_json(trained, "predict", "ml-sms", "--record", '{"message": 42, "extra": true}')
    as_text = cli_json(trained, "predict", "ml-sms", "--record", '{"message": "42", "extra": "true"}')
    assert typed["Prediction"] == as_text["Prediction"]
    nested = error_line(cli(trained, "predict", "ml-sms", "--record", '{"message": ["hi"]}', code=2))
    assert "--record: the value of 'message' is a list" in nested
    twice = error_line(
        cli(trained, "predict", "ml-sms", "--record", '{"message": "a", "message": "b"}', code=2)
    )
    assert "--record names 'message' twice" in twice
    deleted = cli(trained, "endpoint", "delete", "ml-sms").stdout
    assert deleted == "Deleted the real-time endpoint of ml-sms.\n"
    cli(trained, "predict", "ml-sms", "--record", record, code=6)
    gone = cli_json(trained, "endpoint", "delete", "ml-sms")
    assert gone == {
        "MLModelId": "ml-sms",
        "RealtimeEndpointInfo": {**gone["RealtimeEndpointInfo"], "EndpointStatus": "NONE"},
    }


def test_batch_prediction_of_a_model_whose_file_is_gone(trained: Path, tmp_path: Path) -> None:
    """A model file removed from the home fails the job with an error naming the file, not an internal one."""
    artifact = trained / "models" / "ml-sms.zip"
    aside = tmp_path / "model.zip"
    artifact.rename(aside)
    try:
        args = ("--model", "ml-sms", "--datasource", "ds-sms", "--output-uri", str(tmp_path / "out"))
        failed = cli(trained, "batch-prediction", "create", "--id", "bp-gone", *args, code=2)
    finally:
        aside.rename(artifact)
    assert f"{artifact} is not a usable emrml model: the file does not exist" in error_line(failed)
    assert not (tmp_path / "out" / "batch-prediction").exists()
