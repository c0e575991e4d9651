"""An evaluation needs its datasource to name the model's target (spec 8), whose type is the training
schema's whatever the evaluation datasource declares (spec 5.2); a batch prediction scores data without it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from emrml.errors import InvalidInputException
from emrml.service.app import EmrML
from raw_models import XWY_SCHEMA

ROWS = "x,words,y\n" + "".join(f"{i},{'good day' if i % 2 else 'bad day'},{i % 2}\n" for i in range(200))


def typed(target: str | None, y_type: str = "BINARY") -> str:
    attributes = [
        {**a, "attributeType": y_type} if a["attributeName"] == "y" else a for a in XWY_SCHEMA["attributes"]
    ]
    return json.dumps({**XWY_SCHEMA, "attributes": attributes, "targetAttributeName": target})


def create_datasource(app: EmrML, folder: Path, entity_id: str, schema: str, *, wait: bool = True) -> None:
    spec = {"DataLocationS3": str(folder / "data.csv"), "DataSchema": schema}
    app.call("CreateDataSourceFromS3", {"DataSourceId": entity_id, "DataSpec": spec})
    if wait:
        assert app.wait("DataSource", entity_id)["Status"] == "COMPLETED"


@pytest.fixture
def trained(sqlite_app: EmrML, tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text(ROWS)
    spec = {"DataLocationS3": str(tmp_path / "data.csv"), "DataSchema": typed("y")}
    sqlite_app.call(
        "CreateDataSourceFromS3", {"DataSourceId": "ds-train", "DataSpec": spec, "ComputeStatistics": True}
    )
    sqlite_app.call(
        "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-train"}
    )
    assert sqlite_app.wait("MLModel", "ml-1")["Status"] == "COMPLETED"
    return tmp_path


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (typed(None), "'ds-eval' has no targetAttributeName: an evaluation compares the predictions with"),
        (typed("x"), "'ds-eval' has targetAttributeName 'x', but the model predicts 'y'"),
    ],
)
def test_an_evaluation_datasource_without_the_models_target_is_refused(
    sqlite_app: EmrML, trained: Path, schema: str, message: str
) -> None:
    # Such an evaluation used to complete with an AUC computed against a column its datasource does not
    # declare as the target.
    app = sqlite_app
    request = {"EvaluationId": "ev-1", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-eval"}
    create_datasource(app, trained, "ds-eval", schema)
    with pytest.raises(InvalidInputException, match=re.escape(message)):
        app.call("CreateEvaluation", request)

    # Known only once the datasource's job has run: the evaluation's job fails, saying the same.
    create_datasource(app, trained, "ds-later", schema, wait=False)
    app.call("CreateEvaluation", {**request, "EvaluationId": "ev-2", "EvaluationDataSourceId": "ds-later"})
    failed = app.wait("Evaluation", "ev-2")
    assert failed["Status"] == "FAILED" and "PerformanceMetrics" not in failed
    assert message.replace("ds-eval", "ds-later") in failed["Message"]


def test_an_evaluation_datasource_typing_the_target_otherwise_is_read_with_the_training_type(
    sqlite_app: EmrML, trained: Path
) -> None:
    """Spec 5.2: the training type wins. A 0/1 target typed NUMERIC by the evaluation datasource (as a
    slice inferred on its own may be) is read as the model's BINARY target."""
    app = sqlite_app
    create_datasource(app, trained, "ds-numeric", typed("y", "NUMERIC"))
    request = {"EvaluationId": "ev-n", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-numeric"}
    app.call("CreateEvaluation", request)
    evaluated = app.wait("Evaluation", "ev-n")
    assert evaluated["Status"] == "COMPLETED"
    assert float(evaluated["PerformanceMetrics"]["Properties"]["BinaryAUC"]) > 0.5


def test_a_batch_prediction_scores_a_datasource_without_a_target(sqlite_app: EmrML, trained: Path) -> None:
    app = sqlite_app
    create_datasource(app, trained, "ds-untargeted", typed(None))
    request = {
        "BatchPredictionId": "bp-1",
        "MLModelId": "ml-1",
        "BatchPredictionDataSourceId": "ds-untargeted",
        "OutputUri": str(trained / "out") + "/",
    }
    app.call("CreateBatchPrediction", request)
    assert app.wait("BatchPrediction", "bp-1")["Status"] == "COMPLETED"
