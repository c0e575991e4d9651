"""Publishing a batch prediction's results to S3: a few uploads at a time, the results byte for byte those
of one upload after another (and of a local output), and a result refused mid-publish fails the job
leaving no result, no manifest and no upload behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from emrml.core.schema import parse_schema
from emrml.engine.batch import BatchResult, Parallelism, batch_predict
from emrml.engine.training import DatasourceData, TrainedModel, train_model
from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service.parameters import parse_parameters
from emrml.storage import locations, publishing
from in_flight import InFlight
from raw_models import XY_SCHEMA
from s3_server import S3

SCHEMA = parse_schema(json.dumps(XY_SCHEMA))
FILES = 10


@pytest.fixture
def model(s3: S3) -> TrainedModel:
    for i in range(FILES):
        s3.put(f"in/part-{i:02d}.csv", "x,y\n" + "".join(f"{i * 50 + n},{n % 2}\n" for n in range(50)))
    return train_model(
        model_id="ml-publish",
        model_type="BINARY",
        data=DatasourceData(s3.uri("in/"), SCHEMA, None),
        recipe_text=json.dumps({"outputs": ["ALL_INPUTS"]}),
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "1"}),
        settings=s3.settings,
        progress=lambda *_: None,
    )


def _predict(s3: S3, model: TrainedModel, output: str) -> BatchResult:
    return batch_predict(
        batch_prediction_id="bp-publish",
        artifact_location=model.artifact_path,
        data=DatasourceData(s3.uri("in/"), SCHEMA, None),
        output_uri=output,
        score_threshold=None,
        settings=s3.settings,
        progress=lambda *_: None,
        parallelism=Parallelism(workers=1),
    )


class PutsInFlight:
    """Wraps the store's requests: the PutObjects of results under way at once (``InFlight``)."""

    def __init__(self, store: Any) -> None:
        self.call = store.call
        self.puts = InFlight(store.call)

    @property
    def most(self) -> int:
        return self.puts.most

    def __call__(self, operation: str, bucket: str, key: str = "", **arguments: Any) -> Any:
        if operation != "put_object" or "/result/" not in key:
            return self.call(operation, bucket, key, **arguments)
        return self.puts(operation, bucket, key, **arguments)


def test_results_uploaded_at_once_are_those_of_one_at_a_time(
    s3: S3, model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as serial:
        serial.setattr(publishing, "PUBLISH_AT_ONCE", 1)
        one = _predict(s3, model, s3.uri("one/"))
    local = _predict(s3, model, str(tmp_path / "local"))
    puts = PutsInFlight(locations._S3.store)
    monkeypatch.setattr(locations._S3.store, "call", puts)
    at_once = _predict(s3, model, s3.uri("at-once/"))
    assert 2 <= puts.most <= publishing.PUBLISH_AT_ONCE
    assert len(at_once.results) == len(one.results) == len(local.results) == FILES
    assert json.loads(s3.get("at-once/batch-prediction/bp-publish.manifest")) == at_once.results
    for source, result in at_once.results.items():
        name = result.rpartition("/")[2]
        data = s3.get(f"at-once/batch-prediction/result/{name}")
        assert one.results[source] == s3.uri(f"one/batch-prediction/result/{name}")
        assert data == s3.get(f"one/batch-prediction/result/{name}")
        assert data == Path(local.results[source]).read_bytes()


def test_a_result_refused_mid_publish_leaves_no_output(s3: S3, model: TrainedModel) -> None:
    refused = "out/batch-prediction/result/bp-publish-part-06.csv.gz"
    policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{s3.bucket}/{refused}",
            }
        ]
    }
    s3.client.put_bucket_policy(Bucket=s3.bucket, Policy=json.dumps(policy))
    with pytest.raises(AccessDeniedException) as caught:
        _predict(s3, model, s3.uri("out/"))
    assert caught.value.message.startswith(f"cannot write '{s3.uri(refused)}'")
    assert "AccessDenied" in caught.value.message
    assert s3.list_keys("out/") == []  # the results that appeared beside it were removed; no manifest
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_a_manifest_whose_answer_is_lost_is_removed_with_the_results(
    s3: S3, model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 stored the manifest but its answer was lost (a reset connection): the job fails and removes its
    results, and the manifest, the commit marker, must go with them, or a reader takes it for a complete
    output whose results are gone."""
    from emrml.storage.s3 import S3Error

    store = locations._S3.store
    call = store.call

    def answer_lost(operation: str, bucket: str, key: str = "", **arguments: Any) -> Any:
        done = call(operation, bucket, key, **arguments)
        if operation == "put_object" and key.endswith(".manifest"):
            raise S3Error("RequestTimeout", "the connection was reset (test)")
        return done

    monkeypatch.setattr(store, "call", answer_lost)
    with pytest.raises(InvalidInputException) as caught:
        _predict(s3, model, s3.uri("lost/"))
    manifest = s3.uri("lost/batch-prediction/bp-publish.manifest")
    assert caught.value.message.startswith(f"cannot write '{manifest}'")
    assert s3.list_keys("lost/") == []
