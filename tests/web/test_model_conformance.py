"""Conformance with botocore's model of Amazon ML, walked operation by operation.

Requests: for every operation, every member reachable from its input shape is sent once for each constraint
the model puts on it (JSON type, required, min / max length or value, pattern, enum, unknown members), in an
otherwise valid request; the answer must be a 400 of an error type the operation declares, whose message
names the member's path (``DataSpec.DataLocationS3``, ``Tags[0].Key``) — what AWS's own validation does.

Responses: one run of all 28 operations through boto3 against the real server, every raw answer walked
against the operation's output shape (each member is one the model has, of the model's type, enum and
constraints; no nulls), and every error answered is one the operation declares.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.model import OperationModel, Shape
from web_helpers import LiveServer, asgi_request

from emrml.config import Settings
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML
from emrml.service.operations import ID_MEMBER
from emrml.web.protocol import TARGET_PREFIX
from emrml.web.server import create_app

MODEL = botocore.session.get_session().get_service_model("machinelearning")
#: Bodies larger than this are refused whole (RequestEntityTooLargeException): a string longer than it
#: cannot reach the validator, so its maximum is not sent.
MAX_BODY = 1024 * 1024
#: A valid value for each input string shape with a pattern (or a minimum the default does not meet).
VALID = {
    "EntityId": "c-1",
    "S3Url": "s3://bucket/key",
    "VipURL": "https://realtime.machinelearning.us-east-1.amazonaws.com",
    "RedshiftDatabaseName": "db1",
    "RDSInstanceIdentifier": "db-1",
    "RedshiftClusterIdentifier": "db-1",
    "RDSDatabasePassword": "password",
    "RedshiftDatabasePassword": "password",
}
#: A value off each input pattern, within the shape's lengths.
OFF_PATTERN = {
    "EntityId": "bad id!",
    "EntityName": "   ",
    "ComparatorValue": "   ",
    "RDSInstanceIdentifier": "Upper_Case",
    "RedshiftClusterIdentifier": "Upper_Case",
    "RedshiftDatabaseName": "db-1",
    "TagKey": "bad#key",
    "TagValue": "bad#value",
}
#: Patterns emrml does not apply on purpose: locations are local paths and file:// URIs as well as s3://
#: ones (storage.locations checks them), and endpoint URLs name this server, not amazonaws.com (spec 1.3).
NOT_APPLIED = {"S3Url", "VipURL"}
#: Tag keys and values breaking their lengths or pattern are InvalidTagException (spec 4.7).
TAG_SHAPES = {"TagKey", "TagValue"}
#: Members (and Prediction details keys) emrml adds to answers on purpose (docs/api-compatibility.md);
#: boto3 hands them over as they are.
_PROGRESS = ("Progress", "ProgressMessage", "SparkApplicationId", "SparkJobIds")
_DATASOURCE = (*_PROGRESS, "TotalRecordCount", "InvalidRecordCount", "TargetAttributeName")
_MODEL = (*_PROGRESS, "TargetAttributeName")
_BATCH = (*_PROGRESS, "UnparsedRecordCount")
EXTRA_MEMBERS = {
    "DataSource": _DATASOURCE,
    "GetDataSourceOutput": _DATASOURCE,
    "MLModel": _MODEL,
    "GetMLModelOutput": _MODEL,
    "Evaluation": _PROGRESS,
    "GetEvaluationOutput": _PROGRESS,
    "BatchPrediction": _BATCH,
    "GetBatchPredictionOutput": (*_BATCH, "ManifestLocation"),
    "DetailsMap": ("NoSchemaAttributes", "UnparsedAttributes"),
}
WRONG_TYPE: dict[str, Any] = {
    "string": 5,
    "integer": "1",
    "long": "1",
    "float": "x",
    "double": "x",
    "boolean": "yes",
    "timestamp": "x",
    "list": "x",
    "map": "x",
    "structure": "x",
}

Step = str | int
Case = tuple[str, tuple[Step, ...], Any, str, str]


def valid(shape: Shape) -> Any:
    """A value of ``shape`` with only its required members: valid for every constraint of the model."""
    if shape.type_name == "structure":
        return {name: valid(shape.members[name]) for name in shape.required_members}
    if shape.type_name == "list":
        return [valid(shape.member)]
    if shape.type_name == "map":
        return {"k": valid(shape.value)}
    if shape.type_name == "string":
        if shape.enum:
            return shape.enum[0]
        return VALID.get(shape.name, "a" * max(shape.metadata.get("min", 1), 1))
    return {"integer": 1, "long": 1, "float": 0.5, "double": 0.5, "boolean": True, "timestamp": 1}[
        shape.type_name
    ]


def place(shape: Shape, path: tuple[Step, ...], value: Any, *, omit: bool = False) -> Any:
    """A valid value of ``shape`` with ``value`` at ``path`` (or the member there left out, ``omit``)."""
    if not path:
        return value
    step, rest = path[0], path[1:]
    if shape.type_name == "structure":
        assert isinstance(step, str)
        built = valid(shape)
        if omit and not rest:
            del built[step]
        else:
            built[step] = place(shape.members[step], rest, value, omit=omit)
        return built
    if shape.type_name == "list":
        return [place(shape.member, rest, value, omit=omit)]
    return {"k": place(shape.value, rest, value, omit=omit)}


def where(path: tuple[Step, ...]) -> str:
    """A member's path as emrml's messages spell it."""
    text = ""
    for step in path:
        if step == 0:
            text += "[0]"
        elif step == "k":
            text += "['k']"
        else:
            text += f".{step}" if text else str(step)
    return text


def violations(shape: Shape) -> Iterator[tuple[Any, str]]:
    """Values breaking one constraint of ``shape`` each, with the kind of error they must get."""
    kind = shape.type_name
    tag = shape.name in TAG_SHAPES
    yield WRONG_TYPE[kind], "InvalidInputException"
    if kind == "string":
        if shape.enum:
            yield "NOT_A_MEMBER_OF_THE_ENUM", "InvalidInputException"
        error = "InvalidTagException" if tag else "InvalidInputException"
        if shape.metadata.get("min", 0) > 0:
            yield "", error
        if "max" in shape.metadata and shape.metadata["max"] < MAX_BODY:
            yield "a" * (shape.metadata["max"] + 1), error
        if "pattern" in shape.metadata and shape.name not in NOT_APPLIED:
            yield OFF_PATTERN[shape.name], error
    elif kind in ("integer", "long"):
        if "min" in shape.metadata:
            yield shape.metadata["min"] - 1, "InvalidInputException"
        if "max" in shape.metadata:
            yield shape.metadata["max"] + 1, "InvalidInputException"
    elif kind == "list":
        if shape.metadata.get("min", 0) > 0:
            yield [], "InvalidInputException"
        if "max" in shape.metadata:
            yield [valid(shape.member)] * (shape.metadata["max"] + 1), "InvalidInputException"


def members(shape: Shape, path: tuple[Step, ...] = ()) -> Iterator[tuple[tuple[Step, ...], Shape]]:
    """Every member reachable from ``shape``, with its path (a list's first item, a map's value)."""
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            yield (*path, name), member
            yield from members(member, (*path, name))
    elif shape.type_name == "list":
        yield (*path, 0), shape.member
        yield from members(shape.member, (*path, 0))
    elif shape.type_name == "map":
        yield (*path, "k"), shape.value
        yield from members(shape.value, (*path, "k"))


def input_cases() -> list[Case]:
    cases: list[Case] = []
    for name in MODEL.operation_names:
        top = MODEL.operation_model(name).input_shape
        cases.append((name, (), {**valid(top), "NotAMember": 1}, "NotAMember", "InvalidInputException"))
        for path, shape in members(top):
            for value, error in violations(shape):
                cases.append((name, path, place(top, path, value), where(path), error))
            if shape.type_name == "structure":
                for required in shape.required_members:
                    request = place(top, (*path, required), None, omit=True)
                    cases.append(
                        (name, (*path, required), request, where((*path, required)), "InvalidInputException")
                    )
        for required in top.required_members:
            request = place(top, (required,), None, omit=True)
            cases.append((name, (required,), request, required, "InvalidInputException"))
    return cases


CASES = input_cases()


def test_the_walk_covers_every_constraint_of_the_model() -> None:
    """Every pattern of an input shape has an off-pattern value here (a new one in botocore fails this), and
    the values chosen are really off their patterns."""
    patterned = {
        shape.name
        for name in MODEL.operation_names
        for _, shape in members(MODEL.operation_model(name).input_shape)
        if "pattern" in shape.metadata
    }
    assert patterned - NOT_APPLIED == set(OFF_PATTERN)
    for name, value in OFF_PATTERN.items():
        pattern = MODEL.shape_for(name).metadata["pattern"]
        if "\\p{" not in pattern:
            assert re.fullmatch(pattern, value) is None, name
    assert {case[0] for case in CASES} == set(MODEL.operation_names) and len(CASES) > 300


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("conformance")
    service = EmrML(Settings.load(environ={}, home=home, data_roots=(home,)))
    yield create_app(service, auth=False, max_body_bytes=MAX_BODY + 4096)
    service.close()


def send(app: Any, operation: str, body: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET_PREFIX + operation}
    response = asyncio.run(asgi_request(app, headers, json.dumps(body).encode()))
    return response.status, response.json()


def test_every_constraint_of_every_input_member_is_enforced(app: Any) -> None:
    """All cases in one test (not one each): a failure lists every request answered wrongly."""
    wrong = []
    for operation, _path, request, member, error in CASES:
        status, body = send(app, operation, request)
        declared = {shape.name for shape in MODEL.operation_model(operation).error_shapes}
        answered = (status, body.get("__type"))
        if answered != (400, error) or error not in declared or member not in body.get("message", ""):
            wrong.append(f"{operation} {json.dumps(request)[:160]}: {status} {body}")
    assert wrong == [], "\n".join(wrong)


# ------------------------------------------------------------------------------------------------ responses


def pattern_applies(shape: Shape) -> bool:
    """Whether the test can check ``shape``'s pattern (Python's re knows no \\p{...} classes)."""
    pattern = shape.metadata.get("pattern")
    return pattern is not None and shape.name not in NOT_APPLIED and "\\p{" not in pattern


def off_model(shape: Shape, value: Any, at: str) -> Iterator[str]:
    """What in ``value``, an answer's JSON at ``at``, the model's ``shape`` does not allow."""
    kind, meta = shape.type_name, shape.metadata
    if value is None:
        yield f"{at}: null (a member without a value is left out)"
    elif kind == "structure":
        if not isinstance(value, dict):
            yield f"{at}: {value!r} is not an object"
            return
        for name in shape.required_members:
            if name not in value:
                yield f"{at}.{name}: required, missing"
        for name, item in value.items():
            if name in EXTRA_MEMBERS.get(shape.name, ()):
                continue
            if name not in shape.members:
                yield f"{at}.{name}: not a member of {shape.name}"
            else:
                yield from off_model(shape.members[name], item, f"{at}.{name}")
    elif kind in ("list", "map"):
        if not isinstance(value, list if kind == "list" else dict):
            yield f"{at}: {value!r} is not a {kind}"
            return
        if not meta.get("min", 0) <= len(value) <= meta.get("max", len(value)):
            yield f"{at}: {len(value)} items, out of the model's range"
        if kind == "list":
            for i, item in enumerate(value):
                yield from off_model(shape.member, item, f"{at}[{i}]")
        else:
            for key, item in value.items():
                if key in EXTRA_MEMBERS.get(shape.name, ()):
                    continue
                yield from off_model(shape.key, key, f"{at} key")
                yield from off_model(shape.value, item, f"{at}[{key!r}]")
    elif kind == "string":
        if not isinstance(value, str):
            yield f"{at}: {value!r} is not a string"
        elif shape.enum and value not in shape.enum:
            yield f"{at}: {value!r} is not one of {shape.enum}"
        elif not meta.get("min", 0) <= len(value) <= meta.get("max", len(value)):
            yield f"{at}: {len(value)} characters, out of the model's range"
        elif pattern_applies(shape) and re.fullmatch(meta["pattern"], value, re.DOTALL) is None:
            yield f"{at}: {value!r} does not match {meta['pattern']}"
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            yield f"{at}: {value!r} is not an integer"
    elif kind in ("float", "double", "timestamp"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            yield f"{at}: {value!r} is not a number"
    elif kind == "boolean" and not isinstance(value, bool):
        yield f"{at}: {value!r} is not true or false"


@pytest.fixture(scope="module")
def answers(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, int, Any]]:
    """Every answer of a run through all 28 operations (and the errors of each kind of misuse):
    (operation, HTTP status, raw JSON body)."""
    folder = tmp_path_factory.mktemp("conformance-data")
    data = write_bank_sample(folder / "bank.csv", 300)
    seen: list[tuple[str, int, Any]] = []

    def record(http_response: Any, model: OperationModel, **_: Any) -> None:
        seen.append((model.name, http_response.status_code, json.loads(http_response.content)))

    client = live_server.client()
    client.meta.events.register("after-call.machinelearning", record)
    spec = {"DataLocationS3": str(data), "DataSchema": bank_sample_schema().to_json()}
    split = json.dumps({"splitting": {"percentBegin": 0, "percentEnd": 100}})
    client.create_data_source_from_s3(
        DataSourceId="mc-ds",
        DataSourceName="ds",
        DataSpec={**spec, "DataRearrangement": split},
        ComputeStatistics=True,
    )
    client.create_ml_model(
        MLModelId="mc-model", MLModelName="model", MLModelType="BINARY", TrainingDataSourceId="mc-ds"
    )
    client.create_evaluation(
        EvaluationId="mc-ev", EvaluationName="ev", MLModelId="mc-model", EvaluationDataSourceId="mc-ds"
    )
    client.create_batch_prediction(
        BatchPredictionId="mc-bp",
        BatchPredictionName="bp",
        MLModelId="mc-model",
        BatchPredictionDataSourceId="mc-ds",
        OutputUri=f"{folder}/out/",
    )
    # A job's Message quoting its data at length: a header of long names the schema does not have.
    long_header = folder / "long-header.csv"
    long_header.write_text(",".join(f"h{i}" + "x" * 5000 for i in range(3)) + "\n1,2,3\n")
    names = [{"attributeName": name, "attributeType": "NUMERIC"} for name in "abc"]
    long_schema = {"version": "1.0", "dataFormat": "CSV", "dataFileContainsHeader": True, "attributes": names}
    client.create_data_source_from_s3(
        DataSourceId="mc-long",
        DataSpec={"DataLocationS3": str(long_header), "DataSchema": json.dumps(long_schema)},
    )
    sql = {"SelectSqlQuery": "SELECT 1", "DatabaseCredentials": {"Username": "u", "Password": "password"}}
    client.create_data_source_from_rds(
        DataSourceId="mc-rds",
        RDSData={
            **sql,
            "DatabaseInformation": {"InstanceIdentifier": "db-1", "DatabaseName": "db"},
            "S3StagingLocation": f"{folder}/",
            "ResourceRole": "r",
            "ServiceRole": "s",
            "SubnetId": "subnet-1",
            "SecurityGroupIds": ["sg-1"],
        },
        RoleARN="arn:aws:iam::000000000000:role/ml",
    )
    client.create_data_source_from_redshift(
        DataSourceId="mc-redshift",
        DataSpec={
            **sql,
            "DatabaseInformation": {"DatabaseName": "db", "ClusterIdentifier": "c-1"},
            "S3StagingLocation": f"{folder}/",
        },
        RoleARN="arn:aws:iam::000000000000:role/ml",
    )
    # Each Get* is seen before its object has finished, and after.
    objects = (
        ("DataSource", "mc-ds"),
        ("MLModel", "mc-model"),
        ("Evaluation", "mc-ev"),
        ("BatchPrediction", "mc-bp"),
        ("DataSource", "mc-rds"),
        ("DataSource", "mc-redshift"),
        ("DataSource", "mc-long"),
    )
    for _ in range(2):
        for kind, object_id in objects:
            getattr(client, f"get_{SNAKE[kind]}")(**{ID_MEMBER[kind]: object_id})
        for kind, object_id in objects:
            live_server.service.wait(kind, object_id)
    for verbose in (False, True):
        for object_id in ("mc-ds", "mc-rds", "mc-redshift"):
            client.get_data_source(DataSourceId=object_id, Verbose=verbose)
        client.get_ml_model(MLModelId="mc-model", Verbose=verbose)
    for kind in ("data_sources", "ml_models", "evaluations", "batch_predictions"):
        first = getattr(client, f"describe_{kind}")(Limit=1, SortOrder="dsc")
        if "NextToken" in first:  # three datasources; one object of every other kind
            getattr(client, f"describe_{kind}")(Limit=1, SortOrder="dsc", NextToken=first["NextToken"])
        getattr(client, f"describe_{kind}")(FilterVariable="Name", Prefix="", SortOrder="asc")
    for resource_type, object_id in (
        ("DataSource", "mc-ds"),
        ("MLModel", "mc-model"),
        ("Evaluation", "mc-ev"),
        ("BatchPrediction", "mc-bp"),
    ):
        client.add_tags(
            ResourceId=object_id,
            ResourceType=resource_type,
            Tags=[{"Key": "k", "Value": "v"}, {"Key": "bare"}],
        )
        client.describe_tags(ResourceId=object_id, ResourceType=resource_type)
        client.delete_tags(ResourceId=object_id, ResourceType=resource_type, TagKeys=["k"])
    client.update_data_source(DataSourceId="mc-ds", DataSourceName="renamed")
    client.update_ml_model(MLModelId="mc-model", MLModelName="renamed", ScoreThreshold=0.4)
    client.update_evaluation(EvaluationId="mc-ev", EvaluationName="renamed")
    client.update_batch_prediction(BatchPredictionId="mc-bp", BatchPredictionName="renamed")
    endpoint = client.create_realtime_endpoint(MLModelId="mc-model")["RealtimeEndpointInfo"]
    client.get_ml_model(MLModelId="mc-model")
    client.describe_ml_models(FilterVariable="RealtimeEndpointStatus", EQ="READY")
    row = dict(zip(bank_sample_schema().names, data.read_text().splitlines()[1].split(","), strict=True))
    client.predict(MLModelId="mc-model", Record=row, PredictEndpoint=endpoint["EndpointUrl"])
    # The details emrml adds: a value it could not read, a record naming no attribute of the model.
    client.predict(MLModelId="mc-model", Record={"age": "old"}, PredictEndpoint=endpoint["EndpointUrl"])
    client.delete_realtime_endpoint(MLModelId="mc-model")
    # Misuse of every operation: objects that do not exist, or are not ready, or were deleted.
    for call in MISUSE:
        with pytest.raises(client.exceptions.ClientError):
            call(client, endpoint["EndpointUrl"], folder)
    for delete, key, object_id in (
        (client.delete_batch_prediction, "BatchPredictionId", "mc-bp"),
        (client.delete_evaluation, "EvaluationId", "mc-ev"),
        (client.delete_ml_model, "MLModelId", "mc-model"),
        (client.delete_data_source, "DataSourceId", "mc-ds"),
    ):
        delete(**{key: object_id})
    client.get_ml_model(MLModelId="mc-model", Verbose=True)
    client.describe_data_sources(FilterVariable="Status", EQ="DELETED")
    return seen


SNAKE = {
    "DataSource": "data_source",
    "MLModel": "ml_model",
    "Evaluation": "evaluation",
    "BatchPrediction": "batch_prediction",
}
MISUSE = (
    lambda c, url, folder: c.get_data_source(DataSourceId="mc-none"),
    lambda c, url, folder: c.get_ml_model(MLModelId="mc-none"),
    lambda c, url, folder: c.get_evaluation(EvaluationId="mc-none"),
    lambda c, url, folder: c.get_batch_prediction(BatchPredictionId="mc-none"),
    lambda c, url, folder: c.update_data_source(DataSourceId="mc-none", DataSourceName="n"),
    lambda c, url, folder: c.update_ml_model(MLModelId="mc-none", MLModelName="n"),
    lambda c, url, folder: c.update_evaluation(EvaluationId="mc-none", EvaluationName="n"),
    lambda c, url, folder: c.update_batch_prediction(BatchPredictionId="mc-none", BatchPredictionName="n"),
    lambda c, url, folder: c.delete_data_source(DataSourceId="mc-none"),
    lambda c, url, folder: c.delete_ml_model(MLModelId="mc-none"),
    lambda c, url, folder: c.delete_evaluation(EvaluationId="mc-none"),
    lambda c, url, folder: c.delete_batch_prediction(BatchPredictionId="mc-none"),
    lambda c, url, folder: c.create_ml_model(
        MLModelId="mc-x", MLModelType="BINARY", TrainingDataSourceId="mc-none"
    ),
    # Errors quoting a request at length.
    lambda c, url, folder: c.create_ml_model(
        MLModelId="mc-x", MLModelType="BINARY", TrainingDataSourceId="mc-ds", Parameters={"k" * 5000: "1"}
    ),
    lambda c, url, folder: c.create_evaluation(
        EvaluationId="mc-x", MLModelId="mc-none", EvaluationDataSourceId="mc-ds"
    ),
    lambda c, url, folder: c.create_batch_prediction(
        BatchPredictionId="mc-x",
        MLModelId="mc-none",
        BatchPredictionDataSourceId="mc-ds",
        OutputUri=f"{folder}/x/",
    ),
    lambda c, url, folder: c.create_data_source_from_s3(
        DataSourceId="mc-ds", DataSpec={"DataLocationS3": "/tmp/other"}
    ),
    lambda c, url, folder: c.create_realtime_endpoint(MLModelId="mc-none"),
    lambda c, url, folder: c.delete_realtime_endpoint(MLModelId="mc-none"),
    lambda c, url, folder: c.predict(MLModelId="mc-none", Record={}, PredictEndpoint=url),
    lambda c, url, folder: c.predict(MLModelId="mc-model", Record={}, PredictEndpoint=url),
    lambda c, url, folder: c.add_tags(ResourceId="mc-none", ResourceType="MLModel", Tags=[{"Key": "k"}]),
    lambda c, url, folder: c.add_tags(ResourceId="mc-ds", ResourceType="DataSource", Tags=[{"Key": "aws:k"}]),
    lambda c, url, folder: c.add_tags(
        ResourceId="mc-ds", ResourceType="DataSource", Tags=[{"Key": f"k{i}"} for i in range(51)]
    ),
    lambda c, url, folder: c.describe_tags(ResourceId="mc-none", ResourceType="Evaluation"),
    lambda c, url, folder: c.delete_tags(ResourceId="mc-none", ResourceType="Evaluation", TagKeys=["k"]),
    lambda c, url, folder: c.delete_tags(ResourceId="mc-ds", ResourceType="DataSource", TagKeys=["aws:k"]),
    lambda c, url, folder: c.describe_data_sources(NextToken="not a token"),
    lambda c, url, folder: c.describe_ml_models(FilterVariable="Name", GT="   "),
    lambda c, url, folder: c.describe_evaluations(EQ="mc-ev"),
    lambda c, url, folder: c.describe_batch_predictions(FilterVariable="CreatedAt", LT="yesterday"),
)


def test_every_operation_was_answered_and_refused(answers: list[tuple[str, int, Any]]) -> None:
    assert {name for name, status, _ in answers if status == 200} == set(MODEL.operation_names)
    refused = {name for name, status, _ in answers if status != 200}
    assert refused == set(MODEL.operation_names) - {"CreateDataSourceFromRDS", "CreateDataSourceFromRedshift"}


def test_every_answer_is_one_the_model_describes(answers: list[tuple[str, int, Any]]) -> None:
    wrong = []
    for name, status, body in answers:
        operation = MODEL.operation_model(name)
        if status == 200:
            wrong.extend(f"{name}: {problem}" for problem in off_model(operation.output_shape, body, name))
        else:
            declared = {shape.name for shape in operation.error_shapes}
            error = body.get("__type")
            if status != 400 or error not in declared or set(body) != {"__type", "message"}:
                wrong.append(f"{name}: {status} {body} (declared: {sorted(declared)})")
            else:
                members = {key: value for key, value in body.items() if key != "__type"}
                wrong.extend(f"{name}: {p}" for p in off_model(MODEL.shape_for(error), members, error))
    assert wrong == [], "\n".join(wrong)
