"""Amazon ML objects over s3:// locations, end to end against moto's S3 on loopback: a datasource with its
schema beside it, a recipe, a batch prediction in parallel byte ranges written whole or not at all, and
S3's errors recorded in FAILED objects."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emrml.engine.batch import Parallelism
from emrml.errors import AccessDeniedException, InvalidInputException, ResourceNotFoundException
from emrml.service.app import EmrML
from s3_server import S3


@pytest.fixture
def app(s3: S3) -> Iterator[EmrML]:
    application = EmrML(s3.settings)
    yield application
    application.close()


@pytest.fixture
def bank(s3: S3, shared_datasets: Path) -> dict[str, str]:
    """The first 3,000 bank marketing records and their schema, in the bucket."""
    folder = shared_datasets / "bank_marketing"
    with open(folder / "data.csv", encoding="utf-8") as source:
        rows = "".join(line for _, line in zip(range(3001), source, strict=False))
    return {
        "data": s3.put("bank/train/data.csv", rows),
        "schema": s3.put("bank/train/.schema", (folder / "data.csv.schema").read_bytes()),
        "rows": rows,
    }


def test_datasource_model_and_batch_prediction_in_s3(app: EmrML, s3: S3, bank: dict[str, str]) -> None:
    recipe = {"groups": {}, "assignments": {}, "outputs": ["ALL_CATEGORICAL", "quantile_bin(age,10)"]}
    s3.put("recipes/bank.json", json.dumps(recipe))
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-s3",
            "DataSpec": {"DataLocationS3": s3.uri("bank/train/")},  # a prefix; the schema is beside it
            "ComputeStatistics": True,
        },
    )
    source = app.wait("DataSource", "ds-s3")
    assert source["Status"] == "COMPLETED", source.get("Message")
    assert source["NumberOfFiles"] == 1 and source["DataSizeInBytes"] == len(bank["rows"].encode())
    app.call(
        "CreateMLModel",
        {
            "MLModelId": "ml-s3",
            "MLModelType": "BINARY",
            "TrainingDataSourceId": "ds-s3",
            "RecipeUri": s3.uri("recipes/bank.json"),
        },
    )
    model = app.wait("MLModel", "ml-s3")
    assert model["Status"] == "COMPLETED", model.get("Message")
    assert json.loads(app.call("GetMLModel", {"MLModelId": "ml-s3", "Verbose": True})["Recipe"]) == recipe

    app.call(
        "CreateBatchPrediction",
        {
            "BatchPredictionId": "bp-s3",
            "MLModelId": "ml-s3",
            "BatchPredictionDataSourceId": "ds-s3",
            "OutputUri": s3.uri("predictions"),
        },
    )
    prediction = app.wait("BatchPrediction", "bp-s3")
    assert prediction["Status"] == "COMPLETED", prediction.get("Message")
    manifest = json.loads(s3.get("predictions/batch-prediction/bp-s3.manifest"))
    result = s3.uri("predictions/batch-prediction/result/bp-s3-data.csv.gz")
    assert manifest == {bank["data"]: result}
    lines = gzip.decompress(s3.get("predictions/batch-prediction/result/bp-s3-data.csv.gz")).splitlines()
    assert lines[0] == b"trueLabel,bestAnswer,score" and len(lines) == 3001
    assert sorted(s3.list_keys("predictions/")) == [
        "predictions/batch-prediction/bp-s3.manifest",
        "predictions/batch-prediction/result/bp-s3-data.csv.gz",
    ]


def test_parallel_ranges_of_an_s3_file_score_like_one_pass(s3: S3, shared_datasets: Path) -> None:
    import pyarrow as pa

    from emrml.config import Settings
    from emrml.core.schema import parse_schema
    from emrml.engine.batch import batch_predict
    from emrml.engine.training import DatasourceData, train_model
    from emrml.service.parameters import parse_parameters

    folder = shared_datasets / "bank_marketing"
    schema = parse_schema((folder / "data.csv.schema").read_text())
    data = s3.put("all/data.csv", (folder / "data.csv").read_bytes())  # 4.8 MB
    settings: Settings = s3.settings
    trained = train_model(
        model_id="ml-ranges",
        model_type="BINARY",
        data=DatasourceData(data, schema, None),
        recipe_text=json.dumps({"outputs": ["ALL_CATEGORICAL", "quantile_bin(age,10)"]}),
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "1"}),
        settings=settings,
        progress=lambda *_: None,
    )
    outputs = {}
    for name, parallelism in [
        ("one", Parallelism(workers=1)),
        ("ranges", Parallelism(workers=2, range_bytes=1 << 20, min_bytes=1 << 20)),
    ]:
        result = batch_predict(
            batch_prediction_id=f"bp-{name}",
            artifact_location=trained.artifact_path,
            data=DatasourceData(data, schema, None),
            output_uri=s3.uri(name),
            score_threshold=None,
            settings=settings,
            progress=lambda *_: None,
            parallelism=parallelism,
        )
        outputs[name] = gzip.decompress(s3.get(f"{name}/batch-prediction/result/bp-{name}-data.csv.gz"))
        assert result.total_records == 41188
    assert outputs["ranges"] == outputs["one"]


def test_a_failed_batch_prediction_leaves_no_manifest_and_no_results(
    app: EmrML, s3: S3, bank: dict[str, str]
) -> None:
    s3.put("bank/train/data.csv.schema", s3.get("bank/train/.schema"))
    app.call(
        "CreateDataSourceFromS3",
        {"DataSourceId": "ds-f", "DataSpec": {"DataLocationS3": bank["data"]}, "ComputeStatistics": True},
    )
    app.call("CreateMLModel", {"MLModelId": "ml-f", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-f"})
    assert app.wait("MLModel", "ml-f")["Status"] == "COMPLETED"
    policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{s3.bucket}/out/batch-prediction/*.manifest",
            }
        ]
    }
    s3.client.put_bucket_policy(Bucket=s3.bucket, Policy=json.dumps(policy))
    app.call(
        "CreateBatchPrediction",
        {
            "BatchPredictionId": "bp-f",
            "MLModelId": "ml-f",
            "BatchPredictionDataSourceId": "ds-f",
            "OutputUri": s3.uri("out/"),
        },
    )
    prediction = app.wait("BatchPrediction", "bp-f")
    assert prediction["Status"] == "FAILED"
    assert "AccessDenied" in prediction["Message"] and "bp-f.manifest" in prediction["Message"]
    assert s3.list_keys("out/") == []  # the result written before the manifest was removed
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://emrml-missing-bucket-x/data.csv", "NoSuchBucket"),
        ("DENIED", "AccessDenied"),
    ],
)
def test_bad_s3_locations_fail_the_datasource_with_s3s_error(
    app: EmrML, s3: S3, bank: dict[str, str], location: str, expected: str
) -> None:
    if location == "DENIED":
        policy = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}]}
        s3.client.put_bucket_policy(Bucket=s3.bucket, Policy=json.dumps(policy))
        location = bank["data"]
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-bad",
            "DataSpec": {"DataLocationS3": location, "DataSchemaLocationS3": bank["schema"]},
        },
    )
    source = app.wait("DataSource", "ds-bad")
    assert source["Status"] == "FAILED"
    assert expected in source["Message"]


def test_an_s3_prefix_without_data_files_is_refused_at_once(app: EmrML, s3: S3, bank: dict[str, str]) -> None:
    """A datasource of an empty prefix could only fail: refused at the request, whether nothing is under
    the prefix or only the console's folder marker, hidden objects and a schema. A missing object is
    still the job's to report (as S3's other errors are)."""
    s3.put("marked/", b"")  # the S3 console's folder
    s3.put("marked/.schema", s3.get("bank/train/.schema"))
    s3.put("marked/_tmp/.part-0.csv", b"x\n1\n")
    for index, location in enumerate((s3.uri("nothing/"), s3.uri("marked/"), s3.uri("marked"), s3.uri())):
        if location == s3.uri():
            for key in s3.list_keys():
                if not key.startswith("marked/"):
                    s3.client.delete_object(Bucket=s3.bucket, Key=key)
        spec = {"DataLocationS3": location, "DataSchemaLocationS3": s3.uri("marked/.schema")}
        with pytest.raises(InvalidInputException) as refused:
            app.call("CreateDataSourceFromS3", {"DataSourceId": f"ds-empty-{index}", "DataSpec": spec})
        assert refused.value.message.startswith(
            f"DataSpec.DataLocationS3 '{location}' holds no file: the S3 prefix"
        )
        with pytest.raises(ResourceNotFoundException):
            app.call("GetDataSource", {"DataSourceId": f"ds-empty-{index}"})
    spec = {"DataLocationS3": s3.uri("missing.csv"), "DataSchemaLocationS3": s3.uri("marked/.schema")}
    app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-missing", "DataSpec": spec})
    missing = app.wait("DataSource", "ds-missing")
    assert missing["Status"] == "FAILED" and "does not exist" in missing["Message"]


def test_encrypted_batch_prediction_into_a_bucket_that_requires_sse(
    s3: S3, bank: dict[str, str], tmp_path: Path
) -> None:
    """Input and outputs encrypted on the client (CSE-Custom, AES key) and on the server (SSE-S3), into a
    bucket whose policy refuses unencrypted PUTs."""
    import base64
    import dataclasses
    import os

    key = tmp_path / "aes.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode())
    settings = dataclasses.replace(s3.settings, s3_sse="AES256", s3_cse_key=f"aes:{key}")
    policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{s3.bucket}/*",
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            }
        ]
    }
    application = EmrML(settings)
    try:
        from emrml.storage.locations import atomic_write

        with atomic_write(s3.uri("secure/data.csv")) as out:  # the input, encrypted
            out.write(bank["rows"].encode())
        with atomic_write(s3.uri("secure/data.csv.schema")) as out:  # an unencrypted schema is refused
            out.write(s3.get("bank/train/.schema"))
        s3.client.put_bucket_policy(Bucket=s3.bucket, Policy=json.dumps(policy))
        application.call(
            "CreateDataSourceFromS3",
            {
                "DataSourceId": "ds-enc",
                "DataSpec": {"DataLocationS3": s3.uri("secure/data.csv")},
                "ComputeStatistics": True,
            },
        )
        source = application.wait("DataSource", "ds-enc")
        assert source["Status"] == "COMPLETED", source.get("Message")
        assert source["DataSizeInBytes"] == len(bank["rows"].encode())
        application.call(
            "CreateMLModel",
            {"MLModelId": "ml-enc", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-enc"},
        )
        assert application.wait("MLModel", "ml-enc")["Status"] == "COMPLETED"
        application.call(
            "CreateBatchPrediction",
            {
                "BatchPredictionId": "bp-enc",
                "MLModelId": "ml-enc",
                "BatchPredictionDataSourceId": "ds-enc",
                "OutputUri": s3.uri("enc-out/"),
            },
        )
        prediction = application.wait("BatchPrediction", "bp-enc")
        assert prediction["Status"] == "COMPLETED", prediction.get("Message")
        from emrml.storage.locations import open_binary

        for key_name in s3.list_keys("enc-out/"):
            described = s3.client.head_object(Bucket=s3.bucket, Key=key_name)
            assert described["ServerSideEncryption"] == "AES256"
            assert described["Metadata"]["x-amz-wrap-alg"] == "AES/GCM"
        with open_binary(s3.uri("enc-out/batch-prediction/bp-enc.manifest")) as stream:
            manifest = json.loads(stream.read())
        with open_binary(manifest[s3.uri("secure/data.csv")]) as stream:
            lines = gzip.decompress(stream.read()).splitlines()
        assert lines[0] == b"trueLabel,bestAnswer,score" and len(lines) == 3001
    finally:
        application.close()


@pytest.mark.parametrize("first_holds_one_target_value", [True, False])
def test_infer_data_schema_names_an_unreadable_object_by_its_own_member(
    app: EmrML, s3: S3, first_holds_one_target_value: bool
) -> None:
    """An object S3 refuses — the first sampled, or the next one read because the first holds one target
    value — is named by InferDataSchema's top-level DataLocationS3, not CreateDataSourceFromS3's DataSpec
    path nor a bare 'location'."""
    prefix = "infer-later/" if first_holds_one_target_value else "infer-first/"
    if first_holds_one_target_value:
        s3.put(prefix + "part-0.csv", "x,y\n" + "".join(f"{n},0\n" for n in range(20)))
    refused = s3.put(prefix + "part-1.csv", "x,y\n1,1\n2,0\n")
    s3.deny("s3:GetObject", f"arn:aws:s3:::{s3.bucket}/{prefix}part-1.csv")
    request = {"DataLocationS3": s3.uri(prefix), "TargetAttributeName": "y"}
    with pytest.raises(AccessDeniedException) as caught:
        app.call("InferDataSchema", request)
    assert caught.value.message.startswith(f"DataLocationS3 '{refused}' cannot be read"), caught.value.message


class _BreaksOff:
    """An object's body that delivers bytes up to ``cut`` of the object and then times out, as a connection
    dropped in the middle of an object does; a resumed range from there breaks off at once."""

    def __init__(self, body: Any, start: int, cut: int) -> None:
        self.body, self.left = body, max(cut - start, 0)

    def read(self, amount: int) -> bytes:
        from botocore.exceptions import ReadTimeoutError

        if not self.left:
            raise ReadTimeoutError(endpoint_url="test")
        chunk = self.body.read(min(amount, self.left))
        self.left -= len(chunk)
        return chunk

    def close(self) -> None:
        self.body.close()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_an_object_whose_read_breaks_off_midway_fails_the_datasource_naming_the_member(
    app: EmrML, s3: S3, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    """The object opened, but its body broke off past the bytes read whole when opening (read ahead) and
    every resumed range broke off too: the FAILED datasource names DataSpec.DataLocationS3 and the object,
    as an object that cannot be opened is named, not a bare file nor an internal error."""
    from emrml.service import worker
    from emrml.storage import locations

    rows = "".join(f"{n},{n * 7919 % 10007}\n" for n in range(600_000)).encode()
    data = gzip.compress(b"x,y\n" + rows, compresslevel=1) if compressed else b"x,y\n" + rows
    assert len(data) > 2 * locations.READ_AHEAD_OBJECT_BYTES
    location = s3.put("broken/data.csv" + (".gz" if compressed else ""), data)
    store = locations._S3.store
    call = store.call

    def breaking(operation: str, *args: Any, **kwargs: Any) -> Any:
        response = call(operation, *args, **kwargs)
        if operation == "get_object" and args[1].startswith("broken/"):
            start = int(kwargs.get("Range", "bytes=0-")[len("bytes=") : -1])
            response["Body"] = _BreaksOff(response["Body"], start, len(data) // 2)
        return response

    monkeypatch.setattr(store, "call", breaking)
    schema = {
        "version": "1.0",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": "NUMERIC"},
        ],
    }
    spec = {"DataLocationS3": s3.uri("broken/"), "DataSchema": json.dumps(schema)}
    app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-broken", "DataSpec": spec})
    # On a thread of this process, where the store is patched (a worker process would have its own).
    attempt = app.jobs.claim("DataSource", "ds-broken")
    worker.run_job_in_this_process(app.settings, "DataSource", "ds-broken", attempt, worker=False)
    source = app.call("GetDataSource", {"DataSourceId": "ds-broken"})
    assert source["Status"] == "FAILED"
    assert source["Message"].startswith(f"DataSpec.DataLocationS3 '{location}' cannot be read: "), source[
        "Message"
    ]
    assert "ReadInterrupted" in source["Message"]
