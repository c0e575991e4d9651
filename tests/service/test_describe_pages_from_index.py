"""Describe* sorted by a name or location reads its page from an index (migration 0020), on 3,000
objects: no metastore sorts the whole table for a page, and the pages list what sorting does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.rows import DataSource, MLModel
from metastores import Templates

ROWS = 3000
#: Names as Describe* must sort them: missing and "" alike (as ""), case apart ("B" < "a"), many tied,
#: and long ones sharing their first 255 characters (MySQL's and MariaDB's sort key), which only the
#: characters after tell apart.
LONG = "x" * 255


def _name(i: int) -> str | None:
    if i % 97 == 0:
        return None
    if i % 89 == 0:
        return ""
    if i % 13 == 0:
        return LONG + ("b" if i % 2 else "B") + str(i % 5)
    return f"{'N' if i % 5 == 0 else 'n'}ame-{i % 700:04d}"


def _fill(engine: Engine) -> None:
    common = {"status": "COMPLETED", "request": "{}", "created_by": "arn:aws:iam::000000000000:root"}
    # Ids not in insertion order, and "A" and "a" apart.
    ids = [f"{'A' if i % 3 else 'a'}-{i * 7919 % 10_007:05d}" for i in range(ROWS)]
    sources = [
        {
            **common,
            "id": f"ds-{ids[i]}",
            "name": _name(i),
            "status": "DELETED" if i % 50 == 0 else "COMPLETED",
            "created_at": 1_700_000_000.0 + i,
            "last_updated_at": 1_700_000_000.0 + i,
            "data_location": f"s3://b/{i % 400:04d}.csv",
            "compute_statistics": False,
        }
        for i in range(ROWS)
    ]
    models = [
        {
            **common,
            "id": f"ml-{ids[i]}",
            "name": _name(i),
            "created_at": 1_700_000_000.0 + i,
            "last_updated_at": 1_700_000_000.0 + i,
            "input_data_location": None if i % 101 == 0 else f"s3://b/{i % 400:04d}.csv",
            "model_type": "BINARY",
            "training_data_source_id": f"ds-{ids[i]}",
            "training_parameters": "{}",
        }
        for i in range(ROWS)
    ]
    with engine.begin() as connection:
        connection.execute(insert(DataSource), sources)
        connection.execute(insert(MLModel), models)
    with engine.begin() as connection:
        for table in ("data_sources", "ml_models"):
            mysql = engine.dialect.name in ("mysql", "mariadb")
            connection.exec_driver_sql(f"ANALYZE TABLE {table}" if mysql else f"ANALYZE {table}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "mariadb"])
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, metastore_templates: Templates
) -> Iterator[EmrML]:
    folder = tmp_path_factory.mktemp("describe-pages")
    for url in metastore_templates.new_metastore(request.param, folder):
        app = EmrML(Settings.load(environ={}, home=folder / "home", metastore_url=url))
        try:
            _fill(app.engine)
            yield app
        finally:
            app.close()


def _plans(app: EmrML, operation: str, request: dict[str, Any]) -> list[list[str]]:
    """The plan of each query ``operation`` runs for ``request``, a line of text per row."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(app.engine, "before_cursor_execute", record)
    try:
        app.call(operation, request)
    finally:
        event.remove(app.engine, "before_cursor_execute", record)
    explain = "EXPLAIN QUERY PLAN" if app.engine.dialect.name == "sqlite" else "EXPLAIN"
    with app.engine.connect() as connection:
        return [
            [
                json.dumps([str(value) for value in row])
                for row in connection.exec_driver_sql(f"{explain} {s}", p)
            ]
            for s, p in seen
        ]


def _assert_read_from_an_index(app: EmrML, operation: str, request: dict[str, Any]) -> None:
    plans = _plans(app, operation, request)
    dialect = app.engine.dialect.name
    if dialect == "postgresql":
        # The page read in order from an index: no Sort (nor Incremental Sort) over what was read.
        [plan] = plans
        assert not any("Sort" in line for line in plan), (request, plan)
    elif dialect == "sqlite":
        [plan] = plans
        assert not any("TEMP B-TREE" in line for line in plan), (request, plan)
        assert any("USING INDEX" in line and "_id" in line for line in plan), (request, plan)
    else:
        # The range of sort keys read in order from the key's index, then the page's objects only (of
        # the key's range: a page and the objects whose key ties with its last one's) read and sorted.
        [keys], [page] = plans
        _, _, _, access, _, index, _, _, rows, extra = json.loads(keys)
        assert index.endswith("_sort") and "filesort" not in extra, (request, keys)
        _, _, _, access, _, index, _, _, rows, extra = json.loads(page)
        assert (access, index.endswith("_sort")) == ("range", True), (request, page)
        assert int(rows) < ROWS / 4, (request, page)


def _sorted_ids(app: EmrML, operation: str, request: dict[str, Any], member: str) -> list[str]:
    """Every id of the listing, a page of 7 at a time."""
    seen, token = [], None
    while True:
        page = app.call(operation, {**request, "Limit": 7, **({"NextToken": token} if token else {})})
        seen += [item[member] for item in page["Results"]]
        token = page.get("NextToken")
        if not token:
            return seen


#: Filters whose range of sort keys the pages are read in: by the name (including names of 255 "x" and
#: more, one key on MySQL and MariaDB), or by the location.
NAME_FILTERS = [{"GE": LONG + "b"}, {"LT": "name-0100"}, {"Prefix": "name-01"}, {"EQ": ""}, {"Prefix": LONG}]
LOCATION_FILTERS = [
    {"GE": "s3://b/0300"},
    {"Prefix": "s3://b/01"},
    {"EQ": "s3://b/0007.csv"},
    {"LE": "s3://b/0005.csv"},
]
HOLDS = {
    "GE": lambda value, bound: value >= bound,
    "LT": lambda value, bound: value < bound,
    "LE": lambda value, bound: value <= bound,
    "EQ": lambda value, bound: value == bound,
    "Prefix": lambda value, prefix: value.startswith(prefix),
}


@pytest.mark.parametrize(
    ("operation", "variable", "field", "member"),
    [
        ("DescribeDataSources", "Name", "name", "DataSourceId"),
        ("DescribeDataSources", "DataLocationS3", "data_location", "DataSourceId"),
        ("DescribeMLModels", "TrainingDataURI", "input_data_location", "MLModelId"),
        ("DescribeMLModels", "Name", "name", "MLModelId"),
    ],
)
@pytest.mark.parametrize("sort", ["asc", "dsc"])
def test_pages_sorted_by_text_are_read_from_an_index(
    filled: EmrML, operation: str, variable: str, field: str, member: str, sort: str
) -> None:
    app = filled
    request = {"FilterVariable": variable, "SortOrder": sort}
    first = app.call(operation, {**request, "Limit": 100})
    later = app.call(operation, {**request, "Limit": 100, "NextToken": first["NextToken"]})
    _assert_read_from_an_index(app, operation, {**request, "Limit": 100})
    _assert_read_from_an_index(app, operation, {**request, "Limit": 100, "NextToken": later["NextToken"]})
    # What the pages list: the objects not deleted (whose value holds the filter), by their value ("" for
    # none), then by id.
    table = DataSource if operation == "DescribeDataSources" else MLModel
    with app.sessions() as session:
        rows = sorted(
            (
                (getattr(row, field) or "", row.id)
                for row in session.query(table).filter(table.status != "DELETED")
            ),
            reverse=sort == "dsc",
        )
    assert _sorted_ids(app, operation, request, member) == [entity_id for _, entity_id in rows]
    for comparators in NAME_FILTERS if variable == "Name" else LOCATION_FILTERS:
        [(comparator, bound)] = comparators.items()
        expected = [entity_id for value, entity_id in rows if HOLDS[comparator](value, bound)]
        assert expected, comparators
        assert _sorted_ids(app, operation, {**request, **comparators}, member) == expected, comparators


def test_a_mariadb_page_whose_key_range_fell_short_reads_on(
    tmp_path: Path, metastore_templates: Templates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At READ COMMITTED, objects deleted between the read of the key range and the page's leave the range
    short of a page: the page reads on past it rather than end the listing early."""
    from emrml.service import describe

    found = describe._sort_key_range

    def short(*args: Any, **kwargs: Any) -> Any:
        start, end = found(*args, **kwargs)
        assert end  # 12 objects: the page of 5 ends before the last
        return start, [describe.literal_column("data_sources.name_sort") <= "n-01"]

    for url in metastore_templates.new_metastore("mariadb", tmp_path):
        app = EmrML(Settings.load(environ={}, home=tmp_path / "home", metastore_url=url))
        try:
            with app.engine.begin() as connection:
                connection.execute(insert(DataSource), [_source(i) for i in range(12)])
            monkeypatch.setattr(describe, "_sort_key_range", short)
            page = app.call("DescribeDataSources", {"FilterVariable": "Name", "Limit": 5})
            assert [item["Name"] for item in page["Results"]] == [f"n-{i:02d}" for i in range(5)]
            assert "NextToken" in page
        finally:
            app.close()


def _source(i: int) -> dict[str, Any]:
    return {
        "id": f"ds-{i:02d}",
        "name": f"n-{i:02d}",
        "status": "COMPLETED",
        "request": "{}",
        "created_by": "arn:aws:iam::000000000000:root",
        "created_at": 1_700_000_000.0 + i,
        "last_updated_at": 1_700_000_000.0 + i,
        "data_location": "s3://b/x.csv",
        "compute_statistics": False,
    }
