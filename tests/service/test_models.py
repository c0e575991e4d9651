"""Models and evaluations through the operations: training, evaluation, thresholds and bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.errors import (
    IdempotentParameterMismatchException,
    InvalidInputException,
    ResourceNotFoundException,
)
from emrml.service.app import EmrML
from metastores import Templates
from raw_models import XWY_SCHEMA


def datasource(
    app: EmrML, entity_id: str, folder: Path, split: dict | None = None, schema: str | None = None
) -> dict:
    spec = {
        "DataLocationS3": str(folder / "data.csv"),
        "DataSchema": schema or (folder / "data.csv.schema").read_text(),
    }
    if split is not None:
        spec["DataRearrangement"] = json.dumps({"splitting": split})
    app.call(
        "CreateDataSourceFromS3", {"DataSourceId": entity_id, "DataSpec": spec, "ComputeStatistics": True}
    )
    result = app.wait("DataSource", entity_id)
    assert result["Status"] == "COMPLETED", result.get("Message")
    return result


def random_split(complement: bool) -> dict:
    return {
        "percentBegin": 0,
        "percentEnd": 70,
        "strategy": "random",
        "strategyParams": {"randomSeed": "emrml"},
        "complement": complement,
    }


def train_and_evaluate(app: EmrML, folder: Path, model_type: str, **model_request) -> tuple[dict, dict]:
    datasource(app, "ds-train", folder, random_split(False))
    datasource(app, "ds-eval", folder, random_split(True))
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-1", "MLModelType": model_type, "TrainingDataSourceId": "ds-train", **model_request},
    )
    app.call(
        "CreateEvaluation", {"EvaluationId": "ev-1", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-eval"}
    )
    evaluation = app.wait("Evaluation", "ev-1")
    model = app.call("GetMLModel", {"MLModelId": "ml-1", "Verbose": True})
    assert model["Status"] == "COMPLETED", model.get("Message")
    assert evaluation["Status"] == "COMPLETED", evaluation.get("Message")
    return model, evaluation


def test_binary_model_on_bank_marketing(sqlite_app: EmrML, shared_datasets: Path) -> None:
    app = sqlite_app
    model, evaluation = train_and_evaluate(app, shared_datasets / "bank_marketing", "BINARY")
    auc = float(evaluation["PerformanceMetrics"]["Properties"]["BinaryAUC"])
    assert auc > 0.92
    assert model["ScoreThreshold"] == 0.5 and "ScoreThresholdLastUpdatedAt" not in model
    assert (
        model["TrainingParameters"]["algorithm"] == "sgd"
        and model["TrainingParameters"]["sgd.maxPasses"] == "10"
    )
    assert "quantile_bin" in model["Recipe"] and json.loads(model["Schema"])["targetAttributeName"] == "y"
    assert model["SizeInBytes"] > 0 and model["EndpointInfo"] == {
        "EndpointStatus": "NONE",
        "PeakRequestsPerSecond": 0,
    }
    insights = app.call("GetEvaluationInsights", {"EvaluationId": "ev-1"})["Insights"]
    assert len(insights["metrics"]["histograms"]["positive"]) == 100
    assert len(insights["metrics"]["thresholdTable"]) == 101
    assert {alert["name"] for alert in insights["alerts"]}
    top = app.call("GetMLModelInsights", {"MLModelId": "ml-1"})["TopFeatures"]
    assert top and all("feature" in item for item in top)

    app.call("UpdateMLModel", {"MLModelId": "ml-1", "ScoreThreshold": 0.77})
    updated = app.call("GetMLModel", {"MLModelId": "ml-1"})
    assert updated["ScoreThreshold"] == 0.77 and updated["ScoreThresholdLastUpdatedAt"] >= model["CreatedAt"]
    with pytest.raises(InvalidInputException, match="between 0 and 1"):
        app.call("UpdateMLModel", {"MLModelId": "ml-1", "ScoreThreshold": 1.5})
    described = app.call("DescribeMLModels", {"FilterVariable": "MLModelType", "EQ": "BINARY"})["Results"]
    assert [m["MLModelId"] for m in described] == ["ml-1"] and described[0]["Algorithm"] == "sgd"
    assert (
        app.call("DescribeEvaluations", {"FilterVariable": "MLModelId", "EQ": "ml-1"})["Results"][0][
            "EvaluationId"
        ]
        == "ev-1"
    )


def test_multiclass_model_on_wine(sqlite_app: EmrML, shared_datasets: Path) -> None:
    _, evaluation = train_and_evaluate(sqlite_app, shared_datasets / "wine_quality", "MULTICLASS")
    f1 = float(evaluation["PerformanceMetrics"]["Properties"]["MulticlassAvgFScore"])
    insights = sqlite_app.call("GetEvaluationInsights", {"EvaluationId": "ev-1"})["Insights"]["metrics"]
    assert f1 > insights["baseline"]
    assert len(insights["confusionMatrix"]["counts"]) == len(insights["confusionMatrix"]["classes"])
    with pytest.raises(InvalidInputException, match="BINARY models only"):
        sqlite_app.call("UpdateMLModel", {"MLModelId": "ml-1", "ScoreThreshold": 0.3})


def test_regression_model_on_california(sqlite_app: EmrML, shared_datasets: Path) -> None:
    _, evaluation = train_and_evaluate(
        sqlite_app, shared_datasets / "california_housing", "REGRESSION", Parameters={"sgd.maxPasses": "5"}
    )
    rmse = float(evaluation["PerformanceMetrics"]["Properties"]["RegressionRMSE"])
    everything = sqlite_app.call("GetEvaluationInsights", {"EvaluationId": "ev-1"})["Insights"]
    insights = everything["metrics"]
    assert rmse < 0.7 * insights["baseline"]
    assert sum(insights["residualHistogram"]["counts"]) > 0
    alerts = {alert["name"]: alert for alert in everything["alerts"]}
    assert alerts["Better than the baseline"]["passed"]
    assert alerts["Training converged"]["passed"], alerts["Training converged"]
    # The linear model predicts some house values beyond the training range; the alert counts them.
    in_range = alerts["Predictions in the target's range"]
    outside = r"^[\d,]+ of [\d,]+ predictions fall outside the training target's range"
    assert re.search(outside, in_range["message"])


def test_a_target_leak_is_an_alert_of_the_model_and_its_evaluations(
    sqlite_app: EmrML, shared_datasets: Path
) -> None:
    # bike_sharing_hourly's schema excludes `casual` and `registered`, which sum to the target `cnt`; an
    # inferred schema would keep them.
    app, folder = sqlite_app, shared_datasets / "bike_sharing_hourly"
    given = (folder / "data.csv.schema").read_text()
    document = json.loads(given)
    document["excludedAttributeNames"].remove("registered")
    leaky = json.dumps(document)
    datasource(app, "ds-leaky", folder, random_split(False), leaky)
    datasource(app, "ds-given", folder, random_split(False), given)
    datasource(app, "ds-eval", folder, random_split(True), leaky)
    for model_id, source_id in (("ml-leaky", "ds-leaky"), ("ml-given", "ds-given")):
        app.call(
            "CreateMLModel",
            {
                "MLModelId": model_id,
                "MLModelType": "REGRESSION",
                "TrainingDataSourceId": source_id,
                "Parameters": {"sgd.maxPasses": "2"},
            },
        )
    app.call(
        "CreateEvaluation",
        {"EvaluationId": "ev-leaky", "MLModelId": "ml-leaky", "EvaluationDataSourceId": "ds-eval"},
    )
    assert app.wait("Evaluation", "ev-leaky")["Status"] == "COMPLETED"
    assert app.wait("MLModel", "ml-given")["Status"] == "COMPLETED"

    name = "No attribute predicts the target by itself"
    leak = app.call("GetMLModelInsights", {"MLModelId": "ml-leaky"})["Alerts"]
    assert [(alert["name"], alert["passed"]) for alert in leak] == [(name, False)]
    assert leak[0]["message"].startswith("Possible target leak: 'registered' (")
    # Every evaluation of the model repeats it, next to the evaluation's own alerts.
    assert leak[0] in app.call("GetEvaluationInsights", {"EvaluationId": "ev-leaky"})["Insights"]["alerts"]
    # As given, the hour is the most informative attribute, far below the alert.
    honest = app.call("GetMLModelInsights", {"MLModelId": "ml-given"})["Alerts"]
    assert [(alert["name"], alert["passed"]) for alert in honest] == [(name, True)]
    assert "'hr', carries" in honest[0]["message"]


SMALL_SCHEMA = XWY_SCHEMA


def _small_datasource(app: EmrML, folder: Path) -> Path:
    rows = "".join(f"{i},{'good day' if i % 2 else 'bad day'},{i % 2}\n" for i in range(300))
    (folder / "data.csv").write_text("x,words,y\n" + rows)
    (folder / "data.csv.schema").write_text(json.dumps(SMALL_SCHEMA))
    datasource(app, "ds-small", folder)
    return folder


@pytest.fixture
def small(app: EmrML, tmp_path: Path) -> Path:
    return _small_datasource(app, tmp_path)


@pytest.fixture
def sqlite_small(sqlite_app: EmrML, tmp_path: Path) -> Path:
    """``small`` for the tests of what the jobs do with it, alike on every metastore: on SQLite alone."""
    return _small_datasource(sqlite_app, tmp_path)


def _case_id(prefix: str, case: str) -> str:
    """An entity id of a parametrized case's own, for the tests sharing ``refusing``."""
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9]+', '-', case).strip('-')}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def refusing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, metastore_templates: Templates
) -> Iterator[EmrML]:
    """An installation per metastore holding ``ds-small`` COMPLETED, shared by the tests of requests
    checked against it: each uses model ids of its own, so none sees another's (a new installation and
    datasource job per test cost 1-3 s on PostgreSQL and MariaDB)."""
    folder = tmp_path_factory.mktemp(f"refusing-{request.param}")
    for url in metastore_templates.new_metastore(request.param, folder):
        app = EmrML(Settings.load(environ={}, home=folder / "home", metastore_url=url))
        try:
            _small_datasource(app, folder)
            yield app
        finally:
            app.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Parameters": {"sgd.maxPasses": "0"}}, "sgd.maxPasses"),
        ({"Parameters": {"sgd.colour": "red"}}, "sgd.colour"),
        (
            {"Parameters": {"sgd.l1RegularizationAmount": "1e-6", "sgd.l2RegularizationAmount": "1e-6"}},
            "cannot both be non-zero",
        ),
        ({"Parameters": {"sgd.shuffleType": "sometimes"}}, "sgd.shuffleType"),
        ({"MLModelType": "REGRESSION"}, "NUMERIC target"),
        ({"Recipe": '{"outputs": ["quantile_bin(words, 10)"]}'}, "quantile_bin"),
        ({"Recipe": '{"outputs": []}'}, "outputs"),
        (
            {"Recipe": '{"outputs": ["x"]}', "RecipeUri": "/somewhere/recipe.json"},
            "either Recipe or RecipeUri",
        ),
        ({"TrainingDataSourceId": "ds-none"}, "ds-none"),
    ],
)
def test_bad_model_requests(refusing: EmrML, extra: dict, message: str) -> None:
    model_id = _case_id("ml", message)
    request = {"MLModelId": model_id, "MLModelType": "BINARY", "TrainingDataSourceId": "ds-small", **extra}
    with pytest.raises(InvalidInputException, match=message):
        refusing.call("CreateMLModel", request)
    with pytest.raises(ResourceNotFoundException):  # nothing was stored
        refusing.call("GetMLModel", {"MLModelId": model_id})


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("{not json", "Recipe is not valid JSON"),
        ('{"outputs": ["x"], "extras": {}}', "unknown section 'extras'"),
        ('{"outputs": []}', "outputs is empty"),
        ('{"outputs": ["quantile_bin(x, 10"]}', "outputs[0]"),
    ],
)
def test_a_recipe_is_checked_before_its_datasource_has_finished(
    refusing: EmrML, tmp_path: Path, recipe: str, message: str
) -> None:
    """Until the datasource's job has read the schema, the recipe's names cannot be resolved; what needs
    no schema is refused at once all the same, not by the model's job later."""
    app, source_id, model_id = refusing, _case_id("ds-pending", message), _case_id("ml-pending", message)
    (tmp_path / "data.csv").write_text("x,words,y\n1,a b,1\n")
    spec = {"DataLocationS3": str(tmp_path / "data.csv"), "DataSchema": json.dumps(SMALL_SCHEMA)}
    app.call(
        "CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSpec": spec, "ComputeStatistics": True}
    )
    request = {"MLModelId": model_id, "MLModelType": "BINARY", "TrainingDataSourceId": source_id}
    with pytest.raises(InvalidInputException) as refused:
        app.call("CreateMLModel", {**request, "Recipe": recipe})
    assert message in refused.value.message
    # A name the schema may or may not have waits for the schema: the request is accepted.
    app.call("CreateMLModel", {**request, "Recipe": '{"outputs": ["quantile_bin(nothing, 10)"]}'})
    assert app.call("GetDataSource", {"DataSourceId": source_id})["Status"] == "PENDING"


def test_model_lifecycle_and_idempotency(app: EmrML, small: Path) -> None:
    request = {
        "MLModelId": "ml-1",
        "MLModelType": "BINARY",
        "TrainingDataSourceId": "ds-small",
        "MLModelName": "m",
    }
    app.call("CreateMLModel", request)
    assert app.call("CreateMLModel", request) == {"MLModelId": "ml-1"}
    with pytest.raises(IdempotentParameterMismatchException):
        app.call("CreateMLModel", {**request, "MLModelName": "other"})
    model = app.wait("MLModel", "ml-1")
    assert model["Status"] == "COMPLETED", model.get("Message")
    assert model["InputDataLocationS3"] == str(small / "data.csv")
    app.call("DeleteMLModel", {"MLModelId": "ml-1"})
    with pytest.raises(InvalidInputException, match="MLModelId 'ml-1': the MLModel is DELETED"):
        app.call(
            "CreateEvaluation",
            {"EvaluationId": "ev-1", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-small"},
        )


def test_an_update_that_changes_nothing_leaves_last_updated_at(
    app: EmrML, small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LastUpdatedAt is the time of the most recent change (spec 4.2): an UpdateMLModel with neither
    member (both are optional), or with the values the object has, is no change."""
    from emrml.service import metastore, operations

    app.call(
        "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-small"}
    )
    assert app.wait("MLModel", "ml-1")["Status"] == "COMPLETED"
    app.call("UpdateDataSource", {"DataSourceId": "ds-small", "DataSourceName": "small"})
    app.call("UpdateMLModel", {"MLModelId": "ml-1", "MLModelName": "m", "ScoreThreshold": 0.4})
    model = app.call("GetMLModel", {"MLModelId": "ml-1"})
    source = app.call("GetDataSource", {"DataSourceId": "ds-small"})
    later = model["LastUpdatedAt"] + 1000.0  # a clock that has moved on since
    monkeypatch.setattr(metastore, "now", lambda: later)
    monkeypatch.setattr(operations, "now", lambda: later)

    for request in (
        {},
        {"MLModelName": "m"},
        {"ScoreThreshold": 0.4},
        {"MLModelName": "m", "ScoreThreshold": 0.4},
    ):
        assert app.call("UpdateMLModel", {"MLModelId": "ml-1", **request}) == {"MLModelId": "ml-1"}
        assert app.call("GetMLModel", {"MLModelId": "ml-1"}) == model
    app.call("UpdateDataSource", {"DataSourceId": "ds-small", "DataSourceName": "small"})
    assert app.call("GetDataSource", {"DataSourceId": "ds-small"}) == source

    app.call("UpdateMLModel", {"MLModelId": "ml-1", "ScoreThreshold": 0.6})
    changed = app.call("GetMLModel", {"MLModelId": "ml-1"})
    assert changed["LastUpdatedAt"] == changed["ScoreThresholdLastUpdatedAt"] == later
    app.call("UpdateMLModel", {"MLModelId": "ml-1", "MLModelName": "renamed"})
    assert app.call("GetMLModel", {"MLModelId": "ml-1"})["Name"] == "renamed"
    app.call("UpdateDataSource", {"DataSourceId": "ds-small", "DataSourceName": "renamed"})
    assert app.call("GetDataSource", {"DataSourceId": "ds-small"})["LastUpdatedAt"] == later


@pytest.mark.usefixtures("sqlite_small")
def test_l1_alone_trains_without_the_default_l2(sqlite_app: EmrML) -> None:
    """Keys left out take the console defaults, L2 1e-6 among them; a caller asking for L1 alone gets L1
    without L2, not a refusal for setting both."""
    app = sqlite_app
    app.call(
        "CreateMLModel",
        {
            "MLModelId": "ml-l1",
            "MLModelType": "BINARY",
            "TrainingDataSourceId": "ds-small",
            "Parameters": {"sgd.l1RegularizationAmount": "1e-6"},
        },
    )
    model = app.wait("MLModel", "ml-l1")
    assert model["Status"] == "COMPLETED", model.get("Message")
    parameters = model["TrainingParameters"]
    assert parameters["sgd.l1RegularizationAmount"] == "1e-6"
    assert parameters["sgd.l2RegularizationAmount"] == "0.0" and parameters["sgd.shuffleType"] == "auto"


def test_training_parameters_are_echoed_as_sent_beside_the_defaults(app: EmrML, small: Path) -> None:
    """GetMLModel wrote back "1e-4" as "0.0001": Amazon ML echoed the strings a caller sent. The keys left
    out still show the values training uses (here the console defaults; L1 0 for L2 chosen alone)."""
    sent = {"sgd.l2RegularizationAmount": "1e-4", "sgd.maxPasses": "020", "algorithm": "sgd"}
    request = {"MLModelId": "ml-sent", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-small"}
    app.call("CreateMLModel", {**request, "Parameters": sent})
    assert app.call("GetMLModel", {"MLModelId": "ml-sent"})["TrainingParameters"] == {
        "algorithm": "sgd",
        "sgd.maxMLModelSizeInBytes": "104857600",
        "sgd.maxPasses": "020",
        "sgd.shuffleType": "auto",
        "sgd.l1RegularizationAmount": "0.0",
        "sgd.l2RegularizationAmount": "1e-4",
    }
    model = app.wait("MLModel", "ml-sent")
    assert model["Status"] == "COMPLETED", model.get("Message")
    assert model["TrainingParameters"]["sgd.l2RegularizationAmount"] == "1e-4"


@pytest.mark.parametrize(
    "change",
    [
        {"MLModelType": "REGRESSION"},  # invalid for this target, but the id's reuse is checked first
        {"Parameters": {"sgd.maxPasses": "0"}},
        {"Recipe": "{not json"},
        {"TrainingDataSourceId": "ds-none"},
    ],
)
def test_a_reused_id_is_a_mismatch_before_the_request_is_validated(refusing: EmrML, change: dict) -> None:
    model_id = _case_id("ml-reused", next(iter(change)))
    request = {"MLModelId": model_id, "MLModelType": "BINARY", "TrainingDataSourceId": "ds-small"}
    refusing.call("CreateMLModel", request)
    with pytest.raises(IdempotentParameterMismatchException, match=model_id):
        refusing.call("CreateMLModel", {**request, **change})
    assert refusing.call("GetMLModel", {"MLModelId": model_id})["MLModelType"] == "BINARY"


def test_datasource_without_statistics_or_target(app: EmrML, tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x,words,y\n1,a b,1\n2,c d,0\n")
    no_target = {**SMALL_SCHEMA, "targetAttributeName": None}
    (tmp_path / "data.csv.schema").write_text(json.dumps(no_target))
    datasource(app, "ds-no-target", tmp_path)
    with pytest.raises(InvalidInputException, match="no targetAttributeName"):
        app.call(
            "CreateMLModel",
            {"MLModelId": "m", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-no-target"},
        )
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-plain",
            "DataSpec": {
                "DataLocationS3": str(tmp_path / "data.csv"),
                "DataSchema": json.dumps(SMALL_SCHEMA),
            },
        },
    )
    with pytest.raises(InvalidInputException, match="ComputeStatistics"):
        app.call(
            "CreateMLModel", {"MLModelId": "m", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-plain"}
        )


def test_too_many_classes_fail_the_model(sqlite_app: EmrML, tmp_path: Path) -> None:
    app = sqlite_app
    rows = "".join(f"{i},w{i},class{i % 101}\n" for i in range(1010))
    (tmp_path / "data.csv").write_text("x,words,y\n" + rows)
    schema = {
        **SMALL_SCHEMA,
        "attributes": [
            *SMALL_SCHEMA["attributes"][:2],
            {"attributeName": "y", "attributeType": "CATEGORICAL"},
        ],
    }
    (tmp_path / "data.csv.schema").write_text(json.dumps(schema))
    datasource(app, "ds-many", tmp_path)
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-many", "MLModelType": "MULTICLASS", "TrainingDataSourceId": "ds-many"},
    )
    model = app.wait("MLModel", "ml-many")
    assert model["Status"] == "FAILED" and "more than 100 classes" in model["Message"]


@pytest.mark.usefixtures("sqlite_small")
def test_a_datasource_lacking_model_attributes_is_refused_alike_by_evaluations_and_batches(
    sqlite_app: EmrML, tmp_path: Path
) -> None:
    app = sqlite_app
    # CreateBatchPrediction refused such a datasource at once while CreateEvaluation accepted it and
    # failed in its job: both now refuse it as soon as both schemas are known (here the model is still
    # training: its schema is its training datasource's), and their jobs check when it is not.
    app.call(
        "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-small"}
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("x,y\n1,1\n2,0\n")
    schema = {**SMALL_SCHEMA, "attributes": [SMALL_SCHEMA["attributes"][0], SMALL_SCHEMA["attributes"][2]]}
    (other / "data.csv.schema").write_text(json.dumps(schema))
    datasource(app, "ds-other", other)
    evaluation = {"EvaluationId": "ev-1", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-other"}
    batch = {
        "BatchPredictionId": "bp-1",
        "MLModelId": "ml-1",
        "BatchPredictionDataSourceId": "ds-other",
        "OutputUri": str(tmp_path / "out") + "/",
    }
    for operation, request, member in [
        ("CreateEvaluation", evaluation, "EvaluationDataSourceId"),
        ("CreateBatchPrediction", batch, "BatchPredictionDataSourceId"),
    ]:
        expected = f"{member} 'ds-other' lacks attributes the model 'ml-1' uses: words"
        with pytest.raises(InvalidInputException, match=expected):
            app.call(operation, request)
    # Without the target, a datasource may be scored but not evaluated.
    untargeted = tmp_path / "untargeted"
    untargeted.mkdir()
    (untargeted / "data.csv").write_text("x,words\n1,good day\n")
    schema = {**SMALL_SCHEMA, "attributes": SMALL_SCHEMA["attributes"][:2], "targetAttributeName": None}
    datasource(app, "ds-untargeted", untargeted, schema=json.dumps(schema))
    with pytest.raises(
        InvalidInputException, match="'ds-untargeted' lacks attributes the model 'ml-1' uses: y"
    ):
        app.call("CreateEvaluation", {**evaluation, "EvaluationDataSourceId": "ds-untargeted"})
    app.call("CreateBatchPrediction", {**batch, "BatchPredictionDataSourceId": "ds-untargeted"})
    assert app.wait("BatchPrediction", "bp-1")["Status"] == "COMPLETED"

    # A datasource whose schema is not known yet is accepted; the jobs fail, saying the same.
    spec = {"DataLocationS3": str(other / "data.csv"), "DataSchema": (other / "data.csv.schema").read_text()}
    app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-later", "DataSpec": spec})
    app.call("CreateEvaluation", {**evaluation, "EvaluationId": "ev-2", "EvaluationDataSourceId": "ds-later"})
    app.call(
        "CreateBatchPrediction",
        {**batch, "BatchPredictionId": "bp-2", "BatchPredictionDataSourceId": "ds-later"},
    )
    for kind, entity_id in [("Evaluation", "ev-2"), ("BatchPrediction", "bp-2")]:
        failed = app.wait(kind, entity_id)
        assert failed["Status"] == "FAILED", failed
        assert "datasource's schema lacks attributes the model uses: words" in failed["Message"]


def test_a_failed_model_cannot_be_evaluated(sqlite_app: EmrML, sqlite_small: Path) -> None:
    app, small = sqlite_app, sqlite_small
    app.call(
        "CreateMLModel",
        {
            "MLModelId": "ml-bad",
            "MLModelType": "BINARY",
            "TrainingDataSourceId": "ds-small",
            "RecipeUri": str(small / "missing.json"),
        },
    )
    model = app.wait("MLModel", "ml-bad")
    assert model["Status"] == "FAILED" and "missing.json" in model["Message"]
    with pytest.raises(InvalidInputException, match=r"ml-bad.*FAILED"):
        app.call(
            "CreateEvaluation",
            {"EvaluationId": "ev-1", "MLModelId": "ml-bad", "EvaluationDataSourceId": "ds-small"},
        )


def test_tags_are_inherited(app: EmrML, small: Path) -> None:
    app.call(
        "AddTags",
        {
            "ResourceId": "ds-small",
            "ResourceType": "DataSource",
            "Tags": [{"Key": "team", "Value": "data"}, {"Key": "x", "Value": "ds"}],
        },
    )
    app.call(
        "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-small"}
    )
    app.call(
        "AddTags", {"ResourceId": "ml-1", "ResourceType": "MLModel", "Tags": [{"Key": "x", "Value": "model"}]}
    )
    app.call(
        "CreateEvaluation",
        {"EvaluationId": "ev-1", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-small"},
    )
    tags = app.call("DescribeTags", {"ResourceId": "ev-1", "ResourceType": "Evaluation"})["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {"team": "data", "x": "model"}
    # Over the limit of 50 together, the model's tags are kept before the datasource's (they win a
    # conflict, and were dropped first when a datasource with 50 tags was evaluated).
    datasource(app, "ds-tagged", small)
    many = [{"Key": f"d{i:02d}", "Value": "ds"} for i in range(49)] + [{"Key": "x", "Value": "ds"}]
    app.call("AddTags", {"ResourceId": "ds-tagged", "ResourceType": "DataSource", "Tags": many})
    app.call(
        "CreateEvaluation",
        {"EvaluationId": "ev-2", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-tagged"},
    )
    tags = app.call("DescribeTags", {"ResourceId": "ev-2", "ResourceType": "Evaluation"})["Tags"]
    values = {t["Key"]: t["Value"] for t in tags}
    assert len(values) == 50 and values["team"] == "data" and values["x"] == "model"


def test_numbers_too_large_for_a_raw_numeric_output_fail_clearly(sqlite_app: EmrML, tmp_path: Path) -> None:
    app = sqlite_app
    # NUMERIC values of 1e308 overflow SGD on a raw output, the mean under normalize() and the scores of a
    # model; a target of 1e200 its standard deviation; row weights of 1e308 are outside the weights' range:
    # clear failures saying why (and what to use: quantile bins take such values), not internal errors.
    rows = "".join(f"{i % 10},{3 * (i % 10) + 1}\n" for i in range(200))
    attributes = [{"attributeName": n, "attributeType": "NUMERIC"} for n in ("x", "y", "w")]
    schema = json.dumps({**SMALL_SCHEMA, "attributes": attributes[:2]})
    weighted = json.dumps({**SMALL_SCHEMA, "attributes": attributes, "rowWeight": "w"})
    weighted_rows = "".join(f"{i % 10},{3 * (i % 10) + 1},{'1e308' if i < 5 else 1}\n" for i in range(200))
    sources = {
        "ds-huge": ("x,y\n" + "1e308,5\n" * 5 + rows, schema),
        "ds-fine": ("x,y\n" + rows, schema),
        "ds-target": ("x,y\n" + "1,1e200\n" * 5 + rows, schema),
        "ds-weighted": ("x,y,w\n" + weighted_rows, weighted),
    }
    for entity_id, (text, data_schema) in sources.items():
        folder = tmp_path / entity_id
        folder.mkdir()
        (folder / "data.csv").write_text(text)
        datasource(app, entity_id, folder, schema=data_schema)
    models = {
        "ml-raw": ("ds-huge", "x", "training diverged"),
        "ml-normalized": ("ds-huge", "normalize(x)", "too large for normalize()"),
        "ml-binned": ("ds-huge", "quantile_bin(x,10)", None),
        "ml-fine": ("ds-fine", "x", None),
        "ml-target": ("ds-target", "quantile_bin(x,10)", "target's values or the row weights are too large"),
        "ml-weighted": ("ds-weighted", "quantile_bin(x,10)", "rowWeight 'w' holds the weight 1e+308"),
    }
    for model_id, (source, output, _) in models.items():
        recipe = json.dumps({"groups": {}, "assignments": {}, "outputs": [output]})
        request = {"MLModelType": "REGRESSION", "TrainingDataSourceId": source, "Recipe": recipe}
        app.call("CreateMLModel", {"MLModelId": model_id, **request})
    for model_id, (_, _, failure) in models.items():
        model = app.wait("MLModel", model_id)
        if failure is None:
            assert model["Status"] == "COMPLETED", model.get("Message")
        else:
            assert model["Status"] == "FAILED" and failure in model["Message"], model.get("Message")
    app.call(
        "CreateEvaluation",
        {"EvaluationId": "ev-1", "MLModelId": "ml-fine", "EvaluationDataSourceId": "ds-huge"},
    )
    evaluation = app.wait("Evaluation", "ev-1")
    assert evaluation["Status"] == "FAILED", evaluation
    assert "too large for this model" in evaluation["Message"], evaluation["Message"]
