"""The local engine: streams a datasource's files through the core functions in this process.

``build_datasource`` is the datasource job: count records when a sequential split needs the total, then
one streaming pass that checks each file's header as it opens it (the same opening reads the records: one
GET per S3 object), selects the split's rows, counts invalid records and feeds the statistics sketches.
Memory is bounded by the block size, not by the data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from queue import Empty, Full, Queue
from typing import Any, BinaryIO, TypeVar

import numpy as np
import pyarrow as pa

from emrml.config import Settings
from emrml.core.rearrange import Rearrangement, file_key, select
from emrml.core.schema import (
    AttributeType,
    Schema,
    check_first_record,
    check_header,
)
from emrml.core.stats import StatisticsAccumulator
from emrml.errors import DataError
from emrml.storage.codecs import open_decompressed
from emrml.storage.header import read_header_again
from emrml.storage.invalid import InvalidRecord, InvalidRecords
from emrml.storage.locations import (
    DATA_LOCATION,
    FileRef,
    check_unchanged,
    list_files,
    open_binary,
    open_files,
)
from emrml.storage.records import count_records, read_chunks

Progress = Callable[[float, str | None], None]
#: How many invalid records a datasource keeps as examples (file, line, reason).
INVALID_EXAMPLES = 10
#: A BINARY or NUMERIC attribute whose values are mostly invalid is a schema error, not noisy data.
INVALID_VALUE_SHARE_LIMIT = 0.5


@dataclass
class DatasourceSummary:
    data_size: int
    number_of_files: int
    total_records: int = 0
    invalid_records: int = 0
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)
    statistics: dict[str, Any] | None = None
    #: A deterministic row sample (string columns) kept for the suggested recipe.
    sample: pa.Table | None = None


@contextmanager
def open_data(uri: str, *, what: str = "location") -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(raw, decompressed) streams of one data file; ``raw.tell()`` measures progress; errors name
    ``what``."""
    with open_binary(uri, what=what) as raw:
        yield raw, open_decompressed(raw, uri)


def open_each(
    files: list[FileRef], *, what: str = DATA_LOCATION
) -> Iterator[tuple[FileRef, BinaryIO, BinaryIO]]:
    """(file, raw, decompressed) of each file in turn, as ``open_data``; the next S3 objects are read
    meanwhile (``locations.open_files``, whose errors name ``what``). Each file is closed when the next is
    asked for."""
    opened = open_files(files, what=what)
    with closing(opened):
        for file, raw in zip(files, opened, strict=True):
            with raw:
                yield file, raw, open_decompressed(raw, file.uri)


def _check_headers(files: list[FileRef], schema: Schema) -> None:
    """Every file's header must name the schema's attributes in order, so all files share one layout; with
    a schema without a header, no file may start with one (``_header_checked``)."""
    for file, _, stream in open_each(files):
        _header_checked(stream, file.uri, schema)


def _header_checked(stream: BinaryIO, uri: str, schema: Schema) -> BinaryIO:
    """Check the header that starts ``stream`` against ``schema`` (``DataError`` naming ``uri``), or for a
    schema without a header that the first line is not one; a stream of all its bytes again, the first
    line's included, for reading the records from the same opening."""
    # Without a header the first line is a record: one too long or not UTF-8 is reported as invalid.
    first, stream = read_header_again(stream, uri, strict=schema.has_header)
    if first and schema.has_header:
        check_header(schema, first, file=uri)
    elif first:
        check_first_record(schema, first, file=uri)
    return stream


def _count_total(
    files: list[FileRef], schema: Schema, progress: Progress | None, progress_range: tuple[float, float]
) -> int:
    total, done = 0, 0
    size = sum(file.size for file in files) or 1
    low, high = progress_range
    for file, _, stream in open_each(files):
        total += count_records(stream, schema.has_header)
        done += file.size
        if progress is not None:
            progress(low + (high - low) * done / size, "counting records for the split")
    return total


def _example(record: InvalidRecord) -> dict[str, Any]:
    return {"File": record.file, "Line": record.line, "Offset": record.offset, "Reason": record.reason}


T = TypeVar("T")


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` on a background thread, ``depth`` items ahead.

    Parsing (pyarrow) and statistics (pyarrow compute, numpy) both release the GIL, so reading the next
    block while the current one is summarized keeps both cores busy.
    """
    queue: Queue[tuple[str, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put(("item", item), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put(("error", exc))
        finally:
            # Closed here, on the thread that runs it, when the consumer stops early: left to the garbage
            # collector, the reader's own scan thread (``storage.records``) stayed blocked with its block
            # for as long as the consumer's error (whose traceback holds the generator) was kept.
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="emrml-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():
            try:
                queue.get_nowait()
            except Empty:
                worker.join(0.05)


@contextmanager
def reported_aside(progress: Progress) -> Iterator[Progress]:
    """``progress``, called on a thread of its own: a report returns at once, and only the latest one not
    yet written is written.

    A job's report is a metastore write (a few per second, 2 ms of CPU and up to 10 ms of waiting on the
    database each): made by the reading thread, the slowest link of the datasource job, it held back every
    block behind it. An error the reports meet (``JobStopped``: the job was deleted or taken over) is raised
    by the next report, or on leaving, once the last report is written.
    """
    changed = threading.Condition()
    latest: list[tuple[float, str | None]] = []
    failed: list[BaseException] = []
    done = False

    def write() -> None:
        while True:
            with changed:
                changed.wait_for(lambda: latest or done)
                if not latest:
                    return
                fraction, message = latest.pop()
            try:
                progress(fraction, message)
            except BaseException as error:  # raised by the reader's next report, or on leaving
                failed.append(error)
                return

    def report(fraction: float, message: str | None) -> None:
        if failed:
            raise failed[0]
        with changed:
            latest[:] = [(fraction, message)]
            changed.notify()

    writer = threading.Thread(target=write, name="emrml-progress", daemon=True)
    writer.start()
    try:
        yield report
    finally:
        with changed:
            done = True
            changed.notify()
        writer.join()
    if failed:
        raise failed[0]


@dataclass
class SelectedBatch:
    """Valid records of one block that the split selects, with the invalid records it selects."""

    file_index: int
    file: FileRef
    batch: pa.RecordBatch
    offsets: np.ndarray
    invalid: InvalidRecords
    #: Records of this block in the file before selection (valid and invalid), for record indices.
    records_in_block: int

    def row_keys(self) -> np.ndarray:
        """A stable unique key per row: the file's position in the datasource and the row's byte offset."""
        return (np.uint64(self.file_index) << np.uint64(40)) | self.offsets.astype(np.uint64)


def read_selected(
    files: list[FileRef],
    schema: Schema,
    rearrangement: Rearrangement | None,
    *,
    settings: Settings,
    progress: Progress | None = None,
    progress_range: tuple[float, float] = (0.0, 1.0),
    check_headers: bool = False,
) -> Iterator[SelectedBatch]:
    """Stream the records of a datasource's files, keeping those its DataRearrangement selects.

    A sequential split needs the total record count first; it is counted in a cheap extra pass.
    ``check_headers``: each file's header must name the schema's attributes in order (``DataError``
    otherwise), checked from the opening that reads the file.
    """
    low, high = progress_range
    total = None
    if rearrangement is not None and rearrangement.needs_total:
        total = _count_total(files, schema, progress, (low, low + (high - low) / 5))
        low += (high - low) / 5
    size, done, base_index = sum(f.size for f in files) or 1, 0, 0
    for file_index, (file, raw, stream) in enumerate(open_each(files)):
        key = file_key(rearrangement, file.key, file.name)
        if check_headers:
            stream = _header_checked(stream, file.uri, schema)
        for chunk in read_chunks(
            stream,
            file.uri,
            schema.names,
            schema.has_header,
            block_bytes=settings.batch_bytes,
            max_record_bytes=settings.max_record_bytes,
        ):
            keep = select(rearrangement, key, chunk.offsets, base_index + chunk.indices, total)
            bad = chunk.invalid
            invalid = bad.where(select(rearrangement, key, bad.offsets, base_index + bad.indices, total))
            everything = bool(keep.all())
            yield SelectedBatch(
                file_index,
                file,
                chunk.batch if everything else chunk.batch.filter(pa.array(keep)),
                chunk.offsets if everything else chunk.offsets[keep],
                invalid,
                len(chunk.indices) + len(chunk.invalid),
            )
            base_index += len(chunk.indices) + len(chunk.invalid)
            if progress is not None:
                fraction = (done + raw.tell()) / size
                progress(low + (high - low) * fraction, f"reading {file.uri}")
        done += file.size
    # A file cut short (or an object replaced) while read would otherwise give other records, silently.
    # Every file at once, after the last: for S3 objects one listing a thousand objects rather than a
    # HeadObject each (which made a datasource of many small objects 70 % slower).
    check_unchanged(files)


def build_datasource(
    location: str,
    schema: Schema,
    rearrangement: Rearrangement | None,
    *,
    compute_statistics: bool,
    settings: Settings,
    progress: Progress,
) -> DatasourceSummary:
    """Read every file of ``location`` once; raise DataError when the data cannot make a datasource."""
    files = list_files(location)
    summary = DatasourceSummary(data_size=sum(f.size for f in files), number_of_files=len(files))
    accumulator = StatisticsAccumulator(schema) if compute_statistics else None
    records_per_file = [0] * len(files)
    invalid_per_file = [0] * len(files)
    # The statistics' second thread (see StatisticsAccumulator.update); the reader's is in prefetch, its
    # progress reports on a thread of their own.
    with (
        ThreadPoolExecutor(1, thread_name_prefix="emrml-statistics") as executor,
        reported_aside(progress) as report,
    ):
        batches = read_selected(
            files, schema, rearrangement, settings=settings, progress=report, check_headers=True
        )
        for selected in prefetch(batches) if accumulator is not None else batches:
            records_per_file[selected.file_index] += selected.records_in_block
            bad = selected.invalid
            invalid_per_file[selected.file_index] += len(bad)
            summary.invalid_records += len(bad)
            room = INVALID_EXAMPLES - len(summary.invalid_examples)
            summary.invalid_examples.extend(_example(r) for r in bad[:room])
            if invalid_per_file[selected.file_index] > settings.max_invalid_records:
                raise DataError(
                    f"file {selected.file.uri}: more than {settings.max_invalid_records:,} records are "
                    f"invalid, so the file is rejected (first: line {bad[0].line}: {bad[0].reason})"
                )
            summary.total_records += selected.batch.num_rows + len(bad)
            if accumulator is not None and selected.batch.num_rows:
                accumulator.update(selected.batch, selected.row_keys(), executor=executor)
        empty_files = [file for file, records in zip(files, records_per_file, strict=True) if records == 0]
        if summary.total_records - summary.invalid_records <= 0:
            raise DataError(_no_records_message(files, empty_files, summary, rearrangement))
        if accumulator is not None:
            # Settles the TEXT work still running on the executor first.
            summary.statistics = accumulator.result(executor=executor)
            summary.sample = accumulator.sample_table()
            _check_statistics(schema, summary.statistics)
    return summary


def _no_records_message(
    files: list[FileRef],
    empty_files: list[FileRef],
    summary: DatasourceSummary,
    rearrangement: Rearrangement | None,
) -> str:
    if len(empty_files) == len(files):
        file = files[0]
        if file.size == 0 or (len(files) == 1 and not has_a_line(file)):
            return f"file {file.uri} is empty: the datasource has no records"
        return (
            f"file {file.uri} has no records (only a header line)"
            if len(files) == 1
            else (f"none of the {len(files)} files under the location holds a record")
        )
    if summary.invalid_records:
        first = summary.invalid_examples[0] if summary.invalid_examples else None
        where = f"the first, line {first['Line']} of {first['File']}: {first['Reason']}; " if first else ""
        return f"all {summary.invalid_records:,} records are invalid ({where}see the invalid record examples)"
    if rearrangement is not None:
        return "the DataRearrangement selects no records of this data"
    return "the datasource has no records"


def _check_statistics(schema: Schema, statistics: dict[str, Any]) -> None:
    """Refuse data that contradicts the schema: an empty target, an attribute typed against its values."""
    records = statistics.get("recordCount", 0)
    for attribute in statistics.get("attributes", []):
        name, kind = attribute["name"], attribute["type"]
        missing, invalid = attribute.get("missingCount", 0), attribute.get("invalidCount", 0)
        if name == schema.target and records and missing >= records:
            raise DataError(f"target attribute {name!r} is empty in every record")
        present = records - missing
        if (
            kind in (AttributeType.BINARY, AttributeType.NUMERIC)
            and present
            and (invalid / present > INVALID_VALUE_SHARE_LIMIT)
        ):
            expected = "0 1 n y no yes f t false true" if kind == AttributeType.BINARY else "numbers"
            raise DataError(
                f"attribute {name!r} is declared {kind} but {invalid:,} of its {present:,} values are not "
                f"valid {kind} values (expected {expected}); check the schema's attributeType"
            )


def has_a_line(file: FileRef, what: str = "location") -> bool:
    """Whether a file holds anything once decompressed (a compressed empty file is not 0 bytes long)."""
    with open_data(file.uri, what=what) as (_, stream):
        return bool(stream.read(1))
