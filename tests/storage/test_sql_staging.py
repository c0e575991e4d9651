"""Staging a query result (storage.sql_staging.stage) without a database: Arrow batches in, gzip CSV out."""

from __future__ import annotations

import csv
import gzip
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from emrml.errors import DataError
from emrml.storage import sql, sql_staging


def _wide_batches(rows: int, width: int, per_batch: int) -> pa.RecordBatchReader:
    schema = pa.schema([("id", pa.int64()), ("note", pa.string())])
    batches = [
        pa.record_batch(
            [
                pa.array(range(start, min(start + per_batch, rows))),
                pa.array([f"{i}:" + "x" * width for i in range(start, min(start + per_batch, rows))]),
            ],
            schema=schema,
        )
        for start in range(0, rows, per_batch)
    ]
    return pa.RecordBatchReader.from_batches(schema, batches)


def test_wide_rows_are_staged_a_slice_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A driver batch of wide rows was written to CSV whole: 65,536 rows of 20 KB held 1.3 GB, and about ten
    # times that while staged (10 GB for a 2 GB result from MariaDB). The CSV text is now made a slice of
    # at most SLICE_BYTES at a time, and the sample kept for schema inference is bounded too.
    monkeypatch.setattr(sql_staging, "SLICE_BYTES", 1 << 20)
    monkeypatch.setattr(sql_staging, "SAMPLE_BYTES", 2 << 20)
    written: list[int] = []
    write_csv = sql_staging.csv.write_csv

    def recording(data: Any, *args: Any, **kwargs: Any) -> None:
        written.append(data.nbytes)
        write_csv(data, *args, **kwargs)

    monkeypatch.setattr(sql_staging.csv, "write_csv", recording)
    rows, width = 1_500, 10_000  # one driver batch of 15 MB
    staged = sql_staging.stage(_wide_batches(rows, width, per_batch=rows), str(tmp_path / "wide.csv.gz"))
    assert staged.rows == rows
    assert len(written) >= 14 and max(written) <= (1 << 20) + width + 64, written
    with gzip.open(tmp_path / "wide.csv.gz", "rt", newline="") as text:
        read = list(csv.reader(text))
    assert read[0] == ["id", "note"]
    assert [int(r[0]) for r in read[1:]] == list(range(rows))
    assert all(r[1] == f"{r[0]}:" + "x" * width for r in read[1:])
    assert [a.type.value for a in staged.schema.attributes] == ["NUMERIC", "CATEGORICAL"]


def test_the_inference_sample_spans_batches_up_to_its_row_limit(tmp_path: Path) -> None:
    # Small batches (as the MySQL driver now reads) still give inference its SAMPLE_ROWS first rows: a
    # column whose first batch holds only 0s and 1s but later rows hold 2 is NUMERIC, not BINARY.
    schema = pa.schema([("code", pa.int64())])
    batches = [pa.record_batch([pa.array([0, 1] * 50)], schema=schema) for _ in range(5)]
    batches.append(pa.record_batch([pa.array([2] * 10)], schema=schema))
    reader = pa.RecordBatchReader.from_batches(schema, batches)
    staged = sql_staging.stage(reader, str(tmp_path / "codes.csv.gz"))
    assert staged.rows == 510
    assert staged.schema.attributes[0].type.value == "NUMERIC"


def test_mysql_bytes_are_refused_with_the_conversion_a_bit_column_needs(tmp_path: Path) -> None:
    # The MySQL driver reads BIT(1) as one byte, b"\x01" or b"\x00". It was refused as "SQL type
    # large_binary" with the hint CAST(... AS CHAR), which stages the control character 0x01, not 1.
    schema = pa.schema([("id", pa.int32()), ("is active", pa.large_binary())])
    batch = pa.record_batch(
        [pa.array([1, 2]), pa.array([b"\x01", b"\x00"], pa.large_binary())], schema=schema
    )
    reader = pa.RecordBatchReader.from_batches(schema, [batch])
    with pytest.raises(DataError) as refused:
        sql_staging.stage(reader, str(tmp_path / "flags.csv.gz"))
    assert "column 'is active' holds bytes (a MySQL BIT, BINARY, VARBINARY or BLOB column)" in str(
        refused.value
    )
    assert "CAST(`is active` AS UNSIGNED) (BIT(1) then reads as 0 and 1" in str(refused.value)
    assert "HEX(`is active`)" in str(refused.value)
    assert not (tmp_path / "flags.csv.gz").exists()


def test_a_result_wider_than_a_schema_is_refused_before_staging(tmp_path: Path) -> None:
    # A query of 1,001 columns made a datasource whose every model was then refused ("DataSchema has 1001
    # attributes"), naming a schema the user never gave.
    schema = pa.schema([(f"c{i}", pa.int32()) for i in range(1_001)])
    batch = pa.record_batch([pa.array([1, 0])] * 1_001, schema=schema)
    with pytest.raises(DataError) as refused:
        sql_staging.stage(pa.RecordBatchReader.from_batches(schema, [batch]), str(tmp_path / "wide.csv.gz"))
    assert (
        "SelectSqlQuery returns 1,001 columns; a datasource has at most 1,000 attributes "
        "(the max_attributes setting)"
    ) in str(refused.value)
    assert not (tmp_path / "wide.csv.gz").exists()
    staged = sql_staging.stage(
        pa.RecordBatchReader.from_batches(schema, [batch]),
        str(tmp_path / "wide.csv.gz"),
        max_attributes=2_000,
    )
    assert len(staged.schema.attributes) == 1_001


@pytest.mark.parametrize(
    ("api", "member", "example"),
    [
        ("RDS", "InstanceIdentifier", "mysql://host:3306"),
        ("Redshift", "ClusterIdentifier", "postgresql://host:5432"),
    ],
)
def test_an_unknown_identifier_is_told_a_connection_of_its_kind(api: str, member: str, example: str) -> None:
    # A Redshift cluster was told to configure a connection such as mysql://host:3306, which Redshift
    # datasources refuse.
    with pytest.raises(DataError) as refused:
        sql.resolve({"other": "mysql://db:3306"}, api, "mine", "d", "u", "password1")
    message = str(refused.value)
    assert f"DatabaseInformation.{member} 'mine' is not a configured connection" in message
    assert f"such as {example}; configured: other" in message


def test_the_conversion_offered_for_a_type_without_an_attribute_type_is_the_database_s(
    tmp_path: Path,
) -> None:
    # PostgreSQL columns were told to convert with CAST(... AS CHAR), which PostgreSQL reads as CHAR(1):
    # an interval of '1 day' would have been staged as '1', every value cut to its first character.
    interval = pa.field("wait", pa.month_day_nano_interval(), metadata={b"POSTGRESQL:type": b"interval"})
    listed = pa.field("codes", pa.list_(pa.int32()))  # as the MySQL driver gives no type name
    for field, conversion in [
        (interval, "CAST(... AS TEXT)"),
        (listed, "CAST(... AS CHAR) or HEX(...)"),
    ]:
        schema = pa.schema([field])
        reader = pa.RecordBatchReader.from_batches(schema, [])
        with pytest.raises(DataError) as refused:
            sql_staging.stage(reader, str(tmp_path / "typed.csv.gz"))
        assert f"convert it in the query, e.g. {conversion}" in str(refused.value)


def test_a_sources_password_is_not_in_its_representation() -> None:
    # What a log line or a traceback's locals would show of the source.
    source = sql.resolve({"db": "mysql://db:3306"}, "RDS", "db", "sales", "analyst", "s3cret-Pa55")
    assert source.password == "s3cret-Pa55"
    assert "s3cret" not in repr(source) and "'analyst'" in repr(source)


def test_decimals_are_staged_as_their_own_digits(tmp_path: Path) -> None:
    # As the MySQL driver reads a DECIMAL: 10 digits after the point, whatever the column's scale. Staged
    # as 12.5000000000 and 7.0000000000, and a value under 10^-6 as Arrow spells it, 0E-10 or -1.2E-9.
    values = [
        "12.5",
        "7",
        "0",
        "-0.0000000012",
        "0.0000001234",
        "-100",
        None,
        "-1234567890123456789.0000000001",
    ]
    schema = pa.schema([("amount", pa.decimal128(38, 10))])
    column = pa.array([None if v is None else Decimal(v) for v in values], pa.decimal128(38, 10))
    reader = pa.RecordBatchReader.from_batches(schema, [pa.record_batch([column], schema=schema)])
    staged = sql_staging.stage(reader, str(tmp_path / "amounts.csv.gz"))
    with gzip.open(tmp_path / "amounts.csv.gz", "rt", newline="") as text:
        assert [row[0] if row else "" for row in csv.reader(text)][1:] == [v or "" for v in values]
    assert staged.schema.attributes[0].type.value == "NUMERIC"


def test_the_staged_file_appears_through_the_jobs_commit(tmp_path: Path) -> None:
    """Every attempt of a datasource's job stages its query to one name: the rename that puts the file in
    place runs through the job's ``commit``, which refuses it for an attempt given up (the file staged by
    the attempt after it then stays as it was)."""

    class Refused(BaseException):
        pass

    def refuse(step: Any) -> None:
        raise Refused

    target = tmp_path / "staged.csv.gz"
    target.write_bytes(b"the next attempt's")
    with pytest.raises(Refused):
        sql_staging.stage(_wide_batches(10, 5, per_batch=10), str(target), commit=refuse)
    assert [p.name for p in tmp_path.iterdir()] == ["staged.csv.gz"]
    assert target.read_bytes() == b"the next attempt's"
    steps: list[str] = []

    def allow(step: Any) -> None:
        steps.append("rename")
        step()

    staged = sql_staging.stage(_wide_batches(10, 5, per_batch=10), str(target), commit=allow)
    assert (
        steps == ["rename"] and staged.rows == 10 and gzip.decompress(target.read_bytes()).count(b"\n") == 11
    )
