"""Request validation, idempotency, Get/Update/Delete and tags over a real metastore."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from operations_helpers import SCHEMA, create, ids, installation_on

from emrml.config import Settings
from emrml.errors import (
    IdempotentParameterMismatchException,
    InvalidInputException,
    InvalidTagException,
    ResourceNotFoundException,
    TagLimitExceededException,
)
from emrml.service import operations, tags
from emrml.service.app import EmrML
from emrml.service.validation import EXTENSION_MEMBERS, input_shape, optional_string, validate_request
from metastores import Templates


def test_create_is_pending_and_get_shows_the_api_shape(app: EmrML) -> None:
    assert create(app, "ds-1", "first") == {"DataSourceId": "ds-1"}
    got = app.call("GetDataSource", {"DataSourceId": "ds-1", "Verbose": True})
    assert got["Status"] == "PENDING"
    assert got["Name"] == "first"
    assert got["DataLocationS3"] == "/data/x.csv"
    assert got["CreatedByIamUser"] == "arn:aws:iam::000000000000:root"
    assert got["ComputeStatistics"] is False
    assert "StartedAt" not in got and "FinishedAt" not in got and "ComputeTime" not in got
    assert got["CreatedAt"] == got["LastUpdatedAt"]
    assert got["DataSourceSchema"] == SCHEMA  # the request's, until the job has validated it
    assert "DataSourceSchema" not in app.call("GetDataSource", {"DataSourceId": "ds-1"})
    without_schema = {"DataSourceId": "ds-2", "DataSpec": {"DataLocationS3": "/data/x.csv"}}
    app.call("CreateDataSourceFromS3", without_schema)
    assert "DataSourceSchema" not in app.call("GetDataSource", {"DataSourceId": "ds-2", "Verbose": True})


def test_identical_create_is_a_safe_retry_and_a_different_one_a_mismatch(app: EmrML) -> None:
    create(app, "ds-1", "same")
    first = app.call("GetDataSource", {"DataSourceId": "ds-1"})
    assert create(app, "ds-1", "same") == {"DataSourceId": "ds-1"}
    assert app.call("GetDataSource", {"DataSourceId": "ds-1"})["CreatedAt"] == first["CreatedAt"]
    with pytest.raises(IdempotentParameterMismatchException, match="ds-1"):
        create(app, "ds-1", "other name")
    with pytest.raises(IdempotentParameterMismatchException):
        create(app, "ds-1", "same", ComputeStatistics=True)
    with pytest.raises(IdempotentParameterMismatchException):
        create(app, "ds-1")  # a member missing in one of the two calls differs too


def test_a_reused_id_is_checked_before_the_rest_of_the_request(app: EmrML) -> None:
    create(app, "ds-1", "same")
    bad_split = {"DataLocationS3": "/data/x.csv", "DataSchema": SCHEMA, "DataRearrangement": "{nope"}
    with pytest.raises(IdempotentParameterMismatchException, match="ds-1"):
        app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-1", "DataSpec": bad_split})
    with pytest.raises(IdempotentParameterMismatchException, match="ds-1"):
        create(app, "ds-1", "same", Bogus=1)
    # A new id with the same bad request is refused for what is wrong with it.
    with pytest.raises(InvalidInputException, match="DataRearrangement"):
        app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-2", "DataSpec": bad_split})


def _in_step(function):
    """``function`` made to wait, the first time each of two threads calls it, until both have called it:
    two requests then both pass their "does it exist yet?" check before either writes."""
    barrier, local = threading.Barrier(2, timeout=10), threading.local()

    def stepped(*args, **kwargs):
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait()
        return function(*args, **kwargs)

    return stepped


def _together(*calls):
    """Run the calls on two threads at once; each one's result, or the exception it raised."""
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.exception() or future.result() for future in futures]


def test_creates_racing_for_one_id_get_the_answers_of_a_retry(app: EmrML, monkeypatch) -> None:
    """Two Creates of one new id that both find it free: the loser of the insert is answered as a retry
    of the winner (the same response, or IdempotentParameterMismatchException), never an internal error."""
    monkeypatch.setattr(operations, "now", _in_step(operations.now))
    assert (
        _together(lambda: create(app, "ds-1", "same"), lambda: create(app, "ds-1", "same"))
        == [{"DataSourceId": "ds-1"}] * 2
    )
    answers = _together(lambda: create(app, "ds-2", "one"), lambda: create(app, "ds-2", "other"))
    assert {"DataSourceId": "ds-2"} in answers
    assert any(isinstance(answer, IdempotentParameterMismatchException) for answer in answers), answers
    monkeypatch.undo()
    assert len(ids(app.call("DescribeDataSources", {}))) == 2


def test_tags_racing_for_one_key_overwrite_it(app: EmrML, monkeypatch) -> None:
    create(app, "ds-1")
    target = {"ResourceId": "ds-1", "ResourceType": "DataSource"}
    # Both reach the lock that makes tag changes of one object wait for each other at once.
    monkeypatch.setattr(tags, "lock_row", _in_step(tags.lock_row))

    def tag(value: str):
        return lambda: app.call("AddTags", {**target, "Tags": [{"Key": "team", "Value": value}]})

    assert _together(tag("risk"), tag("growth")) == [target] * 2
    monkeypatch.undo()
    assert app.call("DescribeTags", target)["Tags"] in (
        [{"Key": "team", "Value": "risk"}],
        [{"Key": "team", "Value": "growth"}],
    )


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"DataSpec": {"DataLocationS3": "/x"}}, "DataSourceId is required"),
        ({"DataSourceId": "bad id!", "DataSpec": {"DataLocationS3": "/x"}}, "does not match the pattern"),
        ({"DataSourceId": "x" * 65, "DataSpec": {"DataLocationS3": "/x"}}, "at most 64"),
        ({"DataSourceId": "ok", "DataSpec": {}}, "DataSpec.DataLocationS3 is required"),
        ({"DataSourceId": "ok", "DataSpec": {"DataLocationS3": 3}}, "must be a string"),
        ({"DataSourceId": "ok", "DataSpec": {"DataLocationS3": "/x"}, "Bogus": 1}, "Bogus is not a member"),
        (
            {"DataSourceId": "ok", "DataSpec": {"DataLocationS3": "/x"}, "ComputeStatistics": "yes"},
            "true or false",
        ),
        (
            {"DataSourceId": "ok", "DataSpec": {"DataLocationS3": "/x", "DataRearrangement": "{nope"}},
            "^DataSpec.DataRearrangement is not valid JSON",
        ),
    ],
)
def test_bad_create_requests_name_the_member(sqlite_app: EmrML, request_body: dict, message: str) -> None:
    # Refused by the request's own checks, alike on every metastore: on SQLite alone, a new installation
    # per case being 1-3 s on PostgreSQL and MariaDB.
    with pytest.raises(InvalidInputException, match=message):
        sqlite_app.call("CreateDataSourceFromS3", request_body)
    assert sqlite_app.call("DescribeDataSources", {})["Results"] == []


def test_get_update_delete(app: EmrML) -> None:
    with pytest.raises(ResourceNotFoundException, match="nope"):
        app.call("GetDataSource", {"DataSourceId": "nope"})
    create(app, "ds-1", "before")
    before = app.call("GetDataSource", {"DataSourceId": "ds-1"})
    assert app.call("UpdateDataSource", {"DataSourceId": "ds-1", "DataSourceName": "after"}) == {
        "DataSourceId": "ds-1"
    }
    after = app.call("GetDataSource", {"DataSourceId": "ds-1"})
    assert after["Name"] == "after" and after["LastUpdatedAt"] >= before["LastUpdatedAt"]
    app.call("DeleteDataSource", {"DataSourceId": "ds-1"})
    deleted = app.call("GetDataSource", {"DataSourceId": "ds-1"})
    assert deleted["Status"] == "DELETED"
    # Deleted again: a safe retry, answered as the first, changing nothing.
    assert app.call("DeleteDataSource", {"DataSourceId": "ds-1"}) == {"DataSourceId": "ds-1"}
    assert app.call("GetDataSource", {"DataSourceId": "ds-1"}) == deleted
    with pytest.raises(InvalidInputException, match="DELETED"):
        app.call("UpdateDataSource", {"DataSourceId": "ds-1", "DataSourceName": "again"})
    with pytest.raises(ResourceNotFoundException):
        app.call("DeleteDataSource", {"DataSourceId": "missing"})
    # the id stays reserved: an identical retry is still answered, a different one is a mismatch
    assert create(app, "ds-1", "before") == {"DataSourceId": "ds-1"}
    with pytest.raises(IdempotentParameterMismatchException):
        create(app, "ds-1", "new")


def test_a_deleted_object_named_by_a_create_is_said_to_be_deleted(app: EmrML) -> None:
    # It was refused as if it did not exist ("no such DataSource"), though GetDataSource shows it DELETED.
    create(app, "ds-1", ComputeStatistics=True)
    app.call("DeleteDataSource", {"DataSourceId": "ds-1"})
    request = {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-1"}
    with pytest.raises(InvalidInputException, match="TrainingDataSourceId 'ds-1': the DataSource is DELETED"):
        app.call("CreateMLModel", request)
    with pytest.raises(InvalidInputException, match="TrainingDataSourceId 'ds-2': no such DataSource"):
        app.call("CreateMLModel", {**request, "TrainingDataSourceId": "ds-2"})


def test_tags(app: EmrML) -> None:
    create(app, "ds-1")
    target = {"ResourceId": "ds-1", "ResourceType": "DataSource"}
    app.call("AddTags", {**target, "Tags": [{"Key": "team", "Value": "risk"}, {"Key": "flag"}]})
    app.call("AddTags", {**target, "Tags": [{"Key": "team", "Value": "growth"}]})
    assert app.call("DescribeTags", target)["Tags"] == [{"Key": "team", "Value": "growth"}, {"Key": "flag"}]
    app.call("DeleteTags", {**target, "TagKeys": ["flag", "unknown"]})
    assert app.call("DescribeTags", target)["Tags"] == [{"Key": "team", "Value": "growth"}]
    with pytest.raises(InvalidTagException, match="reserved"):
        app.call("AddTags", {**target, "Tags": [{"Key": "aws:x", "Value": "v"}]})
    # DeleteTags refuses the reserved prefix as AddTags does, and deletes nothing then.
    with pytest.raises(InvalidTagException, match="'AWS:x': keys starting with 'aws:' are reserved"):
        app.call("DeleteTags", {**target, "TagKeys": ["team", "AWS:x"]})
    assert app.call("DescribeTags", target)["Tags"] == [{"Key": "team", "Value": "growth"}]
    with pytest.raises(InvalidTagException, match="Key"):
        app.call("AddTags", {**target, "Tags": [{"Key": "bad{key}", "Value": "v"}]})
    with pytest.raises(InvalidTagException, match="Value"):
        app.call("AddTags", {**target, "Tags": [{"Key": "k", "Value": "v" * 257}]})
    with pytest.raises(TagLimitExceededException, match="50"):
        app.call("AddTags", {**target, "Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(50)]})
    assert len(app.call("DescribeTags", target)["Tags"]) == 1  # the refused call changed nothing
    with pytest.raises(ResourceNotFoundException):
        app.call("DescribeTags", {"ResourceId": "nope", "ResourceType": "DataSource"})
    with pytest.raises(InvalidInputException, match="ResourceType"):
        app.call("DescribeTags", {"ResourceId": "ds-1", "ResourceType": "Bucket"})
    app.call("DeleteDataSource", {"DataSourceId": "ds-1"})
    with pytest.raises(InvalidInputException, match="DELETED"):
        app.call("AddTags", {**target, "Tags": [{"Key": "late", "Value": "v"}]})


def test_tag_keys_differing_in_trailing_blanks_are_two_tags(app: EmrML) -> None:
    """Keys compare exactly on every metastore: MariaDB's padding made "a" and "a " one key (an internal
    error adding the second, and DeleteTags of one deleted the other)."""
    create(app, "ds-1")
    target = {"ResourceId": "ds-1", "ResourceType": "DataSource"}
    app.call("AddTags", {**target, "Tags": [{"Key": "a", "Value": "1"}]})
    app.call("AddTags", {**target, "Tags": [{"Key": "a ", "Value": "2"}, {"Key": "b"}, {"Key": "b "}]})
    assert app.call("DescribeTags", target)["Tags"] == [
        {"Key": "a", "Value": "1"},
        {"Key": "a ", "Value": "2"},
        {"Key": "b"},
        {"Key": "b "},
    ]
    app.call("DeleteTags", {**target, "TagKeys": ["a ", "b"]})
    assert app.call("DescribeTags", target)["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b "}]


def test_concurrent_add_tags_keep_to_the_limit(settings: Settings, monkeypatch) -> None:
    # Two AddTags of 30 new tags each, on an object without tags: each counted the tags before the other
    # added its own, and both were accepted (60 tags). Reading the tags is slowed so that the calls overlap.
    apps = [EmrML(settings), EmrML(settings)]
    try:
        create(apps[0], "ds-1")
        target = {"ResourceId": "ds-1", "ResourceType": "DataSource"}
        read = tags._tags
        monkeypatch.setattr(tags, "_tags", lambda *args: (read(*args), time.sleep(0.5))[0])

        def add(app: EmrML, prefix: str):
            request = {**target, "Tags": [{"Key": f"{prefix}{k}", "Value": "v"} for k in range(30)]}
            return lambda: app.call("AddTags", request)

        answers = _together(add(apps[0], "a"), add(apps[1], "b"))
        assert target in answers, answers
        assert any(isinstance(answer, TagLimitExceededException) for answer in answers), answers
        monkeypatch.undo()
        assert len(apps[0].call("DescribeTags", target)["Tags"]) == 30
    finally:
        for app in apps:
            app.close()


@pytest.mark.parametrize(
    ("operation", "member"),
    [
        ("GetDataSourceStatistics", "DataSourceId"),
        ("GetMLModelInsights", "MLModelId"),
        ("GetMLModelInputs", "MLModelId"),
        ("GetEvaluationInsights", "EvaluationId"),
        ("GetStream", "StreamId"),
        ("StopStream", "StreamId"),
    ],
)
def test_extension_operations_check_ids_like_amazon_ones(
    sqlite_app: EmrML, operation: str, member: str
) -> None:
    # A malformed id is bad input naming the member, as in GetDataSource, not a missing object. (The id's
    # checks are the request's, alike on every metastore: on SQLite alone.)
    app = sqlite_app
    with pytest.raises(InvalidInputException, match=f"{member} 'a/b' does not match the pattern"):
        app.call(operation, {member: "a/b"})
    with pytest.raises(InvalidInputException, match=f"{member} must have at most 64 characters"):
        app.call(operation, {member: "x" * 65})
    with pytest.raises(InvalidInputException, match=f"{member} must have at least 1 character"):
        app.call(operation, {member: ""})
    with pytest.raises(ResourceNotFoundException):
        app.call(operation, {member: "well-formed"})


_CREDENTIALS = {"Username": "analyst", "Password": "secret-password"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def one_source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, metastore_templates: Templates
) -> Iterator[EmrML]:
    """An installation per metastore with the datasource ``ds-1``, which the tests of refused text share."""
    with installation_on(request, tmp_path_factory.mktemp("one-source"), metastore_templates) as app:
        create(app, "ds-1", "before")
        yield app


@pytest.mark.parametrize(
    ("operation", "request_body", "member"),
    [
        ("UpdateDataSource", {"DataSourceId": "ds-1", "DataSourceName": "a\x00b"}, "DataSourceName"),
        ("DescribeDataSources", {"FilterVariable": "Name", "EQ": "a\x00b"}, "EQ"),
        ("DescribeDataSources", {"FilterVariable": "DataLocationS3", "Prefix": "\x00"}, "Prefix"),
        (
            "CreateDataSourceFromRDS",
            {
                "DataSourceId": "ds-rds",
                "RoleARN": "arn:aws:iam::000000000000:role/ml",
                "RDSData": {
                    "DatabaseInformation": {"InstanceIdentifier": "db", "DatabaseName": "bank"},
                    "SelectSqlQuery": "SELECT 1\x00",
                    "DatabaseCredentials": _CREDENTIALS,
                    "S3StagingLocation": "/data/",
                    "ResourceRole": "r",
                    "ServiceRole": "s",
                    "SubnetId": "subnet-1",
                    "SecurityGroupIds": ["sg-1"],
                },
            },
            "RDSData.SelectSqlQuery",
        ),
    ],
)
def test_text_holding_a_nul_character_is_bad_input_on_every_metastore(
    one_source: EmrML, operation: str, request_body: dict, member: str
) -> None:
    """PostgreSQL cannot store or compare text with NUL in it: refused before the metastore sees it, on
    every metastore alike, naming the member."""
    app = one_source
    with pytest.raises(InvalidInputException, match=rf"^{re.escape(member)} holds a NUL character"):
        app.call(operation, request_body)
    with pytest.raises(InvalidInputException, match=r"^DataSourceName holds a NUL character"):
        create(app, "ds-2", "a\x00b")
    assert ids(app.call("DescribeDataSources", {})) == ["ds-1"]
    assert app.call("GetDataSource", {"DataSourceId": "ds-1"})["Name"] == "before"
    # A Predict record is scored and its endpoint compared, never stored: they are data, whatever they hold.
    record = {"MLModelId": "ml-1", "Record": {"x\x00": "1\x00"}, "PredictEndpoint": "http://h\x00"}
    assert validate_request("Predict", record) is record
    # The extension operations' text is checked alike (CreateStream stores its StreamName).
    with pytest.raises(InvalidInputException, match=r"^StreamName holds a NUL character"):
        optional_string({"StreamName": "a\x00"}, "StreamName")


def test_text_holding_a_lone_surrogate_is_bad_input_naming_the_member(sqlite_app: EmrML) -> None:
    """A CLI argument of bytes that are not UTF-8 reaches the service as lone surrogates (the JSON API's
    reader refuses them): the metastore failed to store them with an internal UnicodeEncodeError."""
    schema = '{"attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}]}'
    for location in ("s3://bucket/k\udc80.csv", "/data/k\udc80.csv"):
        request = {"DataSourceId": "ds-s", "DataSpec": {"DataLocationS3": location, "DataSchema": schema}}
        with pytest.raises(InvalidInputException) as refused:
            sqlite_app.call("CreateDataSourceFromS3", request)
        assert refused.value.message == (
            "DataSpec.DataLocationS3 holds U+DC80, a lone surrogate code point (what stands for a byte that "
            "is not UTF-8), which no text may hold"
        )
    rds = {
        "DatabaseInformation": {"InstanceIdentifier": "db", "DatabaseName": "bank"},
        "SelectSqlQuery": "SELECT 1",
        "DatabaseCredentials": {"Username": "u", "Password": "secret\ud800"},
        "S3StagingLocation": "/data/",
        "ResourceRole": "r",
        "ServiceRole": "s",
        "SubnetId": "subnet-1",
        "SecurityGroupIds": ["sg-1"],
    }
    request = {"DataSourceId": "ds-r", "RoleARN": "arn:aws:iam::000000000000:role/ml", "RDSData": rds}
    with pytest.raises(
        InvalidInputException, match=r"^RDSData.DatabaseCredentials.Password holds U\+D800"
    ) as refused:
        validate_request("CreateDataSourceFromRDS", request)
    assert "secret" not in refused.value.message
    with pytest.raises(InvalidInputException, match=r"^StreamName holds U\+DFFF"):
        optional_string({"StreamName": "a\udfff"}, "StreamName")
    assert sqlite_app.call("DescribeDataSources", {}) == {"Results": []}


def test_unknown_operation(sqlite_app: EmrML) -> None:
    with pytest.raises(InvalidInputException, match="unknown operation"):
        sqlite_app.call("CreateBucket", {})


def test_metastore_migrates_an_existing_database_idempotently(app: EmrML, tmp_path: Path) -> None:
    create(app, "ds-1", "kept")
    again = EmrML(app.settings)  # a second start runs the migrations again: nothing changes, nothing is lost
    assert again.call("GetDataSource", {"DataSourceId": "ds-1"})["Name"] == "kept"
    again.close()


def test_every_operation_outside_the_api_model_lists_its_members() -> None:
    modelled = {name for name in operations.registered() if input_shape(name) is not None}
    assert set(operations.registered()) - modelled == set(EXTENSION_MEMBERS)


@pytest.mark.parametrize("operation", sorted(EXTENSION_MEMBERS))
def test_an_extension_operation_refuses_a_member_it_does_not_read(app: EmrML, operation: str) -> None:
    """As the Amazon operations refuse a member their shape lacks: a misspelt StartingTimestamp, ignored,
    would start a stream elsewhere than asked; refused before anything is looked up or started."""
    request = {member: "x" for member in EXTENSION_MEMBERS[operation]} | {"StartingTimeStamp": 5}
    with pytest.raises(
        InvalidInputException, match=rf"^StartingTimeStamp is not a member of the {operation}"
    ):
        app.call(operation, request)
    assert app.call("DescribeStreams", {}) == {"Results": []}
