"""The datasource job on Spark: statistics of byte ranges, summarized by tasks and merged on the driver.

The input is cut into the units batch prediction uses (``engine.batch``: whole files, and record-aligned
byte ranges of large plain files); each task reads its unit with emrml's own record reader, applies the
datasource's split to every record by its file-absolute byte offset and record index (so a row is in or
out exactly as on the local engine), and returns a ``UnitSummary``: counts, its first invalid records,
and the ``StatisticsAccumulator``'s serialized state. The driver folds the states together in unit order.

Counts, missing and invalid counts, minima and maxima, exact value counts and the row sample (the rows
with the smallest hashes of their keys, which do not depend on the cut) equal the local engine's; sketch
answers (quantiles of many distinct values, distinct counts) stay within the sketches' stated error.
Invalid-record examples keep the local engine's file, line and byte offset: a task reports lines within
its range, and the driver adds the line breaks before the range for the few examples it keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from emrml.config import Settings
from emrml.core.rearrange import Rearrangement
from emrml.core.schema import Schema, parse_schema
from emrml.core.stats import StatisticsAccumulator
from emrml.engine.local import (
    INVALID_EXAMPLES,
    DatasourceSummary,
    Progress,
    _check_headers,
    _check_statistics,
    _no_records_message,
)
from emrml.engine.record_starts import count_byte
from emrml.engine.spark.runner import SparkRunner, driver_guarded
from emrml.engine.units import (
    Parallelism,
    Selected,
    Unit,
    _cut_points,
    _open_unit,
    _units,
    count_unit,
    planned,
    selected_blocks,
)
from emrml.errors import DataError
from emrml.storage.locations import FileRef, check_unchanged, list_files

if TYPE_CHECKING:
    from emrml.core.model import ExpectedModel


@dataclass(frozen=True)
class UnitJob:
    """What a task needs besides its unit."""

    schema_json: str
    rearrangement: Rearrangement | None
    #: Records of the whole datasource, when a sequential split needs it.
    total: int | None
    block_bytes: int
    max_record_bytes: int
    compute_statistics: bool = False
    #: The model an evaluation scores with, and the MLModel the metastore says it is.
    artifact: str = ""
    expected: ExpectedModel | None = None
    #: A unit with more selected invalid records than this stops reading: its file is rejected.
    max_invalid_records: int | None = None


def selected_batches(job: UnitJob, unit: Unit) -> Iterator[Selected]:
    """A unit's selected records block by block (``engine.batch.selected_blocks`` on the unit's bytes)."""
    with _open_unit(unit) as (_, stream):
        yield from selected_blocks(job, unit, stream)


@dataclass(frozen=True)
class UnitSummary:
    #: Records of the unit before the split selects (valid and invalid), for "file has no records".
    records: int
    #: Selected records (valid and invalid) and selected invalid ones.
    selected: int
    invalid: int
    #: The first selected invalid records: (unit-relative line, file-absolute offset, reason).
    examples: tuple[tuple[int, int, str], ...]
    #: ``StatisticsAccumulator.to_bytes()`` of the selected valid rows (None without statistics).
    state: bytes | None


def summarize_unit(job: UnitJob, unit: Unit, report: Any = None) -> UnitSummary:
    """Read a unit, select its records by the split, and summarize the selected ones."""
    accumulator = StatisticsAccumulator(parse_schema(job.schema_json)) if job.compute_statistics else None
    records = selected = invalid = 0
    examples: list[tuple[int, int, str]] = []
    for block in selected_batches(job, unit):
        records += block.records
        selected += block.batch.num_rows + len(block.invalid)
        invalid += len(block.invalid)
        room = INVALID_EXAMPLES - len(examples)
        examples.extend((r.line, unit.start + r.offset, r.reason) for r in block.invalid[:room])
        if job.max_invalid_records is not None and invalid > job.max_invalid_records:
            # The driver rejects the file whatever the rest holds: a few compressed bytes may hold
            # billions of invalid records more.
            break
        if accumulator is not None and block.batch.num_rows:
            keys = (np.uint64(unit.file_index) << np.uint64(40)) | block.offsets.astype(np.uint64)
            accumulator.update(block.batch, keys)
    state = accumulator.to_bytes() if accumulator is not None else None
    return UnitSummary(records, selected, invalid, tuple(examples), state)


def plan_units(
    files: list[FileRef], job: UnitJob, runner: SparkRunner, parallelism: Parallelism | None = None
) -> tuple[list[Unit], UnitJob]:
    """The local engine's units of ``files``, cut for the cluster's cores unless ``parallelism`` says
    otherwise (``planned``), with global record indices when a sequential split needs them (then ``job``
    carries the total)."""
    rearrangement = job.rearrangement
    cuts = _cut_points(files, planned(parallelism, runner.session))
    units = _units(files, cuts, runner, rearrangement)
    if rearrangement is not None and rearrangement.needs_total:
        counts = runner.map(count_unit, [(job, unit) for unit in units], "counting records", (0.02, 0.2))
        bases = np.concatenate(([0], np.cumsum(counts)[:-1])).tolist()
        units = [replace(unit, base_index=int(base)) for unit, base in zip(units, bases, strict=True)]
        job = replace(job, total=int(sum(counts)))
    return units, job


@driver_guarded
def build_datasource(
    location: str,
    schema: Schema,
    rearrangement: Rearrangement | None,
    *,
    compute_statistics: bool,
    settings: Settings,
    progress: Progress,
    spark: Any,
    parallelism: Parallelism | None = None,
) -> DatasourceSummary:
    """``engine.local.build_datasource`` with its pass over the data run as Spark tasks."""
    files: list[FileRef] = list_files(location)
    summary = DatasourceSummary(data_size=sum(f.size for f in files), number_of_files=len(files))
    # Without a header only the first file is opened (a header there means the schema's flag is wrong);
    # reading every file's first line from the driver would cost a request per file on S3.
    _check_headers(files if schema.has_header else files[:1], schema)
    job = UnitJob(
        schema.to_json(),
        rearrangement,
        None,
        settings.batch_bytes,
        settings.max_record_bytes,
        compute_statistics=compute_statistics,
        max_invalid_records=settings.max_invalid_records,
    )
    runner = SparkRunner(spark, progress)
    units, job = plan_units(files, job, runner, parallelism)
    results = runner.map(summarize_unit, [(job, unit) for unit in units], "reading records", (0.2, 0.95))
    check_unchanged(files)  # read by the executors: a file cut short meanwhile gives fewer records
    progress(0.95, "merging the statistics")
    records_per_file, invalid_per_file = [0] * len(files), [0] * len(files)
    accumulator: StatisticsAccumulator | None = None
    for unit, result in zip(units, results, strict=True):
        records_per_file[unit.file_index] += result.records
        invalid_per_file[unit.file_index] += result.invalid
        summary.total_records += result.selected
        summary.invalid_records += result.invalid
        room = INVALID_EXAMPLES - len(summary.invalid_examples)
        if room > 0 and result.examples:
            before = count_byte(unit.uri, 0, unit.start, b"\n") if unit.start else 0
            summary.invalid_examples.extend(
                {"File": unit.uri, "Line": before + line, "Offset": offset, "Reason": reason}
                for line, offset, reason in result.examples[:room]
            )
        if result.state is not None:
            part = StatisticsAccumulator.from_bytes(schema, result.state)
            if accumulator is None:
                accumulator = part
            else:
                accumulator.merge(part)
    for file, bad in zip(files, invalid_per_file, strict=True):
        if bad > settings.max_invalid_records:
            raise DataError(
                f"file {file.uri}: more than {settings.max_invalid_records:,} records are invalid, so the "
                "file is rejected"
            )
    empty_files = [file for file, records in zip(files, records_per_file, strict=True) if records == 0]
    if summary.total_records - summary.invalid_records <= 0:
        raise DataError(_no_records_message(files, empty_files, summary, rearrangement))
    if compute_statistics:
        accumulator = accumulator or StatisticsAccumulator(schema)
        summary.statistics = accumulator.result()
        summary.sample = accumulator.sample_table()
        _check_statistics(schema, summary.statistics)
    return summary
