"""Staging a SQL datasource's query result (``storage.sql`` reads it): Arrow batches in, one gzip CSV out.

Each result column becomes an attribute (``result_columns``: its type, and the CSV text its values are
written as); the schema is inferred from the column types and the first rows. Memory is bounded by the
batch size, whatever the width of the rows: a slice of at most ``SLICE_BYTES`` of a batch at a time goes
through pyarrow's CSV writer and a gzip stream into ``storage.locations.atomic_write``, so the staged file
appears whole or not at all.
"""

from __future__ import annotations

import csv as python_csv
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from emrml.core.inference import infer_type
from emrml.core.schema import (
    DEFAULT_MAX_ATTRIBUTES,
    MAX_NAME_LENGTH,
    Attribute,
    AttributeType,
    Schema,
    header_names,
)
from emrml.errors import DataError
from emrml.storage.backend import Commit, commit_now
from emrml.storage.gzipped import gzip_compressor
from emrml.storage.locations import atomic_write
from emrml.storage.sql import Progress, SqlSource, read_query

#: Staged a slice of at most this many bytes of a batch at a time: the CSV text of a slice is in memory.
SLICE_BYTES = 8 << 20
#: Schema inference looks at the first rows of the result: this many, or fewer within ``SAMPLE_BYTES``.
SAMPLE_ROWS = 65_536
SAMPLE_BYTES = 32 << 20


@dataclass(frozen=True)
class Column:
    """A result column: its name, the Amazon ML type its SQL type gives (None: inferred from the values
    as for a CSV column), and the Arrow type its values are written to CSV as."""

    name: str
    type: AttributeType | None
    csv_type: pa.DataType
    #: A PostgreSQL date, timestamp or time, whose special values the driver reads as overflowed numbers.
    postgresql_temporal: bool = False


def _sql_type(field: pa.Field) -> str:
    metadata = field.metadata or {}
    name = metadata.get(b"POSTGRESQL:type") or metadata.get(b"ADBC:postgresql:typname")
    return name.decode() if name else str(field.type)


def _column(field: pa.Field) -> Column:
    kind = field.type
    # The ADBC driver reads NUMERIC as pyarrow's OpaqueType of text storage: a C++ extension type, which
    # is a pa.BaseExtensionType but not a pa.ExtensionType (those are defined in Python). Other extension
    # types (json, uuid, inet, ...) hold no Amazon ML type.
    storage = kind.storage_type if isinstance(kind, pa.BaseExtensionType) else kind
    sql_type = _sql_type(field)
    if sql_type == "numeric" and pa.types.is_string(storage):
        return Column(field.name, AttributeType.NUMERIC, pa.string())  # PostgreSQL NUMERIC, as text
    if getattr(kind, "extension_name", "") == _UUID:
        # PostgreSQL's uuid (16 bytes): an identifier, staged in its usual spelling.
        return Column(field.name, AttributeType.CATEGORICAL, pa.string())
    if isinstance(kind, pa.BaseExtensionType) and pa.types.is_string(storage):
        return Column(field.name, None, pa.string())  # PostgreSQL json and jsonb: their text
    if sql_type == "money":
        # Read as an integer count of cents (of the server's lc_monetary), so 12.34 would be 1234.
        raise DataError(
            f"SelectSqlQuery column {field.name!r} has SQL type money, which is read as a whole number of "
            f"cents; convert it in the query, e.g. {field.name}::numeric"
        )
    if pa.types.is_boolean(kind):
        return Column(field.name, AttributeType.BINARY, kind)
    if pa.types.is_integer(kind):
        return Column(field.name, None, kind)  # BINARY when it holds only 0 and 1 (MySQL's BOOLEAN)
    if pa.types.is_floating(kind):
        return Column(field.name, AttributeType.NUMERIC, kind)
    if pa.types.is_decimal(kind):
        return Column(field.name, AttributeType.NUMERIC, pa.string())  # staged as its digits
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return Column(field.name, None, pa.string())
    postgresql = bool(field.metadata and b"POSTGRESQL:type" in field.metadata)
    if pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_timestamp(kind):
        return Column(field.name, AttributeType.CATEGORICAL, pa.string(), postgresql_temporal=postgresql)
    if (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)) and not postgresql:
        # The MySQL driver reads BIT(n) as bytes, like BINARY and BLOB, and says nothing more of the type:
        # CAST(... AS CHAR) would stage BIT(1)'s 1 as the control character 0x01, so say how to get 0 and 1.
        quoted = "`" + field.name.replace("`", "``") + "`"
        raise DataError(
            f"SelectSqlQuery column {field.name!r} holds bytes (a MySQL BIT, BINARY, VARBINARY or BLOB "
            "column), which no Amazon ML attribute type holds; convert it in the query: a BIT column with "
            f"CAST({quoted} AS UNSIGNED) (BIT(1) then reads as 0 and 1, a BINARY attribute), other bytes "
            f"with HEX({quoted})"
        )
    # PostgreSQL's CHAR is CHAR(1): CAST(... AS CHAR) would stage '1 day' as '1', and every value cut so.
    if not postgresql:
        conversion = "CAST(... AS CHAR) or HEX(...)"
    elif sql_type == "bytea":
        conversion = "encode(..., 'hex')"
    else:
        conversion = "CAST(... AS TEXT)"
    raise DataError(
        f"SelectSqlQuery column {field.name!r} has SQL type {_sql_type(field)}, which no Amazon ML attribute "
        f"type holds (BINARY, CATEGORICAL, NUMERIC, TEXT); convert it in the query, e.g. {conversion}"
    )


_UUID = "arrow.uuid"


def result_columns(schema: pa.Schema) -> list[Column]:
    """The columns of a query result; DataError for a type without an Amazon ML type, or a bad name."""
    if not len(schema):
        # PostgreSQL's SELECT FROM t: its rows would stage as empty lines, a datasource of no attributes.
        raise DataError("SelectSqlQuery returns no columns; select the columns the datasource reads")
    seen: set[str] = set()
    columns = []
    for field in schema:
        name = field.name
        if not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise DataError(
                f"SelectSqlQuery column {name!r}: an attribute name has 1 to {MAX_NAME_LENGTH} characters; "
                "rename it in the query (AS ...)"
            )
        if name in seen:
            raise DataError(
                f"SelectSqlQuery returns two columns named {name!r}; give them distinct names (AS)"
            )
        seen.add(name)
        columns.append(_column(field))
    return columns


def _wrapped(value: int, bits: int) -> int:
    """``value`` as a two's complement integer of ``bits`` bits would hold it after overflowing."""
    return (value + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))


#: PostgreSQL counts from 2000-01-01; the ADBC driver adds this offset (in days, in microseconds) to move
#: to the Unix epoch, so its 'infinity' (the type's largest value) and '-infinity' (the smallest) overflow.
_PG_EPOCH_DAYS, _PG_EPOCH_MICROSECONDS = 10_957, 946_684_800_000_000


def _postgresql_temporal_text(array: pa.Array) -> pa.Array:
    """A PostgreSQL date, timestamp or time column as text, its special values spelled as PostgreSQL does.

    Read through pyarrow's cast, 'infinity' became ``<value out of range: -9222425352054775809>`` (or a date
    in the year -28134) and the time ``24:00:00`` ``<value out of range: 86400000000>``.
    """
    special: dict[int, str] = {}
    if pa.types.is_timestamp(array.type) and array.type.unit == "us":
        bits, offset = 64, _PG_EPOCH_MICROSECONDS
    elif pa.types.is_date32(array.type):
        bits, offset = 32, _PG_EPOCH_DAYS
    else:
        bits, offset = 0, 0
    if bits:
        special[_wrapped((1 << (bits - 1)) - 1 + offset, bits)] = "infinity"
        special[_wrapped(-(1 << (bits - 1)) + offset, bits)] = "-infinity"
    elif pa.types.is_time64(array.type) and array.type.unit == "us":
        special[86_400_000_000] = "24:00:00.000000"
    if not special:
        return pc.cast(array, pa.string())
    numbers = array.view(pa.int32() if bits == 32 else pa.int64())
    text = pc.cast(array, pa.string())
    for number, spelling in special.items():
        matches = pc.fill_null(pc.equal(numbers, pa.scalar(number, numbers.type)), False)
        text = pc.if_else(matches, pa.scalar(spelling, pa.string()), text)
    return text


#: A fixed-point number's trailing zeros after the point (and the point, when only zeros follow it).
_TRAILING_ZEROS = r"^(-?[0-9]+)(?:\.0+|(\.[0-9]*[1-9])0+)$"


def _decimal_text(array: pa.Array) -> pa.Array:
    """A decimal column as the values' own digits: ``12.5`` and ``7``, not the MySQL driver's
    ``12.5000000000`` and ``7.0000000000`` (it reads every DECIMAL with 10 digits after the point).

    Arrow spells a value under 10⁻⁶ in scientific notation (``0E-10``, ``1.234E-7``); those are spelled from
    1 + |value| instead (``1.0000001234`` gives ``0.0000001234``).
    """
    text = pc.cast(array, pa.string())
    scientific = pc.fill_null(pc.match_substring(text, "E"), False)
    if pc.any(scientific).as_py():
        wider = pa.decimal256(min(array.type.precision + 1, 76), array.type.scale)
        shifted = pc.add(pc.cast(pc.abs(array), wider), pa.scalar(Decimal(1), pa.decimal256(1, 0)))
        fixed = pc.replace_substring_regex(pc.cast(shifted, pa.string()), "^1", "0")
        signed = pc.binary_join_element_wise(pa.scalar("-"), fixed, pa.scalar(""))
        fixed = pc.if_else(pc.less(array, pa.scalar(Decimal(0), array.type)), signed, fixed)
        text = pc.if_else(scientific, fixed, text)
    return pc.replace_substring_regex(text, _TRAILING_ZEROS, r"\1\2")


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: Where the 32 hex digits of a UUID go in its 36 characters (dashes after the 8th, 12th, 16th, 20th).
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def _uuid_text(array: pa.Array) -> pa.Array:
    """UUIDs (16 bytes each) in their usual spelling, ``a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11``: vectorized,
    as a result may hold millions of them."""
    storage = array.storage if isinstance(array, pa.ExtensionArray) else array
    count = len(storage)
    data = storage.buffers()[1]
    raw = np.frombuffer(data, dtype=np.uint8)[storage.offset * 16 : (storage.offset + count) * 16]
    raw = raw.reshape(count, 16)
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    digits = np.empty((count, 32), dtype=np.uint8)
    digits[:, 0::2], digits[:, 1::2] = _HEX_DIGITS[raw >> 4], _HEX_DIGITS[raw & 15]
    text[:, _UUID_DIGITS] = digits
    offsets = pa.array(np.arange(0, 36 * (count + 1), 36, dtype=np.int32))
    spelled = pa.StringArray.from_buffers(count, offsets.buffers()[1], pa.py_buffer(text.tobytes()))
    return pc.if_else(pc.is_null(storage), pa.scalar(None, pa.string()), spelled)


def _as_csv(batch: pa.RecordBatch, columns: list[Column]) -> pa.RecordBatch:
    arrays = []
    for array, column in zip(batch.columns, columns, strict=True):
        if getattr(array.type, "extension_name", "") == _UUID:
            array = _uuid_text(array)
        if isinstance(array.type, pa.BaseExtensionType):
            array = array.storage
        if column.postgresql_temporal:
            array = _postgresql_temporal_text(array)
        elif pa.types.is_decimal(array.type):
            array = _decimal_text(array)
        if pa.types.is_null(array.type) or array.type != column.csv_type:
            array = pc.cast(array, column.csv_type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


def inferred_schema(columns: list[Column], sample: pa.RecordBatch | pa.Table | None) -> Schema:
    """The datasource schema when none is given: types from SQL, strings (and 0/1 integers) by value; names
    as the staged file's header gives them, as for any CSV file (a name with blanks around it trimmed)."""
    attributes = []
    names = header_names([column.name for column in columns])
    for index, column in enumerate(columns):
        kind = column.type
        if kind is None:
            values = (
                pa.array([], pa.string()) if sample is None else pc.cast(sample.column(index), pa.string())
            )
            guessed = infer_type(values)
            if pa.types.is_integer(column.csv_type):
                kind = AttributeType.BINARY if guessed == AttributeType.BINARY else AttributeType.NUMERIC
            else:
                # Digits in a text column are codes (zip codes, ids), not quantities.
                kind = AttributeType.CATEGORICAL if guessed == AttributeType.NUMERIC else guessed
        attributes.append(Attribute(names[index], kind))
    return Schema(tuple(attributes), has_header=True)


# ---------------------------------------------------------------------------------------------- staging


@dataclass(frozen=True)
class Staged:
    location: str
    rows: int
    schema: Schema


def staged_location(staging: str, data_source_id: str) -> str:
    """The file a datasource's query result is staged as: ``<S3StagingLocation>/<id>.csv.gz``."""
    return f"{staging.rstrip('/')}/{data_source_id}.csv.gz"


def _slices(batch: pa.RecordBatch, limit: int) -> Iterator[pa.RecordBatch]:
    """``batch`` cut into consecutive slices of about ``limit`` bytes each (one row at least)."""
    per_row = max(batch.nbytes / batch.num_rows, 1.0)
    step = max(int(limit / per_row), 1)
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step)


class _Sample:
    """The first rows of the result, for schema inference: ``SAMPLE_ROWS`` of them or ``SAMPLE_BYTES``."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.rows = self.bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if self.rows >= SAMPLE_ROWS or self.bytes >= SAMPLE_BYTES:
            return
        per_row = max(batch.nbytes / batch.num_rows, 1.0)
        wanted = min(SAMPLE_ROWS - self.rows, max(int((SAMPLE_BYTES - self.bytes) / per_row), 1))
        # A copy: a slice would keep the whole batch (its buffers) alive while the rest is staged.
        taken = batch.take(pa.array(range(wanted), pa.int64())) if wanted < batch.num_rows else batch
        self.batches.append(taken)
        self.rows += taken.num_rows
        self.bytes += taken.nbytes

    def table(self) -> pa.Table | None:
        return pa.Table.from_batches(self.batches) if self.batches else None


def stage(
    reader: pa.RecordBatchReader,
    location: str,
    progress: Progress | None = None,
    *,
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
    commit: Commit = commit_now,
) -> Staged:
    """Write the rows of ``reader`` to ``location`` as gzip CSV with a header; DataError when there are none,
    or more columns than a schema may have attributes (``max_attributes``).

    The file appears only if every row was written; the schema is inferred from the column types and the
    first rows. Memory holds one batch of the driver's and the CSV text of one slice of it (``SLICE_BYTES``),
    whatever the width of the rows.
    """
    if len(reader.schema) > max_attributes:
        # Refused before any row is read: a datasource of it would complete, and every model on it fail.
        raise DataError(
            f"SelectSqlQuery returns {len(reader.schema):,} columns; a datasource has at most "
            f"{max_attributes:,} attributes (the max_attributes setting): select fewer columns"
        )
    columns = result_columns(reader.schema)
    rows, sample = 0, _Sample()
    # Not pyarrow's gzip stream, which has no compression level.
    compressor = gzip_compressor()
    options = csv.WriteOptions(include_header=False)
    with atomic_write(location, commit) as out:
        # The header by hand: pyarrow quotes every name, where a name needs quotes only as a value would.
        names = io.StringIO()
        python_csv.writer(names, lineterminator="\n").writerow(c.name for c in columns)
        out.write(compressor.compress(names.getvalue().encode()))
        for batch in reader:
            if not batch.num_rows:
                continue
            sample.add(batch)
            for piece in _slices(batch, SLICE_BYTES):
                text = pa.BufferOutputStream()
                csv.write_csv(_as_csv(piece, columns), text, options)
                out.write(compressor.compress(text.getvalue()))
                del text
            rows += batch.num_rows
            del batch
            if progress is not None:
                progress(0.0, f"staged {rows:,} rows of the query result")
        if rows == 0:
            raise DataError("SelectSqlQuery returned no rows: there is nothing to make a datasource of")
        out.write(compressor.flush())
    return Staged(location, rows, inferred_schema(columns, sample.table()))


def stage_query(
    source: SqlSource,
    query: str,
    location: str,
    progress: Progress | None = None,
    *,
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
    commit: Commit = commit_now,
    stopped: threading.Event | None = None,
) -> Staged:
    """Run ``query`` on ``source`` read-only and stage its result at ``location``; ``commit`` runs the step
    that makes the staged file appear (``atomic_write``): every attempt of the job stages to one name.
    ``stopped``: the job's stop, which ends the query even while it sends nothing (``read_query``)."""
    if progress is not None:
        progress(0.0, f"running SelectSqlQuery on {source.what}")
    with read_query(source, query, stopped) as reader:
        return stage(reader, location, progress, max_attributes=max_attributes, commit=commit)
