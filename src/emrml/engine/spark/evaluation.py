"""The evaluation job on Spark: each task scores a unit's selected records with the model and returns its
``EvaluationPass``; the driver merges them in unit order and ends as the local engine does
(``engine.evaluation.finish``)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emrml.config import Settings
from emrml.engine.evaluation import EvaluationPass, Scorer
from emrml.engine.local import Progress
from emrml.engine.spark.datasource import UnitJob, plan_units, selected_batches
from emrml.engine.spark.runner import SparkRunner, driver_guarded
from emrml.engine.training import DatasourceData, scratch_folder
from emrml.engine.units import Unit
from emrml.storage.locations import check_unchanged, list_files

if TYPE_CHECKING:
    from emrml.core.model import ExpectedModel


@functools.lru_cache(maxsize=2)
def _scorer(path: str, schema_json: str, version: tuple[int, int], expected: ExpectedModel | None) -> Scorer:
    from emrml.core.schema import parse_schema

    return Scorer.load(Path(path), parse_schema(schema_json), expected)


def evaluate_unit(job: UnitJob, unit: Unit, report: Any = None) -> EvaluationPass:
    """Score a unit's selected records: the model is loaded once per executor process (and file version)."""
    info = os.stat(job.artifact)
    scorer = _scorer(job.artifact, job.schema_json, (info.st_mtime_ns, info.st_size), job.expected)
    state = EvaluationPass.of(scorer.artifact)
    for block in selected_batches(job, unit):
        state.unreadable += len(block.invalid)
        if block.batch.num_rows:
            state.update(block.batch, scorer.schema, scorer.scores)
    return state


@driver_guarded
def evaluation_pass(
    scorer: Scorer,
    artifact: str,
    data: DatasourceData,
    settings: Settings,
    progress: Progress,
    spark: Any,
    expected: ExpectedModel | None = None,
) -> EvaluationPass:
    """The evaluation's pass over ``data``, run as Spark tasks and merged on the driver (each executor
    loads the file and checks it against ``expected``, as the driver did)."""
    job = UnitJob(
        scorer.schema.to_json(),
        data.rearrangement,
        None,
        settings.batch_bytes,
        settings.max_record_bytes,
        artifact=artifact,
        expected=expected,
    )
    runner = SparkRunner(spark, progress)
    files = list_files(data.location)
    units, job = plan_units(files, job, runner)
    passes = runner.map(evaluate_unit, [(job, unit) for unit in units], "scoring records", (0.1, 1.0))
    check_unchanged(files)  # a file cut short while scored would leave records out of the metrics
    state = EvaluationPass.of(scorer.artifact, scratch_folder(settings))  # the driver's spill, as locally
    for part in passes:
        state.merge(part)
    return state
