"""Request validation, idempotency, Get/Update/Delete, tags and Describe* over a real metastore."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

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
from emrml.service.validation import optional_string, validate_request
from metastores import Templates, empty_metastore
from raw_models import XY_SCHEMA

SCHEMA = json.dumps(XY_SCHEMA)


def create(app: EmrML, entity_id: str, name: str | None = None, location: str = "/data/x.csv", **extra):
    request = {"DataSourceId": entity_id, "DataSpec": {"DataLocationS3": location, "DataSchema": SCHEMA}}
    if name is not None:
        request["DataSourceName"] = name
    request.update(extra)
    return app.call("CreateDataSourceFromS3", request)


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
    with _installation(request, tmp_path_factory.mktemp("one-source"), metastore_templates) as app:
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


def ids(response: dict) -> list[str]:
    return [result["DataSourceId"] for result in response["Results"]]


def test_describe_filters_sort_and_pages(app: EmrML) -> None:
    names = ["2014-09-09-HolidayGiftMailer", "2014-09-10-x", "2015-01-01", "alpha", "beta"]
    for i, name in enumerate(names):
        create(app, f"ds-{i}", name, location=f"/data/{name}.csv")
    assert ids(app.call("DescribeDataSources", {})) == [f"ds-{i}" for i in range(5)]
    for prefix in ("2014-09", "2014-09-09", "2014-09-09-Holiday"):
        found = ids(app.call("DescribeDataSources", {"FilterVariable": "Name", "Prefix": prefix}))
        assert "ds-0" in found and "ds-2" not in found
    by_name = {"FilterVariable": "Name", "SortOrder": "dsc"}
    assert ids(app.call("DescribeDataSources", by_name)) == ["ds-4", "ds-3", "ds-2", "ds-1", "ds-0"]
    assert ids(app.call("DescribeDataSources", {"FilterVariable": "Name", "GE": "alpha"})) == ["ds-3", "ds-4"]
    assert ids(app.call("DescribeDataSources", {"FilterVariable": "Name", "NE": "alpha", "LT": "b"})) == [
        "ds-0",
        "ds-1",
        "ds-2",
    ]
    assert ids(
        app.call("DescribeDataSources", {"FilterVariable": "DataLocationS3", "EQ": "/data/beta.csv"})
    ) == ["ds-4"]
    newest = app.call("GetDataSource", {"DataSourceId": "ds-4"})["CreatedAt"]
    assert len(ids(app.call("DescribeDataSources", {"FilterVariable": "CreatedAt", "LE": str(newest)}))) == 5
    assert ids(app.call("DescribeDataSources", {"FilterVariable": "CreatedAt", "GT": str(newest)})) == []
    iso = app.call("DescribeDataSources", {"FilterVariable": "CreatedAt", "GT": "2001-01-01T00:00:00Z"})
    assert len(iso["Results"]) == 5
    for not_a_time in ("yesterday", "nan", "inf", "-1e400"):
        with pytest.raises(InvalidInputException, match="epoch seconds or ISO-8601"):
            app.call("DescribeDataSources", {"FilterVariable": "CreatedAt", "GT": not_a_time})
    with pytest.raises(InvalidInputException, match="Prefix compares text"):
        app.call("DescribeDataSources", {"FilterVariable": "CreatedAt", "Prefix": "17"})
    with pytest.raises(InvalidInputException, match="FilterVariable"):
        app.call("DescribeDataSources", {"EQ": "x"})
    with pytest.raises(InvalidInputException, match="FilterVariable must be one of"):
        app.call("DescribeDataSources", {"FilterVariable": "Colour", "EQ": "x"})
    with pytest.raises(InvalidInputException, match="Limit must be at most 100"):
        app.call("DescribeDataSources", {"Limit": 500})

    # paging: Limit 2 walks all five in order, tokens are tied to their query
    seen, token, pages = [], None, 0
    while True:
        page = app.call("DescribeDataSources", {"Limit": 2} | ({"NextToken": token} if token else {}))
        seen += ids(page)
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert seen == [f"ds-{i}" for i in range(5)] and pages == 3
    first = app.call("DescribeDataSources", {"Limit": 2})
    with pytest.raises(InvalidInputException, match="NextToken"):
        app.call("DescribeDataSources", {"Limit": 2, "NextToken": first["NextToken"], "SortOrder": "dsc"})
    with pytest.raises(InvalidInputException, match="NextToken"):
        app.call("DescribeDataSources", {"NextToken": "garbage"})

    # DELETED objects are hidden unless asked for by status
    app.call("DeleteDataSource", {"DataSourceId": "ds-3"})
    assert "ds-3" not in ids(app.call("DescribeDataSources", {}))
    assert ids(app.call("DescribeDataSources", {"FilterVariable": "Status", "EQ": "DELETED"})) == ["ds-3"]
    assert len(ids(app.call("DescribeDataSources", {"FilterVariable": "Status", "EQ": "PENDING"}))) == 4


def _reforged(token: str, after: list) -> str:
    """``token`` with another sort value and id: what anyone who decodes a token can send."""
    payload = json.loads(base64.urlsafe_b64decode(token))
    return base64.urlsafe_b64encode(json.dumps({**payload, "after": after}).encode()).decode()


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def three_sources(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, metastore_templates: Templates
) -> Iterator[EmrML]:
    """An installation per metastore with three datasources, which the forged token tests only list."""
    with _installation(request, tmp_path_factory.mktemp("three-sources"), metastore_templates) as app:
        for i in range(3):
            create(app, f"ds-{i}", f"n{i}")
        yield app


@pytest.mark.parametrize(
    ("request_body", "after"),
    [
        ({}, ["a time?", "ds-1"]),  # text for the CreatedAt column
        ({}, [1.5, 7]),  # an id that is not text
        ({"FilterVariable": "Name"}, [5, "ds-1"]),  # a number for a text column
        ({"FilterVariable": "Name"}, ["a\x00", "ds-1"]),
        ({"FilterVariable": "DataLocationS3"}, ["/data/x.csv", "ds-\x00"]),
    ],
)
def test_a_forged_page_token_is_bad_input_on_every_metastore(
    three_sources: EmrML, request_body: dict, after: list
) -> None:
    """A token's sort value must be what its column holds: PostgreSQL refuses to compare text with a number
    (or to bind an integer past 64 bits, or text holding NUL), which was a 500."""
    app = three_sources
    token = app.call("DescribeDataSources", request_body | {"Limit": 1})["NextToken"]
    with pytest.raises(InvalidInputException, match=r"^NextToken is not a token returned by a previous call"):
        app.call("DescribeDataSources", request_body | {"NextToken": _reforged(token, after)})
    assert ids(app.call("DescribeDataSources", request_body | {"NextToken": token})) == ["ds-1", "ds-2"]


def test_a_page_token_continues_its_own_listing_only(app: EmrML) -> None:
    for i in range(2):
        create(app, f"ds-{i}", f"n{i}")
    token = app.call("DescribeDataSources", {"Limit": 1})["NextToken"]
    # Not a cursor for another kind of object, even with the same arguments.
    with pytest.raises(InvalidInputException, match=r"^NextToken was returned by DescribeDataSources;"):
        app.call("DescribeMLModels", {"NextToken": token})
    with pytest.raises(InvalidInputException, match=r"^NextToken belongs to a request with other filter"):
        app.call("DescribeDataSources", {"NextToken": token, "FilterVariable": "Name"})
    # A time past every database's integers is still a time: after it, nothing.
    beyond = _reforged(token, [10**30, "ds-0"])
    assert app.call("DescribeDataSources", {"NextToken": beyond}) == {"Results": []}


def _walk(app: EmrML, request: dict, limit: int, each_page=None) -> list[str]:
    """Every id the pages of DescribeDataSources list, calling ``each_page(ids)`` between pages."""
    seen: list[str] = []
    token = None
    while True:
        page = app.call(
            "DescribeDataSources", request | {"Limit": limit} | ({"NextToken": token} if token else {})
        )
        seen += ids(page)
        if each_page is not None:
            each_page(ids(page))
        token = page.get("NextToken")
        if not token:
            return seen


@pytest.mark.parametrize("sort", ["asc", "dsc"])
def test_pages_never_skip_objects_when_the_list_changes_between_calls(app: EmrML, sort: str) -> None:
    """NextToken continues after the last object listed, not at a position: deleting what each page
    listed (the usual cleanup loop) deletes everything, and creating objects on the way skips none."""
    for i in range(10):
        create(app, f"ds-{i}", "same name" if i % 2 else None)

    def delete_page(listed: list[str]) -> None:
        for entity_id in listed:
            app.call("DeleteDataSource", {"DataSourceId": entity_id})

    deleted = _walk(app, {"SortOrder": sort}, 3, delete_page)
    assert sorted(deleted) == [f"ds-{i}" for i in range(10)]
    assert ids(app.call("DescribeDataSources", {})) == []

    # Sorted by a column with ties (half the names equal, half absent): the id breaks them, page after page.
    for i in range(10, 20):
        create(app, f"ds-{i}", "same name" if i % 2 else None)
    order = ids(app.call("DescribeDataSources", {"FilterVariable": "Name", "SortOrder": sort}))
    late: list[str] = []

    def create_one(listed: list[str]) -> None:
        late.append(f"ds-late-{len(late)}")
        create(app, late[-1], "same name")

    walked = _walk(app, {"FilterVariable": "Name", "SortOrder": sort}, 3, create_one)
    assert [entity_id for entity_id in walked if entity_id not in late] == order
    # and a page that starts after a deleted object still starts where it should
    first = app.call("DescribeDataSources", {"FilterVariable": "Name", "Limit": 2})
    app.call("DeleteDataSource", {"DataSourceId": ids(first)[-1]})
    second = app.call(
        "DescribeDataSources", {"FilterVariable": "Name", "Limit": 2, "NextToken": first["NextToken"]}
    )
    everything = ids(app.call("DescribeDataSources", {"FilterVariable": "Name"}))
    assert ids(second) == everything[1:3]


@contextmanager
def _installation(request: pytest.FixtureRequest, folder: Path, templates: Templates) -> Iterator[EmrML]:
    """An installation on the metastore named by a module-scoped fixture's parameter."""
    for url in templates.new_metastore(request.param, folder):
        app = EmrML(Settings.load(environ={}, home=folder / "home", metastore_url=url))
        try:
            yield app
        finally:
            app.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def four_models(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, metastore_templates: Templates
) -> Iterator[EmrML]:
    """An installation per metastore with four models, which the tests of paging only list: made once for
    all of them."""
    with _installation(request, tmp_path_factory.mktemp("four-models"), metastore_templates) as app:
        create(app, "ds-1", ComputeStatistics=True)
        for i in range(4):
            request_body = {"MLModelId": f"ml-{i}", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-1"}
            app.call("CreateMLModel", request_body)
        yield app


@pytest.mark.parametrize("variable", ["Algorithm", "TrainingDataURI", "MLModelType", "LastUpdatedAt"])
def test_pages_sorted_by_any_filter_variable_list_each_object_once(four_models: EmrML, variable: str) -> None:
    """Constant (Algorithm), text and time sort values, one object per page, both orders."""
    app = four_models
    for sort in ("asc", "dsc"):
        seen, token = [], None
        while True:
            request = {"FilterVariable": variable, "SortOrder": sort, "Limit": 1}
            page = app.call("DescribeMLModels", request | ({"NextToken": token} if token else {}))
            seen += [model["MLModelId"] for model in page["Results"]]
            token = page.get("NextToken")
            if not token:
                break
        expected = [f"ml-{i}" for i in range(4)]
        assert seen == (expected if sort == "asc" else expected[::-1])


def test_a_time_filter_without_an_offset_is_utc(app: EmrML, monkeypatch) -> None:
    """ "2024-05-01T12:00:00" compares as UTC whatever the server's time zone."""
    create(app, "ds-1")
    created = app.call("GetDataSource", {"DataSourceId": "ds-1"})["CreatedAt"]
    just_before = datetime.fromtimestamp(created - 60, UTC).replace(tzinfo=None).isoformat()
    monkeypatch.setenv("TZ", "America/Los_Angeles")  # 7 or 8 hours behind UTC
    time.tzset()
    try:
        after = {"FilterVariable": "CreatedAt", "GT": just_before}
        assert ids(app.call("DescribeDataSources", after)) == ["ds-1"]
        assert ids(app.call("DescribeDataSources", {"FilterVariable": "CreatedAt", "LT": just_before})) == []
    finally:
        monkeypatch.undo()
        time.tzset()


def _named(app: EmrML, request: dict) -> list[str]:
    found = app.call("DescribeDataSources", {"FilterVariable": "Name", **request})["Results"]
    return [item["Name"] for item in found if item["Name"] != "same"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql-english", "mariadb"])
def test_text_filters_compare_and_sort_by_code_point_on_every_metastore(
    kind: str, tmp_path: Path, metastore_templates: Templates
) -> None:
    """Names sort and compare as Python's strings do: not by an English collation (PostgreSQL's default
    on many servers), and without MariaDB's padding, which made EQ "a" match a name "a "."""
    # The English database is made empty (a template's copy keeps the template's locale) and migrated here;
    # the others are copies of the migrated template, their collations with them.
    names = ["apple", "Banana", "b", "_z", "a", "a ", "a\t", "Ä"]
    urls = (
        empty_metastore(kind, tmp_path)
        if kind == "postgresql-english"
        else metastore_templates.new_metastore(kind, tmp_path)
    )
    for url in urls:
        app = EmrML(Settings.load(environ={}, home=tmp_path / "home", metastore_url=url))
        try:
            for i, name in enumerate(names):
                create(app, f"ds-{i}", name)
            create(app, "ds-A", "same")
            create(app, "ds-a", "same")

            assert _named(app, {}) == sorted(names)
            assert _named(app, {"SortOrder": "dsc"}) == sorted(names, reverse=True)
            assert _named(app, {"EQ": "a"}) == ["a"]
            assert _named(app, {"NE": "a", "LT": "b"}) == sorted(n for n in names if n != "a" and n < "b")
            assert _named(app, {"GT": "B"}) == sorted(n for n in names if n > "B")
            tied = app.call("DescribeDataSources", {"FilterVariable": "Name", "EQ": "same"})["Results"]
            assert [item["DataSourceId"] for item in tied] == ["ds-A", "ds-a"]
            walked, token = [], None
            while True:
                page = app.call(
                    "DescribeDataSources",
                    {"FilterVariable": "Name", "Limit": 3, **({"NextToken": token} if token else {})},
                )
                walked += [item["DataSourceId"] for item in page["Results"]]
                token = page.get("NextToken")
                if not token:
                    break
            everything = app.call("DescribeDataSources", {"FilterVariable": "Name"})["Results"]
            assert walked == [item["DataSourceId"] for item in everything]
        finally:
            app.close()


def test_prefix_matches_the_start_exactly_on_every_metastore(app: EmrML) -> None:
    """Prefix is as case-sensitive as EQ (SQLite's LIKE was not), and % _ \\ are plain characters."""
    names = ["Train", "train-2", "50%_off", "50 percent", "a\\b", "ab", "😀 smile", "😀"]
    for i, name in enumerate(names):
        create(app, f"ds-{i}", name)

    def named(prefix: str) -> list[str]:
        found = app.call("DescribeDataSources", {"FilterVariable": "Name", "Prefix": prefix})["Results"]
        return [item["Name"] for item in found]

    assert named("train") == ["train-2"]
    assert named("Train") == ["Train"]
    assert named("TRAIN") == []
    assert named("50%") == ["50%_off"] and named("50%_") == ["50%_off"] and named("5_") == []
    assert named("a\\") == ["a\\b"]
    assert named("😀 ") == ["😀 smile"] and named("😀") == ["😀", "😀 smile"]
    assert len(named("")) == len(names)
    # Algorithm, the same "sgd" for every model, compares as exactly.
    create(app, "ds-stats", ComputeStatistics=True)
    app.call(
        "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-stats"}
    )
    for comparators, found in (
        ({"Prefix": "sg"}, 1),
        ({"Prefix": "SG"}, 0),
        ({"EQ": "SGD"}, 0),
        ({"GT": "s"}, 1),
    ):
        request = {"FilterVariable": "Algorithm", **comparators}
        assert len(app.call("DescribeMLModels", request)["Results"]) == found, comparators


def test_unknown_operation(sqlite_app: EmrML) -> None:
    with pytest.raises(InvalidInputException, match="unknown operation"):
        sqlite_app.call("CreateBucket", {})


def test_metastore_migrates_an_existing_database_idempotently(app: EmrML, tmp_path: Path) -> None:
    create(app, "ds-1", "kept")
    again = EmrML(app.settings)  # a second start runs the migrations again: nothing changes, nothing is lost
    assert again.call("GetDataSource", {"DataSourceId": "ds-1"})["Name"] == "kept"
    again.close()
