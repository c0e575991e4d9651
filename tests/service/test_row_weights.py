"""Row weights of 0 through training and evaluation: records weighted 0 count for nothing, so data whose
weight is all 0, or all on one class, fails as data with no records or one class does, saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emrml.service.app import EmrML


def weighted_datasource(app: EmrML, folder: Path, target_type: str, rows: list[tuple[int, str, str]]) -> str:
    """A datasource of ``x,w,y`` records (weight w) whose target y has ``target_type``; returns its id."""
    folder.mkdir()
    (folder / "data.csv").write_text("x,w,y\n" + "".join(f"{x},{w},{y}\n" for x, w, y in rows))
    schema = {
        "version": "1.0",
        "targetAttributeName": "y",
        "rowWeight": "w",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "w", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": target_type},
        ],
    }
    entity_id = f"ds-{folder.name}"
    spec = {"DataLocationS3": str(folder / "data.csv"), "DataSchema": json.dumps(schema)}
    app.call(
        "CreateDataSourceFromS3", {"DataSourceId": entity_id, "DataSpec": spec, "ComputeStatistics": True}
    )
    result = app.wait("DataSource", entity_id)
    assert result["Status"] == "COMPLETED", result.get("Message")
    return entity_id


def trained(app: EmrML, datasource_id: str, model_type: str) -> dict:
    model_id = datasource_id.replace("ds-", "ml-")
    request = {"MLModelId": model_id, "MLModelType": model_type, "TrainingDataSourceId": datasource_id}
    app.call("CreateMLModel", request)
    return app.wait("MLModel", model_id)


TARGETS = {"BINARY": "BINARY", "MULTICLASS": "CATEGORICAL", "REGRESSION": "NUMERIC"}


def target_of(model_type: str, i: int) -> str:
    return {"BINARY": str(i % 2), "MULTICLASS": f"k{i % 3}", "REGRESSION": str(3 * (i % 10))}[model_type]


@pytest.mark.parametrize("model_type", ["BINARY", "MULTICLASS", "REGRESSION"])
def test_training_records_all_weighted_zero_fail_the_model(
    sqlite_app: EmrML, tmp_path: Path, model_type: str
) -> None:
    # Each trained a constant model (0.5, a third per class, the target's mean) and said nothing.
    rows = [(i % 10, "0", target_of(model_type, i)) for i in range(120)]
    source = weighted_datasource(sqlite_app, tmp_path / "zero", TARGETS[model_type], rows)
    model = trained(sqlite_app, source, model_type)
    assert model["Status"] == "FAILED", model
    assert model["Message"] == (
        "rowWeight 'w' is 0 in every training record with a valid target: a model needs records of "
        "positive weight to learn from"
    )


@pytest.mark.parametrize(
    ("model_type", "zero", "message"),
    [
        ("BINARY", {"1"}, "of the target class 1: only class 0 has"),
        ("MULTICLASS", {"k0", "k2"}, "of the target classes k0, k2: only class k1 has"),
    ],
)
def test_a_class_weighted_zero_throughout_leaves_one_class(
    sqlite_app: EmrML, tmp_path: Path, model_type: str, zero: set[str], message: str
) -> None:
    # The BINARY model scored every record near 0: one-class data, which unweighted fails the model.
    rows = [
        (i % 10, "0" if target_of(model_type, i) in zero else "2", target_of(model_type, i))
        for i in range(120)
    ]
    source = weighted_datasource(sqlite_app, tmp_path / "one", TARGETS[model_type], rows)
    model = trained(sqlite_app, source, model_type)
    assert model["Status"] == "FAILED", model
    assert model["Message"] == (
        f"rowWeight 'w' is 0 in every training record {message} records of positive weight, and a "
        f"{model_type} model needs two"
    )


def test_records_weighted_zero_beside_others_train(sqlite_app: EmrML, tmp_path: Path) -> None:
    rows = [(i % 10, "0" if i % 3 == 0 else "1.5", str(int(i % 10 > 4))) for i in range(120)]
    source = weighted_datasource(sqlite_app, tmp_path / "some", "BINARY", rows)
    model = trained(sqlite_app, source, "BINARY")
    assert model["Status"] == "COMPLETED", model.get("Message")


@pytest.mark.parametrize(
    ("model_type", "message"),
    [
        (
            "BINARY",
            "the evaluation data has no records with label 1 of positive weight (its 60 records weigh 0) "
            "(120 records in all); BinaryAUC needs records of both labels",
        ),
        (
            "MULTICLASS",
            "the evaluation data has no records with positive weight (120 records in all); "
            "MulticlassAvgFScore needs at least one",
        ),
    ],
)
def test_an_evaluation_of_records_weighted_zero_says_they_weigh_zero(
    sqlite_app: EmrML, tmp_path: Path, model_type: str, message: str
) -> None:
    # Said "no records with label 1" and "no records" of data holding them, weighted 0.
    kind = TARGETS[model_type]
    training = [(i % 10, "1", target_of(model_type, i)) for i in range(120)]
    model = trained(
        sqlite_app, weighted_datasource(sqlite_app, tmp_path / "train", kind, training), model_type
    )
    assert model["Status"] == "COMPLETED", model.get("Message")
    weights = {"BINARY": lambda y: "0" if y == "1" else "1", "MULTICLASS": lambda y: "0"}[model_type]
    rows = [(i % 10, weights(target_of(model_type, i)), target_of(model_type, i)) for i in range(120)]
    source = weighted_datasource(sqlite_app, tmp_path / "evaluate", kind, rows)
    request = {"EvaluationId": "ev-1", "MLModelId": model["MLModelId"], "EvaluationDataSourceId": source}
    sqlite_app.call("CreateEvaluation", request)
    evaluation = sqlite_app.wait("Evaluation", "ev-1")
    assert evaluation["Status"] == "FAILED", evaluation
    assert evaluation["Message"] == message
