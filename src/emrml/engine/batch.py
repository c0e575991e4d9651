"""Batch predictions on the local engine: score every selected record of a datasource into result files.

Output (spec 9), for batch prediction ``<id>`` and ``OutputUri`` ``<out>/``:

* ``<out>/batch-prediction/result/<id>-<input file name>.gz`` per input file that has records: a gzip CSV
  with a header line, then one line per record of the input file the datasource selects, in input order;
  a record that cannot be scored (ragged, not UTF-8, too long, or huge NUMERIC values whose prediction
  is no number, which Predict refuses) gives an empty line in its place, counted as invalid.
* ``<out>/batch-prediction/<id>.manifest``: a JSON object mapping each input file's URI to its result's.

Columns: ``[tag,][trueLabel,]`` then ``bestAnswer,score`` (BINARY), the class names in sorted order
(MULTICLASS), or ``score`` (REGRESSION). ``tag`` is the rowId attribute's value, when the schema has one;
``trueLabel`` the target's value when the datasource has the target (BINARY: ``0``/``1``, empty when
missing or not a binary value; other types: the trimmed text). Text values are quoted as RFC 4180 asks;
numbers are Java-style scientific notation (``core.floats.java_float_cells``).

**Atomic.** Results are written under ``<out>/batch-prediction/.tmp-<id>+attempt-<n>/`` (hidden; for an
output in S3, under the scratch folder), moved into ``result/`` together when all are complete (renamed, or
uploaded a few at once, in one ``commit`` step: ``storage.publishing``), and the manifest is written last, as
the commit marker; on failure the temporaries (and any result already moved) are removed, so a reader that
sees the manifest sees every result whole. Each
attempt of the job has its own folder: an attempt given up while its worker still runs never mixes its
parts with the next attempt's, and removes only its own folder as it stops. The names every attempt
shares (the manifest, the results) are written or removed only through the job's ``commit``, which runs
each such step (a rename, the request that completes an upload, a removal) only while the attempt holds
the job and keeps it held until the step is done: an attempt given up cannot write over, or remove, the
output of an attempt after it. An output directory that cannot be written, or a bucket that is missing
or refuses listing, fails the job before any scoring.

**Parallel.** Work is cut into units (engine/units.py: whole files, and record-aligned byte ranges of large
plain-text files) run by a pool of ``Parallelism.workers`` processes, or as Spark tasks; each unit writes
one gzip part, and the parts of a file are concatenated in order, which is a valid multi-member gzip file.

**Memory** is bounded by ``Settings.batch_bytes`` per worker and the model, never by the data; the local pool
has no more workers than the memory available holds (engine/pool_size.py).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.config import Settings
from emrml.core.predict import Predictor, unscorable_rows
from emrml.core.rearrange import Rearrangement
from emrml.core.schema import Schema, parse_schema
from emrml.engine.batch_output import (
    attempt_folder,
    attempt_folders,
    completed_made,
    made_marker,
    make_output_folders,
    remove_made,
    result_file,
    result_names,
)
from emrml.engine.outputs import manifest_location, output_prefix, result_location
from emrml.engine.record_starts import quotes_read
from emrml.engine.result_lines import ResultFormatter, line_bytes, result_columns
from emrml.engine.training import DatasourceData, evaluation_schema
from emrml.engine.units import (
    Parallelism,
    Progress,
    Unit,
    _cut_points,
    _open_unit,
    _runner,
    _units,
    count_unit,
    misplaced,
    planned,
    selected_blocks,
)
from emrml.errors import DataError, InvalidInputException
from emrml.storage.backend import Commit, commit_now
from emrml.storage.gzipped import gzip_compressor
from emrml.storage.locations import (
    FileRef,
    atomic_write,
    check_unchanged,
    delete,
    list_files,
    remove_temporaries,
)
from emrml.storage.publishing import publish_files, withdraw

if TYPE_CHECKING:
    from emrml.core.model import ExpectedModel

T = TypeVar("T")


@dataclass(frozen=True)
class BatchResult:
    """What a batch prediction wrote and counted (over the records the datasource selects)."""

    total_records: int
    invalid_records: int
    #: Records scored with a NUMERIC or BINARY value that could not be read (counted as missing).
    unparsed_records: int
    manifest_location: str
    results: dict[str, str]


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


def _with_empty_lines(lines: pa.Array, row_offsets: np.ndarray, invalid_offsets: np.ndarray) -> pa.Array:
    """``lines`` with an empty line inserted for each invalid record, by byte offset in the input."""
    total = len(lines) + len(invalid_offsets)
    order = np.full(total, len(lines), dtype=np.int64)  # default: the appended empty line
    positions = np.arange(len(lines)) + np.searchsorted(invalid_offsets, row_offsets)
    order[positions] = np.arange(len(lines))
    return pa.concat_arrays([lines, pa.array(["\n"])]).take(pa.array(order))


# --- scoring a unit ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What a worker process needs besides its unit; workers load the model from its file."""

    model_path: str
    score_threshold: float | None
    #: The MLModel the metastore says the file is, which each worker checks it against.
    expected: ExpectedModel | None
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
    #: The ``"`` bytes of the unit's byte range (``units.misplaced``); 0 for a whole file.
    quotes: int = 0


def _predictor(path: str, threshold: float | None, expected: ExpectedModel | None) -> Predictor:
    """The model, loaded once per process (and file version): forked workers find it loaded already."""
    try:
        info = os.stat(path)
    except OSError:
        # A missing or unreadable model file: loading it raises the error naming the file and the problem.
        return Predictor.load(Path(path), score_threshold=threshold, expected=expected)
    return _load_predictor(path, threshold, (info.st_mtime_ns, info.st_size), expected)


@functools.lru_cache(maxsize=2)
def _load_predictor(
    path: str, threshold: float | None, version: tuple[int, int], expected: ExpectedModel | None
) -> Predictor:
    return Predictor.load(Path(path), score_threshold=threshold, expected=expected)


class _Part:
    """A unit's gzip member, written to its part file; errors writing it name the output location."""

    def __init__(self, job: Job, unit: Unit) -> None:
        self.job = job
        self.path = job.part_path(unit)
        self.compressor = gzip_compressor()

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
    predictor = _predictor(job.model_path, job.score_threshold, job.expected)
    formatter = ResultFormatter(predictor, parse_schema(job.schema_json))
    records = invalid = unparsed = 0
    with _Part(job, unit) as part, _open_unit(unit) as (raw, stream):
        if unit.first:
            part.write(formatter.header)
        reported = raw.tell()
        for block in selected_blocks(job, unit, stream):
            scores, unreadable = predictor.score_and_check(block.batch)
            lines = formatter.lines(block.batch, scores)
            # A record whose prediction is no number (its line said NaN) cannot be scored, as Predict says.
            overflowed = unscorable_rows(scores)
            if overflowed is not None:
                lines = pc.if_else(pa.array(overflowed), "\n", lines)
                invalid += int(overflowed.sum())
            unparsed += unreadable
            if len(block.invalid):
                lines = _with_empty_lines(lines, block.offsets, unit.start + block.invalid.offsets)
            part.write(line_bytes(lines))
            records += len(lines)
            invalid += len(block.invalid)
            if report is not None:
                position = raw.tell()
                report(position - reported)
                reported = position
        quotes = quotes_read(stream)
    return UnitResult(records, invalid, unparsed, quotes)


def _score(
    runner: Any, job: Job, units: list[Unit], rearrangement: Rearrangement | None
) -> tuple[list[Unit], list[UnitResult], Job]:
    """Run ``run_unit`` over the units (numbered for a sequential split first); the units and the job as
    numbered, and the results."""
    if rearrangement is not None and rearrangement.needs_total:
        arguments = [(job, unit) for unit in units]
        counts = runner.map(count_unit, arguments, "counting records for the split", (0.02, 0.1))
        bases = np.concatenate(([0], np.cumsum(counts)[:-1])).tolist()
        units = [replace(unit, base_index=int(base)) for unit, base in zip(units, bases, strict=True)]
        job = replace(job, total=int(sum(counts)))
    results = runner.map(run_unit, [(job, unit) for unit in units], "scoring records", (0.1, 0.95))
    return units, results, job


# --- the batch prediction -------------------------------------------------------------------------------


def _output_error(output_uri: str, exc: OSError) -> InvalidInputException:
    where = f" ({exc.filename})" if exc.filename else ""
    return InvalidInputException(f"cannot write to OutputUri '{output_uri}': {exc.strerror or exc}{where}")


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
    commit: Commit,
) -> dict[str, str]:
    """Assemble each file's parts into its result and move the results into ``result/`` at once
    (``storage.publishing``); returns the manifest. ``published`` collects the results in place."""
    names = result_names(files, batch_prediction_id)
    manifest: dict[str, str] = {}
    moves: list[tuple[str, str]] = []
    for index, file in enumerate(files):
        mine = [
            (unit, result) for unit, result in zip(units, results, strict=True) if unit.file_index == index
        ]
        if not sum(result.records for _, result in mine):
            continue  # the datasource selects no record of this file: no result (open question 17)
        assembled = Path(job.folder) / names[index]
        _concatenate([job.part_path(unit) for unit, _ in mine], assembled, job.output_uri)
        moves.append((str(assembled), result_file(prefix, names[index])))
        name = quote(names[index]) if prefix.startswith("file://") else names[index]
        manifest[file.uri] = result_location(prefix, name)
    publish_files(moves, commit, published)
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
    attempt: int = 1,
    commit: Commit = commit_now,
    expected: ExpectedModel | None = None,
) -> BatchResult:
    """Score the records ``data`` selects with a model and write the results and manifest (module doc).

    ``attempt``: the job's attempt this run is, which names its temporary folder. ``commit`` runs each step
    that writes or removes a name every attempt shares (the manifest, the results) only while that attempt
    holds the job, holding it meanwhile, and raises (ending the run, as a progress report may) when it no
    longer does: an attempt given up while its worker still ran never touches the output of the attempt
    after it.
    ``score_threshold`` overrides the artifact's BINARY cut-off; ``expected`` is the MLModel the metastore
    says the file is (``load_artifact`` refuses another model's file, in every process that loads it).
    ``spark``: a SparkSession whose executors run the units instead of this machine's processes
    (engine/spark/), cut for its cluster's cores unless ``parallelism`` is given (``planned``); cut the
    same way, the result files are byte for byte the local engine's. Raises ``DataError`` when the
    datasource lacks attributes the model uses, ``InvalidInputException`` when the output cannot be
    written, the file is not the ``expected`` model's or its results would name two columns alike
    (``result_columns``).
    """
    parallelism = planned(parallelism, spark, settings.batch_bytes)
    predictor = _predictor(str(artifact_location), score_threshold, expected)
    schema = batch_schema(predictor.schema, data.schema)
    result_columns(predictor, schema)  # refused before any output is made, not in every unit
    files = list_files(data.location)
    prefix = output_prefix(output_uri)
    scratch = attempt_folder(prefix, settings, batch_prediction_id, attempt)
    made = made_marker(prefix, settings, batch_prediction_id)
    try:
        if made is not None:
            make_output_folders(made)
        # What earlier attempts left (killed, they ran no cleanup code; a folder of this attempt's number
        # only from a version that numbered attempts anew after a server's stop): a later attempt's folder
        # is not touched, should this attempt be one given up whose worker still runs.
        for number, folder in attempt_folders(prefix, settings, batch_prediction_id).items():
            if number <= attempt:
                shutil.rmtree(folder, ignore_errors=True)
        scratch.mkdir(parents=True)
    except OSError as exc:
        raise _output_error(output_uri, exc) from None
    published: list[str] = []
    try:
        # A previous attempt that died after writing its manifest: the manifest goes until this one's
        # replaces it, so that nobody takes the old results, about to be written again, for the job's.
        manifest_file = manifest_location(output_uri, batch_prediction_id)
        commit(lambda: delete(manifest_file))
        total_bytes = sum(file.size for file in files)
        cuts = _cut_points(files, parallelism) if parallelism.workers > 1 else {}
        parallel = total_bytes >= parallelism.min_bytes and (len(files) > 1 or bool(cuts))
        job = Job(
            model_path=str(artifact_location),
            score_threshold=score_threshold,
            expected=expected,
            schema_json=schema.to_json(),
            rearrangement=data.rearrangement,
            total=None,
            block_bytes=settings.batch_bytes,
            max_record_bytes=settings.max_record_bytes,
            folder=str(scratch),
            output_uri=output_uri,
        )
        # The scorer's sigmoid (scipy.special, 0.15 s of imports) loads here, before the pool forks, rather
        # than in every pool worker on its first batch.
        import scipy.special  # noqa: F401

        with _runner(spark, parallelism.workers if parallel else 1, total_bytes, progress) as runner:
            # Where no quote is near a cut, the ranges start where they would after an even number of quotes
            # (``_units``' guess), checked by the quotes each read: the pass counting the quotes first (three
            # quarters of the file read before any scoring) is saved, and a wrong guess (a quoted field of
            # over a megabyte holding line breaks around a cut) costs a second plan and scoring.
            units = _units(files, cuts if parallel else {}, runner, data.rearrangement, guess=True)
            units, results, job = _score(runner, job, units, data.rearrangement)
            if misplaced(units, [result.quotes for result in results]):
                for unit in units:
                    job.part_path(unit).unlink(missing_ok=True)
                units = _units(files, cuts if parallel else {}, runner, data.rearrangement)
                units, results, job = _score(runner, job, units, data.rearrangement)
        check_unchanged(files)  # a file cut short while scored would give a result short of records
        progress(0.95, "publishing the results")
        manifest = _publish(files, units, results, job, prefix, batch_prediction_id, published, commit)
        # Listed before it is written, and removed first: no reader takes what remains for complete results.
        # Its PutObject may fail after S3 stored it (the answer lost), as a result's may (``publish_files``).
        published.insert(0, manifest_file)
        with atomic_write(manifest_file, commit) as out:
            out.write(json.dumps(manifest, ensure_ascii=False).encode())
        # What an attempt killed while it wrote the manifest left beside it: removed through ``commit``, so
        # that no attempt given up removes the temporary of the manifest the job's attempt is writing.
        commit(lambda: remove_temporaries(manifest_file))
        # The last progress point, where a job deleted while it published stops: what it wrote goes.
        progress(1.0, None)
        completed_made(made)
    except BaseException:
        if published:
            withdraw(published, commit)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        # A run that did not complete (the marker is gone once it did).
        remove_made(made, settings, keep_marker=True)
    return BatchResult(
        total_records=sum(result.records for result in results),
        invalid_records=sum(result.invalid for result in results),
        unparsed_records=sum(result.unparsed for result in results),
        manifest_location=manifest_file,
        results=manifest,
    )
