"""The ``max_attributes`` setting end to end: the schemas users give obey it; stored schemas keep working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML

URL = Settings().public_url


def _app(home: Path, max_attributes: int, metastore_url: str = "") -> EmrML:
    return EmrML(
        Settings.load(environ={}, home=home, metastore_url=metastore_url, max_attributes=max_attributes)
    )


@pytest.fixture
def limited(tmp_path: Path, metastore_url: str) -> Iterator[EmrML]:
    application = _app(tmp_path / "home", 3, metastore_url)
    yield application
    application.close()


def _schema(names: list[str], target: str) -> str:
    attributes = [
        {"attributeName": n, "attributeType": "BINARY" if n == target else "NUMERIC"} for n in names
    ]
    return json.dumps(
        {"targetAttributeName": target, "dataFileContainsHeader": True, "attributes": attributes}
    )


def _write(path: Path, names: list[str], rows: int) -> Path:
    lines = [",".join(names)]
    lines += [
        ",".join(str((r * (c + 1)) % 7 if c < len(names) - 1 else r % 2) for c in range(len(names)))
        for r in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _datasource(app: EmrML, entity_id: str, data: Path, schema: str | None) -> dict:
    spec = {"DataLocationS3": str(data)}
    if schema is not None:
        spec["DataSchema"] = schema
    app.call(
        "CreateDataSourceFromS3", {"DataSourceId": entity_id, "DataSpec": spec, "ComputeStatistics": True}
    )
    return app.wait("DataSource", entity_id)


def test_a_lower_limit_refuses_the_schemas_users_give(limited: EmrML, tmp_path: Path) -> None:
    names = ["a", "b", "c", "y"]
    data = _write(tmp_path / "data.csv", names, 10)
    given = _datasource(limited, "ds-given", data, _schema(names, "y"))
    assert given["Status"] == "FAILED"
    assert "DataSpec.DataSchema has 4 attributes; the limit is 3" in given["Message"]
    assert "max_attributes" in given["Message"]
    # A schema file beside the data is the user's too.
    (tmp_path / "data.csv.schema").write_text(_schema(names, "y"))
    beside = _datasource(limited, "ds-beside", data, None)
    assert beside["Status"] == "FAILED" and "max_attributes" in beside["Message"], beside
    with pytest.raises(
        InvalidInputException, match=r"the limit is 3 attributes \(the max_attributes setting\)"
    ):
        limited.call("InferDataSchema", {"DataLocationS3": str(data)})
    small = _write(tmp_path / "small.csv", ["a", "b", "y"], 10)
    assert _datasource(limited, "ds-small", small, _schema(["a", "b", "y"], "y"))["Status"] == "COMPLETED"


def test_a_raised_limit_trains_and_predicts_and_survives_lowering(tmp_path: Path) -> None:
    names = [f"x{i}" for i in range(1_001)] + ["y"]
    data = _write(tmp_path / "wide.csv", names, 12)
    home = tmp_path / "home"
    app = _app(home, 1_200)
    try:
        inferred = app.call("InferDataSchema", {"DataLocationS3": str(data), "TargetAttributeName": "y"})
        assert len(json.loads(inferred["DataSchema"])["attributes"]) == 1_002
        assert _datasource(app, "ds-wide", data, _schema(names, "y"))["Status"] == "COMPLETED"
        app.call(
            "CreateMLModel",
            {"MLModelId": "ml-wide", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-wide"},
        )
        model = app.wait("MLModel", "ml-wide")
        assert model["Status"] == "COMPLETED", model.get("Message")
    finally:
        app.close()
    # The limit lowered again: what was accepted under the higher one still loads and predicts.
    app = _app(home, 1_000)
    try:
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-wide"})
        record = dict.fromkeys(names[:-1], "1")
        prediction = app.call("Predict", {"MLModelId": "ml-wide", "Record": record, "PredictEndpoint": URL})
        assert prediction["Prediction"]["predictedLabel"] in ("0", "1")
        app.call(
            "CreateMLModel",
            {"MLModelId": "ml-again", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-wide"},
        )
        app.call(
            "CreateEvaluation",
            {"EvaluationId": "ev-wide", "MLModelId": "ml-wide", "EvaluationDataSourceId": "ds-wide"},
        )
        assert app.wait("MLModel", "ml-again")["Status"] == "COMPLETED"
        evaluation = app.wait("Evaluation", "ev-wide")
        assert evaluation["Status"] == "COMPLETED", evaluation.get("Message")
        # A new schema of that size is the user's, and the lowered limit refuses it.
        refused = _datasource(app, "ds-wide-again", data, _schema(names, "y"))
        assert refused["Status"] == "FAILED" and "max_attributes" in refused["Message"]
    finally:
        app.close()
