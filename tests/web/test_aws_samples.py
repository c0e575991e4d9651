"""AWS's own sample programs (github.com/awslabs/machine-learning-samples) against ``emrml serve``.

Each test runs one sample's flow as the sample writes it — its schema, recipe, parameters, rearrangement
strings, waiters and parsing of the results — with only the endpoint, the credentials and the S3
locations changed (the data lies in a bucket of moto's S3 server). Samples: targeted-marketing-python
(build_model.py, use_model.py), cost-based-ml, k-fold-cross-validation, social-media (create-aml-model.py
and the Lambda function's predict) and ml-tools-python (realtime.py, awspyml.py, guess_schema.py).
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from web_helpers import REGION

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.groups import ADMINS
from emrml.service.identity import Identities
from emrml.storage.locations import configure_storage_settings, storage_settings
from emrml.web.server import BackgroundServer, create_app, reserve_socket
from s3_server import S3, S3Server

#: The samples poll with their own back-off or boto3's waiters (30 s apart); these tests poll four times a
#: second (a job ends at any moment: a waiter's every check after it is time lost), for up to 2 minutes.
WAIT = {"Delay": 0.25, "MaxAttempts": 480}

#: targeted-marketing-python/banking.csv.schema, as the sample ships it (``previous`` typed BINARY).
BANKING_ATTRIBUTES = [
    ("age", "NUMERIC"), ("job", "CATEGORICAL"), ("marital", "CATEGORICAL"), ("education", "CATEGORICAL"),
    ("default", "CATEGORICAL"), ("housing", "CATEGORICAL"), ("loan", "CATEGORICAL"),
    ("contact", "CATEGORICAL"), ("month", "CATEGORICAL"), ("day_of_week", "CATEGORICAL"),
    ("duration", "NUMERIC"), ("campaign", "NUMERIC"), ("pdays", "NUMERIC"), ("previous", "BINARY"),
    ("poutcome", "CATEGORICAL"), ("emp_var_rate", "NUMERIC"), ("cons_price_idx", "NUMERIC"),
    ("cons_conf_idx", "NUMERIC"), ("euribor3m", "NUMERIC"), ("nr_employed", "NUMERIC"), ("y", "BINARY"),
]  # fmt: skip
RECIPE = """{
  "outputs": [
    "ALL_BINARY",
    "ALL_CATEGORICAL",
    "quantile_bin(ALL_NUMERIC,50)",
    "lowercase(ALL_TEXT)"
  ]
}"""


def banking_schema(batch: bool = False) -> str:
    """banking.csv.schema, or banking-batch.csv.schema (no ``y``, no target) for ``batch``."""
    attributes = BANKING_ATTRIBUTES[:-1] if batch else BANKING_ATTRIBUTES
    schema: dict[str, Any] = {
        "excludedAttributeNames": [],
        "version": "1.0",
        "dataFormat": "CSV",
        "rowId": None,
        "dataFileContainsHeader": True,
        "attributes": [{"attributeName": name, "attributeType": kind} for name, kind in attributes],
    }
    if not batch:
        schema["targetAttributeName"] = "y"
    return json.dumps(schema, indent=2)


@pytest.fixture(scope="module")
def aws(
    s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory, shared_datasets: Path
) -> Iterator[tuple[Any, S3, list[str]]]:
    """A boto3 client of an emrml server whose data lies on S3, the bucket, and the rows of banking.csv.

    banking.csv is every tenth record of the bank-marketing data (the tutorial's file, thinned so that the
    module runs in seconds); banking-batch.csv is the tutorial's batch input, truncated last record
    included.
    """
    home = tmp_path_factory.mktemp("aws-samples")
    previous_storage = storage_settings()  # the server points this process's storage at the S3 server
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    bucket = f"aml-sample-data-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    s3 = S3(s3_server.endpoint_url, bucket, client, Settings.load(environ={}, home=home))
    folder = shared_datasets / "bank_marketing"
    lines = (folder / "data.csv").read_text().splitlines(keepends=True)
    rows = lines[1::10]
    s3.put("banking.csv", lines[0] + "".join(rows))
    s3.put("banking-batch.csv", (folder / "aml-tutorial" / "banking-batch.csv").read_bytes())
    sock = reserve_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings.load(environ={}, home=home, public_url=url, s3_endpoint_url=s3_server.endpoint_url)
    service = EmrML(settings)
    identities = Identities(service.sessions, home)
    identities.create_user("analyst", groups=(ADMINS,))
    key = identities.create_key("analyst")
    with BackgroundServer(create_app(service, job_slots=2), sock):
        ml = boto3.client(
            "machinelearning",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(retries={"max_attempts": 1}),
        )
        yield ml, s3, rows
    service.close()
    configure_storage_settings(previous_storage)


def read_test_predictions(s3: S3, key: str) -> tuple[list[str], np.ndarray]:
    """cost_based_ml.py's read_test_predictions: the header, and (trueLabel, score) of each row."""
    text = zlib.decompress(s3.get(key), 15 + 32).decode("utf-8")
    names = text.split("\n", 1)[0].split(",")
    cols = (1, 3) if names[0] == "tag" else (0, 2)
    dtype = {"names": [names[i] for i in cols], "formats": ("bool", "float")}
    return names, np.loadtxt(io.StringIO(text), dtype=dtype, delimiter=",", skiprows=1, usecols=cols)


def result_key(ml: Any, output_uri: str, batch_prediction_id: str) -> str:
    """cost_based_ml.py's batch_prediction_data_bucket_key: the result object of a one-file input."""
    input_location = ml.get_batch_prediction(BatchPredictionId=batch_prediction_id)["InputDataLocationS3"]
    prefix = output_uri.split("/", 3)[3]
    return f"{prefix}batch-prediction/result/{batch_prediction_id}-{input_location.split('/')[-1]}.gz"


def test_targeted_marketing_then_cost_based_analysis(aws: tuple[Any, S3, list[str]]) -> None:
    ml, s3, rows = aws
    # build_model.py: a sequential 70/30 split, the sample's recipe and parameters, an evaluation.
    spec = {
        "DataLocationS3": s3.uri("banking.csv"),
        "DataRearrangement": json.dumps({"splitting": {"percentBegin": 0, "percentEnd": 70}}),
        "DataSchema": banking_schema(),
    }
    ml.create_data_source_from_s3(
        DataSourceId="ds-TM7TRAIN", DataSpec=spec, DataSourceName="Marketing - training split",
        ComputeStatistics=True,
    )  # fmt: skip
    spec["DataRearrangement"] = json.dumps({"splitting": {"percentBegin": 70, "percentEnd": 100}})
    ml.create_data_source_from_s3(
        DataSourceId="ds-TM7TEST", DataSpec=spec, DataSourceName="Marketing - testing split",
        ComputeStatistics=True,
    )  # fmt: skip
    ml.create_ml_model(
        MLModelId="ml-TM7MODEL", MLModelName="Marketing model", MLModelType="BINARY",
        Parameters={"sgd.maxPasses": "100", "sgd.maxMLModelSizeInBytes": "104857600",
                    "sgd.l2RegularizationAmount": "1e-4"},
        Recipe=RECIPE, TrainingDataSourceId="ds-TM7TRAIN",
    )  # fmt: skip
    ml.create_evaluation(
        EvaluationId="ev-TM7EVAL", EvaluationName="Marketing evaluation", MLModelId="ml-TM7MODEL",
        EvaluationDataSourceId="ds-TM7TEST",
    )  # fmt: skip
    # use_model.py: poll the model to a terminal state, set the threshold, score the batch file.
    ml.get_waiter("ml_model_available").wait(FilterVariable="Name", EQ="Marketing model", WaiterConfig=WAIT)
    model = ml.get_ml_model(MLModelId="ml-TM7MODEL")
    assert model["Status"] == "COMPLETED" and model.get("Message", "") == ""
    assert float(model["TrainingParameters"]["sgd.l2RegularizationAmount"]) == 1e-4
    ml.update_ml_model(MLModelId="ml-TM7MODEL", ScoreThreshold=0.77)
    ml.create_data_source_from_s3(
        DataSourceId="ds-TM7BATCH", DataSourceName="DS for Batch Prediction",
        DataSpec={"DataLocationS3": s3.uri("banking-batch.csv"), "DataSchema": banking_schema(batch=True)},
        ComputeStatistics=False,
    )  # fmt: skip
    ml.create_batch_prediction(
        BatchPredictionId="bp-TM7BATCH", BatchPredictionName="Batch Prediction for marketing sample",
        MLModelId="ml-TM7MODEL", BatchPredictionDataSourceId="ds-TM7BATCH", OutputUri=s3.uri("ml-output/"),
    )  # fmt: skip
    # cost_based_ml.py: predict the test split, wait with boto3's waiter as the sample calls it (no
    # filter: every batch prediction), find the result from InputDataLocationS3 and parse it.
    ml.create_batch_prediction(
        MLModelId="ml-TM7MODEL", BatchPredictionDataSourceId="ds-TM7TEST", BatchPredictionId="bp-cost-based",
        BatchPredictionName="BP Cost Based", OutputUri=s3.uri("cost/"),
    )  # fmt: skip
    ml.get_waiter("batch_prediction_available").wait(WaiterConfig=WAIT)
    names, predictions = read_test_predictions(s3, result_key(ml, s3.uri("cost/"), "bp-cost-based"))
    assert names == ["trueLabel", "bestAnswer", "score"]
    test_rows = rows[len(rows) * 70 // 100 :]
    assert predictions["trueLabel"].tolist() == [row.rstrip().endswith(",1") for row in test_rows]
    assert ((predictions["score"] >= 0) & (predictions["score"] <= 1)).all()
    evaluation = ml.get_evaluation(EvaluationId="ev-TM7EVAL")
    assert evaluation["Status"] == "COMPLETED"
    assert 0.5 < float(evaluation["PerformanceMetrics"]["Properties"]["BinaryAUC"]) <= 1

    batch = ml.get_batch_prediction(BatchPredictionId="bp-TM7BATCH")
    # 294 records and a truncated 295th, which fails and leaves an empty line in its place.
    assert (batch["Status"], batch["TotalRecordCount"], batch["InvalidRecordCount"]) == ("COMPLETED", 295, 1)
    key = result_key(ml, s3.uri("ml-output/"), "bp-TM7BATCH")
    assert json.loads(s3.get("ml-output/batch-prediction/bp-TM7BATCH.manifest")) == {
        s3.uri("banking-batch.csv"): s3.uri(key)
    }
    header, *lines = zlib.decompress(s3.get(key), 15 + 32).decode().split("\n")
    assert header == "bestAnswer,score" and len(lines) == 296 and lines[-2:] == ["", ""]
    for line in lines[:-2]:
        best_answer, score = line.split(",")
        # Scores are printed to 7 significant digits: one that close to the threshold may round across it.
        assert best_answer == ("1" if float(score) >= 0.77 else "0") or abs(float(score) - 0.77) < 1e-6


def test_k_fold_cross_validation(aws: tuple[Any, S3, list[str]]) -> None:
    """build_folds.py with 3 folds, then collect_perf.py's mean AUC."""
    ml, s3, _ = aws
    kfolds = 3
    for fold in range(kfolds):
        for role, complement in (("train", True), ("eval", False)):
            rearrangement = json.dumps(
                {
                    "splitting": {
                        "percentBegin": fold * (100 // kfolds),
                        "percentEnd": (fold + 1) * (100 // kfolds),
                        "complement": complement,
                        "strategy": "random",
                        "strategyParams": {"randomSeed": "RANDOMSEED"},
                    }
                }
            )
            ml.create_data_source_from_s3(
                DataSourceId=f"ds-CV{fold}{role}",
                DataSourceName=f"CV sample [fold {fold}, complement={complement}]",
                DataSpec={
                    "DataLocationS3": s3.uri("banking.csv"),
                    "DataSchema": banking_schema(),
                    "DataRearrangement": rearrangement,
                },
                ComputeStatistics=True,
            )
        ml.create_ml_model(
            MLModelId=f"ml-CV{fold}", MLModelName=f"ML model: CV sample {fold}", MLModelType="BINARY",
            TrainingDataSourceId=f"ds-CV{fold}train", Recipe=RECIPE,
            Parameters={"sgd.maxPasses": "10", "sgd.maxMLModelSizeInBytes": "104857600",
                        "sgd.l2RegularizationAmount": "1e-4"},
        )  # fmt: skip
        ml.create_evaluation(
            EvaluationId=f"ev-CV{fold}", EvaluationName=f"Evaluation: CV sample {fold}",
            MLModelId=f"ml-CV{fold}", EvaluationDataSourceId=f"ds-CV{fold}eval",
        )  # fmt: skip
    ml.get_waiter("evaluation_available").wait(
        FilterVariable="Name", Prefix="Evaluation: CV sample", WaiterConfig=WAIT
    )
    aucs = []
    for fold in range(kfolds):
        evaluation = ml.get_evaluation(EvaluationId=f"ev-CV{fold}")
        assert evaluation["Status"] == "COMPLETED"
        aucs.append(float(evaluation["PerformanceMetrics"]["Properties"]["BinaryAUC"]))
    assert all(0.8 < auc <= 1 for auc in aucs)
    # Each fold evaluates on records of its own, so no two folds score alike.
    assert len(set(aucs)) == kfolds
    pages = ml.get_paginator("describe_evaluations").paginate(
        FilterVariable="Name", Prefix="Evaluation: CV sample", PaginationConfig={"PageSize": 2}
    )
    assert sorted(item["EvaluationId"] for page in pages for item in page["Results"]) == [
        f"ev-CV{fold}" for fold in range(kfolds)
    ]


#: Part of social-media/aml_training_dataset.csv.schema: dotted names, a rowId, a null rowWeight.
TWEETS_SCHEMA = {
    "attributes": [
        {"attributeName": "created_at_in_seconds", "attributeType": "NUMERIC"},
        {"attributeName": "description", "attributeType": "TEXT"},
        {"attributeName": "r.favorited", "attributeType": "CATEGORICAL"},
        {"attributeName": "r.user.name", "attributeType": "TEXT"},
        {"attributeName": "sid", "attributeType": "CATEGORICAL"},
        {"attributeName": "text", "attributeType": "TEXT"},
        {"attributeName": "trainingLabel", "attributeType": "BINARY"},
    ],
    "dataFileContainsHeader": True,
    "dataFormat": "CSV",
    "excludedAttributeNames": [],
    "rowId": "sid",
    "rowWeight": None,
    "targetAttributeName": "trainingLabel",
    "version": "1.0",
}


#: create-aml-model.py's DataRearrangement, seed beside "splitting".
SOCIAL_MEDIA_SPLIT = '{"randomSeed":"0","splitting":{"percentBegin":%d,"percentEnd":%d}}'


def tweets(count: int) -> str:
    """Tweets labelled 1 when they ask customer service for help."""
    rng = random.Random(7)
    lines = ["created_at_in_seconds,description,r.favorited,r.user.name,sid,text,trainingLabel"]
    for i in range(count):
        label = rng.random() < 0.3
        words = "help my instance is broken" if label else "great launch thanks"
        lines.append(
            f"{1430000000 + 60 * i},{'aws fan' if i % 2 else 'developer'},{i % 3 == 0},user {i % 7},"
            f"{591000000000000000 + i},@awscloud {words} {rng.randint(0, 99)},{int(label)}"
        )
    return "\n".join(lines) + "\n"


def test_social_media_model_and_realtime_predictions(aws: tuple[Any, S3, list[str]]) -> None:
    ml, s3, _ = aws
    location = s3.put("tweets/aml_training_dataset.csv", tweets(500))
    # create-aml-model.py: the rearrangement string exactly as the sample formats it, randomSeed outside
    # "splitting"; the model has the default recipe and parameters.
    for ds_type, begin, end, statistics in (("training", 0, 70, True), ("evaluation", 70, 100, False)):
        ml.create_data_source_from_s3(
            DataSourceId=f"ds-tweets-{ds_type}",
            DataSpec={
                "DataLocationS3": location,
                "DataSchema": json.dumps(TWEETS_SCHEMA),
                "DataRearrangement": SOCIAL_MEDIA_SPLIT % (begin, end),
            },
            DataSourceName=f"aml_training_dataset.csv_DataSplitting [percentBegin={begin}, percentEnd={end}]",
            ComputeStatistics=statistics,
        )  # fmt: skip
    ml.create_ml_model(MLModelId="ml-tweets", MLModelType="BINARY", TrainingDataSourceId="ds-tweets-training")
    ml.create_evaluation(
        EvaluationId="ev-tweets", MLModelId="ml-tweets", EvaluationDataSourceId="ds-tweets-evaluation"
    )
    ml.get_waiter("evaluation_available").wait(FilterVariable="MLModelId", EQ="ml-tweets", WaiterConfig=WAIT)
    evaluation = ml.get_evaluation(EvaluationId="ev-tweets")
    assert float(evaluation["PerformanceMetrics"]["Properties"]["BinaryAUC"]) > 0.9
    # ml-tools-python/realtime.py: no EndpointUrl until an endpoint is created.
    assert ml.get_ml_model(MLModelId="ml-tweets").get("EndpointInfo", {}).get("EndpointUrl", "") == ""
    ml.create_realtime_endpoint(MLModelId="ml-tweets")
    for _ in range(100):
        endpoint = ml.get_ml_model(MLModelId="ml-tweets")["EndpointInfo"]
        if endpoint["EndpointStatus"] != "UPDATING":
            break
    assert endpoint["EndpointStatus"] == "READY"
    # The Lambda function (index.js.template) predicts a tweet and acts on predictedLabel === '1'.
    tweet = {
        "sid": "591000000000009999",
        "text": "@awscloud help my instance is broken 3",
        "r.favorited": "False",
    }
    prediction = ml.predict(MLModelId="ml-tweets", Record=tweet, PredictEndpoint=endpoint["EndpointUrl"])
    assert prediction["Prediction"]["predictedLabel"] == "1"
    # With the rowId, the batch output starts with a tag column, which cost_based_ml.py skips.
    ml.create_batch_prediction(
        BatchPredictionId="bp-tweets", MLModelId="ml-tweets", OutputUri=s3.uri("tweets-output/"),
        BatchPredictionDataSourceId="ds-tweets-evaluation",
    )  # fmt: skip
    ml.get_waiter("batch_prediction_available").wait(
        FilterVariable="MLModelId", EQ="ml-tweets", WaiterConfig=WAIT
    )
    names, predictions = read_test_predictions(s3, result_key(ml, s3.uri("tweets-output/"), "bp-tweets"))
    assert names == ["tag", "trueLabel", "bestAnswer", "score"] and len(predictions) == 150
    assert ((predictions["score"] >= 0.5) == predictions["trueLabel"]).all()
    # awspyml.py checks a connection with describe_ml_models(limit=1).
    assert len(ml.describe_ml_models(Limit=1)["Results"]) == 1


def guessed_schema(text: str, target: str | None) -> str:
    """ml-tools-python/guess_schema.py's schema of a CSV with a header (awspyml.SchemaGuesser): each column
    takes the type most of its values fit, NUMERIC for numbers (a 0/1 column too: its tie with BINARY goes to
    NUMERIC, counted first), CATEGORICAL for strings of up to 20 words, TEXT for longer ones."""
    rows = list(csv.reader(io.StringIO(text)))[:1000]
    attributes = []
    for i, name in enumerate(rows[0]):
        counts = {"NUMERIC": 0, "BINARY": 0, "TEXT": 0, "CATEGORICAL": 0}
        for row in rows[1:]:
            try:
                number = float(row[i])
            except ValueError:
                counts["TEXT" if len(row[i].split()) > 20 else "CATEGORICAL"] += 1
            else:
                counts["NUMERIC"] += 1
                counts["BINARY"] += number in (0, 1)
        attributes.append({"attributeName": name, "attributeType": max(counts, key=counts.__getitem__)})
    schema = {
        "version": "1.0",
        "dataFormat": "CSV",
        "attributes": attributes,
        "dataFileContainsHeader": True,
        "targetAttributeName": target,
        "excludedAttributeNames": [],
        "rowId": None,
    }
    return json.dumps(schema, indent=2)


def test_a_guessed_schema_that_cannot_train_is_refused_naming_the_datasource(
    aws: tuple[Any, S3, list[str]],
) -> None:
    """guess_schema.py leaves the target null unless told one, and types a 0/1 column NUMERIC: a BINARY
    model of either is refused, the error naming the request's TrainingDataSourceId."""
    ml, s3, _ = aws
    text = s3.get("banking.csv").decode()
    for data_source_id, target in (("ds-guessed-none", None), ("ds-guessed-y", "y")):
        ml.create_data_source_from_s3(
            DataSourceId=data_source_id,
            DataSourceName=f"guessed {data_source_id}",
            DataSpec={"DataLocationS3": s3.uri("banking.csv"), "DataSchema": guessed_schema(text, target)},
            ComputeStatistics=True,
        )
    ml.get_waiter("data_source_available").wait(FilterVariable="Name", Prefix="guessed ", WaiterConfig=WAIT)
    with pytest.raises(ml.exceptions.InvalidInputException) as no_target:
        ml.create_ml_model(
            MLModelId="ml-guessed", MLModelType="BINARY", TrainingDataSourceId="ds-guessed-none"
        )
    assert no_target.value.response["Error"]["Message"].startswith(
        "TrainingDataSourceId 'ds-guessed-none' has no targetAttributeName"
    )
    with pytest.raises(ml.exceptions.InvalidInputException) as numeric:
        ml.create_ml_model(MLModelId="ml-guessed", MLModelType="BINARY", TrainingDataSourceId="ds-guessed-y")
    assert (
        "a BINARY model needs a BINARY target, but in TrainingDataSourceId 'ds-guessed-y' the target 'y' is "
        "NUMERIC; a NUMERIC target makes a REGRESSION model" in numeric.value.response["Error"]["Message"]
    )
