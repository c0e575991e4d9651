"""Datasources end to end: real files, codecs, folders, splits, statistics and every kind of bad input.

How a job reads files does not depend on the metastore: those tests run on SQLite alone (``sqlite_app``).
What the metastore stores of a datasource (its schema, statistics, split keys, a failure beside a success)
is tested on every metastore (``app``).
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
from pathlib import Path

import cramjam
import numpy as np
import pytest
import zstandard

from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.rows import DataSource

SCHEMA = {
    "version": "1.0",
    "targetAttributeName": "y",
    "dataFormat": "CSV",
    "dataFileContainsHeader": True,
    "attributes": [
        {"attributeName": "x", "attributeType": "NUMERIC"},
        {"attributeName": "colour", "attributeType": "CATEGORICAL"},
        {"attributeName": "y", "attributeType": "BINARY"},
    ],
}


def build(app: EmrML, entity_id: str, location: Path | str, schema: dict | str = SCHEMA, **spec) -> dict:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": entity_id,
            "DataSpec": {"DataLocationS3": str(location), "DataSchema": text, **spec},
            "ComputeStatistics": True,
        },
    )
    return app.wait("DataSource", entity_id)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def failed(result: dict) -> str:
    assert result["Status"] == "FAILED", result
    assert "Statistics" not in result
    return result["Message"]


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    rows = "".join(f"{i},{'red' if i % 3 else 'blue'},{i % 2}\n" for i in range(200))
    return write(tmp_path / "small.csv", "x,colour,y\n" + rows)


def test_a_verbose_schema_keeps_to_the_models_bound(app: EmrML, tmp_path: Path) -> None:
    """Stored indented, with non-ASCII names as \\u escapes, a schema of 50,000 characters would be answered
    in 180,000; the API model allows 131,071: it is answered compact, and is the same schema."""
    names = [f"{'Ж' * 60}{i}" for i in range(400)]
    attributes = [{"attributeName": name, "attributeType": "NUMERIC"} for name in names]
    schema = {"version": "1.0", "dataFormat": "CSV", "dataFileContainsHeader": True, "attributes": attributes}
    data = write(tmp_path / "wide.csv", ",".join(names) + "\n" + ",".join(["1"] * 400) + "\n")
    text = json.dumps(schema, ensure_ascii=False)
    assert len(text) < 131071
    result = build(app, "ds-wide", data, text)
    assert result["Status"] == "COMPLETED", result.get("Message")
    answered = app.call("GetDataSource", {"DataSourceId": "ds-wide", "Verbose": True})["DataSourceSchema"]
    assert len(answered) <= 131071
    assert [a["attributeName"] for a in json.loads(answered)["attributes"]] == names


def test_bank_marketing_with_statistics(sqlite_app: EmrML, shared_datasets: Path) -> None:
    folder = shared_datasets / "bank_marketing"
    result = build(sqlite_app, "ds-bank", folder / "data.csv", (folder / "data.csv.schema").read_text())
    assert result["Status"] == "COMPLETED", result.get("Message")
    verbose = sqlite_app.call("GetDataSource", {"DataSourceId": "ds-bank", "Verbose": True})
    schema = json.loads(verbose["DataSourceSchema"])
    assert schema["targetAttributeName"] == "y" and len(schema["attributes"]) == 21
    assert set(schema) >= {
        "version",
        "rowId",
        "rowWeight",
        "excludedAttributeNames",
        "dataFileContainsHeader",
    }
    statistics = sqlite_app.call("GetDataSourceStatistics", {"DataSourceId": "ds-bank"})["Statistics"]
    assert statistics["recordCount"] == 41_188
    by_name = {attribute["name"]: attribute for attribute in statistics["attributes"]}
    assert by_name["age"]["min"] == 17 and by_name["age"]["max"] == 98
    assert by_name["y"]["counts"] == {"0": 36_548, "1": 4_640}


@pytest.mark.parametrize("codec", ["gz", "bz2", "zst", "snappy"])
def test_compressed_inputs_give_the_same_datasource(
    sqlite_app: EmrML, small_csv: Path, tmp_path: Path, codec: str
) -> None:
    compress = {
        "gz": gzip.compress,
        "bz2": bz2.compress,
        "zst": zstandard.ZstdCompressor().compress,
        "snappy": lambda data: bytes(cramjam.snappy.compress(data)),
    }[codec]
    packed = tmp_path / f"small.csv.{codec}"
    packed.write_bytes(compress(small_csv.read_bytes()))
    plain = build(sqlite_app, "ds-plain", small_csv)
    result = build(sqlite_app, "ds-packed", packed)
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == plain["TotalRecordCount"] == 200
    stats = [
        sqlite_app.call("GetDataSourceStatistics", {"DataSourceId": i})["Statistics"]
        for i in ("ds-plain", "ds-packed")
    ]
    assert stats[0] == stats[1]


def test_a_folder_of_files_is_one_datasource(sqlite_app: EmrML, tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for part in range(3):
        rows = "".join(f"{part * 10 + i},red,{i % 2}\n" for i in range(10))
        write(folder / f"part-{part}.csv", "x,colour,y\n" + rows)
    write(folder / "part-1.csv.schema", "not data")  # schema files beside the data are skipped
    result = build(sqlite_app, "ds-folder", str(folder) + "/")
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["NumberOfFiles"] == 3 and result["TotalRecordCount"] == 30


def test_a_file_whose_name_is_not_utf8_fails_the_datasource_naming_it(
    sqlite_app: EmrML, tmp_path: Path
) -> None:
    """Listed, such a name holds lone surrogates: the job failed writing its progress ("reading <file>")
    with an internal error. Its message names the file now (a non-ASCII UTF-8 name beside it is not named)."""
    folder = tmp_path / "latin1"
    folder.mkdir()
    write(folder / "caf\u00e9.csv", "x,colour,y\n1,red,0\n")
    (folder / os.fsdecode(b"na\xefve.csv")).write_text("x,colour,y\n2,red,1\n")
    message = failed(build(sqlite_app, "ds-latin1", str(folder) + "/"))
    assert message == (
        f"DataSpec.DataLocationS3 '{folder}/' holds the file '{folder}/na\\xefve.csv', whose name is not "
        "UTF-8: rename it"
    )


def test_random_split_and_its_complement_partition_the_records(sqlite_app: EmrML, small_csv: Path) -> None:
    split = {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "strategyParams": {"randomSeed": "k"}}
    train = build(sqlite_app, "ds-train", small_csv, DataRearrangement=json.dumps({"splitting": split}))
    rest = build(
        sqlite_app,
        "ds-rest",
        small_csv,
        DataRearrangement=json.dumps({"splitting": {**split, "complement": True}}),
    )
    assert train["TotalRecordCount"] + rest["TotalRecordCount"] == 200
    assert 110 < train["TotalRecordCount"] < 170
    again = build(sqlite_app, "ds-again", small_csv, DataRearrangement=json.dumps({"splitting": split}))
    assert again["TotalRecordCount"] == train["TotalRecordCount"]
    assert train["DataRearrangement"] == json.dumps({"splitting": split})


def test_sequential_split(sqlite_app: EmrML, small_csv: Path) -> None:
    head = {"splitting": {"percentBegin": 0, "percentEnd": 70}}
    tail = {"splitting": {"percentBegin": 70, "percentEnd": 100, "strategy": "sequential"}}
    assert (
        build(sqlite_app, "ds-head", small_csv, DataRearrangement=json.dumps(head))["TotalRecordCount"] == 140
    )
    assert (
        build(sqlite_app, "ds-tail", small_csv, DataRearrangement=json.dumps(tail))["TotalRecordCount"] == 60
    )
    statistics = sqlite_app.call("GetDataSourceStatistics", {"DataSourceId": "ds-tail"})["Statistics"]
    x = next(a for a in statistics["attributes"] if a["name"] == "x")
    assert x["min"] == 140 and x["max"] == 199


def test_ragged_rows_are_counted_with_examples(sqlite_app: EmrML, tmp_path: Path) -> None:
    path = write(tmp_path / "ragged.csv", "x,colour,y\n1,red,0\n2,red\n3,blue,1,extra\n4,blue,1\n")
    result = build(sqlite_app, "ds-ragged", path)
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == 4 and result["InvalidRecordCount"] == 2
    examples = sqlite_app.call("GetDataSourceStatistics", {"DataSourceId": "ds-ragged"})[
        "InvalidRecordExamples"
    ]
    assert [(e["Line"], e["File"]) for e in examples] == [(3, str(path)), (4, str(path))]
    assert "expected 3 fields, found 2" in examples[0]["Reason"]


def test_too_many_invalid_records_reject_the_file(sqlite_app: EmrML, tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", "x,colour,y\n" + "1,red\n" * 10_001 + "1,red,0\n")
    message = failed(build(sqlite_app, "ds-bad", path))
    assert "more than 10,000 records are invalid" in message and str(path) in message


def test_a_random_split_does_not_move_with_the_data(
    sqlite_app: EmrML, small_csv: Path, tmp_path: Path
) -> None:
    """The same file in another folder, and a folder of files moved elsewhere, split the same rows."""
    split = json.dumps(
        {"splitting": {"percentEnd": 40, "strategy": "random", "strategyParams": {"randomSeed": "s"}}}
    )
    moved = tmp_path / "elsewhere" / "deeper" / "renamed.csv"
    moved.parent.mkdir(parents=True)
    moved.write_bytes(small_csv.read_bytes())
    here = build(sqlite_app, "ds-here", small_csv, DataRearrangement=split)
    there = build(sqlite_app, "ds-there", moved, DataRearrangement=split)
    assert here["Status"] == there["Status"] == "COMPLETED"
    assert 0 < here["TotalRecordCount"] == there["TotalRecordCount"] < 200
    statistics = [
        sqlite_app.call("GetDataSourceStatistics", {"DataSourceId": i})["Statistics"]
        for i in ("ds-here", "ds-there")
    ]
    assert statistics[0] == statistics[1]
    folders = []
    for root in (tmp_path / "a", tmp_path / "b" / "c"):
        (root / "data").mkdir(parents=True)
        for part in range(3):
            write(root / "data" / f"part-{part}.csv", small_csv.read_text())
        folders.append(build(sqlite_app, f"ds-{root.name}", f"{root / 'data'}/", DataRearrangement=split))
    assert folders[0]["TotalRecordCount"] == folders[1]["TotalRecordCount"]


def test_a_datasource_recorded_with_absolute_keys_keeps_its_split(app: EmrML, small_csv: Path) -> None:
    """Datasources from before relative keys hash the absolute object key, as they were split then."""
    from emrml.core.rearrange import parse_rearrangement, select
    from emrml.service.rows import DataSource
    from emrml.service.tasks import rearrangement_of

    text = json.dumps(
        {"splitting": {"percentEnd": 50, "strategy": "random", "strategyParams": {"randomSeed": "s"}}}
    )
    build(app, "ds-new", small_csv, DataRearrangement=text)
    with app.sessions() as session, session.begin():
        session.add(
            DataSource(
                **{**_columns(session.get(DataSource, "ds-new")), "id": "ds-old", "split_keys": "absolute"}
            )
        )
    with app.sessions() as session:
        new, old = (
            rearrangement_of(session.get(DataSource, "ds-new")),
            rearrangement_of(session.get(DataSource, "ds-old")),
        )
    assert new is not None and new.relative_keys and old is not None and not old.relative_keys
    offsets = np.arange(0, 5000, 17)
    absolute = select(parse_rearrangement(text), str(small_csv).lstrip("/"), offsets, offsets, None)
    assert np.array_equal(select(old, str(small_csv).lstrip("/"), offsets, offsets, None), absolute)
    assert not np.array_equal(select(new, "", offsets, offsets, None), absolute)


def _columns(entity: object) -> dict:
    return {column.key: getattr(entity, column.key) for column in entity.__mapper__.column_attrs}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("schema_text", "expected"),
    [
        ('{"version": "1.0", "attributes": [', "DataSchema is not valid JSON"),
        (
            json.dumps(
                {
                    **SCHEMA,
                    "attributes": [
                        *SCHEMA["attributes"][:2],
                        {"attributeName": "y", "attributeType": "BOOL"},
                    ],
                }
            ),
            "BOOL",
        ),
        (json.dumps({**SCHEMA, "targetAttributeName": "label"}), "label"),
    ],
    ids=["malformed-json", "unknown-type", "unknown-target"],
)
def test_a_malformed_data_schema_is_refused_at_once(
    sqlite_app: EmrML, small_csv: Path, schema_text: str, expected: str
) -> None:
    """What the schema text alone shows wrong is a bad request (spec 1.1), as a malformed rearrangement
    is: no datasource is left to fail later."""
    with pytest.raises(InvalidInputException, match=re.escape(expected)):
        build(sqlite_app, "ds-x", small_csv, schema_text)
    with pytest.raises(ResourceNotFoundException):
        sqlite_app.call("GetDataSource", {"DataSourceId": "ds-x"})


def test_a_schema_that_does_not_fit_the_data_fails_the_datasource(sqlite_app: EmrML, small_csv: Path) -> None:
    two = json.dumps({**SCHEMA, "attributes": [SCHEMA["attributes"][0], SCHEMA["attributes"][2]]})
    assert "2 attributes" in failed(build(sqlite_app, "ds-x", small_csv, two))


def test_target_column_entirely_missing(sqlite_app: EmrML, tmp_path: Path) -> None:
    path = write(tmp_path / "no-target.csv", "x,colour,y\n1,red,\n2,blue,\n")
    assert "target attribute 'y' is empty in every record" in failed(build(sqlite_app, "ds-x", path))


def test_binary_attribute_with_other_values(sqlite_app: EmrML, tmp_path: Path) -> None:
    path = write(tmp_path / "spam.csv", "x,colour,y\n1,red,spam\n2,blue,ham\n3,red,spam\n")
    message = failed(build(sqlite_app, "ds-x", path))
    assert "'y' is declared BINARY" in message


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", b"", "is empty"),
        ("header.csv", b"x,colour,y\n", "only a header line"),
        ("cut.csv.gz", gzip.compress(b"x,colour,y\n" + b"1,red,0\n" * 5000)[:-40], "truncated"),
        ("data.csv.xz", b"\xfd7zXZ\x00\x00rest", "unsupported compression"),
    ],
    ids=["empty", "header-only", "cut-gzip", "xz"],  # not the bytes: gzip's header holds the time
)
def test_unreadable_files_fail_the_datasource(
    sqlite_app: EmrML, tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    message = failed(build(sqlite_app, "ds-x", path))
    assert expected in message and name in message


def test_missing_path(sqlite_app: EmrML, tmp_path: Path) -> None:
    """The job names the data by its member's path in the request (DataSpec.DataLocationS3), as the
    request's validation does; InferDataSchema's member is top-level, and its message says so."""
    missing = tmp_path / "nowhere.csv"
    assert f"DataSpec.DataLocationS3 '{missing}' does not exist" in failed(build(sqlite_app, "ds-x", missing))
    with pytest.raises(InvalidInputException) as raised:
        sqlite_app.call("InferDataSchema", {"DataLocationS3": str(missing)})
    assert raised.value.message == f"DataLocationS3 '{missing}' does not exist"


def test_a_folder_without_data_files_is_refused_at_once(sqlite_app: EmrML, tmp_path: Path) -> None:
    """Given a schema, an empty folder made a datasource that could only fail, later: refused at the
    request, as Amazon ML refuses bad input, and no datasource is left. So is a folder of hidden files and
    schemas, which are never read as data."""
    empty = tmp_path / "empty"
    empty.mkdir()
    hidden = tmp_path / "hidden"
    (hidden / ".staging").mkdir(parents=True)
    write(hidden / ".staging" / "part-0.csv", "x,colour,y\n1,red,0\n")
    write(hidden / "data.csv.schema", json.dumps(SCHEMA))
    for index, folder in enumerate((empty, hidden, f"{empty}/")):
        with pytest.raises(InvalidInputException) as refused:
            build(sqlite_app, f"ds-{index}", folder)
        assert refused.value.message.startswith(
            f"DataSpec.DataLocationS3 '{folder}' holds no file: the folder is empty"
        )
        with pytest.raises(ResourceNotFoundException):
            sqlite_app.call("GetDataSource", {"DataSourceId": f"ds-{index}"})
    # Once it holds a file, the same request makes the datasource.
    write(empty / "data.csv", "x,colour,y\n1,red,0\n2,blue,1\n")
    assert build(sqlite_app, "ds-0", empty)["Status"] == "COMPLETED"


def test_files_with_different_headers(sqlite_app: EmrML, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    write(folder / "a.csv", "x,colour,y\n1,red,0\n")
    write(folder / "b.csv", "x,color,y\n2,red,1\n")
    message = failed(build(sqlite_app, "ds-x", folder))
    assert f"file {folder / 'b.csv'} line 1: the header's column names differ" in message
    assert "column 2 is 'color' in the header but 'colour' in the schema" in message


def test_a_header_from_another_schema_fails_the_datasource(sqlite_app: EmrML, tmp_path: Path) -> None:
    """Right number of columns, entirely different names: accepted silently before, refused now."""
    data = write(tmp_path / "other.csv", "price,rooms,sold\n1,red,0\n2,blue,1\n")
    message = failed(build(sqlite_app, "ds-other", data))
    assert "column 1 is 'price' in the header but 'x' in the schema" in message
    assert "give the schema's attributes the header's names" in message


def test_failed_datasource_touches_nothing_else(app: EmrML, small_csv: Path, tmp_path: Path) -> None:
    good = build(app, "ds-good", small_csv)
    failed(build(app, "ds-bad", tmp_path / "missing.csv"))
    assert app.call("GetDataSource", {"DataSourceId": "ds-good"}) == good


def test_infer_schema(sqlite_app: EmrML, shared_datasets: Path) -> None:
    location = str(shared_datasets / "bank_marketing" / "data.csv")
    inferred = json.loads(
        sqlite_app.call("InferDataSchema", {"DataLocationS3": location, "TargetAttributeName": "y"})[
            "DataSchema"
        ]
    )
    expected = json.loads((shared_datasets / "bank_marketing" / "data.csv.schema").read_text())
    assert inferred["attributes"] == expected["attributes"]
    assert inferred["targetAttributeName"] == "y" and inferred["dataFileContainsHeader"] is True


def test_inferring_a_header_as_a_record_is_refused(
    sqlite_app: EmrML, shared_datasets: Path, tmp_path: Path
) -> None:
    data = shared_datasets / "bank_marketing" / "data.csv"
    request = {"DataLocationS3": str(data), "DataFileContainsHeader": False}
    with pytest.raises(InvalidInputException) as info:
        sqlite_app.call("InferDataSchema", request)
    assert "its first record looks like one: its fields are names ('age', 'job'" in info.value.message
    assert "Set DataFileContainsHeader to true" in info.value.message
    # The same records without their header line are data: the names are generated, the types inferred.
    with data.open() as lines:
        next(lines)
        headerless = write(tmp_path / "headerless.csv", "".join(next(lines) for _ in range(50)))
    request["DataLocationS3"] = str(headerless)
    inferred = json.loads(sqlite_app.call("InferDataSchema", request)["DataSchema"])
    assert inferred["dataFileContainsHeader"] is False
    assert inferred["attributes"][0] == {"attributeName": "Var01", "attributeType": "NUMERIC"}


def test_statistics_stored_with_overflowed_figures_read_as_null(app: EmrML, tmp_path: Path) -> None:
    # Earlier versions stored an overflowed standard deviation as Infinity: it reads as null, as today's.
    assert (
        build(app, "ds-old", write(tmp_path / "d.csv", "x,colour,y\n1,red,1\n2,blue,0\n"))["Status"]
        == "COMPLETED"
    )
    with app.sessions() as session, session.begin():
        row = session.get(DataSource, "ds-old")
        row.statistics = row.statistics.replace('"stddev":', '"stddev":Infinity,"was":', 1)
    statistics = app.call("GetDataSourceStatistics", {"DataSourceId": "ds-old"})["Statistics"]
    assert statistics["attributes"][0]["stddev"] is None
    assert "Infinity" not in json.dumps(statistics, allow_nan=False)
