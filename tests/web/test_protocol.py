"""The JSON 1.1 protocol: targets, bodies, error shapes and statuses, limits, the health check, the access
log and the background job scheduler — in-process through the ASGI app, and over HTTP where it matters."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from web_helpers import RawResponse, asgi_request, post, sign

from emrml.config import Settings
from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.metastore import now
from emrml.service.operations import NAMES, registered
from emrml.service.rows import DataSource
from emrml.web.access_log import AccessLog, LoggedRequests, new_request_id
from emrml.web.protocol import TARGET_PREFIX, encode_error, encode_response
from emrml.web.scheduler import JobScheduler
from emrml.web.server import BackgroundServer, create_app, reserve_socket
from raw_models import XY_SCHEMA

SCHEMA = json.dumps(XY_SCHEMA)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmrML]:
    # Every folder is a data root: these tests are about the protocol, and name files anywhere.
    home = tmp_path_factory.mktemp("protocol")
    application = EmrML(Settings.load(environ={}, home=home, data_roots=(Path("/"),)))
    yield application
    application.close()


@pytest.fixture(scope="module")
def app(service: EmrML) -> Any:
    return create_app(service, auth=False, max_body_bytes=64 * 1024)


def request(app: Any, target: str | None, body: bytes | dict, **headers: str) -> RawResponse:
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    sent = {"Content-Type": "application/x-amz-json-1.1", **headers}
    if target is not None:
        sent["X-Amz-Target"] = target if "." in target else TARGET_PREFIX + target
    return asyncio.run(asgi_request(app, sent, payload))


def error(response: RawResponse) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"__type", "message"}
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert response.headers["x-amzn-errortype"] == body["__type"]
    return response.status, body["__type"], body["message"]


def _nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return any(item is None or _nulls(item) for item in value.values())
    if isinstance(value, list):
        return any(item is None or _nulls(item) for item in value)
    return False


def test_success_has_the_json_1_1_shape(app: Any) -> None:
    created = request(
        app, "CreateDataSourceFromS3", {"DataSourceId": "p-ds", "DataSpec": {"DataLocationS3": "/x.csv"}}
    )
    assert created.status == 200 and created.json() == {"DataSourceId": "p-ds"}
    assert created.headers["content-type"] == "application/x-amz-json-1.1"
    assert str(uuid.UUID(created.headers["x-amzn-requestid"])) == created.headers["x-amzn-requestid"]
    got = request(app, "GetDataSource", {"DataSourceId": "p-ds", "Verbose": True}).json()
    assert got["Status"] == "PENDING" and "StartedAt" not in got and not _nulls(got)
    assert isinstance(got["CreatedAt"], float)
    assert request(app, "DescribeDataSources", b"").json()["Results"][0]["DataSourceId"] == "p-ds"


def test_request_ids_are_distinct_uuids_and_a_forked_process_draws_its_own() -> None:
    ids = [new_request_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(text).version == 4 and str(uuid.UUID(text)) == text for text in ids)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child writes its ids and leaves at once
        os.write(write, " ".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read().split()
    mine = [new_request_id() for _ in range(3)]
    assert len(theirs) == 3 and not set(theirs) & set(mine + ids)
    assert {text[:24] for text in theirs}.isdisjoint({text[:24] for text in mine})


def test_the_names_the_api_answers_are_the_registered_operations() -> None:
    # The protocol knows the operations by name before their modules are imported (a server imports them
    # with its first request other than Predict): a name missing from either list is an operation that is
    # refused as unknown, or one named that does not exist.
    assert set(registered()) == NAMES


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "AmazonML_20141212",
        "AmazonML_20141212.",
        "AmazonML_20141212.NoSuchThing",
        "DynamoDB_20120810.Scan",
    ],
)
def test_unknown_targets(app: Any, target: str | None) -> None:
    status, kind, message = error(request(app, target, {}))
    assert (status, kind) == (400, "UnknownOperationException")
    assert message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"Limit": NaN}', "NaN"),
        (b'{"Limit": Infinity}', "Infinity"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        (b'{"Prefix": "\\ud800"}', "surrogate"),
        (b'{"a": 1} trailing', "not valid JSON"),
    ],
)
def test_malformed_bodies_are_serialization_errors(app: Any, body: bytes, fragment: str) -> None:
    status, kind, message = error(request(app, "DescribeDataSources", body))
    assert (status, kind) == (400, "SerializationException")
    assert fragment in message


def test_botocore_parses_our_serialization_error() -> None:
    model = botocore.session.get_session().get_service_model("machinelearning")
    shape = model.operation_model("DescribeDataSources").output_shape
    response = {
        "status_code": 400,
        "headers": {"x-amzn-requestid": "r"},
        "body": b'{"__type":"SerializationException","message":"the request body is not valid JSON"}',
    }
    parsed = create_parser("json").parse(response, shape)
    assert parsed["Error"] == {
        "Code": "SerializationException",
        "Message": "the request body is not valid JSON",
    }


def test_boto3_sees_a_serialization_error_for_a_corrupted_body(live_server: Any) -> None:
    client = live_server.client()

    def corrupt(request: Any, **_: Any) -> None:
        request.data = b'{"Limit": 1'

    client.meta.events.register("before-sign.machinelearning.DescribeDataSources", corrupt)
    with pytest.raises(ClientError) as raised:
        client.describe_data_sources(Limit=1)
    assert raised.value.response["Error"]["Code"] == "SerializationException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


FORGED_DEEP = base64.urlsafe_b64encode(b"[" * 5_000 + b"]" * 5_000).decode()
FORGED_INFINITE = base64.urlsafe_b64encode(
    json.dumps({"after": [1e999, "x"], "query": json.dumps({})}).encode()
).decode()


@pytest.mark.parametrize(
    ("target", "body", "error_type", "fragment"),
    [
        ("GetDataSource", {}, "InvalidInputException", "DataSourceId is required"),
        ("GetDataSource", {"DataSourceId": 5}, "InvalidInputException", "must be a string"),
        ("GetDataSource", {"DataSourceId": ["a"]}, "InvalidInputException", "must be a string"),
        ("GetDataSource", {"DataSourceId": "bad id!"}, "InvalidInputException", "pattern"),
        ("GetDataSource", {"DataSourceId": "x" * 65}, "InvalidInputException", "at most 64"),
        (
            "GetDataSource",
            {"DataSourceId": "p-ds", "Verbose": "yes"},
            "InvalidInputException",
            "true or false",
        ),
        ("GetDataSource", {"DataSourceId": "p-ds", "Extra": 1}, "InvalidInputException", "not a member"),
        ("DescribeMLModels", {"Limit": 0}, "InvalidInputException", "at least 1"),
        ("DescribeMLModels", {"Limit": 101}, "InvalidInputException", "at most 100"),
        ("DescribeMLModels", {"Limit": 1.5}, "InvalidInputException", "integer"),
        # Beyond 64 bits, an integer is still an integer, out of range.
        ("DescribeMLModels", {"Limit": 10**30}, "InvalidInputException", "Limit must be at most 100"),
        ("DescribeMLModels", {"Limit": -(10**20)}, "InvalidInputException", "Limit must be at least 1"),
        ("DescribeMLModels", {"SortOrder": "up"}, "InvalidInputException", "asc, dsc"),
        ("DescribeMLModels", {"EQ": "x"}, "InvalidInputException", "FilterVariable"),
        ("DescribeTags", {"ResourceId": "p-ds", "ResourceType": "Table"}, "InvalidInputException", "one of"),
        (
            "AddTags",
            {"ResourceId": "p-ds", "ResourceType": "DataSource", "Tags": [{"Key": "k" * 129}]},
            "InvalidTagException",
            "at most 128 characters",
        ),
        (
            "UpdateDataSource",
            {"DataSourceId": "nope", "DataSourceName": "n"},
            "ResourceNotFoundException",
            "nope",
        ),
        ("GetDataSource", {"DataSourceId": "p-\u0000"}, "InvalidInputException", "DataSourceId holds a NUL"),
        # Forged page tokens: JSON nested too deeply to read, a sort value past the float range.
        ("DescribeMLModels", {"NextToken": FORGED_DEEP}, "InvalidInputException", "NextToken"),
        ("DescribeMLModels", {"NextToken": FORGED_INFINITE}, "InvalidInputException", "NextToken"),
    ],
)
def test_invalid_requests_name_the_member(
    app: Any, target: str, body: dict, error_type: str, fragment: str
) -> None:
    request(app, "CreateDataSourceFromS3", {"DataSourceId": "p-ds", "DataSpec": {"DataLocationS3": "/x.csv"}})
    status, kind, message = error(request(app, target, body))
    assert (status, kind) == (400, error_type)
    assert fragment in message


@pytest.mark.parametrize(
    ("target", "body", "ending"),
    [
        ("GetDataSource", {"DataSourceId": "p-ds", "k" * 5000: 1}, " is not a member of GetDataSourceInput"),
        (
            "CreateMLModel",
            {
                "MLModelId": "p-m",
                "MLModelType": "BINARY",
                "TrainingDataSourceId": "p-ds",
                "Parameters": {"k" * 5000: "1"},
            },
            "; allowed keys: sgd.maxMLModelSizeInBytes, sgd.maxPasses, sgd.shuffleType, "
            "sgd.l1RegularizationAmount, sgd.l2RegularizationAmount",
        ),
    ],
)
def test_an_error_quoting_a_request_at_length_keeps_to_the_models_bound(
    app: Any, target: str, body: dict, ending: str
) -> None:
    """The model's ErrorMessage is at most 2048 characters: what the message quotes is cut in its middle,
    keeping the start (which member) and the end (why)."""
    request(app, "CreateDataSourceFromS3", {"DataSourceId": "p-ds", "DataSpec": {"DataLocationS3": "/x.csv"}})
    status, kind, message = error(request(app, target, body))
    bound = botocore.session.get_session().get_service_model("machinelearning").shape_for("ErrorMessage")
    assert (status, kind) == (400, "InvalidInputException")
    assert len(message) == bound.metadata["max"] and message.endswith(ending) and " [...] " in message


def test_a_count_of_one_is_singular(app: Any) -> None:
    body = {"ResourceId": "p-ds", "ResourceType": "DataSource", "Tags": [{"Key": ""}]}
    assert error(request(app, "AddTags", body)) == (
        400,
        "InvalidTagException",
        "Tags[0].Key must have at least 1 character",
    )


def test_a_tag_without_key_is_a_client_error(app: Any) -> None:
    request(app, "CreateDataSourceFromS3", {"DataSourceId": "p-ds", "DataSpec": {"DataLocationS3": "/x.csv"}})
    body = {"ResourceId": "p-ds", "ResourceType": "DataSource", "Tags": [{"Key": "k"}, {"Value": "v"}]}
    status, kind, message = error(request(app, "AddTags", body))
    assert (status, kind) == (400, "InvalidTagException") and message.startswith("Tags[1].Key is required")


@pytest.mark.parametrize(
    ("target", "body", "member"),
    [
        ("AddTags", {"Tags": [{"Key": "k"}, {"Key": "AWS:owner"}]}, "Tags[1].Key 'AWS:owner'"),
        ("DeleteTags", {"TagKeys": ["k", "aws:owner"]}, "TagKeys[1] 'aws:owner'"),
    ],
)
def test_a_reserved_tag_key_is_named_by_its_member(app: Any, target: str, body: dict, member: str) -> None:
    request(app, "CreateDataSourceFromS3", {"DataSourceId": "p-ds", "DataSpec": {"DataLocationS3": "/x.csv"}})
    status, kind, message = error(
        request(app, target, {"ResourceId": "p-ds", "ResourceType": "DataSource", **body})
    )
    assert (status, kind) == (400, "InvalidTagException") and message.startswith(member)


def test_bodies_over_the_limit_are_refused(app: Any) -> None:
    big = json.dumps(
        {"DataSourceId": "p-big", "DataSpec": {"DataLocationS3": "/x", "DataSchema": "s" * 70000}}
    )
    status, kind, message = error(request(app, "CreateDataSourceFromS3", big.encode()))
    assert (status, kind) == (413, "RequestEntityTooLargeException")
    assert "65536 bytes" in message
    status, kind, _ = error(request(app, "CreateDataSourceFromS3", b"{}", **{"Content-Length": "999999999"}))
    assert (status, kind) == (413, "RequestEntityTooLargeException")


def test_an_oversized_body_over_http(live_server: Any) -> None:
    body = b'{"Prefix": "' + b"a" * (1024 * 1024) + b'"}'
    headers = sign(live_server.url, "DescribeDataSources", body, live_server.key.access_key_id, "irrelevant")
    response = post(live_server.url, headers, body)
    assert response.status == 413 and response.json()["__type"] == "RequestEntityTooLargeException"


def test_without_authentication_only_the_servers_own_host_names_are_answered(tmp_path: Path) -> None:
    """DNS rebinding: a page of another site whose name now resolves to the server sends that name."""
    sock = reserve_socket()
    port = sock.getsockname()[1]
    settings = Settings.load(environ={}, home=tmp_path, public_url=f"http://ml.example.org:{port}")
    service = EmrML(settings)
    body = b"{}"
    try:
        with BackgroundServer(create_app(service, auth=False, console=False), sock) as server:

            def describe(host: str) -> RawResponse:
                headers = {"Host": host, "Content-Type": "application/x-amz-json-1.1"}
                headers["X-Amz-Target"] = TARGET_PREFIX + "DescribeDataSources"
                return post(server.url, headers, body)

            for host in ("rebound.attacker.example", "localhost.attacker.example", "ml.example.org.evil"):
                refused = describe(f"{host}:{port}")
                assert refused.status == 403, refused.body
                assert refused.json()["__type"] == "MissingAuthenticationTokenException"
                assert "DNS rebinding" in refused.json()["message"]
            for host in ("127.0.0.1", "localhost", "[::1]", "ml.example.org", "ML.Example.Org.", "10.1.2.3"):
                assert describe(f"{host}:{port}").status == 200, host
            assert describe("localhost").status == 200
    finally:
        service.close()


def test_unexpected_failures_are_generic_500s_logged_with_the_request_id(
    app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_app: Any, _request: Any) -> dict:
        raise RuntimeError("password=hunter2 in /srv/secret/path")

    monkeypatch.setitem(registered(), "GetDataSource", broken)
    with caplog.at_level(logging.ERROR, logger="emrml.web.server"):
        response = request(app, "GetDataSource", {"DataSourceId": "p-ds"})
    status, kind, message = error(response)
    assert (status, kind) == (500, "InternalServerException")
    assert "hunter2" not in response.body.decode() and "Traceback" not in response.body.decode()
    request_id = response.headers["x-amzn-requestid"]
    assert request_id in message
    assert any(request_id in record.getMessage() and record.exc_info for record in caplog.records)


def test_extension_operations_are_served(app: Any, shared_datasets: Path) -> None:
    data = shared_datasets / "wine_quality" / "data.csv"
    inferred = request(
        app, "InferDataSchema", {"DataLocationS3": str(data), "TargetAttributeName": "quality"}
    )
    assert inferred.status == 200
    schema = json.loads(inferred.json()["DataSchema"])
    assert schema["targetAttributeName"] == "quality" and len(schema["attributes"]) > 5
    status, kind, _ = error(request(app, "GetDataSourceStatistics", {"DataSourceId": "nope"}))
    assert (status, kind) == (400, "ResourceNotFoundException")
    status, kind, _ = error(request(app, "GetMLModelInsights", {"MLModelId": 7}))
    assert (status, kind) == (400, "InvalidInputException")


def test_health_and_other_paths(app: Any) -> None:
    health = asyncio.run(asgi_request(app, {}, b"", method="GET", path="/health"))
    # Liveness only: an unauthenticated caller learns nothing of the server's work or settings.
    assert health.status == 200 and health.json() == {"status": "ok"}
    # GET / leads a browser to the console; the API itself answers POST only.
    home = asyncio.run(asgi_request(app, {}, b"", method="GET", path="/"))
    assert home.status == 307 and home.headers["location"] == "/console/"
    refused = asyncio.run(asgi_request(app, {}, b"", method="PUT", path="/"))
    assert refused.status == 405 and "POST" in refused.headers["allow"]
    assert asyncio.run(asgi_request(app, {}, b"{}", method="POST", path="/other")).status == 404


def test_access_log_is_one_json_line_without_bodies(app: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="emrml.access"):
        app.log.flush()
        caplog.clear()
        response = request(app, "UpdateDataSource", {"DataSourceId": "p-ds", "DataSourceName": "secret-name"})
        app.log.flush()  # lines are written in batches: the server flushes every second
    [record] = [r for r in caplog.records if r.name == "emrml.access"]
    line = json.loads(record.getMessage())
    assert line["request_id"] == response.headers["x-amzn-requestid"]
    assert line["target"] == TARGET_PREFIX + "UpdateDataSource" and line["status"] == 200
    assert line["method"] == "POST" and line["path"] == "/" and line["duration_ms"] > 0
    assert line["access_key_id"] is None and line["client"] == "127.0.0.1:50000"
    assert "secret-name" not in record.getMessage()
    logged = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert len(line["time"]) == 24 and abs(logged.timestamp() - time.time()) < 60


def test_access_log_has_one_line_per_request_of_every_kind(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The API handler notes its own requests, the middleware the others: each request once, as answered.
    with caplog.at_level(logging.INFO, logger="emrml.access"):
        app.log.flush()
        caplog.clear()
        refused = request(app, "GetMLModel", {"MLModelId": "nope"})
        health = asyncio.run(asgi_request(app, {}, b"", method="GET", path="/health"))
        app.log.flush()
    lines = [json.loads(line) for r in caplog.records for line in r.getMessage().splitlines()]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/", 400),
        ("GET", "/health", health.status),
    ]
    assert lines[0]["request_id"] == refused.headers["x-amzn-requestid"]
    assert lines[0]["target"] == TARGET_PREFIX + "GetMLModel" and lines[1]["target"] is None
    assert len({line["request_id"] for line in lines}) == 2


def test_access_log_writes_batches_and_samples(caplog: pytest.LogCaptureFixture) -> None:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "emrml.access"]

    with caplog.at_level(logging.INFO, logger="emrml.access"):
        log = AccessLog(batch=3)
        batched = LoggedRequests(ok, log)
        for _ in range(2):
            asyncio.run(asgi_request(batched, {}, b"{}"))
        assert records() == []  # kept until the batch is full
        asyncio.run(asgi_request(batched, {}, b"{}"))
        [record] = records()  # three requests, one write
        lines = record.getMessage().splitlines()
        assert len(lines) == 3 and all(json.loads(line)["status"] == 200 for line in lines)
        caplog.clear()
        asyncio.run(asgi_request(batched, {}, b"{}"))
        log.flush()
        assert len(records()) == 1 and len(records()[0].getMessage().splitlines()) == 1
        caplog.clear()
        for unlogged in (AccessLog(batch=1, sample=0.0), AccessLog(batch=0)):
            asyncio.run(asgi_request(LoggedRequests(ok, unlogged), {}, b"{}"))
            unlogged.flush()
        assert records() == []


def test_access_log_flushed_from_a_thread_writes_each_line_once(caplog: pytest.LogCaptureFixture) -> None:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    log = AccessLog(batch=1_000_000)
    logged = LoggedRequests(ok, log)
    stop = threading.Event()

    def flush_often() -> None:  # as the server's thread does every second
        while not stop.is_set():
            log.flush()

    async def requests() -> None:
        for _ in range(2000):
            await asgi_request(logged, {}, b"{}")

    with caplog.at_level(logging.INFO, logger="emrml.access"):
        flusher = threading.Thread(target=flush_often)
        flusher.start()
        try:
            asyncio.run(requests())
        finally:
            stop.set()
            flusher.join()
        log.flush()
    ids = [json.loads(line)["request_id"] for r in caplog.records for line in r.getMessage().splitlines()]
    assert len(ids) == len(set(ids)) == 2000


# ---------------------------------------------------------------------------------------------- scheduler


class FakeJobs:
    """Stands in for JobRunner: records which jobs were run; a job ends when the test releases it."""

    def __init__(self, pending: list[tuple[str, str]]) -> None:
        self.queue = pending
        self.started: list[tuple[str, str]] = []
        self.release = threading.Event()
        self.recovered = 0
        self.interrupted: list[tuple[str, str]] = []

    def pending(self) -> list[tuple[str, str]]:
        return [job for job in self.queue if job not in self.started]

    def recover(self) -> None:
        self.recovered += 1

    def dependencies_settled(self, kind: str, entity: Any) -> bool:
        return True

    def run_if_queued(self, kind: str, entity_id: str) -> None:
        self.started.append((kind, entity_id))
        self.release.wait(10)

    def interrupt(self) -> list[tuple[str, str]]:
        """The server's stop: the jobs still running end (here, released) and are queued again."""
        self.interrupted = [job for job in self.started if job in self.queue]
        self.release.set()
        return self.interrupted


def _until(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_scheduler_respects_slots_and_dependencies(tmp_path: Path) -> None:
    service = EmrML(Settings.load(environ={}, home=tmp_path, data_roots=(Path("/"),)))
    try:
        for entity_id in ("s-ds1", "s-ds2"):
            service.call(
                "CreateDataSourceFromS3",
                {
                    "DataSourceId": entity_id,
                    "DataSpec": {"DataLocationS3": "/x", "DataSchema": SCHEMA},
                    "ComputeStatistics": True,
                },
            )
        service.call(
            "CreateMLModel",
            {"MLModelId": "s-model", "MLModelType": "BINARY", "TrainingDataSourceId": "s-ds1"},
        )
        fake = FakeJobs([("DataSource", "s-ds1"), ("DataSource", "s-ds2"), ("MLModel", "s-model")])
        service.jobs = fake  # type: ignore[assignment]
        scheduler = JobScheduler(service, slots=1, poll_seconds=0.05)
        scheduler.start()
        assert _until(lambda: fake.started == [("DataSource", "s-ds1")])
        time.sleep(0.2)
        assert fake.started == [("DataSource", "s-ds1")]  # one slot: the second job waits
        assert scheduler.running == [("DataSource", "s-ds1")] and fake.recovered >= 1
        fake.release.set()
        # The model's datasource is still PENDING in the metastore, so only the other datasource starts.
        assert _until(lambda: ("DataSource", "s-ds2") in fake.started)
        assert ("MLModel", "s-model") not in fake.started
        with service.sessions() as session, session.begin():
            entity = session.get(DataSource, "s-ds1")
            entity.status, entity.finished_at = "COMPLETED", now()
        scheduler.wake()
        assert _until(lambda: ("MLModel", "s-model") in fake.started)
        assert scheduler.stop(timeout=5) == []
    finally:
        service.close()


def test_scheduler_stop_returns_jobs_still_running(tmp_path: Path) -> None:
    service = EmrML(Settings.load(environ={}, home=tmp_path, data_roots=(Path("/"),)))
    try:
        fake = FakeJobs([("DataSource", "x-1")])
        service.jobs = fake  # type: ignore[assignment]
        scheduler = JobScheduler(service, slots=2, poll_seconds=0.05)
        scheduler.start()
        assert _until(lambda: fake.started == [("DataSource", "x-1")])
        started = time.monotonic()
        assert scheduler.stop(timeout=0.3) == [("DataSource", "x-1")]
        assert time.monotonic() - started < 2
        assert fake.interrupted == [("DataSource", "x-1")]  # stopped and queued again, not left running
    finally:
        service.close()


@pytest.mark.parametrize(
    "prediction",
    [
        {"predictedLabel": "ñandú ✓", "predictedScores": {"ñandú ✓": 0.1, 'b"\\': 1e-300}},
        {"predictedValue": 1e16},
        {"predictedValue": -1.7976931348623157e308},
        {"predictedLabel": "1", "predictedScores": {"1": 0.30000000000000004}},
    ],
)
def test_predict_answers_encode_like_every_other_answer(prediction: dict[str, Any]) -> None:
    # Predict's fast encoder must give the same JSON (same values, same UTF-8 text) as the others'.
    answer = {"Prediction": {"details": {"PredictiveModelType": "BINARY", "Algorithm": "SGD"}, **prediction}}
    fast, usual = encode_response(answer, "Predict"), encode_response(answer)
    assert json.loads(fast) == json.loads(usual) == answer
    assert ("ñandú".encode() in fast) == ("ñandú".encode() in usual)  # UTF-8, not \u escapes


def test_a_number_that_is_not_finite_is_never_written_as_null() -> None:
    with pytest.raises(ValueError):
        encode_response({"Score": float("nan")}, "GetMLModel")


@pytest.mark.parametrize(
    ("member", "document"),
    [
        ("DataSchema", json.dumps({**XY_SCHEMA, "version": "\ud800"})),
        (
            "DataRearrangement",
            json.dumps({"splitting": {"percentBegin": 0, "percentEnd": 50, "strategy": "\udc00"}}),
        ),
    ],
)
def test_a_lone_surrogate_inside_a_json_document_member_is_an_input_error(
    app: Any, service: EmrML, member: str, document: str
) -> None:
    """The body is valid JSON, its member a string of JSON whose own \\u escape is a lone surrogate: refused
    naming the member. (The error quoting the surrogate could not be encoded: the request got no answer.)"""
    spec = {"DataLocationS3": "/x.csv", "DataSchema": SCHEMA, member: document}
    answer = request(app, "CreateDataSourceFromS3", {"DataSourceId": "p-lone", "DataSpec": spec})
    status, kind, message = error(answer)
    assert (status, kind) == (400, "InvalidInputException")
    assert message.startswith(f"DataSpec.{member} has a \\u escape of an unpaired UTF-16 surrogate")
    with pytest.raises(ResourceNotFoundException):
        service.call("GetDataSource", {"DataSourceId": "p-lone"})


def test_an_error_quoting_a_lone_surrogate_is_still_answered() -> None:
    """A message may quote text from outside any request (a file name that is not UTF-8, as os.listdir
    gives it): the answer goes out, the surrogate replaced."""
    body = json.loads(encode_error(InvalidInputException("file 'a\udcffb.csv' is empty")))
    assert body == {"__type": "InvalidInputException", "message": "file 'a?b.csv' is empty"}
