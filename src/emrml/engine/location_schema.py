"""A datasource's schema inferred from a sample of its location (``InferDataSchema``, and a
``CreateDataSource*`` without a schema): the sample is the first records of the first file that has one; a
target found with a single value there is looked for in the files that follow."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, replace
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from emrml.config import Settings
from emrml.core.inference import check_width, infer_schema, infer_type
from emrml.core.schema import Attribute, AttributeType, Schema, generated_names
from emrml.engine.local import has_a_line, open_data, open_each
from emrml.errors import DataError, InvalidInputException
from emrml.storage.header import read_header_again
from emrml.storage.invalid import InvalidRecord
from emrml.storage.locations import FileRef, list_files
from emrml.storage.records import read_chunks

#: Inference opens at most this many of a location's files, the first in key order: the sample comes from
#: the first that holds a record, and a target of a single value in it is looked for in those that follow.
#: A prefix of thousands of objects was read to its end for a target sorted by file.
INFER_MAX_FILES = 64
#: Inference reads files in blocks of this many bytes: a block of short invalid records ("x\\n")
#: is parsed whole before reading stops at ``max_invalid_records``, and one of 4 MiB (the batch size) was
#: two million of them, 15 seconds and 700 MB for each file of a few hundred compressed bytes.
SAMPLE_BLOCK_BYTES = 64 << 10
#: Decompressed bytes inference reads at most, over every file it opens (the sample, then the look for a
#: second target value): it answers a request on the server's thread. A file of empty lines, which reading
#: passes over, was read to its end: a gigabyte of them is 32 KB of zstd and took 23 s; 1,000,000 records
#: looked through for a target of 100 KB records would have been 100 GB.
INFER_MAX_BYTES = 256 << 20


class _Spent(Exception):
    """Inference has read ``INFER_MAX_BYTES``."""


@dataclass
class _Budget:
    """The bytes inference may still read, shared by the files it opens."""

    left: int

    def metered(self, stream: BinaryIO) -> BinaryIO:
        return _Metered(stream, self)  # type: ignore[return-value]


class _Metered:
    """``stream`` whose reads are taken from ``budget``: ``_Spent`` once it is spent."""

    def __init__(self, stream: BinaryIO, budget: _Budget) -> None:
        self._stream, self._budget = stream, budget

    def read(self, size: int = -1) -> bytes:
        if self._budget.left <= 0:
            raise _Spent
        data = self._stream.read(size if 0 <= size <= self._budget.left else self._budget.left)
        self._budget.left -= len(data)
        return data


@dataclass(frozen=True)
class Inferred:
    """A schema inferred from a sample, and how much of the location the sample was."""

    schema: Schema
    location: str
    #: The files of the location, the files opened, and the records read (valid ones).
    files: int
    files_read: int
    records: int

    def description(self) -> str:
        """What the inference read, in the user's words."""
        if self.files == 1:
            return f"inferred from the first {self.records:,} records of {self.location}"
        return (
            f"inferred from {self.records:,} records of the first {self.files_read:,} of the "
            f"{self.files:,} files under {self.location}"
        )


def infer_location_schema(
    location: str,
    *,
    target: str | None,
    row_id: str | None,
    has_header: bool,
    settings: Settings,
    sample_rows: int = 10_000,
    named: tuple[str, str] = ("target", "row_id"),
) -> Inferred:
    """Guess a schema from the first records of the first file of ``location`` that holds one, among its
    first ``INFER_MAX_FILES`` files.

    Files without a record (empty, a header line only, or markers such as Hadoop's ``_SUCCESS``) are
    passed over, as reading the datasource passes over them. ``named``: as ``infer_schema``'s.
    """
    files = list_files(location, what="DataLocationS3")  # InferDataSchema's member
    first_files = files[:INFER_MAX_FILES]
    first_invalid: InvalidRecord | None = None
    invalid = 0
    budget = _Budget(INFER_MAX_BYTES)
    for index, file in enumerate(first_files):
        if budget.left <= 0:
            break
        header, rows, (bad, count) = _sample_file(file, has_header, settings, sample_rows, budget)
        if rows is not None:
            try:
                schema = infer_schema(
                    header,
                    rows,
                    target=target,
                    row_id=row_id,
                    has_header=has_header,
                    max_attributes=settings.max_attributes,
                    named=named,
                )
            except InvalidInputException as exc:
                if len(files) == 1:
                    raise
                # Of a folder, the columns listed may be another file's than the user thinks (a README
                # beside the data): say which file they are.
                raise InvalidInputException(
                    f"{exc.message} (the columns of {file.uri}, the first file with records of the "
                    f"{len(files):,} under {location})"
                ) from None
            schema, files_read, records = _target_looked_for_further(
                schema, rows, first_files[index:], settings, budget
            )
            return Inferred(schema, location, len(files), index + files_read, rows.num_rows + records)
        first_invalid = first_invalid or bad
        invalid += count
    if budget.left <= 0 and first_invalid is None:
        raise DataError(
            f"cannot infer a schema: the first {INFER_MAX_BYTES >> 20} MiB read from {location} hold no "
            "record, only empty lines"
        )
    if first_invalid is not None:
        # Records there are, but none valid (e.g. each with a trailing comma the header lacks): saying
        # "no records" would send the user looking for an empty file.
        first = first_invalid
        raise DataError(
            f"cannot infer a schema: every record read is invalid ({invalid:,} of them; the first, "
            f"line {first.line} of {first.file}: {first.reason})"
        )
    if len(files) > len(first_files):
        raise DataError(
            f"none of the first {len(first_files)} of the {len(files):,} files under {location} has records "
            "to infer a schema from"
        )
    if len(files) > 1:
        raise DataError(f"none of the {len(files)} files under {location} has records to infer a schema from")
    first = files[0]
    if has_header and (first.size == 0 or not has_a_line(first, "DataLocationS3")):
        raise DataError(f"file {first.uri} is empty: there is no header line to name the attributes")
    raise DataError(f"file {first.uri} has no records to infer a schema from")


#: A target holding a single value in the sample is read on for others, up to this many records more.
TARGET_SCAN_RECORDS = 1_000_000


def _target_looked_for_further(
    schema: Schema, sample: pa.Table, files: list[FileRef], settings: Settings, budget: _Budget
) -> tuple[Schema, int, int]:
    """``schema``, its target typed from values past the sample too when the sample holds one value of it;
    the files opened (at least the sample's) and the records read past the sample, up to what ``budget``
    leaves.

    Data sorted by its target (every 0 before the first 1, or one file per class) gave the sample a single
    target value: a 0/1 target was typed NUMERIC, and a BINARY model on it refused.
    """
    if schema.target is None:
        return schema, 1, 0
    position = schema.position(schema.target)
    seen = _spellings(sample.column(position))
    if len(seen) != 1:
        return schema, 1, 0
    others: set[str] = set()
    records = opened = 0
    with suppress(_Spent):  # the values read by then are those looked at
        for number, (file, _, stream) in enumerate(open_each(files, what="DataLocationS3")):  # the request's
            opened += 1
            skip = sample.num_rows if number == 0 else 0
            invalid = 0
            for chunk in read_chunks(
                budget.metered(stream),
                file.uri,
                schema.names,
                schema.has_header,
                block_bytes=SAMPLE_BLOCK_BYTES,
                max_record_bytes=settings.max_record_bytes,
            ):
                values = chunk.batch.column(position).slice(min(skip, chunk.batch.num_rows))
                skip -= min(skip, chunk.batch.num_rows)
                others |= _spellings(values) - seen
                records += len(values)
                invalid += len(chunk.invalid)
                # Two more values tell a flag (0 and 1) from a count (0, 1 and 2). Past max_invalid_records
                # the file is rejected: its invalid records, which TARGET_SCAN_RECORDS does not count, are
                # not read on to its end (a few compressed bytes may hold billions).
                if (
                    len(others) >= 2
                    or records >= TARGET_SCAN_RECORDS
                    or invalid > settings.max_invalid_records
                ):
                    break
            if len(others) >= 2 or records >= TARGET_SCAN_RECORDS:
                break
    if not others:
        return schema, opened, records
    column = pa.concat_arrays([*sample.column(position).chunks, pa.array(sorted(others), pa.string())])
    kind = infer_type(column)
    if kind == AttributeType.TEXT:
        kind = AttributeType.CATEGORICAL  # as infer_schema types a target
    attributes = tuple(Attribute(a.name, kind) if a.name == schema.target else a for a in schema.attributes)
    return replace(schema, attributes=attributes), opened, records


def _spellings(values: pa.Array | pa.ChunkedArray) -> set[str]:
    """The distinct non-empty values, trimmed and lower-cased (as inference compares them)."""
    spelled = pc.unique(pc.utf8_lower(pc.utf8_trim_whitespace(values))).to_pylist()
    return {value for value in spelled if value}


def _sample_file(
    file: FileRef, has_header: bool, settings: Settings, sample_rows: int, budget: _Budget
) -> tuple[list[str] | None, pa.Table | None, tuple[InvalidRecord | None, int]]:
    """The header (None without one), up to ``sample_rows`` first valid records of one file (None without
    any; those read by the time ``budget`` is spent), and the first of the invalid records met before them
    with their count (reading stops after ``max_invalid_records``, which fail a file). The records stay
    Arrow string columns: as Python lists, 10,000 rows of 1,000 columns held 900 MB."""
    if file.size == 0:
        return None, None, (None, 0)
    with open_data(file.uri, what="DataLocationS3") as (_, stream):  # InferDataSchema's member
        # One opening: the first record (the header, or the record that tells the width), then the rest.
        try:
            first, stream = read_header_again(budget.metered(stream), file.uri)
        except _Spent:
            return None, None, (None, 0)
        if has_header and not first:
            return None, None, (None, 0)
        if not first:
            raise DataError(f"file {file.uri} is empty")
        # Refused before the sample is read: its parsing costs each block a column's work for every column,
        # and 30 MB of 15,000 columns took the request 100 s and 9 GB before the width was looked at.
        check_width(len(first), settings.max_attributes)
        header = first if has_header else None
        names = header or generated_names(len(first))
        rows, invalid = _sample_rows(stream, file.uri, names, has_header, settings, sample_rows)
    return header, rows, invalid


def _sample_rows(
    stream: BinaryIO, uri: str, names: list[str], has_header: bool, settings: Settings, sample_rows: int
) -> tuple[pa.Table | None, tuple[InvalidRecord | None, int]]:
    batches: list[pa.RecordBatch] = []
    rows = 0
    first: InvalidRecord | None = None
    before = 0  # invalid records before the first valid one, counted up to one past the limit
    met = 0  # invalid records, before and after the first valid one
    with suppress(_Spent):  # the sample is what was read by then
        for chunk in read_chunks(
            stream,
            uri,
            names,
            has_header,
            block_bytes=SAMPLE_BLOCK_BYTES,
            max_record_bytes=settings.max_record_bytes,
        ):
            if chunk.batch.num_rows:
                batches.append(chunk.batch)
                rows += chunk.batch.num_rows
            if not rows and len(chunk.invalid):
                # Only the first is kept: 64 files of them were held together, gigabytes each.
                first = first or chunk.invalid[0]
                before = min(before + len(chunk.invalid), settings.max_invalid_records + 1)
            met += len(chunk.invalid)
            # Past max_invalid_records the file is rejected: a valid record followed by billions of invalid
            # ones is not read to its end.
            if rows >= sample_rows or met > settings.max_invalid_records:
                break
    if not rows:
        return None, (first, before)
    return pa.Table.from_batches(batches).slice(0, sample_rows), (first, before)
