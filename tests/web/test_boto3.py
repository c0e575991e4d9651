"""boto3 against the real server: the whole Amazon ML workflow on the bank-marketing data, over HTTP.

Datasources with a 70/30 random split (and its complement), a BINARY model, an evaluation, boto3's
waiters and paginators, tags, updates, real-time and batch predictions, deletes, and the modelled errors
— each as boto3 users write them, with only ``endpoint_url`` pointing at emrml.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from emrml.service.operations import registered

WAIT = {"Delay": 1, "MaxAttempts": 180}
SPLIT_SEED = "boto3-suite"


def _spec(folder: Path, complement: bool) -> dict[str, str]:
    splitting = {
        "percentBegin": 0,
        "percentEnd": 70,
        "strategy": "random",
        "strategyParams": {"randomSeed": SPLIT_SEED},
        "complement": complement,
    }
    return {
        "DataLocationS3": str(folder / "data.csv"),
        "DataSchema": (folder / "data.csv.schema").read_text(),
        "DataRearrangement": json.dumps({"splitting": splitting}),
    }


def test_every_amazon_ml_operation_is_served() -> None:
    """The 28 operations of botocore's model of the API are all registered: a lost one fails here."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("machinelearning")
    missing = sorted(set(model.operation_names) - set(registered()))
    assert len(model.operation_names) == 28 and missing == []


@pytest.fixture(scope="module")
def client(live_server: Any) -> Any:
    return live_server.client()


@pytest.fixture(scope="module")
def workflow(client: Any, shared_datasets: Path) -> dict[str, Any]:
    """Train and evaluate once for the module; the requests are sent before anything has finished."""
    folder = shared_datasets / "bank_marketing"
    for entity_id, name, complement in (("b3-train", "boto3 train", False), ("b3-eval", "boto3 eval", True)):
        created = client.create_data_source_from_s3(
            DataSourceId=entity_id,
            DataSourceName=name,
            DataSpec=_spec(folder, complement),
            ComputeStatistics=True,
        )
        assert created["DataSourceId"] == entity_id
    client.create_ml_model(
        MLModelId="b3-model", MLModelName="boto3 model", MLModelType="BINARY", TrainingDataSourceId="b3-train"
    )
    client.create_evaluation(
        EvaluationId="b3-evaluation",
        EvaluationName="boto3 evaluation",
        MLModelId="b3-model",
        EvaluationDataSourceId="b3-eval",
    )
    client.get_waiter("data_source_available").wait(FilterVariable="Name", Prefix="boto3 ", WaiterConfig=WAIT)
    client.get_waiter("ml_model_available").wait(FilterVariable="Name", EQ="boto3 model", WaiterConfig=WAIT)
    client.get_waiter("evaluation_available").wait(
        FilterVariable="MLModelId", EQ="b3-model", WaiterConfig=WAIT
    )
    return {"folder": folder}


def test_evaluation_over_http_reaches_the_tutorial_quality(client: Any, workflow: dict) -> None:
    evaluation = client.get_evaluation(EvaluationId="b3-evaluation")
    assert evaluation["Status"] == "COMPLETED"
    assert float(evaluation["PerformanceMetrics"]["Properties"]["BinaryAUC"]) > 0.9
    assert evaluation["InputDataLocationS3"] == str(workflow["folder"] / "data.csv")
    assert isinstance(evaluation["CreatedAt"], datetime) and isinstance(evaluation["FinishedAt"], datetime)
    assert evaluation["ComputeTime"] > 0


def test_get_shapes_and_the_callers_identity(client: Any, workflow: dict) -> None:
    datasource = client.get_data_source(DataSourceId="b3-train", Verbose=True)
    assert datasource["Status"] == "COMPLETED" and datasource["ComputeStatistics"] is True
    assert datasource["CreatedByIamUser"] == "arn:aws:iam::000000000000:user/tester"
    assert json.loads(datasource["DataSourceSchema"])["targetAttributeName"] == "y"
    assert datasource["DataSizeInBytes"] > 0 and datasource["NumberOfFiles"] == 1
    assert "DataSourceSchema" not in client.get_data_source(DataSourceId="b3-train")
    model = client.get_ml_model(MLModelId="b3-model", Verbose=True)
    assert model["MLModelType"] == "BINARY" and model["ScoreThreshold"] == 0.5
    assert model["EndpointInfo"] == {"EndpointStatus": "NONE", "PeakRequestsPerSecond": 0}
    assert model["TrainingParameters"]["algorithm"] == "sgd" and "quantile_bin" in model["Recipe"]
    assert model["CreatedByIamUser"] == "arn:aws:iam::000000000000:user/tester"
    described = client.describe_ml_models(FilterVariable="TrainingDataSourceId", EQ="b3-train")["Results"]
    assert [m["MLModelId"] for m in described] == ["b3-model"] and described[0]["Algorithm"] == "sgd"


def test_describe_filters_sort_and_paginator(client: Any, workflow: dict) -> None:
    paginator = client.get_paginator("describe_data_sources")
    pages = list(
        paginator.paginate(
            FilterVariable="Name", Prefix="boto3 ", SortOrder="dsc", PaginationConfig={"PageSize": 1}
        )
    )
    assert len(pages) >= 2
    names = [item["Name"] for page in pages for item in page["Results"]]
    assert names == ["boto3 train", "boto3 eval"]
    by_user = client.describe_data_sources(
        FilterVariable="IAMUser", EQ="arn:aws:iam::000000000000:user/tester", Limit=100
    )["Results"]
    assert {"b3-train", "b3-eval"} <= {item["DataSourceId"] for item in by_user}
    newer = client.describe_evaluations(FilterVariable="CreatedAt", GT="0", LT="32503680000")["Results"]
    assert "b3-evaluation" in {item["EvaluationId"] for item in newer}
    assert (
        client.describe_ml_models(FilterVariable="MLModelType", EQ="MULTICLASS", Prefix="zzz")["Results"]
        == []
    )


def test_a_cleanup_loop_over_the_paginator_deletes_every_object(
    client: Any, tmp_path: Path, shared_datasets: Path
) -> None:
    """Deleting what each page lists must not make the next page skip objects."""
    schema = (shared_datasets / "bank_marketing" / "data.csv.schema").read_text()
    spec = {"DataLocationS3": str(tmp_path / "none.csv"), "DataSchema": schema}
    for i in range(7):
        client.create_data_source_from_s3(
            DataSourceId=f"b3-clean-{i}", DataSourceName="b3 clean", DataSpec=spec
        )
    paginator = client.get_paginator("describe_data_sources")
    deleted = []
    for page in paginator.paginate(FilterVariable="Name", EQ="b3 clean", PaginationConfig={"PageSize": 2}):
        for item in page["Results"]:
            client.delete_data_source(DataSourceId=item["DataSourceId"])
            deleted.append(item["DataSourceId"])
    assert sorted(deleted) == [f"b3-clean-{i}" for i in range(7)]
    assert client.describe_data_sources(FilterVariable="Name", EQ="b3 clean")["Results"] == []


def test_tags_roundtrip(client: Any, workflow: dict) -> None:
    client.add_tags(
        ResourceId="b3-model",
        ResourceType="MLModel",
        Tags=[{"Key": "team", "Value": "growth"}, {"Key": "stage"}],
    )
    tags = client.describe_tags(ResourceId="b3-model", ResourceType="MLModel")
    assert tags["Tags"] == [{"Key": "team", "Value": "growth"}, {"Key": "stage"}]
    client.delete_tags(ResourceId="b3-model", ResourceType="MLModel", TagKeys=["stage", "absent"])
    assert client.describe_tags(ResourceId="b3-model", ResourceType="MLModel")["Tags"] == [
        {"Key": "team", "Value": "growth"}
    ]
    with pytest.raises(client.exceptions.InvalidTagException, match="aws:"):
        client.add_tags(
            ResourceId="b3-model", ResourceType="MLModel", Tags=[{"Key": "aws:owner", "Value": "x"}]
        )
    with pytest.raises(client.exceptions.TagLimitExceededException):
        client.add_tags(
            ResourceId="b3-model",
            ResourceType="MLModel",
            Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(60)],
        )


def test_updates(client: Any, workflow: dict) -> None:
    assert client.update_ml_model(MLModelId="b3-model", ScoreThreshold=0.77)["MLModelId"] == "b3-model"
    model = client.get_ml_model(MLModelId="b3-model")
    assert model["ScoreThreshold"] == pytest.approx(0.77)
    assert isinstance(model["ScoreThresholdLastUpdatedAt"], datetime)
    client.update_evaluation(EvaluationId="b3-evaluation", EvaluationName="boto3 evaluation, renamed")
    assert client.get_evaluation(EvaluationId="b3-evaluation")["Name"] == "boto3 evaluation, renamed"
    client.update_data_source(DataSourceId="b3-eval", DataSourceName="boto3 eval")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.update_data_source(DataSourceId="b3-nothing", DataSourceName="x")


def test_modelled_errors(client: Any, workflow: dict) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as missing:
        client.get_ml_model(MLModelId="b3-no-such-model")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(client.exceptions.InvalidInputException, match="TrainingDataSourceId"):
        client.create_ml_model(MLModelId="b3-orphan", MLModelType="BINARY", TrainingDataSourceId="b3-nowhere")
    with pytest.raises(client.exceptions.InvalidInputException, match="pattern"):
        client.get_data_source(DataSourceId="bad id!")
    with pytest.raises(client.exceptions.InvalidInputException, match="Limit"):
        client.describe_data_sources(Limit=500)
    with pytest.raises(client.exceptions.IdempotentParameterMismatchException):
        client.create_ml_model(
            MLModelId="b3-model",
            MLModelName="another name",
            MLModelType="BINARY",
            TrainingDataSourceId="b3-train",
        )
    same = client.create_ml_model(
        MLModelId="b3-model", MLModelName="boto3 model", MLModelType="BINARY", TrainingDataSourceId="b3-train"
    )
    assert same["MLModelId"] == "b3-model"


TUTORIAL_COLUMNS = (
    "age,job,marital,education,default,housing,loan,contact,month,day_of_week,duration,campaign,pdays,"
    "previous,poutcome,emp_var_rate,cons_price_idx,cons_conf_idx,euribor3m,nr_employed"
)
#: The real-time record of the Amazon ML tutorial (spec 12), predicted "0".
TUTORIAL_VALUES = (
    "32,services,divorced,basic.9y,no,unknown,yes,cellular,dec,mon,110,1,11,0,nonexistent,-1.8,94.465,"
    "-36.1,0.883,5228.1"
)
TUTORIAL_RECORD = dict(zip(TUTORIAL_COLUMNS.split(","), TUTORIAL_VALUES.split(","), strict=True))


def test_realtime_endpoint_and_predict(client: Any, workflow: dict) -> None:
    with pytest.raises(client.exceptions.PredictorNotMountedException):
        client.predict(MLModelId="b3-model", Record=TUTORIAL_RECORD, PredictEndpoint=client.meta.endpoint_url)
    created = client.create_realtime_endpoint(MLModelId="b3-model")["RealtimeEndpointInfo"]
    for _ in range(100):
        info = client.get_ml_model(MLModelId="b3-model")["EndpointInfo"]
        if info["EndpointStatus"] != "UPDATING":
            break
    assert info["EndpointStatus"] == "READY", info
    assert info["EndpointUrl"] == created["EndpointUrl"]
    prediction = client.predict(
        MLModelId="b3-model", Record=TUTORIAL_RECORD, PredictEndpoint=info["EndpointUrl"]
    )
    result = prediction["Prediction"]
    assert result["details"] == {"PredictiveModelType": "BINARY", "Algorithm": "SGD"}
    assert result["predictedLabel"] == "0"  # the tutorial's record is a "no"
    [(label, score)] = result["predictedScores"].items()
    assert label == "0" and 0.0 <= score < 0.77
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.predict(MLModelId="b3-absent", Record={}, PredictEndpoint=info["EndpointUrl"])
    deleted = client.delete_realtime_endpoint(MLModelId="b3-model")["RealtimeEndpointInfo"]
    assert deleted["EndpointStatus"] == "NONE"
    with pytest.raises(client.exceptions.PredictorNotMountedException):
        client.predict(MLModelId="b3-model", Record=TUTORIAL_RECORD, PredictEndpoint=info["EndpointUrl"])


def test_batch_prediction(client: Any, workflow: dict, tmp_path: Path) -> None:
    output = tmp_path / "batch-output"
    client.create_batch_prediction(
        BatchPredictionId="b3-batch",
        BatchPredictionName="boto3 batch",
        MLModelId="b3-model",
        BatchPredictionDataSourceId="b3-eval",
        OutputUri=str(output) + "/",
    )
    client.get_waiter("batch_prediction_available").wait(
        FilterVariable="MLModelId", EQ="b3-model", WaiterConfig=WAIT
    )
    batch = client.get_batch_prediction(BatchPredictionId="b3-batch")
    assert batch["Status"] == "COMPLETED"
    assert batch["TotalRecordCount"] > 10_000 and batch["InvalidRecordCount"] == 0
    assert any(output.rglob("*")), "the batch prediction wrote no output"
    listed = client.describe_batch_predictions(FilterVariable="MLModelId", EQ="b3-model")["Results"]
    assert [item["BatchPredictionId"] for item in listed] == ["b3-batch"]
    client.update_batch_prediction(BatchPredictionId="b3-batch", BatchPredictionName="renamed")
    assert client.get_batch_prediction(BatchPredictionId="b3-batch")["Name"] == "renamed"
    client.delete_batch_prediction(BatchPredictionId="b3-batch")
    assert client.get_batch_prediction(BatchPredictionId="b3-batch")["Status"] == "DELETED"


def test_sql_datasources_fail_without_a_configured_connection(client: Any, tmp_path: Path) -> None:
    credentials = {"Username": "analyst", "Password": "secret-password"}
    client.create_data_source_from_rds(
        DataSourceId="b3-rds",
        RDSData={
            "DatabaseInformation": {"InstanceIdentifier": "bank-db", "DatabaseName": "bank"},
            "SelectSqlQuery": "SELECT * FROM calls",
            "DatabaseCredentials": credentials,
            "S3StagingLocation": str(tmp_path) + "/",
            "ResourceRole": "DataPipelineDefaultResourceRole",
            "ServiceRole": "DataPipelineDefaultRole",
            "SubnetId": "subnet-1",
            "SecurityGroupIds": ["sg-1"],
        },
        RoleARN="arn:aws:iam::000000000000:role/ml",
    )
    client.create_data_source_from_redshift(
        DataSourceId="b3-redshift",
        DataSpec={
            "DatabaseInformation": {"DatabaseName": "bank", "ClusterIdentifier": "bank-cluster"},
            "SelectSqlQuery": "SELECT * FROM calls",
            "DatabaseCredentials": credentials,
            "S3StagingLocation": str(tmp_path) + "/",
        },
        RoleARN="arn:aws:iam::000000000000:role/ml",
    )
    for entity_id in ("b3-rds", "b3-redshift"):
        with pytest.raises(Exception, match="Waiter"):
            client.get_waiter("data_source_available").wait(
                FilterVariable="DataLocationS3", EQ=f"{tmp_path}/{entity_id}.csv.gz", WaiterConfig=WAIT
            )
        source = client.get_data_source(DataSourceId=entity_id, Verbose=True)
        assert source["Status"] == "FAILED" and "is not a configured connection" in source["Message"]
        assert "Password" not in json.dumps(source, default=str)
    assert client.get_data_source(DataSourceId="b3-rds", Verbose=True)["RDSMetadata"]["SelectSqlQuery"]
    assert "SelectSqlQuery" not in client.get_data_source(DataSourceId="b3-redshift")["RedshiftMetadata"]


def test_deletes_mark_objects_deleted(client: Any, workflow: dict) -> None:
    client.delete_evaluation(EvaluationId="b3-evaluation")
    client.delete_ml_model(MLModelId="b3-model")
    client.delete_data_source(DataSourceId="b3-eval")
    assert client.get_ml_model(MLModelId="b3-model")["Status"] == "DELETED"
    assert client.get_evaluation(EvaluationId="b3-evaluation")["Status"] == "DELETED"
    remaining = client.describe_data_sources(FilterVariable="Name", Prefix="boto3 ")["Results"]
    assert [item["DataSourceId"] for item in remaining] == ["b3-train"]
    deleted = client.describe_data_sources(FilterVariable="Status", EQ="DELETED")["Results"]
    assert "b3-eval" in {item["DataSourceId"] for item in deleted}
    with pytest.raises(client.exceptions.InvalidInputException, match="DELETED"):
        client.update_ml_model(MLModelId="b3-model", MLModelName="too late")
