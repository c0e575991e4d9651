"""Training on Spark: the feature space fitted in parts, the featurized rows kept by Spark, and
data-parallel SGD passes mixed on the driver.

1. **Fit.** Each task reads a unit of the training data (the local engine's units and record reader, so
   the split selects exactly the same rows) and returns its ``Fitting`` and ``TargetSummary``; the driver
   merges them in unit order (a second job counts bins inside other transformations with the merged
   edges). The feature space is the local engine's for the same data: exact counts and moments; quantile
   edges past ``EXACT_DISTINCT_LIMIT`` distinct values within the KLL sketches' error.
2. **Featurize once.** One partition per executor core (``defaultParallelism``, at most one per unit), each
   a run of consecutive units, featurized with the same ``FeatureSpace`` and persisted by Spark
   (``MEMORY_AND_DISK``): later passes read the sparse batches, not the CSV. A lost executor's partitions
   are featurized again from their units (Spark's lineage), so a task retry changes nothing.
3. **Calibrate.** Each partition returns its bottom-k keyed sample (keys from a generator seeded by the
   partition); the driver keeps the smallest keys (``core.learn.merge_samples``) and ``core.learn.Trainer``
   chooses the target scale, mini-batch size and learning rate as on one machine.
4. **Passes: iterative parameter mixing** (McDonald et al. 2010). The driver broadcasts the learner's
   state; every partition runs a pass of the same mini-batch AdaGrad over its rows (shuffled within its
   windows by a generator seeded by the seed, the pass and the partition) and returns its state; the
   driver averages them (``core.sgd.DualAveraging.mix``; past ``MIX_FAN_IN`` partitions, groups of them
   are first added up on the executors) and ends the pass as ``train`` does: the
   objective on the calibration sample, early stop, the best pass's model. A REGRESSION model's exact
   refinement then reads the cached rows back through the driver (``toLocalIterator``), a partition at a
   time.

Deterministic for a seed and a partitioning: the parts are added up in partition order, never in the
order tasks finish. The driver holds at most ``MIX_FAN_IN`` states while mixing (``n_features *
n_outputs`` floats, three arrays each), the calibration sample, and one partition's batches during a
refinement.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from emrml.config import Settings
from emrml.core.calibration import CALIBRATION_ROWS, keyed_sample, merge_samples
from emrml.core.features import FeatureSpace
from emrml.core.features.fitting import Fitting
from emrml.core.learn import Checker, PassTotals, Trainer, pass_batches, pass_phase
from emrml.core.linear import TrainingParameters
from emrml.core.recipe.grammar import parse_recipe
from emrml.core.schema import parse_schema
from emrml.core.sgd import Batch, DualAveraging
from emrml.engine.local import Progress
from emrml.engine.spark.datasource import UnitJob, plan_units, selected_batches
from emrml.engine.spark.runner import (
    SparkRunner,
    TaskFailure,
    driver_guarded,
    final,
    in_executor,
    raise_failures,
)
from emrml.engine.training import (
    DatasourceData,
    Learned,
    TargetSummary,
    TrainingProgress,
    parse_target,
    row_weights,
)
from emrml.engine.units import Unit, reading_ahead
from emrml.errors import DataError
from emrml.storage.local import Check, current_guards
from emrml.storage.locations import check_unchanged, list_files, storage_settings


@dataclass
class UnitFit:
    """What a task learned from its unit: the fitting and the target's summary."""

    fitting: Fitting
    target: TargetSummary


def fit_unit(job: UnitJob, unit: Unit, recipe_text: str, model_type: str, report: Any = None) -> UnitFit:
    """First pass of the fit over a unit's selected records."""
    schema = parse_schema(job.schema_json)
    fitting = Fitting(parse_recipe(recipe_text, schema), schema)
    target = TargetSummary()
    for block in selected_batches(job, unit):
        if block.batch.num_rows:
            fitting.update(block.batch)
            targets = parse_target(block.batch, schema, model_type)
            weights = row_weights(block.batch.filter(pa.array(targets.keep)), schema)
            target.add(model_type, targets.values, schema.target, weights)
    return UnitFit(fitting, target)


def count_unit_bins(job: UnitJob, unit: Unit, fitting: Fitting, report: Any = None) -> Fitting:
    """Second pass of the fit over a unit: ``fitting`` is an empty second-pass part."""
    for block in selected_batches(job, unit):
        if block.batch.num_rows:
            fitting.update(block.batch)
    return fitting


@dataclass(frozen=True)
class Featurizing:
    """What every partition needs to featurize its units (broadcast once)."""

    space: dict[str, Any]
    model_type: str
    #: The sorted MULTICLASS labels: a target's feature is its index here.
    labels: tuple[str, ...]
    #: The driver's storage settings (``storage.locations.storage_settings``).
    storage: dict[str, Any]
    #: The driver's checks of local files (``storage.local.current_guards``).
    guards: tuple[Check | None, Check | None]


def featurize_units(
    items: Iterable[tuple[UnitJob, Unit]], setup: Featurizing
) -> Iterator[Batch | TaskFailure]:
    """The featurized training rows of a run of units: ``(X, y, weight)`` per block, as the local engine
    caches them (rows without a usable target dropped); bad data ends them with its ``TaskFailure`` (kept
    with the rows, so Spark does not read the units again). The next objects of the run are read ahead
    while one is featurized (``engine.units.reading_ahead``)."""
    in_executor(setup.storage, setup.guards)
    items = list(items)
    try:
        with reading_ahead([unit for _, unit in items]):
            yield from _featurized(items, setup)
    except DataError as exc:
        failure = final(exc)
        if failure is None:
            raise
        yield failure


def _featurized(items: Iterable[tuple[UnitJob, Unit]], setup: Featurizing) -> Iterator[Batch]:
    labels = np.array(setup.labels)
    space: FeatureSpace | None = None
    for job, unit in items:
        schema = parse_schema(job.schema_json)
        if space is None:  # once per partition: its units share the job's schema
            space = FeatureSpace.from_dict(setup.space, schema)
        for block in selected_batches(job, unit):
            if not block.batch.num_rows:
                continue
            targets = parse_target(block.batch, schema, setup.model_type)
            rows = block.batch.filter(pa.array(targets.keep))
            if not rows.num_rows:
                continue
            y = targets.values
            if setup.model_type == "MULTICLASS":
                y = np.searchsorted(labels, y.astype(str)).astype(np.float64)
            weight = row_weights(rows, schema)
            yield space.transform(rows), y, np.ones(rows.num_rows) if weight is None else weight


@dataclass(frozen=True)
class PassSetup:
    """A pass as every partition starts it (broadcast once per pass)."""

    state: DualAveraging
    check: Checker
    rows_per_step: int
    seed: int
    pass_index: int
    shuffle: bool


def run_pass(index: int, batches: Iterator[Batch], setup: Any) -> Iterator[Part]:
    """One partition's part of a pass, from the broadcast state: its own state and totals."""
    pass_setup: PassSetup = setup.value
    state = pass_setup.state
    rng = None
    if pass_setup.shuffle:
        rng = np.random.default_rng([pass_setup.seed, pass_setup.pass_index, index])
    totals = PassTotals()
    before = state.steps
    for X, y, weight in pass_batches(lambda: _rows(batches), pass_setup.check, rng):
        totals.loss += state.fit_rows(X, y, weight, pass_setup.rows_per_step)
        totals.add(X, weight)
    totals.steps = state.steps - before
    if totals.rows:  # a partition without rows has nothing to add: mixing its state in would only dilute
        yield index, state, totals


#: A partition's (or a group's) part of a pass: its index (group key), its state (sum), its totals.
Part = tuple[int, DualAveraging, PassTotals]
#: Parts the driver adds up itself; more are first added up in groups of this many on the executors, so
#: the driver receives about ``partitions / MIX_FAN_IN`` states per pass instead of one per partition.
MIX_FAN_IN = 32


def mix_pass(
    parts: Any, partitions: int, counted: Callable[[Callable[..., Iterable[Part]]], Any]
) -> tuple[DualAveraging, PassTotals, int]:
    """The parts' states mixed, their totals added up and how many there were, always in partition order
    (deterministic); ``counted`` wraps the groups' function, a partition's, to count its CPU time."""
    if partitions <= MIX_FAN_IN:
        collected = parts.collect()
    else:
        fan_in = MIX_FAN_IN  # a value the executors get with the function (not their module's)
        groups = -(-partitions // fan_in)
        collected = (
            parts.map(lambda part: (part[0] // fan_in, part))
            .groupByKey(groups)
            .mapPartitions(counted(functools.partial(map, _add_up_group)))
            .collect()
        )
    _, state, totals = add_up(0, collected)
    return state.mean(), totals, state.summed


def _add_up_group(group: tuple[int, Iterable[Part]]) -> Part:
    return add_up(group[0], group[1])


def add_up(key: int, parts: Iterable[Part]) -> Part:
    """The sum of parts, taken in the order of their indices."""
    ordered = sorted(parts, key=lambda part: part[0])
    totals = PassTotals()
    for _, _, part_totals in ordered:
        totals.merge(part_totals)
    return key, DualAveraging.add_up([state for _, state, _ in ordered]), totals


def sample_partition(index: int, batches: Iterator[Batch], check: Checker, seed: int) -> Iterator[Any]:
    """A partition's bottom-k keyed sample for the calibration, or its ``TaskFailure`` (bad data)."""
    rng = np.random.default_rng([seed, index])
    failures: list[TaskFailure] = []

    def rows() -> Iterator[Batch]:
        for item in batches:
            if isinstance(item, TaskFailure):
                failures.append(item)
                return
            yield item

    sample = keyed_sample(rows, check, CALIBRATION_ROWS, rng)
    yield failures[0] if failures else sample


def _rows(items: Iterator[Batch | TaskFailure]) -> Iterator[Batch]:
    """A partition's cached batches; its ``TaskFailure`` raised (the data went bad after the calibration
    read it, when Spark featurized a lost partition again)."""
    for item in items:
        if isinstance(item, TaskFailure):
            raise item.error()
        yield item


@driver_guarded
def train_on_spark(
    *,
    model_type: str,
    data: DatasourceData,
    recipe_text: str,
    parameters: TrainingParameters,
    settings: Settings,
    progress: Progress,
    spark: Any,
    seed: int = 0,
) -> Learned:
    """Fit, featurize and train on Spark's executors (see the module docstring)."""
    schema = data.schema
    job = UnitJob(schema.to_json(), data.rearrangement, None, settings.batch_bytes, settings.max_record_bytes)
    runner = SparkRunner(spark, progress)
    files = list_files(data.location)
    units, job = plan_units(files, job, runner)
    fits = runner.map(
        fit_unit, [(job, unit, recipe_text, model_type) for unit in units], "fitting the recipe", (0.0, 0.15)
    )
    fitting, summary = fits[0].fitting, fits[0].target
    for part in fits[1:]:
        fitting.merge(part.fitting)
        summary.merge(part.target)
    summary.check(model_type, schema.target, schema.row_weight)
    if fitting.second_pass:
        fitting.end_first_pass()
        empty = fitting.second_pass_part()
        arguments = [(job, unit, empty) for unit in units]
        for part in runner.map(count_unit_bins, arguments, "counting bins", (0.15, 0.2)):
            fitting.merge(part)
    space = fitting.space()
    labels = sorted(summary.class_counts) if model_type == "MULTICLASS" else []

    context = spark.sparkContext
    from pyspark import StorageLevel

    partitions = max(1, min(len(units), context.defaultParallelism))
    featurizing = context.broadcast(
        Featurizing(space.to_dict(), model_type, tuple(labels), storage_settings(), current_guards())
    )
    rows = (
        context.parallelize([(job, unit) for unit in units], partitions)
        .mapPartitions(runner.counted(lambda items: featurize_units(items, featurizing.value)))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        n_classes = len(labels) if model_type == "MULTICLASS" else None
        raw_check = Checker(model_type, space.n_features, n_classes or 1)
        with runner.job("featurizing the training data", (0.2, 0.4)):
            sampling = functools.partial(sample_partition, check=raw_check, seed=seed)
            parts = raise_failures(rows.mapPartitionsWithIndex(runner.counted(sampling)).collect())
        sample, rows_read = merge_samples(parts, CALIBRATION_ROWS, space.n_features)

        training = TrainingProgress(runner.progress)
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        trainer = Trainer(
            model_type,  # type: ignore[arg-type]
            space.n_features,
            n_classes,
            parameters,
            sample,
            rows_read,
            rng,
            training,
            training.begin,
        )
        for pass_index in trainer.passes():
            setup = PassSetup(
                trainer.state,
                trainer.check,
                trainer.rows_per_step,
                seed,
                pass_index,
                parameters.shuffle == "auto",
            )
            shared = context.broadcast(setup)
            # The pass's progress from its tasks done (one per partition), not only as it ends.
            low, high = trainer.pass_span(pass_index)
            with runner.job(pass_phase(pass_index), (training.at(low), training.at(high))):
                passing = runner.counted(functools.partial(run_pass, setup=shared))
                passed = rows.mapPartitionsWithIndex(passing)
                trainer.state, totals, parts = mix_pass(passed, partitions, runner.counted)
            shared.unpersist()
            trainer.end_pass(totals, parts=parts)
        # Named for what ``finish`` does on this model: only a regression model's refinement reads the data
        # (Spark jobs); a classification model's calibration runs on the driver.
        with runner.job(trainer.finishing_phase() or "finishing the model", None):
            linear, report = trainer.finish(lambda: _rows(rows.toLocalIterator()))
    finally:
        rows.unpersist()
        featurizing.unpersist()
    check_unchanged(files)  # the passes read the files again: one cut short meanwhile trained on less
    return Learned(space, summary, labels, linear, report)
