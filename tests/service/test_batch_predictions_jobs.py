"""Batch predictions through the operations and the job, end to end, on a model trained on the real
bank data: the tutorial's batch input, the model's threshold, waiting for a model, and the checks of
CreateBatchPrediction."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from batch_helpers import result_file_lines

from emrml.config import Settings
from emrml.errors import IdempotentParameterMismatchException, InvalidInputException
from emrml.service.app import EmrML


@pytest.fixture(scope="module")
def app(workspace: Path) -> Iterator[EmrML]:
    application = EmrML(Settings.load(environ={}, home=workspace / "service-home"))
    yield application
    application.close()


def _datasource(app: EmrML, entity_id: str, location: Path, schema: dict, statistics: bool = False) -> None:
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": entity_id,
            "DataSpec": {"DataLocationS3": str(location), "DataSchema": json.dumps(schema)},
            "ComputeStatistics": statistics,
        },
    )


@pytest.fixture(scope="module")
def bank(app: EmrML, workspace: Path, shared_datasets: Path) -> dict:
    """A BINARY model trained on the first 4,000 bank marketing records, and the tutorial's batch input."""
    folder = shared_datasets / "bank_marketing"
    schema = json.loads((folder / "data.csv.schema").read_text())
    training = workspace / "bank-train.csv"
    with open(folder / "data.csv") as source:
        training.write_text("".join(line for _, line in zip(range(4001), source, strict=False)))
    _datasource(app, "ds-bank", training, schema, statistics=True)
    app.call(
        "AddTags",
        {"ResourceType": "DataSource", "ResourceId": "ds-bank", "Tags": [{"Key": "team", "Value": "data"}]},
    )
    app.call(
        "CreateMLModel", {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"}
    )
    assert app.wait("MLModel", "ml-bank")["Status"] == "COMPLETED"
    app.call(
        "AddTags",
        {
            "ResourceType": "MLModel",
            "ResourceId": "ml-bank",
            "Tags": [{"Key": "team", "Value": "ml"}, {"Key": "m"}],
        },
    )
    batch_schema = {**schema, "attributes": schema["attributes"][:-1]}
    del batch_schema["targetAttributeName"]
    _datasource(app, "ds-batch", folder / "aml-tutorial" / "banking-batch.csv", batch_schema)
    assert app.wait("DataSource", "ds-batch")["Status"] == "COMPLETED"
    return {"schema": schema, "batch_schema": batch_schema}


def _create(
    app: EmrML, prediction_id: str, output: Path | str, model: str = "ml-bank", source: str = "ds-batch"
) -> dict:
    request = {
        "BatchPredictionId": prediction_id,
        "MLModelId": model,
        "BatchPredictionDataSourceId": source,
        "OutputUri": str(output),
    }
    assert app.call("CreateBatchPrediction", request) == {"BatchPredictionId": prediction_id}
    return app.wait("BatchPrediction", prediction_id)


def test_tutorial_batch_input_end_to_end(
    app: EmrML, bank: dict, workspace: Path, shared_datasets: Path
) -> None:
    output = workspace / "service-out"
    description = _create(app, "bp-tutorial", output)
    assert description["Status"] == "COMPLETED", description.get("Message")
    # 294 good records and the truncated 295th (spec 9: an empty line in its place, counted as failed).
    assert description["TotalRecordCount"] == 295 and description["InvalidRecordCount"] == 1
    assert description["OutputUri"] == f"{output}/" and description["ComputeTime"] >= 0
    assert description["InputDataLocationS3"].endswith("aml-tutorial/banking-batch.csv")
    manifest_location = description["ManifestLocation"]
    assert manifest_location == f"{output}/batch-prediction/bp-tutorial.manifest"
    manifest = json.loads(Path(manifest_location).read_text())
    source = str(shared_datasets / "bank_marketing" / "aml-tutorial" / "banking-batch.csv")
    assert manifest == {source: f"{output}/batch-prediction/result/bp-tutorial-banking-batch.csv.gz"}
    lines = result_file_lines(manifest[source])
    assert lines[0] == "bestAnswer,score" and len(lines) == 296 and lines[-1] == ""
    assert all(re.fullmatch(r"[01],[1-9]\.[0-9]+E-?[0-9]+", line) for line in lines[1:-1])
    described = app.call("DescribeBatchPredictions", {"FilterVariable": "MLModelId", "EQ": "ml-bank"})[
        "Results"
    ]
    listed = next(d for d in described if d["BatchPredictionId"] == "bp-tutorial")
    assert "ManifestLocation" not in listed and listed["TotalRecordCount"] == 295
    # Tags come from the datasource and the model; the model's win on a conflict (spec 4.7).
    tags = app.call("DescribeTags", {"ResourceType": "BatchPrediction", "ResourceId": "bp-tutorial"})["Tags"]
    assert {tag["Key"]: tag.get("Value") for tag in tags} == {"team": "ml", "m": None}
    app.call("UpdateBatchPrediction", {"BatchPredictionId": "bp-tutorial", "BatchPredictionName": "tutorial"})
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-tutorial"})["Name"] == "tutorial"
    app.call("DeleteBatchPrediction", {"BatchPredictionId": "bp-tutorial"})
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-tutorial"})["Status"] == "DELETED"


def test_threshold_is_the_models_at_job_start(app: EmrML, bank: dict, workspace: Path) -> None:
    scores: dict[float, list[tuple[str, float]]] = {}
    for threshold in (0.5, 0.05):
        app.call("UpdateMLModel", {"MLModelId": "ml-bank", "ScoreThreshold": threshold})
        description = _create(app, f"bp-threshold-{threshold}", workspace / f"threshold-{threshold}")
        assert description["UnparsedRecordCount"] == 0  # the real bank file has no unreadable value
        (location,) = json.loads(Path(description["ManifestLocation"]).read_text()).values()
        scores[threshold] = [
            (line.split(",")[0], float(line.split(",")[1])) for line in result_file_lines(location)[1:-1]
        ]
    app.call("UpdateMLModel", {"MLModelId": "ml-bank", "ScoreThreshold": 0.5})
    assert [s for _, s in scores[0.5]] == [s for _, s in scores[0.05]]
    for threshold, pairs in scores.items():
        assert all(best == ("1" if score >= threshold else "0") for best, score in pairs)
    ones = {threshold: sum(best == "1" for best, _ in pairs) for threshold, pairs in scores.items()}
    assert ones[0.05] > ones[0.5]


def test_unwritable_output_fails_the_job(app: EmrML, bank: dict, workspace: Path) -> None:
    blocker = workspace / "service-blocker"
    blocker.write_text("x")
    description = _create(app, "bp-unwritable", blocker / "out")
    assert description["Status"] == "FAILED"
    assert f"cannot write to OutputUri '{blocker}/out/'" in description["Message"]
    assert "TotalRecordCount" not in description and "ManifestLocation" not in description


def test_waits_for_a_pending_model_and_refuses_a_failed_one(app: EmrML, bank: dict, workspace: Path) -> None:
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-pending", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"},
    )
    request = {
        "BatchPredictionId": "bp-pending",
        "MLModelId": "ml-pending",
        "BatchPredictionDataSourceId": "ds-batch",
        "OutputUri": str(workspace / "pending"),
    }
    app.call("CreateBatchPrediction", request)
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-pending"})["Status"] == "PENDING"
    description = app.wait("BatchPrediction", "bp-pending")
    assert description["Status"] == "COMPLETED" and description["TotalRecordCount"] == 295
    assert app.call("GetMLModel", {"MLModelId": "ml-pending"})["Status"] == "COMPLETED"

    one_class = workspace / "one-class.csv"
    one_class.write_text("age,job,y\n" + "".join(f"{i},admin.,0\n" for i in range(50)))
    schema = {
        "version": "1.0",
        "targetAttributeName": "y",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "age", "attributeType": "NUMERIC"},
            {"attributeName": "job", "attributeType": "CATEGORICAL"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
    _datasource(app, "ds-one-class", one_class, schema, statistics=True)
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-failed", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-one-class"},
    )
    assert app.wait("MLModel", "ml-failed")["Status"] == "FAILED"
    with pytest.raises(InvalidInputException, match="MLModelId 'ml-failed' is FAILED"):
        app.call("CreateBatchPrediction", {**request, "BatchPredictionId": "bp-x", "MLModelId": "ml-failed"})
    with pytest.raises(InvalidInputException, match="no such DataSource"):
        app.call(
            "CreateBatchPrediction",
            {**request, "BatchPredictionId": "bp-x", "BatchPredictionDataSourceId": "nope"},
        )


def test_create_checks(app: EmrML, bank: dict, workspace: Path) -> None:
    request = {
        "BatchPredictionId": "bp-checks",
        "MLModelId": "ml-bank",
        "BatchPredictionDataSourceId": "ds-batch",
        "OutputUri": "s3://bucket/out",
    }
    for uri, forbidden in [
        ("s3://bucket/a//b/", "//"),
        ("s3://bucket/a/./b", "/./"),
        (f"{workspace}/a/../b", "/../"),
        ("s3://bucket/a:b/", ":"),
        ("file:///tmp/x/..", "/../"),
    ]:
        with pytest.raises(InvalidInputException, match=f"must not contain '{forbidden}'"):
            app.call("CreateBatchPrediction", {**request, "OutputUri": uri})
    with pytest.raises(InvalidInputException, match="use a local path"):
        app.call("CreateBatchPrediction", {**request, "OutputUri": "http://host/out/"})
    app.call("CreateBatchPrediction", request)
    assert (
        app.call("GetBatchPrediction", {"BatchPredictionId": "bp-checks"})["OutputUri"] == "s3://bucket/out/"
    )
    assert app.call("CreateBatchPrediction", request) == {"BatchPredictionId": "bp-checks"}
    with pytest.raises(IdempotentParameterMismatchException):
        app.call("CreateBatchPrediction", {**request, "BatchPredictionName": "other"})
    # No S3 store answers (the tests' default endpoint is a closed port): the job fails and says why.
    description = app.wait("BatchPrediction", "bp-checks")
    assert description["Status"] == "FAILED"
    assert "OutputUri 's3://bucket/out/' cannot be read: EndpointConnectionError" in description["Message"]

    narrow = workspace / "narrow-bank.csv"
    narrow.write_text("age,job\n30,admin.\n")
    schema = {
        "version": "1.0",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "age", "attributeType": "NUMERIC"},
            {"attributeName": "job", "attributeType": "CATEGORICAL"},
        ],
    }
    _datasource(app, "ds-narrow", narrow, schema)
    assert app.wait("DataSource", "ds-narrow")["Status"] == "COMPLETED"
    with pytest.raises(InvalidInputException, match="lacks attributes the model 'ml-bank' uses: marital"):
        app.call(
            "CreateBatchPrediction",
            {**request, "BatchPredictionId": "bp-n", "BatchPredictionDataSourceId": "ds-narrow"},
        )
