"""Describe* over a real metastore: filters, sort orders and pages, on every metastore (page tokens
that are forged or from another listing, lists that change between pages, text compared by code
point)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from operations_helpers import create, ids, installation_on

from emrml.config import Settings
from emrml.errors import (
    InvalidInputException,
)
from emrml.service.app import EmrML
from metastores import Templates, empty_metastore


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
    with installation_on(request, tmp_path_factory.mktemp("three-sources"), metastore_templates) as app:
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
        # A lone surrogate (json.dumps writes it as a \u escape), which no driver can encode: a 500.
        ({"FilterVariable": "Name"}, ["\ud800", "ds-1"]),
        ({}, [1.5, "ds-\udfff"]),
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


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def four_models(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, metastore_templates: Templates
) -> Iterator[EmrML]:
    """An installation per metastore with four models, which the tests of paging only list: made once for
    all of them."""
    with installation_on(request, tmp_path_factory.mktemp("four-models"), metastore_templates) as app:
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
