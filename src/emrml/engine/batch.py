"""Batch predictions on the local engine: score every selected record of a datasource into result files.

Output (spec 9), for batch prediction ``<id>`` and ``OutputUri`` ``<out>/``:

* ``<out>/batch-prediction/result/<id>-<input file name>.gz`` per input file that has records: a gzip CSV
  with a header line, then one line per record of the input file the datasource selects, in input order;
  a record that cannot be scored (ragged, not UTF-8, too long) gives an empty line in its place.
* ``<out>/batch-prediction/<id>.manifest``: a JSON object mapping each input file's URI to its result's.

Columns: ``[tag,][trueLabel,]`` then ``bestAnswer,score`` (BINARY), the class names in sorted order
(MULTICLASS), or ``score`` (REGRESSION). ``tag`` is the rowId attribute's value, when the schema has one;
``trueLabel`` the target's value when the datasource has the target (BINARY: ``0``/``1``, empty when
missing or not a binary value; other types: the trimmed text). Text values are quoted as RFC 4180 asks;
numbers are Java-style scientific notation (``core.predict.java_floats``).

**Atomic.** Results are written under ``<out>/batch-prediction/.tmp-<id>/`` (hidden; for an output in
S3, under the scratch folder), moved into ``result/`` when all are complete (renamed, or uploaded as whole
objects), and the manifest is written last, as the commit marker; on failure the temporaries (and any
result already moved) are removed, so a reader that sees the manifest sees every result whole. An output
directory that cannot be written, or a bucket that is missing or refuses listing, fails the job before
any scoring.

**Parallel.** Work is cut into units — a whole input file, or a byte range of a large plain-text file — run
by a pool of ``Parallelism.workers`` processes (each unit writes one gzip part; the parts of a file are
concatenated in order, which is a valid multi-member gzip file). A byte range must start at a real record
start: quoted fields may hold line breaks, so the number of ``"`` before each cut is counted first (one
parallel pass over the file counting quotes per range), and a cut moves to the first line break after it
where that count is even — exactly the rule the CSV reader uses — and that ends a non-empty record (so the
reader's "empty lines at the end are ignored" never applies inside the file) and is not followed by a
byte order mark. Compressed files (bzip2 included) are read whole, one unit each. A sequential split needs
global record indices: the records of every unit are counted first (a cheap boundary-only pass).

**Memory** is bounded by ``Settings.batch_bytes`` per worker and the model, never by the data.
"""

from __future__ import annotations

import functools
import io
import json
import math
import multiprocessing
import os
import shutil
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.config import Settings
from emrml.core.predict import Predictor, java_floats
from emrml.core.rearrange import Rearrangement, file_key, select
from emrml.core.schema import Schema, parse_schema
from emrml.core.values import parse_binary
from emrml.engine.local import open_data
from emrml.engine.training import DatasourceData, evaluation_schema
from emrml.errors import DataError, InvalidInputException
from emrml.lifetime import die_with_parent
from emrml.storage.codecs import HEAD_BYTES, codec_of
from emrml.storage.locations import (
    FileRef,
    atomic_write,
    delete,
    exists,
    list_files,
    local_directory,
    open_binary,
    publish_file,
)
from emrml.storage.records import count_records, read_chunks

Progress = Callable[[float, str | None], None]
T = TypeVar("T")
#: gzip level of the result files: level 1 compresses the numeric lines to ~37 % at ~3x level 6's speed.
GZIP_LEVEL = 1
_BOM = b"\xef\xbb\xbf"
_LF, _CR, _QUOTE = 10, 13, 34
#: Bytes read at a time when looking for a record start after a cut.
_SYNC_WINDOW = 1 << 20
#: Bytes read at a time when counting quotes.
_COUNT_BLOCK = 16 << 20


@dataclass(frozen=True)
class Parallelism:
    """How a batch prediction spreads over processes.

    ``workers`` processes run the units when the input holds at least ``min_bytes`` and more than one unit;
    plain-text files of at least ``min_bytes`` are cut into a multiple of ``workers`` ranges of at most
    about ``range_bytes``.
    """

    workers: int = 2
    range_bytes: int = 64 << 20
    min_bytes: int = 16 << 20


@dataclass(frozen=True)
class BatchResult:
    """What a batch prediction wrote and counted (over the records the datasource selects)."""

    total_records: int
    invalid_records: int
    #: Records scored with a NUMERIC or BINARY value that could not be read (counted as missing).
    unparsed_records: int
    manifest_location: str
    results: dict[str, str]


def output_prefix(output_uri: str) -> str:
    """``OutputUri`` as a "directory": with a trailing ``/`` (spec 9 proposal)."""
    return output_uri if output_uri.endswith("/") else output_uri + "/"


def manifest_location(output_uri: str, batch_prediction_id: str) -> str:
    return f"{output_prefix(output_uri)}batch-prediction/{batch_prediction_id}.manifest"


def batch_schema(model_schema: Schema, data_schema: Schema) -> Schema:
    """The batch datasource read with the training types; the target may be absent (spec 9).

    Raises ``DataError`` naming the attributes the model uses that the datasource lacks.
    """
    missing = [a.name for a in model_schema.input_attributes if a.name not in data_schema]
    if missing:
        raise DataError(
            "the batch prediction datasource's schema lacks attributes the model uses: " + ", ".join(missing)
        )
    target = model_schema.target
    if target is not None and target not in data_schema:
        attributes = tuple(a for a in model_schema.attributes if a.name != target)
        model_schema = replace(model_schema, attributes=attributes, target=None)
    return evaluation_schema(model_schema, data_schema)


# --- result lines ---------------------------------------------------------------------------------------


def csv_text(values: pa.Array) -> pa.Array:
    """Strings quoted where RFC 4180 needs it (a comma, quote or line break inside)."""
    needs = pc.match_substring_regex(values, '[,"\r\n]')
    if not pc.any(needs).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs, quoted, values)


def _csv_name(name: str) -> str:
    return f'"{name.replace(chr(34), chr(34) * 2)}"' if any(c in name for c in ',"\r\n') else name


class ResultFormatter:
    """Turns batches of records into result lines for one model and batch schema."""

    def __init__(self, predictor: Predictor, schema: Schema) -> None:
        self.predictor = predictor
        self.tag = schema.row_id
        self.target = schema.target
        names = ["tag"] if self.tag else []
        if self.target:
            names.append("trueLabel")
        if predictor.model_type == "BINARY":
            names += ["bestAnswer", "score"]
        elif predictor.model_type == "MULTICLASS":
            names += [_csv_name(label) for label in predictor.labels or []]
        else:
            names.append("score")
        self.header = (",".join(names) + "\n").encode()

    def lines(self, batch: pa.RecordBatch, scores: np.ndarray | None = None) -> pa.Array:
        """One line per row (terminated by ``\\n``), as a string array; ``scores`` are the predictor's
        scores of ``batch`` when the caller has them already."""
        columns: list[pa.Array | str] = []
        if self.tag:
            columns.append(csv_text(batch.column(self.tag)))
        if self.target:
            columns.append(self._true_label(batch.column(self.target)))
        if scores is None:
            scores = self.predictor.score_batch(batch)
        kind = self.predictor.model_type
        if kind == "BINARY":
            assert self.predictor.score_threshold is not None
            columns.append(pc.if_else(pa.array(scores >= self.predictor.score_threshold), "1", "0"))
            columns.append(java_floats(scores))
        elif kind == "MULTICLASS":
            columns.extend(java_floats(scores[:, k]) for k in range(scores.shape[1]))
        else:
            columns.append(java_floats(scores))
        pieces: list[pa.Array | str] = []
        for column in columns:
            pieces += [column, ","]
        pieces[-1] = "\n"
        return pc.binary_join_element_wise(*pieces, "")

    def _true_label(self, column: pa.Array) -> pa.Array:
        # Targets hold few distinct values: each is parsed or quoted once, then spread to the rows.
        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary
        if self.predictor.model_type == "BINARY":
            values = parse_binary(distinct).values
            labels = pa.array(np.where(np.isnan(values), "", np.where(values == 1.0, "1", "0")))
        else:
            labels = csv_text(pc.utf8_trim_whitespace(distinct))
        return labels.take(encoded.indices)


def line_bytes(lines: pa.Array) -> memoryview:
    """The bytes of a string array's values, one after another."""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    buffer = lines.buffers()[2]
    if buffer is None or not len(lines):
        return memoryview(b"")
    return memoryview(buffer)[int(offsets[0]) : int(offsets[-1])]


def _with_empty_lines(lines: pa.Array, row_offsets: np.ndarray, invalid_offsets: np.ndarray) -> pa.Array:
    """``lines`` with an empty line inserted for each invalid record, by byte offset in the input."""
    total = len(lines) + len(invalid_offsets)
    order = np.full(total, len(lines), dtype=np.int64)  # default: the appended empty line
    positions = np.arange(len(lines)) + np.searchsorted(invalid_offsets, row_offsets)
    order[positions] = np.arange(len(lines))
    return pa.concat_arrays([lines, pa.array(["\n"])]).take(pa.array(order))


# --- units of work --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A piece of one input file: the whole file (``stop`` None), or the bytes [start, stop) of a plain
    file, which begin and end at record boundaries. The piece at ``start`` 0 holds the file's header."""

    file_index: int
    uri: str
    #: The key a random split hashes for the unit's file (``core.rearrange.file_key``).
    split_key: str
    start: int
    stop: int | None
    part: int
    #: Global index of the unit's first record, for sequential splits (set after counting).
    base_index: int = 0

    @property
    def first(self) -> bool:
        return self.start == 0


@dataclass(frozen=True)
class Job:
    """What a worker process needs besides its unit; workers load the model from its file."""

    model_path: str
    score_threshold: float | None
    schema_json: str
    rearrangement: Rearrangement | None
    #: Records of the whole datasource, when a sequential split needs it.
    total: int | None
    block_bytes: int
    max_record_bytes: int
    folder: str
    output_uri: str

    def part_path(self, unit: Unit) -> Path:
        return Path(self.folder) / f"part-{unit.file_index:06d}-{unit.part:06d}.gz"


@dataclass(frozen=True)
class UnitResult:
    records: int
    invalid: int
    #: Records with a value unreadable as its attribute's type (scored as missing).
    unparsed: int = 0


class _RangeReader(io.RawIOBase):
    """At most ``length`` bytes of ``raw``, from its current position."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        self.raw = raw
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")[: self.remaining]
        count = self.raw.readinto(view) or 0  # type: ignore[attr-defined]
        self.remaining -= count
        return count


@contextmanager
def _open_unit(unit: Unit) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(raw, records): the raw file, whose position measures progress, and the bytes to parse."""
    if unit.stop is None:
        with open_data(unit.uri) as (raw, stream):
            yield raw, stream
        return
    with open_binary(unit.uri) as raw:
        raw.seek(unit.start)
        yield raw, _RangeReader(raw, unit.stop - unit.start)  # type: ignore[misc]


def _predictor(path: str, threshold: float | None) -> Predictor:
    """The model, loaded once per process (and file version): forked workers find it loaded already."""
    info = os.stat(path)
    return _load_predictor(path, threshold, (info.st_mtime_ns, info.st_size))


@functools.lru_cache(maxsize=2)
def _load_predictor(path: str, threshold: float | None, version: tuple[int, int]) -> Predictor:
    return Predictor.load(Path(path), score_threshold=threshold)


class _Part:
    """A unit's gzip member, written to its part file; errors writing it name the output location."""

    def __init__(self, job: Job, unit: Unit) -> None:
        self.job = job
        self.path = job.part_path(unit)
        self.compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)

    def __enter__(self) -> _Part:
        self.file = self._guard(lambda: open(self.path, "wb"))  # noqa: SIM115 (closed by __exit__)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.write_raw(self.compressor.flush())
        finally:
            self._guard(self.file.close)

    def write(self, data: bytes | memoryview) -> None:
        self.write_raw(self.compressor.compress(data))

    def write_raw(self, data: bytes) -> None:
        self._guard(lambda: self.file.write(data))

    def _guard(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except OSError as exc:
            raise _output_error(self.job.output_uri, exc) from None


def run_unit(job: Job, unit: Unit, report: Callable[[int], None] | None = None) -> UnitResult:
    """Score a unit's selected records into its gzip part (the header first when it starts its file).

    ``report`` gets the raw input bytes read since its last call.
    """
    predictor = _predictor(job.model_path, job.score_threshold)
    schema = parse_schema(job.schema_json)
    formatter = ResultFormatter(predictor, schema)
    records = invalid = unparsed = 0
    with _Part(job, unit) as part, _open_unit(unit) as (raw, stream):
        if unit.first:
            part.write(formatter.header)
        reported = raw.tell()
        for chunk in read_chunks(
            stream,
            unit.uri,
            schema.names,
            schema.has_header and unit.first,
            block_bytes=job.block_bytes,
            max_record_bytes=job.max_record_bytes,
        ):
            offsets = unit.start + chunk.offsets
            keep = select(
                job.rearrangement, unit.split_key, offsets, unit.base_index + chunk.indices, job.total
            )
            batch = chunk.batch if keep.all() else chunk.batch.filter(pa.array(keep))
            bad = [r for r in chunk.invalid if _selected(job, unit, r.offset, r.index)]
            lines = formatter.lines(batch)
            unparsed += predictor.count_unparsed(batch)
            if bad:
                lines = _with_empty_lines(
                    lines, offsets[keep], np.array([unit.start + r.offset for r in bad], dtype=np.int64)
                )
            part.write(line_bytes(lines))
            records += len(lines)
            invalid += len(bad)
            if report is not None:
                position = raw.tell()
                report(position - reported)
                reported = position
    return UnitResult(records, invalid, unparsed)


def _selected(job: Job, unit: Unit, offset: int, index: int) -> bool:
    position, record = np.array([unit.start + offset]), np.array([unit.base_index + index])
    return bool(select(job.rearrangement, unit.split_key, position, record, job.total)[0])


def count_unit(job: Job, unit: Unit, report: Callable[[int], None] | None = None) -> int:
    """Records (valid and invalid) of a unit: the global record indices of a sequential split need them."""
    with _open_unit(unit) as (raw, stream):
        has_header = parse_schema(job.schema_json).has_header and unit.first
        start = raw.tell()
        count = count_records(stream, has_header, max_record_bytes=job.max_record_bytes)
        if report is not None:
            report(raw.tell() - start)
        return count


def count_quotes(uri: str, start: int, stop: int, report: Callable[[int], None] | None = None) -> int:
    """The number of ``"`` bytes in [start, stop) of a plain file."""
    count = 0
    with open_binary(uri) as raw:
        raw.seek(start)
        remaining = stop - start
        while remaining > 0:
            block = raw.read(min(_COUNT_BLOCK, remaining))
            if not block:
                break
            count += block.count(b'"')
            remaining -= len(block)
            if report is not None:
                report(len(block))
    return count


def record_start(uri: str, position: int, odd: bool) -> int | None:
    """The first record start after ``position`` that may begin a range; None when there is none.

    ``odd``: whether an odd number of ``"`` precedes ``position`` in the file. The start follows a line break
    outside quotes (an even number of quotes before it, the reader's rule) that ends a non-empty record, is
    not the end of the file, and is not followed by a byte order mark (the reader would drop it there).
    """
    behind = min(position, 2)  # look-behind, to see whether the record before a line break is empty
    with open_binary(uri) as raw:
        raw.seek(position - behind)
        base = position - behind  # file offset of buf[0]
        buf = raw.read(behind + _SYNC_WINDOW)
        parity = (int(odd) + buf[:behind].count(b'"')) & 1  # of the quotes before buf[0]
        start = behind  # line breaks before this index of buf are not candidates (or were seen)
        while True:
            more = raw.read(_SYNC_WINDOW)
            # A line break needs the bytes after it (a byte order mark?) unless the file ends there.
            decided = len(buf) if not more else len(buf) - len(_BOM)
            arr = np.frombuffer(buf, dtype=np.uint8)
            newlines = np.flatnonzero(arr[:decided] == _LF)
            newlines = newlines[newlines >= start]
            quotes_before = np.searchsorted(np.flatnonzero(arr == _QUOTE), newlines)
            for i in newlines[((parity + quotes_before) & 1) == 0].tolist():
                last = i - 1 - int(arr[i - 1] == _CR)
                if last >= 0 and arr[last] != _LF and i + 1 < len(buf) and not buf.startswith(_BOM, i + 1):
                    return base + i + 1
            if not more:
                return None
            dropped = len(buf) - len(_BOM) - 2
            parity = (parity + buf[:dropped].count(b'"')) & 1
            base += dropped
            start = decided - dropped
            buf = buf[dropped:] + more


# --- planning -------------------------------------------------------------------------------------------


def _is_plain(file: FileRef) -> bool:
    """Whether the file may be cut into byte ranges: uncompressed, and seekable (a file decrypted as it is
    read is not: a range of it could not be authenticated)."""
    with open_binary(file.uri) as raw:
        return raw.seekable() and codec_of(file.uri, raw.read(HEAD_BYTES)) == "none"


def _cut_points(files: list[FileRef], parallelism: Parallelism) -> dict[int, list[int]]:
    """Where to cut each plain file of at least ``min_bytes`` (by file index) before resynchronizing: into
    pieces of at most about ``range_bytes``, a multiple of ``workers`` of them."""
    cuts = {}
    for i, file in enumerate(files):
        if file.size and file.size >= parallelism.min_bytes and _is_plain(file):
            pieces = max(parallelism.workers, math.ceil(file.size / parallelism.range_bytes))
            pieces = math.ceil(pieces / parallelism.workers) * parallelism.workers
            points = sorted({file.size * k // pieces for k in range(1, pieces)} - {0})
            if points:
                cuts[i] = points
    return cuts


def _units(
    files: list[FileRef], cuts: dict[int, list[int]], runner: _Runner, rearrangement: Rearrangement | None
) -> list[Unit]:
    """The units of work: whole files, and record-aligned ranges of the files in ``cuts``."""
    segments = [
        (files[i].uri, start, stop)
        for i, points in cuts.items()
        for start, stop in zip([0, *points[:-1]], points, strict=True)
    ]
    counts = iter(runner.map(count_quotes, segments, "finding record starts", (0.0, 0.02)))
    units = []
    for i, file in enumerate(files):
        starts, quotes = [0], 0
        for point in cuts.get(i, []):
            quotes += next(counts)
            begin = record_start(file.uri, point, odd=bool(quotes & 1))
            if begin is not None and begin > starts[-1]:
                starts.append(begin)
        if len(starts) == 1:
            units.append(Unit(i, file.uri, file_key(rearrangement, file.key, file.name), 0, None, 0))
            continue
        stops = [*starts[1:], file.size]
        split_key = file_key(rearrangement, file.key, file.name)
        units.extend(
            Unit(i, file.uri, split_key, start, stop, part)
            for part, (start, stop) in enumerate(zip(starts, stops, strict=True))
        )
    return units


class _Runner:
    """Runs a function over argument tuples, in order, in this process or in a pool of worker processes,
    turning the raw input bytes the function reads into progress."""

    def __init__(self, workers: int, total_bytes: int, progress: Progress) -> None:
        self.total_bytes = max(total_bytes, 1)
        self.progress = progress
        self.pool: ProcessPoolExecutor | None = None
        self.counter: Any = None
        self._read = 0
        self._phase: tuple[str, float, float, int] = ("", 0.0, 0.0, 0)
        if workers > 1:
            # Forked, not started from a fork server: a worker starts in milliseconds with the code and the
            # loaded model (``_predictor``'s cache) already in memory, where a fresh interpreter spends
            # seconds importing. The job process's only other thread is its heartbeat, and workers touch
            # neither the metastore nor anything that thread may lock.
            context = multiprocessing.get_context("fork")
            self.counter = context.Value("q", 0)
            self.pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(self.counter,)
            )

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def map(
        self,
        function: Callable[..., T],
        arguments: Sequence[tuple[Any, ...]],
        message: str,
        span: tuple[float, float],
    ) -> list[T]:
        """``function(*args, report=...)`` for each tuple; progress moves through ``span`` meanwhile."""
        self._phase = (message, *span, self._bytes_read())
        if self.pool is None:
            return [function(*args, report=self._report) for args in arguments]
        futures: list[Future[T]] = [self.pool.submit(_in_worker, function, *args) for args in arguments]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            self._report(0)
        return [future.result() for future in futures]

    def _bytes_read(self) -> int:
        return self._read if self.counter is None else int(self.counter.value)

    def _report(self, delta: int) -> None:
        self._read += delta
        message, low, high, base = self._phase
        done = min((self._bytes_read() - base) / self.total_bytes, 1.0)
        self.progress(low + (high - low) * done, message)


def _runner(spark: Any, workers: int, total_bytes: int, progress: Progress) -> Any:
    """A ``_Runner``, or its Spark twin (``engine.spark.runner.SparkRunner``) when given a session."""
    if spark is None:
        return _Runner(workers, total_bytes, progress)
    from emrml.engine.spark.runner import SparkRunner

    return SparkRunner(spark, progress)


# Set in each worker process by the pool's initializer: raw input bytes read, shared with the parent.
_shared_read: Any = None


def _init_worker(counter: Any) -> None:
    global _shared_read
    _shared_read = counter
    die_with_parent()  # a pool process ends with the job's worker, which ends with its server


def _report_shared(delta: int) -> None:
    with _shared_read.get_lock():
        _shared_read.value += delta


def _in_worker(function: Callable[..., T], *args: Any) -> T:
    return function(*args, report=_report_shared)


# --- the batch prediction -------------------------------------------------------------------------------


def _output_error(output_uri: str, exc: OSError) -> InvalidInputException:
    where = f" ({exc.filename})" if exc.filename else ""
    return InvalidInputException(f"cannot write to OutputUri '{output_uri}': {exc.strerror or exc}{where}")


def _scratch(prefix: str, settings: Settings, batch_prediction_id: str) -> Path:
    """Where the parts are written and assembled: a hidden folder in a local output (results are then
    renamed into place), the scratch folder for a remote store (results are then uploaded)."""
    local = local_directory(prefix)
    if local is not None:
        return Path(local) / "batch-prediction" / f".tmp-{batch_prediction_id}"
    exists(prefix, what="OutputUri")  # a missing or forbidden bucket fails here, before any scoring
    return settings.scratch_dir / f"batch-{batch_prediction_id}"


def _result_location(prefix: str, name: str) -> str:
    local = local_directory(prefix)
    if local is not None:
        return os.path.join(local, "batch-prediction", "result", name)
    return f"{prefix}batch-prediction/result/{name}"


def result_names(files: list[FileRef], batch_prediction_id: str) -> list[str]:
    """``<id>-<input file name>.gz`` per file; a name taken already gets ``-2``, ``-3``… before ``.gz``."""
    used: set[str] = set()
    names = []
    for file in files:
        stem = f"{batch_prediction_id}-{os.path.basename(file.key.rstrip('/')) or 'data'}"
        name, copy = f"{stem}.gz", 2
        while name in used:
            name, copy = f"{stem}-{copy}.gz", copy + 1
        used.add(name)
        names.append(name)
    return names


def _concatenate(parts: list[Path], target: Path, output_uri: str) -> None:
    """Join gzip members into one file (a valid gzip file: members may follow one another)."""
    try:
        with open(parts[0], "ab") as out:
            for part in parts[1:]:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
                part.unlink()
        os.replace(parts[0], target)
    except OSError as exc:
        raise _output_error(output_uri, exc) from None


def _publish(
    files: list[FileRef],
    units: list[Unit],
    results: list[UnitResult],
    job: Job,
    prefix: str,
    batch_prediction_id: str,
    published: list[str],
) -> dict[str, str]:
    """Assemble each file's parts into its result and move the results into ``result/``; returns the
    manifest. ``published`` collects the results in place, for removal if a later step fails."""
    names = result_names(files, batch_prediction_id)
    manifest: dict[str, str] = {}
    for index, file in enumerate(files):
        mine = [
            (unit, result) for unit, result in zip(units, results, strict=True) if unit.file_index == index
        ]
        if not sum(result.records for _, result in mine):
            continue  # the datasource selects no record of this file: no result (open question 17)
        assembled = Path(job.folder) / names[index]
        _concatenate([job.part_path(unit) for unit, _ in mine], assembled, job.output_uri)
        location = _result_location(prefix, names[index])
        publish_file(str(assembled), location)
        published.append(location)
        name = quote(names[index]) if prefix.startswith("file://") else names[index]
        manifest[file.uri] = f"{prefix}batch-prediction/result/{name}"
    return manifest


def batch_predict(
    *,
    batch_prediction_id: str,
    artifact_location: Path,
    data: DatasourceData,
    output_uri: str,
    score_threshold: float | None,
    settings: Settings,
    progress: Progress,
    parallelism: Parallelism | None = None,
    spark: Any = None,
) -> BatchResult:
    """Score the records ``data`` selects with a model and write the results and manifest (module doc).

    ``score_threshold`` overrides the artifact's BINARY cut-off. ``spark``: a SparkSession whose executors
    run the units instead of this machine's processes (engine/spark/): the same units, cut the same way
    (``parallelism``), so the result files are byte for byte the local engine's. Raises ``DataError`` when
    the datasource lacks attributes the model uses, ``InvalidInputException`` when the output cannot be
    written.
    """
    parallelism = parallelism or Parallelism()
    predictor = _predictor(str(artifact_location), score_threshold)
    schema = batch_schema(predictor.schema, data.schema)
    files = list_files(data.location)
    prefix = output_prefix(output_uri)
    scratch = _scratch(prefix, settings, batch_prediction_id)
    try:
        shutil.rmtree(scratch, ignore_errors=True)  # a previous attempt's leftovers
        scratch.mkdir(parents=True)
    except OSError as exc:
        raise _output_error(output_uri, exc) from None
    published: list[str] = []
    try:
        total_bytes = sum(file.size for file in files)
        cuts = _cut_points(files, parallelism) if parallelism.workers > 1 else {}
        parallel = total_bytes >= parallelism.min_bytes and (len(files) > 1 or bool(cuts))
        job = Job(
            model_path=str(artifact_location),
            score_threshold=score_threshold,
            schema_json=schema.to_json(),
            rearrangement=data.rearrangement,
            total=None,
            block_bytes=settings.batch_bytes,
            max_record_bytes=settings.max_record_bytes,
            folder=str(scratch),
            output_uri=output_uri,
        )
        with _runner(spark, parallelism.workers if parallel else 1, total_bytes, progress) as runner:
            units = _units(files, cuts if parallel else {}, runner, data.rearrangement)
            if data.rearrangement is not None and data.rearrangement.needs_total:
                arguments = [(job, unit) for unit in units]
                counts = runner.map(count_unit, arguments, "counting records for the split", (0.02, 0.1))
                bases = np.concatenate(([0], np.cumsum(counts)[:-1])).tolist()
                units = [replace(unit, base_index=int(base)) for unit, base in zip(units, bases, strict=True)]
                job = replace(job, total=int(sum(counts)))
            results = runner.map(run_unit, [(job, unit) for unit in units], "scoring records", (0.1, 0.95))
        progress(0.95, "publishing the results")
        manifest = _publish(files, units, results, job, prefix, batch_prediction_id, published)
        location = manifest_location(output_uri, batch_prediction_id)
        with atomic_write(location) as out:
            out.write(json.dumps(manifest, ensure_ascii=False).encode())
    except BaseException:
        for location in published:
            with suppress(InvalidInputException):
                delete(location)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    progress(1.0, None)
    return BatchResult(
        total_records=sum(result.records for result in results),
        invalid_records=sum(result.invalid for result in results),
        unparsed_records=sum(result.unparsed for result in results),
        manifest_location=location,
        results=manifest,
    )
