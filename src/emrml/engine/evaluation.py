"""The evaluation job: score an evaluation datasource with a trained model, then the metric, its insights
and the validity alerts.

``EvaluationPass`` holds what an evaluation accumulates over records (the metric's accumulator, record and
invalid-target counts, the evaluation target's distribution, regression predictions outside the training
target's range); passes over parts of the data merge, so the Spark engine scores byte ranges in its tasks
(engine/spark/evaluation.py) and the driver folds their passes together before ``finish``, exactly as
the local engine's single pass ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from emrml.config import Settings
from emrml.core.alerts import NumericTarget, evaluation_alerts, quality_alerts
from emrml.core.features import FeatureSpace
from emrml.core.metrics import (
    MODEL_METRIC,
    BinaryEvaluation,
    MulticlassEvaluation,
    RegressionEvaluation,
    performance_metrics,
)
from emrml.core.model import ExpectedModel, ModelArtifact, load_artifact
from emrml.core.predict import batch_scores
from emrml.core.schema import Schema, parse_schema
from emrml.engine.local import Progress
from emrml.engine.training import (
    MAX_CLASSES,
    DatasourceBatches,
    DatasourceData,
    TargetSummary,
    evaluation_schema,
    parse_target,
    row_weights,
    scratch_folder,
)
from emrml.errors import DataError


@dataclass
class EvaluationResult:
    performance_metrics: dict[str, str]
    insights: dict[str, Any]


@dataclass
class Scorer:
    """The model as an evaluation uses it: its artifact, featurizer, and the schema the data is read with
    (the model's, with the evaluation datasource's layout)."""

    artifact: ModelArtifact
    schema: Schema
    space: FeatureSpace

    @classmethod
    def load(
        cls, artifact_location: Path, data_schema: Schema, expected: ExpectedModel | None = None
    ) -> Scorer:
        artifact = load_artifact(artifact_location, expected)
        model_schema = parse_schema(artifact.schema_json)
        space = FeatureSpace.from_dict(artifact.feature_space, model_schema)
        return cls(artifact, evaluation_schema(model_schema, data_schema), space)

    def scores(self, rows: pa.RecordBatch) -> np.ndarray:
        return batch_scores(self.space, self.artifact.linear, self.space.values(rows))


class EvaluationPass:
    """What an evaluation accumulates over the records it reads (module doc); ``merge`` folds in another."""

    def __init__(
        self,
        kind: str,
        labels: list[str],
        target_range: tuple[float, float] | None,
        spill_folder: Path | None = None,
    ) -> None:
        self.kind = kind
        self.index = {label: i for i, label in enumerate(labels)}
        self.accumulator: BinaryEvaluation | MulticlassEvaluation | RegressionEvaluation
        if kind == "BINARY":
            self.accumulator = BinaryEvaluation(spill_folder)
        elif kind == "MULTICLASS":
            self.accumulator = MulticlassEvaluation(labels)
        else:
            self.accumulator = RegressionEvaluation()
        self.target_range = target_range
        self.records = self.invalid = self.outside = self.negative = 0
        # Records the evaluation data selects that could not be read (wrong number of fields, ...): left
        # out as those without a usable target are, and counted apart from ``records``, which were read.
        self.unreadable = 0
        self.target = TargetSummary()
        # MULTICLASS: records of classes the model never saw, per class: their counts per predicted class.
        self.unseen: dict[str, np.ndarray] = {}
        self.unseen_records = 0
        self.target_name: str | None = None  # set with the first unseen class

    @classmethod
    def of(cls, artifact: ModelArtifact, spill_folder: Path | None = None) -> EvaluationPass:
        """An empty pass for ``artifact``'s model; ``spill_folder``: where a BINARY evaluation's scratch
        files go (None: the system's temporary folder)."""
        training_target = artifact.report.get("trainingTarget", {})
        kind = artifact.model_type
        target_range = _target_range(training_target) if kind == "REGRESSION" else None
        return cls(kind, artifact.labels or [], target_range, spill_folder)

    def update(
        self, batch: pa.RecordBatch, schema: Schema, scores: Callable[[pa.RecordBatch], np.ndarray]
    ) -> None:
        kind, index = self.kind, self.index
        self.records += batch.num_rows
        targets = parse_target(batch, schema, kind)
        values, keep = targets.values, targets.keep
        self.invalid += int((~keep).sum())
        rows = batch.filter(pa.array(keep))
        if not rows.num_rows:
            return
        predicted = scores(rows)
        if not np.isfinite(predicted).all():
            raise DataError(
                "a record's NUMERIC values are too large for this model: its prediction overflows the range "
                "of floating-point numbers, so the evaluation cannot score it"
            )
        weights = row_weights(rows, schema)
        if isinstance(self.accumulator, BinaryEvaluation):
            self.accumulator.update(predicted, values.astype(np.int64), weights)
            _count_classes(self.target, values.astype(np.int64).astype(str))
        elif isinstance(self.accumulator, MulticlassEvaluation):
            labels = values.astype(str)
            known = np.fromiter((label in index for label in labels), dtype=bool, count=len(labels))
            y = np.fromiter((index[label] for label in labels[known]), dtype=np.int64, count=int(known.sum()))
            self.accumulator.update(predicted[known], y, None if weights is None else weights[known])
            if not known.all():
                # A class the model never saw in training is still a true class of the data: its records
                # are scored (and misclassified) rather than left out, which would flatter the average.
                self._add_unseen(
                    labels[~known], predicted[~known], None if weights is None else weights[~known]
                )
                self.target_name = schema.target
                self._check_unseen(schema.target)
            _count_classes(self.target, labels)
        else:
            self.accumulator.update(predicted, values, weights)
            self.target.add_numbers(values)
            if self.target_range is not None:
                flat = predicted.reshape(-1)
                beyond = (flat < self.target_range[0]) | (flat > self.target_range[1])
                self.outside += int(beyond.sum())
                self.negative += int((flat < 0).sum())

    def _add_unseen(self, labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None) -> None:
        size = predicted.shape[1]
        choices = np.argmax(predicted, axis=1)
        self.unseen_records += len(labels)
        weight = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
        for label in np.unique(labels).tolist():
            mine = labels == label
            counts = np.bincount(choices[mine], weights=weight[mine], minlength=size)
            self.unseen[label] = self.unseen.get(label, np.zeros(size)) + counts

    def _check_unseen(self, target: str | None) -> None:
        """Refuse more unseen classes than a model may have (``target``: the target's name, for the
        message; None when merging, which keeps what the parts checked)."""
        # Each unseen class becomes a row and a column of the confusion matrix: an id or free text as the
        # target grew it quadratically (2,000 values took 2 s and an 11 MB result, 20,000 a hundred times).
        if len(self.unseen) > MAX_CLASSES:
            target = target or self.target_name
            shown = ", ".join(repr(label) for label in sorted(self.unseen)[:3])
            raise DataError(
                f"the evaluation data's target {target!r} has more than {MAX_CLASSES} classes the model was "
                f"not trained on (such as {shown}); the model knows {len(self.index)}: evaluate it on data "
                "of the target it was trained to predict"
            )

    def merge(self, other: EvaluationPass) -> None:
        for label, counts in other.unseen.items():
            self.unseen[label] = self.unseen.get(label, np.zeros(len(counts))) + counts
        self.target_name = self.target_name or other.target_name
        self._check_unseen(None)
        self.unseen_records += other.unseen_records
        self.accumulator.merge(other.accumulator)  # type: ignore[arg-type]
        self.records += other.records
        self.invalid += other.invalid
        self.unreadable += other.unreadable
        self.outside += other.outside
        self.negative += other.negative
        self.target.merge(other.target)


def evaluate_model(
    *,
    artifact_location: Path,
    data: DatasourceData,
    same_datasource: bool,
    training_records: int,
    settings: Settings,
    progress: Progress,
    spark: Any = None,
    datasource_id: str | None = None,
    expected: ExpectedModel | None = None,
) -> EvaluationResult:
    """Score an evaluation datasource with a trained model and compute the metric and its insights
    (``spark``: a SparkSession whose executors score the data, engine/spark/evaluation.py). ``expected``:
    the MLModel the metastore says the file is, which every process loading it checks (``load_artifact``)."""
    scorer = Scorer.load(artifact_location, data.schema, expected)
    if spark is not None:
        from emrml.engine.spark.evaluation import evaluation_pass

        state = evaluation_pass(scorer, str(artifact_location), data, settings, progress, spark, expected)
    else:
        # The scores spill to the home's scratch folder, as training's files do: the system's temporary
        # folder may be a small tmpfs, whose pages are memory.
        state = EvaluationPass.of(scorer.artifact, scratch_folder(settings))
        source = DatasourceBatches(DatasourceData(data.location, scorer.schema, data.rearrangement), settings)
        for selected in source.selected(progress, 0.0, 1.0):
            state.unreadable += len(selected.invalid)
            if selected.batch.num_rows:
                state.update(selected.batch, scorer.schema, scorer.scores)
    return finish(state, scorer.artifact, data.schema, same_datasource, training_records, datasource_id)


def finish(
    state: EvaluationPass,
    artifact: ModelArtifact,
    data_schema: Schema,
    same_datasource: bool,
    training_records: int,
    datasource_id: str | None = None,
) -> EvaluationResult:
    """The metric, its insights and the alerts of a completed pass (``datasource_id``: the evaluation
    datasource's id, named by the alert when it is also the training datasource)."""
    kind, accumulator = artifact.model_type, state.accumulator
    training_target = artifact.report.get("trainingTarget", {})
    if state.records and state.invalid == state.records:
        # Else the metric said it had "no records with label 1 (0 records in all)" of records it was given.
        raise DataError(
            f"no record of the evaluation data has a valid value of the target {data_schema.target!r} "
            f"({state.records} records, each with it missing or invalid); {MODEL_METRIC[kind]} needs "
            "records with known answers"
        )
    if isinstance(accumulator, BinaryEvaluation):
        result = accumulator.result()
    elif isinstance(accumulator, MulticlassEvaluation):
        if state.unseen:
            unseen = {label: state.unseen[label] for label in sorted(state.unseen)}
            accumulator = accumulator.with_unseen(unseen, state.unseen_records)
        result = accumulator.result(training_target.get("classCounts", {}))
    else:
        result = accumulator.result(float(training_target.get("mean", 0.0)))
    if kind == "REGRESSION":
        train_target: Any = NumericTarget(
            float(training_target.get("mean", 0.0)), float(training_target.get("std", 0.0))
        )
        eval_target: Any = NumericTarget(state.target.mean, state.target.std)
    else:
        train_target = training_target.get("classCounts", {})
        eval_target = state.target.class_counts
    model_schema = parse_schema(artifact.schema_json)
    training_id = datasource_id or "the training datasource"
    alerts = evaluation_alerts(
        training_datasource_id=training_id,
        evaluation_datasource_id=training_id if same_datasource else "evaluation",
        training_records=training_records,
        # The records scored: those left out (a missing or invalid target) are not evaluation data.
        evaluation_records=state.records - state.invalid,
        training_attributes={a.name for a in model_schema.attributes},
        evaluation_attributes={a.name for a in data_schema.attributes},
        invalid_evaluation_records=state.invalid + state.unreadable,
        training_target=train_target,
        evaluation_target=eval_target,
    ) + quality_alerts(
        kind, result, _pass_losses(artifact.report), state.target_range, (state.outside, state.negative)
    )
    # The training data's alerts (a target leak) hold for every evaluation of the model.
    alerts += artifact.report.get("alerts", [])
    insights = {
        "metrics": result,
        "alerts": alerts,
        "records": state.records,
        "invalidRecords": state.invalid,
        "unreadableRecords": state.unreadable,
    }
    return EvaluationResult(performance_metrics(kind, result), insights)


def _pass_losses(report: dict[str, Any]) -> list[float]:
    """The loss after each training pass: on the held-out validation rows when there were some; a loss
    that overflowed (recorded as None) counts as infinite."""
    losses = report.get("validation_losses") or report.get("losses") or []
    return [math.inf if loss is None else float(loss) for loss in losses]


def _target_range(training_target: dict[str, Any]) -> tuple[float, float] | None:
    """The training target's [min, max] (models trained before it was recorded have none)."""
    if "min" not in training_target or "max" not in training_target:
        return None
    return float(training_target["min"]), float(training_target["max"])


def _count_classes(summary: TargetSummary, values: np.ndarray) -> None:
    labels, counts = np.unique(values, return_counts=True)
    for label, count in zip(labels, counts, strict=True):
        summary.class_counts[str(label)] = summary.class_counts.get(str(label), 0) + int(count)
