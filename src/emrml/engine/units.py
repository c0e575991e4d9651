"""Units of work over a datasource's files, and where they run: the parallel plan both engines share.

A unit is a whole input file, or a byte range of a large plain-text file. A byte range must start at a
real record start: quoted fields may hold line breaks, so the number of ``"`` before each cut is counted
first (one parallel pass over the file counting quotes per range; batch prediction guesses it even where
no quote is near a cut, and checks the guess: ``_units``), and a cut moves to the first line break after
it where that count is even — exactly the rule the CSV reader uses — and that ends a non-empty
record (so the reader's "empty lines at the end are ignored" never applies inside the file) and is not
followed by a byte order mark. Compressed files (bzip2 included) are read whole, one unit each. A
sequential split needs global record indices: the records of every unit are counted first
(``count_unit``, a cheap boundary-only pass). ``selected_blocks`` reads a unit's records as the
datasource's split selects them, by file-absolute offsets and global indices: exactly a whole-file pass's.

``_Runner`` runs a function over units in a pool of forked processes (the local engine);
``engine.spark.runner.SparkRunner`` runs the same functions as the tasks of a Spark job (``_runner``
picks). Either hands a worker a run of consecutive units at a time (``in_runs``), whose whole files it
opens in turn through ``locations.open_files`` (``run_in_turn``): while it works on one object, the next
ones are on their way, where a worker given one unit at a time waited for each object's first bytes.
Batch prediction (engine/batch.py), and the Spark engine's statistics and evaluation, plan with these.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, TypeVar

import numpy as np
import pyarrow as pa

from emrml.config import Settings
from emrml.core.rearrange import Rearrangement, file_key, select
from emrml.core.schema import parse_schema
from emrml.engine.local import open_data
from emrml.engine.pool_size import local_workers
from emrml.engine.record_starts import RangeReader, count_quotes, guessed_start, record_start
from emrml.lifetime import die_with_parent
from emrml.storage.codecs import HEAD_BYTES, codec_of, open_decompressed
from emrml.storage.invalid import InvalidRecords
from emrml.storage.locations import DATA_LOCATION, FileRef, open_binary, open_files
from emrml.storage.records import count_records, read_chunks

Progress = Callable[[float, str | None], None]
T = TypeVar("T")
#: Runs of units a worker (a Spark executor core) gets, about: enough that the load spreads when units
#: differ in size, few enough that each run reads many objects ahead.
RUNS_PER_WORKER = 4
#: S3 lookups of the plan (the codec of a large object, the record start after a cut) sent at once: each is
#: a round trip, sent one after another they took a round trip a large object or cut. Each holds at most a
#: few megabytes (``record_start``'s windows and the reader's buffer).
PLANNING_LOOKUPS = 8


@dataclass(frozen=True)
class Parallelism:
    """How a batch prediction spreads over processes.

    ``workers`` processes run the units when the input holds at least ``min_bytes`` and more than one unit;
    plain-text files of at least ``min_bytes`` are cut into a multiple of ``workers`` ranges of at most
    about ``range_bytes``, and of at least ``min_range_bytes`` (0: no floor). ``workers`` defaults to the
    machine's cores, as many as its memory holds with the default batch size (``pool_size.local_workers``).
    """

    workers: int = field(default_factory=local_workers)
    range_bytes: int = 64 << 20
    min_bytes: int = 16 << 20
    min_range_bytes: int = 0


#: The smallest range the Spark engine cuts a file into (``planned``).
SPARK_MIN_RANGE = 1 << 20


def planned(
    parallelism: Parallelism | None, spark: Any = None, batch_bytes: int = Settings.batch_bytes
) -> Parallelism:
    """How a job cuts its input: as given, else for this machine's pool (as many processes as its cores
    and its memory hold with batches of ``batch_bytes``: ``pool_size.local_workers``), else with a
    Spark session for its cluster: a multiple of the cores its tasks run on (``defaultParallelism``, the
    executors' cores), so that every core gets a range of a large file where the local pool's cut left
    most of a cluster idle."""
    if parallelism is not None:
        return parallelism
    if spark is None:
        return Parallelism(workers=local_workers(batch_bytes))
    # A floor on the ranges: on a large cluster a 16 MB file would otherwise become hundreds of ranges of a
    # few KB, each a task with its own record-start lookup (a round trip on S3) for little work.
    return Parallelism(
        workers=max(1, int(spark.sparkContext.defaultParallelism)), min_range_bytes=SPARK_MIN_RANGE
    )


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
    #: The file's size and ETag as listed: a whole file read ahead is read as that version.
    size: int = 0
    etag: str = ""

    @property
    def bytes(self) -> int:
        return self.size if self.stop is None else self.stop - self.start

    @property
    def first(self) -> bool:
        return self.start == 0


def misplaced(units: Sequence[Unit], quotes: Sequence[int]) -> bool:
    """Whether a byte range of ``units`` (in file order, ``quotes`` the ``"`` each read) starts after an odd
    number of quotes in its file: inside a quoted field, not at a record start (``_units``' guess)."""
    before = 0
    for unit, count in zip(units, quotes, strict=True):
        if unit.first:
            before = 0
        elif before & 1:
            return True
        before += count
    return False


@contextmanager
def _open_unit(unit: Unit) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """(raw, records): the raw file, whose position measures progress, and the bytes to parse. A whole
    file comes from the run's read-ahead (``run_in_turn``) when it is the run's next."""
    ahead = _AHEAD.get()
    opened = ahead.take(unit) if ahead is not None else None
    if opened is not None:
        with opened as raw:
            yield raw, open_decompressed(raw, unit.uri)
        return
    if unit.stop is None:
        with open_data(unit.uri, what=DATA_LOCATION) as (raw, stream):
            yield raw, stream
        return
    with open_binary(unit.uri, what=DATA_LOCATION, start=unit.start) as raw:
        yield raw, RangeReader(raw, unit.stop - unit.start)  # type: ignore[misc]


class _ReadAhead:
    """The whole-file units of a run, opened in their order through ``locations.open_files``: the next
    objects are read (a large one: requested) while the one before is worked on."""

    def __init__(self, units: Sequence[Unit]) -> None:
        self.files = [FileRef(u.uri, "", u.size, etag=u.etag) for u in units if u.stop is None]
        self.opened = open_files(self.files)
        self.next = 0

    def take(self, unit: Unit) -> BinaryIO | None:
        """The raw stream of ``unit`` when it is the run's next whole file; else None (opened as usual)."""
        if unit.stop is not None or self.next >= len(self.files) or self.files[self.next].uri != unit.uri:
            return None
        self.next += 1
        return next(self.opened)


#: The read-ahead of the run this thread is working through (``run_in_turn``).
_AHEAD: ContextVar[_ReadAhead | None] = ContextVar("emrml_read_ahead", default=None)


@contextmanager
def reading_ahead(units: Sequence[Unit]) -> Iterator[None]:
    """Within the block, ``_open_unit`` takes the whole files of ``units``, asked for in this order, from
    one ``open_files``; what it read ahead and nobody took is dropped at the end."""
    ahead, before = _ReadAhead(units), _AHEAD.get()
    _AHEAD.set(ahead)
    try:
        yield
    finally:
        # ``set``, not a reset by token: a generator (a Spark partition's) may be closed in another context.
        _AHEAD.set(before)
        ahead.opened.close()


def run_in_turn(
    function: Callable[..., T],
    arguments: Sequence[tuple[Any, ...]],
    report: Callable[[int], None] | None = None,
) -> list[T]:
    """``function(*args, report=report)`` for each tuple of a run, in order, the units among the arguments
    read ahead (``reading_ahead``)."""
    units = [unit for args in arguments for unit in args if isinstance(unit, Unit)]
    with reading_ahead(units):
        return [function(*args, report=report) for args in arguments]


def in_runs(arguments: Sequence[tuple[Any, ...]], workers: int) -> list[list[tuple[Any, ...]]]:
    """``arguments`` cut into runs of consecutive tuples, each a worker's task (``run_in_turn``): about
    ``RUNS_PER_WORKER`` runs a worker, of about equal bytes of units, so the load still spreads. A unit of
    at least a run's share, and a tuple without a unit (``count_quotes``'s byte range), runs alone."""
    sizes = [next((a.bytes for a in args if isinstance(a, Unit)), None) for args in arguments]
    wanted = max(workers * RUNS_PER_WORKER, 1)
    total = sum(size or 0 for size in sizes)
    share = total / wanted if total else math.inf
    runs: list[list[tuple[Any, ...]]] = []
    run: list[tuple[Any, ...]] = []
    slot, done = 0, 0
    for args, size in zip(arguments, sizes, strict=True):
        alone = size is None or size >= share
        # The share of the bytes this unit starts in: a run holds the units that start in one share.
        starts_in = min(int(done / share), wanted - 1)
        if run and (alone or starts_in != slot):
            runs.append(run)
            run = []
        if alone:
            runs.append([args])
        else:
            run.append(args)
            slot = starts_in
        done += size or 0
    if run:
        runs.append(run)
    return runs


class ReadsUnits(Protocol):
    """What reading a unit's records needs of a job (batch prediction's ``Job``, the Spark engine's)."""

    schema_json: str
    rearrangement: Rearrangement | None
    total: int | None
    block_bytes: int
    max_record_bytes: int


@dataclass(frozen=True)
class Selected:
    """The records of one block of a unit that the datasource's split selects."""

    batch: pa.RecordBatch
    #: File-absolute byte offsets of the batch's rows.
    offsets: np.ndarray
    invalid: InvalidRecords
    #: Records of the block before selection (valid and invalid).
    records: int


def selected_blocks(job: ReadsUnits, unit: Unit, stream: BinaryIO) -> Iterator[Selected]:
    """A unit's records block by block, as the split selects them: by each record's file-absolute offset
    and global index, so exactly the rows a whole-file pass selects."""
    schema = parse_schema(job.schema_json)
    for chunk in read_chunks(
        stream,
        unit.uri,
        schema.names,
        schema.has_header and unit.first,
        block_bytes=job.block_bytes,
        max_record_bytes=job.max_record_bytes,
    ):
        offsets = unit.start + chunk.offsets
        keep = select(job.rearrangement, unit.split_key, offsets, unit.base_index + chunk.indices, job.total)
        everything = bool(keep.all())
        bad = chunk.invalid
        chosen = select(
            job.rearrangement,
            unit.split_key,
            unit.start + bad.offsets,
            unit.base_index + bad.indices,
            job.total,
        )
        yield Selected(
            chunk.batch if everything else chunk.batch.filter(pa.array(keep)),
            offsets if everything else offsets[keep],
            bad.where(chosen),
            len(chunk.indices) + len(bad),
        )


def count_unit(job: ReadsUnits, unit: Unit, report: Callable[[int], None] | None = None) -> int:
    """Records (valid and invalid) of a unit: the global record indices of a sequential split need them."""
    with _open_unit(unit) as (raw, stream):
        has_header = parse_schema(job.schema_json).has_header and unit.first
        start = raw.tell()
        count = count_records(stream, has_header, max_record_bytes=job.max_record_bytes)
        if report is not None:
            report(raw.tell() - start)
        return count


def _is_plain(uri: str) -> bool:
    """Whether the file may be cut into byte ranges: uncompressed, and seekable (a file decrypted as it is
    read is not: a range of it could not be authenticated)."""
    with open_binary(uri, what=DATA_LOCATION) as raw:
        return raw.seekable() and codec_of(uri, raw.read(HEAD_BYTES)) == "none"


def _cut_points(files: list[FileRef], parallelism: Parallelism) -> dict[int, list[int]]:
    """Where to cut each plain file of at least ``min_bytes`` (by file index) before resynchronizing: into
    pieces of at most about ``range_bytes``, a multiple of ``workers`` of them unless ``min_range_bytes``
    allows fewer."""
    large = [i for i, file in enumerate(files) if file.size and file.size >= parallelism.min_bytes]
    plain = _looked_up(_is_plain, [(files[i].uri,) for i in large])
    cuts = {}
    for i in (i for i, is_plain in zip(large, plain, strict=True) if is_plain):
        size = files[i].size
        pieces = max(parallelism.workers, math.ceil(size / parallelism.range_bytes))
        pieces = math.ceil(pieces / parallelism.workers) * parallelism.workers
        if parallelism.min_range_bytes:
            pieces = min(pieces, max(1, size // parallelism.min_range_bytes))
        points = sorted({size * k // pieces for k in range(1, pieces)} - {0})
        if points:
            cuts[i] = points
    return cuts


def _looked_up(function: Callable[..., T], arguments: Sequence[tuple[Any, ...]]) -> list[T]:
    """``function(*args)`` for each tuple, whose first member is a location, in order: those of S3 objects
    ``PLANNING_LOOKUPS`` at a time on threads, local files here (a request's read checks are this context's,
    which a pool's threads would not see; a local open costs no round trip)."""
    remote = [k for k, args in enumerate(arguments) if str(args[0]).startswith("s3://")]
    results: list[Any] = [None] * len(arguments)
    with ThreadPoolExecutor(PLANNING_LOOKUPS, thread_name_prefix="emrml-plan") as pool:
        futures = {k: pool.submit(function, *arguments[k]) for k in remote}
        try:
            for k, args in enumerate(arguments):
                results[k] = futures[k].result() if k in futures else function(*args)
        except BaseException:
            for future in futures.values():
                future.cancel()
            raise
    return results


def _units(
    files: list[FileRef],
    cuts: dict[int, list[int]],
    runner: _Runner,
    rearrangement: Rearrangement | None,
    *,
    guess: bool = False,
) -> list[Unit]:
    """The units of work: whole files, and record-aligned ranges of the files in ``cuts``.

    ``guess``: when no cut has a quote in the megabyte after it (``record_starts.guessed_start``), no
    pass counting the quotes before each cut (most of the file read before any work starts): each range
    starts where it would after an even number of quotes. That start is a record start unless the cut
    lies inside a quoted field that holds a line break and no quote for the whole window (a record of
    over a megabyte); the caller tells by the quotes its units read (``misplaced``) and plans again
    without guessing. Any record start cuts a file into the same records, so a right guess gives the
    same results. A file with quotes near its cuts (quoted line breaks may be everywhere) has them
    counted first, as without ``guess``: guessing there would risk scoring the file twice.
    """
    if guess:
        guessed = _looked_up(
            guessed_start, [(files[i].uri, point) for i, points in cuts.items() for point in points]
        )
        if not any(quoted for quoted, _ in guessed):
            begins = iter([begin for _, begin in guessed])
            return _cut_units(files, cuts, begins, rearrangement)
    segments = [
        (files[i].uri, start, stop)
        for i, points in cuts.items()
        for start, stop in zip([0, *points[:-1]], points, strict=True)
    ]
    counts = iter(runner.map(count_quotes, segments, "finding record starts", (0.0, 0.02)))
    lookups = []  # (uri, cut, whether an odd number of quotes precedes it), file by file
    for i, points in cuts.items():
        quotes = 0
        for point in points:
            quotes += next(counts)
            lookups.append((files[i].uri, point, bool(quotes & 1)))
    return _cut_units(files, cuts, iter(_looked_up(record_start, lookups)), rearrangement)


def _cut_units(
    files: list[FileRef],
    cuts: dict[int, list[int]],
    begins: Iterator[int | None],
    rearrangement: Rearrangement | None,
) -> list[Unit]:
    """Whole files, and the files in ``cuts`` as ranges starting at ``begins`` (a record start after each
    cut, None where there is none), file by file."""
    units = []
    for i, file in enumerate(files):
        starts = [0]
        for _ in cuts.get(i, []):
            begin = next(begins)
            if begin is not None and begin > starts[-1]:
                starts.append(begin)
        if len(starts) == 1:
            split_key = file_key(rearrangement, file.key, file.name)
            units.append(Unit(i, file.uri, split_key, 0, None, 0, size=file.size, etag=file.etag))
            continue
        stops = [*starts[1:], file.size]
        split_key = file_key(rearrangement, file.key, file.name)
        units.extend(
            Unit(i, file.uri, split_key, start, stop, part, size=file.size, etag=file.etag)
            for part, (start, stop) in enumerate(zip(starts, stops, strict=True))
        )
    return units


class _Runner:
    """Runs a function over argument tuples, in order, in this process or in a pool of worker processes,
    turning the raw input bytes the function reads into progress."""

    def __init__(self, workers: int, total_bytes: int, progress: Progress) -> None:
        self.total_bytes = max(total_bytes, 1)
        self.progress = progress
        self.workers = workers
        self.pool: ProcessPoolExecutor | None = None
        self.counter: Any = None
        self.abandoned: Any = None
        self._pids = (-1, -1)
        self._read = 0
        self._phase: tuple[str, float, float, int] = ("", 0.0, 0.0, 0)
        if workers > 1:
            # Forked, not started from a fork server: a worker starts in milliseconds with the code and the
            # loaded model (``_predictor``'s cache) already in memory, where a fresh interpreter spends
            # seconds importing. The job process's only other thread is its heartbeat, and workers touch
            # neither the metastore nor anything that thread may lock.
            context = multiprocessing.get_context("fork")
            self.counter = context.Value("q", 0)
            # ``ProcessPoolExecutor`` has no public way to end its processes: each writes its pid to a pipe
            # as it starts (``_init_worker``), and one that starts after its pool was given up ends at once.
            # Neither takes a lock, which a process killed while holding it would keep for good.
            self._pids = os.pipe()
            self.abandoned = context.Value("b", 0, lock=False)
            self.pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.counter, self._pids[1], self.abandoned),
            )

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is None:
            return
        if exc[0] is not None:
            # Failed or stopped (its object deleted): the units still running are of no use, and would hold
            # the job for as long as they take.
            self._kill_pool()
            self.pool.shutdown(wait=True, cancel_futures=True)
        else:
            # Every result is in: the processes end while the job goes on to publish them, rather than
            # before (each tears down a few hundred megabytes, 10-15 ms); the executor's thread reaps them,
            # and the job's process joins its children as it ends.
            self.pool.shutdown(wait=False)
        for descriptor in self._pids:
            os.close(descriptor)

    def _kill_pool(self) -> None:
        """Kill the pool's processes: those that wrote their pid, and (``abandoned``, set first) those yet to
        start, which end in their initializer."""
        self.abandoned.value = 1
        os.set_blocking(self._pids[0], False)
        written = b""
        with suppress(BlockingIOError):
            while chunk := os.read(self._pids[0], 1 << 12):
                written += chunk
        pids = {
            int.from_bytes(written[i : i + _PID_BYTES], "little") for i in range(0, len(written), _PID_BYTES)
        }
        # By their ``multiprocessing`` objects, not their pids: the kill of a process already reaped (the pool
        # reaps those of a broken pool) sends nothing, where a pid may have been reused meanwhile.
        for process in multiprocessing.active_children():
            if process.pid in pids:
                process.kill()

    def map(
        self,
        function: Callable[..., T],
        arguments: Sequence[tuple[Any, ...]],
        message: str,
        span: tuple[float, float],
    ) -> list[T]:
        """``function(*args, report=...)`` for each tuple, a run of them (``in_runs``) a pool worker's task;
        progress moves through ``span`` meanwhile."""
        self._phase = (message, *span, self._bytes_read())
        if self.pool is None:
            return run_in_turn(function, arguments, self._report)
        runs = in_runs(arguments, self.workers)
        futures: list[Future[list[T]]] = [
            self.pool.submit(_in_worker, run_in_turn, function, run) for run in runs
        ]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            self._report(0)
        return [result for future in futures for result in future.result()]

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


#: The size of a pid written to a pool's pipe: far below ``PIPE_BUF``, so each write is whole (atomic).
_PID_BYTES = 8


def _init_worker(counter: Any, pids: int, abandoned: Any) -> None:
    global _shared_read
    _shared_read = counter
    die_with_parent()  # a pool process ends with the job's worker, which ends with its server
    os.write(pids, os.getpid().to_bytes(_PID_BYTES, "little"))
    if abandoned.value:  # given up before its parent could read the pid (``_Runner._kill_pool``)
        os._exit(1)


def _report_shared(delta: int) -> None:
    with _shared_read.get_lock():
        _shared_read.value += delta


def _in_worker(function: Callable[..., T], *args: Any) -> T:
    return function(*args, report=_report_shared)
