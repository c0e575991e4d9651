"""Training and evaluation on the local engine: datasource batches → FeatureSpace → learner → artifact.

Training parses the training datasource once: the feature space's fit (vocabularies, bin edges, moments)
reads the CSV and keeps the selected records in a scratch Arrow file; featurization reads them back and
writes the featurized rows as raw arrays, over which the SGD passes run (``engine.scratch``). Memory is
bounded by the batch size and the model.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.config import Settings
from emrml.core.alerts import leak_alert
from emrml.core.features import FeatureSpace
from emrml.core.learn import TRAINING_PHASE, train
from emrml.core.linear import LinearModel, TrainingParameters, TrainingReport
from emrml.core.model import ModelArtifact, save_artifact
from emrml.core.rearrange import Rearrangement
from emrml.core.recipe.grammar import Recipe, Variable, parse_recipe
from emrml.core.recipe.suggest import suggest_recipe
from emrml.core.schema import Attribute, Schema
from emrml.core.values import parse_binary, parse_numeric
from emrml.engine.local import Progress, SelectedBatch, read_selected
from emrml.engine.result_lines import RESULT_COLUMNS, STREAM_COLUMNS
from emrml.engine.scratch import FeatureCache, RecordCache
from emrml.errors import DataError
from emrml.lifetime import machine, process_exists
from emrml.storage.backend import Commit, commit_now
from emrml.storage.locations import list_files

#: A multiclass target may have at most this many classes (spec 11).
MAX_CLASSES = 100


@dataclass(frozen=True)
class DatasourceData:
    """Where a datasource's records are and how to read them."""

    location: str
    schema: Schema
    rearrangement: Rearrangement | None


@dataclass
class Targets:
    """A batch's parsed target: rows with a usable target, and their values."""

    keep: np.ndarray
    values: np.ndarray


@dataclass
class TrainedModel:
    artifact_path: Path
    size_in_bytes: int
    recipe: str
    report: dict[str, Any]


class Learned(NamedTuple):
    """What training learned: the feature space, the target's summary and classes, the model, the report."""

    space: FeatureSpace
    summary: TargetSummary
    labels: list[str]
    linear: LinearModel
    report: TrainingReport


@dataclass
class TargetSummary:
    """What the training target looked like: class counts, or mean and standard deviation."""

    class_counts: dict[str, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    total_squares: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    #: Records of a positive row weight (every record without row weights) and their classes: a record
    #: weighted 0 teaches the model nothing, so data whose weight is all on one class is one-class data.
    weighted_count: int = 0
    weighted_classes: set[str] = field(default_factory=set)

    def add_numbers(self, values: np.ndarray) -> None:
        self.count += len(values)
        # Past the float range (values near 1e160), training and evaluation fail saying why.
        with np.errstate(over="ignore", invalid="ignore"):
            self.total += float(values.sum())
            self.total_squares += float(np.square(values).sum())
        if len(values):
            self.minimum = min(self.minimum, float(values.min()))
            self.maximum = max(self.maximum, float(values.max()))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        if not self.count:
            return 0.0
        return float(np.sqrt(max(self.total_squares / self.count - self.mean**2, 0.0)))

    def add(
        self,
        model_type: str,
        values: np.ndarray,
        target: str | None = None,
        weights: np.ndarray | None = None,
    ) -> tuple[list[str], np.ndarray] | None:
        """Count a batch's parsed target values (``weights``: their rows' weights, None for none);
        MULTICLASS returns the batch's sorted labels and each row's index into them (``np.unique``'s
        inverse), which the caller maps to its class codes."""
        positive = np.ones(len(values), dtype=bool) if weights is None else weights > 0
        self.weighted_count += int(positive.sum())
        if model_type == "REGRESSION":
            self.add_numbers(values)
            return None
        if model_type == "BINARY":
            codes = values.astype(np.int64)
            for label, count in enumerate(np.bincount(codes, minlength=2).tolist()):
                if count:
                    self.class_counts[str(label)] = self.class_counts.get(str(label), 0) + count
            self.weighted_classes.update(str(label) for label in np.unique(codes[positive]).tolist())
            return None
        labels, inverse = np.unique(values.astype(str), return_inverse=True)
        for label, count in zip(labels.tolist(), np.bincount(inverse).tolist(), strict=True):
            self.class_counts[label] = self.class_counts.get(label, 0) + count
        self.weighted_classes.update(labels[np.unique(inverse[positive])].tolist())
        self.check_classes(target)
        return labels.tolist(), np.asarray(inverse)

    def check_classes(self, target: str | None) -> None:
        if len(self.class_counts) > MAX_CLASSES:
            raise DataError(
                f"the target {target!r} has more than {MAX_CLASSES} classes; a MULTICLASS model supports "
                f"at most {MAX_CLASSES}"
            )

    def check_labels(self, target: str | None) -> None:
        """Refuse a class label that is the name of another result column: a MULTICLASS model's classes
        name its columns of batch prediction results (and of a stream's), after these."""
        reserved = [name for name in (*RESULT_COLUMNS, *STREAM_COLUMNS) if name in self.class_counts]
        if reserved:
            names = ", ".join([*RESULT_COLUMNS, *STREAM_COLUMNS])
            raise DataError(
                f"the target {target!r} has the class {reserved[0]!r}, the name of a column of prediction "
                f"results ({names}): a MULTICLASS model's result columns are named after its classes, so "
                "its results would be ambiguous; rename the class in the data"
            )

    def check(self, model_type: str, target: str | None, weight: str | None = None) -> None:
        """Refuse training data a model of ``model_type`` cannot learn from (``weight``: the rowWeight
        attribute, if any)."""
        if model_type == "MULTICLASS":
            self.check_classes(target)
        if not self.count and not self.class_counts:
            raise DataError(f"no training record has a valid value of the target {target!r}")
        if model_type == "BINARY" and len(self.class_counts) < 2:
            only = next(iter(self.class_counts), "none")
            raise DataError(
                f"the training data has only one target class ({only}): a BINARY model needs both"
            )
        if model_type == "MULTICLASS" and len(self.class_counts) < 2:
            raise DataError("the training data has fewer than two target classes")
        if model_type == "MULTICLASS":
            self.check_labels(target)
        # Weighted 0, records are left out of the loss: a model trained on none of them, or on one class
        # alone, was a constant one that scored every record alike.
        if not self.weighted_count:
            raise DataError(
                f"rowWeight {weight!r} is 0 in every training record with a valid target: a model needs "
                "records of positive weight to learn from"
            )
        if self.class_counts and len(self.weighted_classes) < 2:
            zero = sorted(set(self.class_counts) - self.weighted_classes)
            shown = ", ".join(zero[:5]) + (f" and {len(zero) - 5} more" if len(zero) > 5 else "")
            classes = "class" if len(zero) == 1 else "classes"
            raise DataError(
                f"rowWeight {weight!r} is 0 in every training record of the target {classes} {shown}: "
                f"only class {next(iter(self.weighted_classes))} has records of positive weight, and a "
                f"{model_type} model needs two"
            )

    def merge(self, other: TargetSummary) -> None:
        for label, count in other.class_counts.items():
            self.class_counts[label] = self.class_counts.get(label, 0) + count
        self.count += other.count
        self.total += other.total
        self.total_squares += other.total_squares
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        self.weighted_count += other.weighted_count
        self.weighted_classes |= other.weighted_classes

    def to_dict(self) -> dict[str, Any]:
        if self.class_counts:
            return {"classCounts": self.class_counts}
        extremes = {"min": self.minimum, "max": self.maximum} if self.count else {}
        return {"count": self.count, "mean": self.mean, "std": self.std, **extremes}


class TrainingProgress:
    """A model job's progress while it trains, for ``train``'s ``progress`` and ``phase``: the training's
    fraction f at ``at(f)`` of the job (reading and featurizing fill the first 0.4), its message the phase
    begun last (``core.learn``: the passes, then the refinement). Both engines report through it."""

    def __init__(self, report: Callable[[float, str | None], None]) -> None:
        self.report = report
        self.phase = TRAINING_PHASE

    @staticmethod
    def at(fraction: float) -> float:
        return 0.4 + 0.6 * fraction

    def __call__(self, fraction: float) -> None:
        self.report(self.at(fraction), self.phase)

    def begin(self, name: str) -> None:
        self.phase = name


def parse_target(batch: pa.RecordBatch, schema: Schema, model_type: str) -> Targets:
    """Rows whose target is present and valid; records with a missing or invalid target are not used."""
    assert schema.target is not None
    column = batch.column(schema.target)
    if model_type == "BINARY":
        parsed = parse_binary(column)
        keep = ~(parsed.missing | parsed.invalid)
        return Targets(keep, parsed.values[keep])
    if model_type == "REGRESSION":
        parsed = parse_numeric(column)
        keep = ~(parsed.missing | parsed.invalid)
        return Targets(keep, parsed.values[keep])
    stripped = pc.utf8_trim_whitespace(column)
    keep = np.asarray(pc.not_equal(stripped, "").to_numpy(zero_copy_only=False), dtype=bool)
    return Targets(keep, np.asarray(stripped.filter(pa.array(keep)).to_numpy(zero_copy_only=False)))


class DatasourceBatches:
    """Re-iterable record batches of a datasource (the feature space may read them twice)."""

    def __init__(self, data: DatasourceData, settings: Settings) -> None:
        self.data = data
        self.settings = settings
        self.files = list_files(data.location)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for selected in read_selected(
            self.files, self.data.schema, self.data.rearrangement, settings=self.settings
        ):
            if selected.batch.num_rows:
                yield selected.batch

    def with_progress(self, progress: Progress, low: float, high: float) -> Iterator[pa.RecordBatch]:
        for selected in self.selected(progress, low, high):
            if selected.batch.num_rows:
                yield selected.batch

    def selected(self, progress: Progress, low: float, high: float) -> Iterator[SelectedBatch]:
        """The blocks as read, with the records that could not be read (which the batches leave out)."""
        return read_selected(
            self.files,
            self.data.schema,
            self.data.rearrangement,
            settings=self.settings,
            progress=progress,
            progress_range=(low, high),
        )


#: The row weights training and the metrics can add and multiply (sums of a column's weights, products of
#: two: the AUC's pairs) without leaving the float range: past it, a job failed with an internal error, or
#: a metric came out NaN or 0.
WEIGHT_RANGE = (1e-100, 1e100)


def row_weights(batch: pa.RecordBatch, schema: Schema) -> np.ndarray | None:
    """Per-record weights from the rowWeight attribute (open question 1): invalid or negative → 1; a
    positive weight outside ``WEIGHT_RANGE`` is a DataError naming it."""
    if schema.row_weight is None:
        return None
    parsed = parse_numeric(batch.column(schema.row_weight))
    weights = np.where(np.isfinite(parsed.values) & (parsed.values >= 0), parsed.values, 1.0)
    low, high = WEIGHT_RANGE
    outside = (weights > high) | ((weights > 0) & (weights < low))
    if outside.any():
        raise DataError(
            f"rowWeight {schema.row_weight!r} holds the weight {weights[outside][0]:g}: a weight must be 0 "
            f"or from {low:g} to {high:g}"
        )
    return weights


def train_model(
    *,
    model_id: str,
    model_type: str,
    data: DatasourceData,
    recipe_text: str | None,
    sample: pa.Table,
    parameters: TrainingParameters,
    settings: Settings,
    progress: Progress,
    spark: Any = None,
    statistics: Mapping[str, Any] | None = None,
    commit: Commit = commit_now,
) -> TrainedModel:
    """Train a model on a datasource and save its artifact under ``<home>/models`` (``spark``: a
    SparkSession whose executors fit, featurize and train, engine/spark/training.py). ``statistics``: the
    datasource's, whose alerts about the training data the report keeps (``alerts``) for the model's
    insights and its evaluations. ``commit`` runs the rename that puts the artifact in place: the file every
    attempt of the job writes, which one given up must not replace once a later attempt has written it."""
    schema = data.schema
    if recipe_text is None:
        recipe_text = suggest_recipe(schema, sample, schema.attribute(schema.target or "").type)
    recipe = parse_recipe(recipe_text, schema)
    if spark is not None:
        from emrml.engine.spark.training import train_on_spark

        learned = train_on_spark(
            model_type=model_type,
            data=data,
            recipe_text=recipe_text,
            parameters=parameters,
            settings=settings,
            progress=progress,
            spark=spark,
        )
    else:
        learned = _train_locally(model_id, model_type, data, recipe, parameters, settings, progress)
    space, summary, labels, linear, report = learned
    if report.pruned_features:
        # The pruned strings leave the file too: what the size limit is about.
        space, kept = space.compacted(linear.weights)
        linear = LinearModel(linear.kind, linear.weights[kept], linear.bias)
    report_dict = report.to_dict() | {"trainingTarget": summary.to_dict()}
    leak = leak_alert(statistics, _recipe_attributes(recipe)) if statistics else None
    if leak is not None:
        report_dict["alerts"] = [leak]
    artifact = ModelArtifact(
        model_type=model_type,
        schema_json=schema.to_json(),
        recipe=recipe_text,
        feature_space=space.to_dict(),
        linear=linear,
        labels=labels if model_type == "MULTICLASS" else None,
        score_threshold=0.5 if model_type == "BINARY" else None,
        parameters=parameters.to_api(),
        report=report_dict,
        feature_names=space.feature_names,
    )
    path = artifact_path(settings, model_id)
    size = save_artifact(artifact, path, commit)
    return TrainedModel(path, size, recipe_text, report_dict)


def _recipe_attributes(recipe: Recipe) -> set[str]:
    """The attributes the recipe's outputs read: an attribute left out of the recipe cannot leak."""
    names: set[str] = set()
    pending = [output.expression for output in recipe.outputs]
    while pending:
        expression = pending.pop()
        if isinstance(expression, Variable):
            names.add(expression.name)
        else:
            pending.extend(expression.args)
    return names


def _train_locally(
    model_id: str,
    model_type: str,
    data: DatasourceData,
    recipe: Recipe,
    parameters: TrainingParameters,
    settings: Settings,
    progress: Progress,
) -> Learned:
    schema = data.schema
    scratch = _training_scratch(settings, model_id)
    try:
        batches = DatasourceBatches(data, settings)
        source = RecordCache(lambda: batches.with_progress(progress, 0.0, 0.2), scratch / "records.arrow")
        space = FeatureSpace.fit(recipe, schema, source)
        features = FeatureCache(scratch, space.n_features, weighted=schema.row_weight is not None)
        shuffle_seed = 0 if parameters.shuffle == "auto" else None
        summary, labels = _featurize(space, source, schema, model_type, features, progress, shuffle_seed)

        training = TrainingProgress(progress)
        linear, report = train(
            model_type,  # type: ignore[arg-type]
            features,
            space.n_features,
            len(labels) if model_type == "MULTICLASS" else None,
            parameters,
            progress=training,
            phase=training.begin,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Learned(space, summary, labels, linear, report)


def _featurize(
    space: FeatureSpace,
    source: RecordCache,
    schema: Schema,
    model_type: str,
    cache: FeatureCache,
    progress: Progress,
    shuffle_seed: int | None,
) -> tuple[TargetSummary, list[str]]:
    """Featurize the training data into ``cache``; returns the target summary and class labels.

    Multiclass targets are cached as codes in the order the classes appear, and mapped to class indices
    (sorted labels) when read back, because the class list is only complete after the last batch.
    """
    summary = TargetSummary()
    codes: dict[str, int] = {}
    for batch in source.with_progress(progress, 0.2, 0.4):
        targets = parse_target(batch, schema, model_type)
        rows = batch.filter(pa.array(targets.keep))
        if not rows.num_rows:
            continue
        weights = row_weights(rows, schema)
        classes = summary.add(model_type, targets.values, schema.target, weights)
        y = targets.values
        if classes is not None:
            batch_labels, inverse = classes
            for label in batch_labels:
                codes.setdefault(label, len(codes))
            y = np.array([codes[label] for label in batch_labels], dtype=np.float64)[inverse]
        cache.append(space.transform(rows), y, weights)
    summary.check(model_type, schema.target, schema.row_weight)
    labels = sorted(summary.class_counts) if model_type == "MULTICLASS" else []
    class_codes = None
    if model_type == "MULTICLASS":
        # codes[label] → the label's index in the sorted class list.
        class_codes = np.empty(len(codes), dtype=np.int64)
        class_codes[list(codes.values())] = np.searchsorted(np.array(labels), list(codes))
    cache.close(class_codes, shuffle_seed)
    return summary, labels


def scratch_folder(settings: Settings) -> Path:
    """The home's scratch folder (created if needed), where jobs keep their temporary files."""
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    return settings.scratch_dir


#: In a training scratch folder: "<host> <pid>" of the process that made it.
SCRATCH_OWNER = "owner"


def _training_scratch(settings: Settings, model_id: str) -> Path:
    """A new scratch folder for one training, marked with its process; folders of trainings whose process
    is gone are removed first (``sweep_training_scratch``)."""
    folder = sweep_training_scratch(settings)
    scratch = Path(tempfile.mkdtemp(prefix=f"train-{model_id}-", dir=folder))
    (scratch / SCRATCH_OWNER).write_text(f"{machine()} {os.getpid()}")
    return scratch


def sweep_training_scratch(settings: Settings) -> Path:
    """Remove the scratch folders of trainings whose process is gone; returns the scratch folder. A killed
    worker runs no cleanup code, and its folder holds a copy of the training data: without this, every
    killed training would leave that much disk taken for good."""
    folder = scratch_folder(settings)
    host = machine()
    for entry in folder.glob("train-*"):
        try:
            owner_host, pid = (entry / SCRATCH_OWNER).read_text().split()
        except (OSError, ValueError):
            continue  # being created right now, or not a training folder
        # Only this machine's processes can be checked: a home may be shared by several machines (and
        # containers).
        if owner_host == host and pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
    return folder


def artifact_path(settings: Settings, model_id: str) -> Path:
    folder = settings.home / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{model_id}.zip"


def evaluation_schema(model_schema: Schema, data_schema: Schema) -> Schema:
    """The evaluation data read with the training types (spec 5.2), checking the model's attributes exist."""
    needed = [a.name for a in model_schema.input_attributes]
    if model_schema.target:
        needed.append(model_schema.target)
    missing = [name for name in needed if name not in data_schema]
    if missing:
        raise DataError(
            "the evaluation datasource's schema lacks attributes the model uses: " + ", ".join(missing)
        )
    trained = {a.name: a.type for a in model_schema.attributes}
    attributes = tuple(Attribute(a.name, trained.get(a.name, a.type)) for a in data_schema.attributes)
    return Schema(
        attributes=attributes,
        target=model_schema.target,
        row_id=data_schema.row_id,
        row_weight=data_schema.row_weight if data_schema.row_weight in trained else None,
        excluded=tuple(name for name in data_schema.excluded if name in data_schema),
        has_header=data_schema.has_header,
    )
