"""Evaluation metrics and the console's model insights (spec 8, 7.3, open questions 1 and 15).

The evaluation alerts built from these results are in ``core.alerts``.

Predictions arrive batch by batch. Each model type has an accumulator with ``update`` (one batch),
``merge`` (another accumulator over other rows: a worker process or Spark partition) and ``result``
(the metric, its baseline and the insights as a JSON-ready dict of plain Python values). Merging
accumulators over any split of the rows gives the same result as one accumulator over all of them:
exactly for counts and ``BinaryAUC``, up to floating-point summation order for weighted sums and RMSE.

Optional ``weights`` are the records' ``rowWeight`` values (open question 1): each record contributes its
weight instead of 1 to every count, sum and rate. Without weights the confusion counts are integers.

Memory is bounded by the batch size plus what each metric needs:

* binary: one (positive weight, negative weight) pair per *distinct* score, 24 bytes each; model
  probabilities are mostly distinct, so about 24 MB per million evaluation records. That is the price of
  an exact AUC with ties counted one half; every threshold metric is exact too.
* multiclass: the K×K confusion matrix.
* regression: a few sums and a fixed log-scale residual histogram of ~440 KB.

Errors: ``DataError`` for batches that cannot be evaluated (shape, NaN, label out of range) and for an
evaluation without the data its metric needs; ``InvalidInputException`` for bad arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emrml.errors import DataError, InvalidInputException

#: The one metric the API reports per model type (``PerformanceMetrics.Properties``).
MODEL_METRIC = {"BINARY": "BinaryAUC", "MULTICLASS": "MulticlassAvgFScore", "REGRESSION": "RegressionRMSE"}

#: Metrics of a binary cut-off, in the order the console lists them.
THRESHOLD_METRICS = ("accuracy", "precision", "recall", "falsePositiveRate", "f1", "predictedPositiveRate")

#: Score histograms: 100 equal bins over [0, 1] (AWS cost-analysis sample); bin k is [k/100, (k+1)/100),
#: the last one closed. The threshold table uses the same 101 edges as cut-offs.
SCORE_EDGES = np.arange(101) / 100

#: The console collapses classes beyond this many into "others" (9 shown + 1).
CONSOLE_CLASSES = 10
OTHERS = "others"

#: Residual histogram: bins over ±RESIDUAL_SPAN·RMSE.
RESIDUAL_BINS = 50
RESIDUAL_SPAN = 4.0


def _vector(name: str, values: Any, dtype: type = np.float64) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_length(name: str, array: np.ndarray, n: int) -> None:
    if array.shape[0] != n:
        raise DataError(f"{name} has {array.shape[0]} values but the batch has {n} records")


def _check_finite(name: str, array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        position = int(np.flatnonzero(~finite.reshape(array.shape[0], -1).all(axis=1))[0])
        raise DataError(f"{name} must be finite; record {position} of the batch is not")


def _weights(weights: Any, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    array = _vector("weights", weights)
    _check_length("weights", array, n)
    _check_finite("weights", array)
    if (array < 0).any():
        position = int(np.flatnonzero(array < 0)[0])
        raise DataError(f"weights must not be negative; record {position} of the batch has {array[position]}")
    return array


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio with 0 where the denominator is 0 (an empty set has precision 0, as scikit-learn)."""
    numerator, denominator = np.broadcast_arrays(
        np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    )
    out = np.zeros(numerator.shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _counts(values: np.ndarray, weighted: bool) -> list[Any]:
    """JSON-ready counts: integers unless the records were weighted."""
    return values.tolist() if weighted else np.rint(values).astype(np.int64).tolist()


def _count(value: float, weighted: bool) -> float | int:
    return float(value) if weighted else round(float(value))


# --------------------------------------------------------------------------------------------- binary


@dataclass(frozen=True)
class _ScoreRun:
    """Distinct scores in increasing order with the positive and negative weight seen at each one."""

    scores: np.ndarray
    positive: np.ndarray
    negative: np.ndarray

    @classmethod
    def from_sorted(cls, scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> _ScoreRun:
        """Collapse equal neighbours of already sorted ``scores``."""
        if scores.size == 0:
            return cls(scores, positive, negative)
        starts = np.flatnonzero(np.concatenate(([True], scores[1:] != scores[:-1])))
        return cls(scores[starts], np.add.reduceat(positive, starts), np.add.reduceat(negative, starts))

    @classmethod
    def from_labels(cls, scores: np.ndarray, positive: np.ndarray) -> _ScoreRun:
        """Count labels per distinct score of an unsorted batch (scores in [0, 1], ``positive`` bool).

        Non-negative floats order like their bit patterns, so each (score, label) pair packs into one
        uint64 key: a plain sort (several times faster than an argsort) groups equal scores, label 0 first.
        """
        keys = ((scores + 0.0).view(np.uint64) << np.uint64(1)) | positive.astype(np.uint64)  # -0.0 → 0.0
        keys.sort()
        bits = keys >> np.uint64(1)
        starts = np.flatnonzero(np.concatenate(([True], bits[1:] != bits[:-1])))
        totals = np.diff(np.append(starts, keys.size)).astype(np.float64)
        positives = np.add.reduceat((keys & np.uint64(1)).astype(np.float64), starts)
        return cls(bits[starts].view(np.float64), positives, totals - positives)

    @classmethod
    def merged(cls, runs: Sequence[_ScoreRun]) -> _ScoreRun:
        if len(runs) == 1:
            return runs[0]
        scores = np.concatenate([run.scores for run in runs])
        # Timsort finds the already-sorted runs, so this costs about one linear merge pass.
        order = np.argsort(scores, kind="stable")
        return cls.from_sorted(
            scores[order],
            np.concatenate([run.positive for run in runs])[order],
            np.concatenate([run.negative for run in runs])[order],
        )

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight strictly below each score index, with the totals appended."""
        below_positive = np.concatenate(([0.0], np.cumsum(self.positive)))
        below_negative = np.concatenate(([0.0], np.cumsum(self.negative)))
        return below_positive, below_negative


class BinaryEvaluation:
    """Accumulates scores (probability of label 1) and true labels for ``BinaryAUC`` and the insights.

    Records with score ≥ threshold are predicted 1 (spec 7.3). The scores are kept as sorted runs of
    distinct values, merged whenever the previous run is at most twice the size of the newest, so there are
    O(log n) runs and each value is re-merged O(log n) times.
    """

    def __init__(self) -> None:
        self._runs: list[_ScoreRun] = []
        self._records = 0
        self._weighted = False

    def update(self, scores: Any, labels: Any, weights: Any = None) -> None:
        """Add one batch: ``scores`` (n,) in [0, 1], ``labels`` (n,) of 0/1, optional ``weights`` (n,) ≥ 0."""
        score = _vector("scores", scores)
        n = score.shape[0]
        in_range = (score >= 0.0) & (score <= 1.0)  # false for NaN too
        if not in_range.all():
            position = int(np.flatnonzero(~in_range)[0])
            raise DataError(
                f"scores must be probabilities in [0, 1]; record {position} of the batch has "
                f"{score[position]}"
            )
        label = np.asarray(labels)
        if label.ndim != 1:
            raise DataError(f"labels must be one-dimensional, got shape {label.shape}")
        _check_length("labels", label, n)
        positive = label == 1
        if not (positive | (label == 0)).all():
            position = int(np.flatnonzero(~(positive | (label == 0)))[0])
            raise DataError(f"labels must be 0 or 1; record {position} of the batch has {label[position]!r}")
        weight = _weights(weights, n)
        if n == 0:
            return
        if weight is None:
            self._push(_ScoreRun.from_labels(score, positive))
        else:
            positive_weight = np.where(positive, weight, 0.0)
            order = np.argsort(score)
            self._push(
                _ScoreRun.from_sorted(score[order], positive_weight[order], (weight - positive_weight)[order])
            )
            self._weighted = True
        self._records += n

    def merge(self, other: BinaryEvaluation) -> None:
        """Add every record ``other`` has seen; ``other`` is left unchanged."""
        if other._runs:
            self._push(other._run())
        self._records += other._records
        self._weighted = self._weighted or other._weighted

    def _push(self, run: _ScoreRun) -> None:
        self._runs.append(run)
        while len(self._runs) > 1 and self._runs[-2].scores.size <= 2 * self._runs[-1].scores.size:
            newest = self._runs.pop()
            self._runs[-1] = _ScoreRun.merged([self._runs[-1], newest])

    def _run(self) -> _ScoreRun:
        if len(self._runs) > 1:
            self._runs = [_ScoreRun.merged(self._runs)]
        return self._runs[0] if self._runs else _ScoreRun(np.empty(0), np.empty(0), np.empty(0))

    def _checked_run(self) -> _ScoreRun:
        run = self._run()
        if run.positive.sum() <= 0 or run.negative.sum() <= 0:
            missing = "label 1" if run.positive.sum() <= 0 else "label 0"
            raise DataError(
                f"the evaluation data has no records with {missing} ({self._records} records in all); "
                "BinaryAUC needs records of both labels"
            )
        return run

    def auc(self) -> float:
        """Area under the ROC curve: P(score of a positive > score of a negative) + ½·P(tie).

        Unweighted, it is computed in integers and rounded once (exact for up to ~4·10⁹ records).
        """
        run = self._checked_run()
        if self._weighted:
            below = np.concatenate(([0.0], np.cumsum(run.negative)[:-1]))
            twice_wins = float(np.dot(run.positive, 2.0 * below + run.negative))
            return twice_wins / (2.0 * float(run.positive.sum()) * float(run.negative.sum()))
        positive = np.rint(run.positive).astype(np.int64)
        negative = np.rint(run.negative).astype(np.int64)
        below = np.concatenate(([0], np.cumsum(negative)[:-1]))
        twice_wins = int(np.dot(positive, 2 * below + negative))
        return twice_wins / (2 * int(positive.sum()) * int(negative.sum()))

    def _confusion(self, run: _ScoreRun, thresholds: np.ndarray) -> dict[str, np.ndarray]:
        below_positive, below_negative = run.cumulative()
        index = np.searchsorted(run.scores, thresholds, side="left")
        fn, tn = below_positive[index], below_negative[index]
        return {"tp": below_positive[-1] - fn, "fp": below_negative[-1] - tn, "tn": tn, "fn": fn}

    @staticmethod
    def _rates(confusion: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tp, fp, tn, fn = confusion["tp"], confusion["fp"], confusion["tn"], confusion["fn"]
        total = tp + fp + tn + fn
        return {
            "accuracy": _divide(tp + tn, total),
            "precision": _divide(tp, tp + fp),
            "recall": _divide(tp, tp + fn),
            "falsePositiveRate": _divide(fp, fp + tn),
            "f1": _divide(2 * tp, 2 * tp + fp + fn),
            "predictedPositiveRate": _divide(tp + fp, total),
        }

    def result(self, threshold: float = 0.5) -> dict[str, Any]:
        """``BinaryAUC`` with baseline 0.5 and the console insights at cut-off ``threshold``.

        Keys: ``BinaryAUC``, ``baseline``, ``count`` (records), ``threshold``, ``confusion`` (tp/fp/tn/fn),
        the six ``THRESHOLD_METRICS``, ``histograms`` (``positive``/``negative`` counts in 100 bins with
        101 ``edges`` over [0, 1]) and ``thresholdTable`` (the six metrics at cut-offs 0.00, 0.01 … 1.00).
        """
        if not math.isfinite(threshold):
            raise InvalidInputException(f"threshold must be a finite number, got {threshold}")
        run = self._checked_run()
        confusion = self._confusion(run, np.array([threshold], dtype=np.float64))
        rates = self._rates(confusion)
        below_positive, below_negative = run.cumulative()
        bounds = np.searchsorted(run.scores, SCORE_EDGES, side="left")
        bounds[-1] = run.scores.size  # the last bin is closed: scores of exactly 1.0 belong to it
        table_confusion = self._confusion(run, SCORE_EDGES)
        table_rates = {name: values.tolist() for name, values in self._rates(table_confusion).items()}
        return {
            "BinaryAUC": self.auc(),
            "baseline": 0.5,
            "count": self._records,
            "threshold": float(threshold),
            "confusion": {key: _count(values[0], self._weighted) for key, values in confusion.items()},
            **{name: float(values[0]) for name, values in rates.items()},
            "histograms": {
                "edges": SCORE_EDGES.tolist(),
                "positive": _counts(np.diff(below_positive[bounds]), self._weighted),
                "negative": _counts(np.diff(below_negative[bounds]), self._weighted),
            },
            "thresholdTable": [
                {"threshold": cut, **{name: table_rates[name][i] for name in THRESHOLD_METRICS}}
                for i, cut in enumerate(SCORE_EDGES.tolist())
            ],
        }

    def threshold_for(self, metric: str, target: float) -> float:
        """The cut-off that meets a target value of one of ``THRESHOLD_METRICS`` (console "advanced" view).

        Candidates are the distinct scores seen (predict 1 from that score up) and one cut-off above every
        score (predict nothing: 1.0, or the next float above 1.0 when a score is exactly 1.0). Rules:

        * ``falsePositiveRate``: the lowest cut-off with rate ≤ target, i.e. the most positives found within
          the bound (always exists: predict nothing);
        * ``precision``: the lowest cut-off with precision ≥ target, likewise;
        * ``recall``: the highest cut-off with recall ≥ target, i.e. the fewest false positives;
        * ``accuracy``, ``f1``, ``predictedPositiveRate``: the cut-off whose value is closest to target,
          the highest such cut-off on ties.

        Raises ``InvalidInputException`` for an unknown metric, a target outside [0, 1], or a precision
        no cut-off reaches.
        """
        if metric not in THRESHOLD_METRICS:
            raise InvalidInputException(
                f"metric must be one of {', '.join(THRESHOLD_METRICS)}; got {metric!r}"
            )
        if not 0.0 <= target <= 1.0:
            raise InvalidInputException(f"target for {metric} must be in [0, 1], got {target}")
        run = self._checked_run()
        above_all = 1.0 if run.scores[-1] < 1.0 else float(np.nextafter(1.0, 2.0))
        candidates = np.concatenate((run.scores, [above_all]))
        values = self._rates(self._confusion(run, candidates))[metric]
        if metric == "falsePositiveRate":
            return float(candidates[np.flatnonzero(values <= target)[0]])
        if metric == "precision":
            reaching = np.flatnonzero(values >= target)
            if reaching.size == 0:
                raise InvalidInputException(
                    f"no cut-off reaches precision {target}; the highest is {float(values.max())}"
                )
            return float(candidates[reaching[0]])
        if metric == "recall":
            return float(candidates[np.flatnonzero(values >= target)[-1]])
        distance = np.abs(values - target)
        return float(candidates[np.flatnonzero(distance == distance.min())[-1]])


# ----------------------------------------------------------------------------------------- multiclass


class MulticlassEvaluation:
    """Accumulates the confusion matrix of a multiclass model (rows = true class, columns = predicted).

    ``classes`` names the model's classes; labels and probability columns are indices into it. The
    predicted class is the highest probability, the lowest index on ties.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        if len(classes) < 2:
            raise InvalidInputException(
                f"a multiclass evaluation needs at least 2 classes, got {len(classes)}"
            )
        if len(set(classes)) != len(classes):
            raise InvalidInputException("class names must be distinct")
        self.classes: tuple[str, ...] = tuple(classes)
        size = len(self.classes)
        self._matrix = np.zeros((size, size))
        self._records = 0
        self._weighted = False

    def update(self, probabilities: Any, labels: Any, weights: Any = None) -> None:
        """Add one batch: ``probabilities`` (n, K), ``labels`` (n,) class indices, optional ``weights``."""
        size = len(self.classes)
        probability = np.asarray(probabilities, dtype=np.float64)
        if probability.ndim != 2 or probability.shape[1] != size:
            raise DataError(f"probabilities must have shape (n, {size}), got {probability.shape}")
        n = probability.shape[0]
        label = np.asarray(labels)
        if label.ndim != 1:
            raise DataError(f"labels must be one-dimensional, got shape {label.shape}")
        _check_length("labels", label, n)
        if n and not np.issubdtype(label.dtype, np.integer):
            raise DataError(f"labels must be integer class indices, got dtype {label.dtype}")
        outside = (label < 0) | (label >= size)
        if n and outside.any():
            position = int(np.flatnonzero(outside)[0])
            raise DataError(
                f"labels must be class indices in [0, {size}); record {position} of the batch has "
                f"{label[position]}"
            )
        _check_finite("probabilities", probability)
        weight = _weights(weights, n)
        if n == 0:
            return
        cells = label.astype(np.int64) * size + np.argmax(probability, axis=1)
        self._matrix += np.bincount(cells, weights=weight, minlength=size * size).reshape(size, size)
        self._records += n
        self._weighted = self._weighted or weight is not None

    def merge(self, other: MulticlassEvaluation) -> None:
        """Add every record ``other`` has seen; both must have the same classes in the same order."""
        if other.classes != self.classes:
            raise InvalidInputException("cannot merge multiclass evaluations over different classes")
        self._matrix += other._matrix
        self._records += other._records
        self._weighted = self._weighted or other._weighted

    def result(self, training_class_counts: Mapping[str, float]) -> dict[str, Any]:
        """``MulticlassAvgFScore``, its baseline and the insights.

        The score is the unweighted mean of per-class F1 over the classes present as true labels in the
        evaluation data (open question 15); a class never predicted has precision 0 and F1 0. The baseline
        is the same score for always predicting the most frequent class of ``training_class_counts``
        (class name → count or share; the first class in ``classes`` order on ties).

        Keys: ``MulticlassAvgFScore``, ``baseline``, ``baselineClass``, ``count``, ``perClass`` (one entry
        per class: ``class``, ``precision``, ``recall``, ``f1``, ``trueCount``, ``predictedCount``,
        ``inAverage``), ``confusionMatrix`` (``classes``, ``counts``), ``trueClassFrequencies`` and
        ``predictedClassFrequencies`` (class → count), and ``consoleView`` (see ``_console_view``).
        """
        unknown = sorted(set(training_class_counts) - set(self.classes))
        if unknown:
            raise InvalidInputException(f"training class counts name classes the model lacks: {unknown[:5]}")
        if sum(training_class_counts.values()) <= 0:
            raise InvalidInputException("training class counts must have a positive sum")
        matrix = self._matrix
        true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
        total = float(true_counts.sum())
        if total <= 0:
            raise DataError("the evaluation data has no records; MulticlassAvgFScore needs at least one")
        correct = np.diag(matrix)
        precision = _divide(correct, predicted_counts)
        recall = _divide(correct, true_counts)
        f1 = _divide(2 * correct, true_counts + predicted_counts)
        present = true_counts > 0
        training = np.array([float(training_class_counts.get(name, 0.0)) for name in self.classes])
        majority = int(np.argmax(training))
        majority_share = true_counts[majority] / total
        # Always predicting one class: precision = its share, recall = 1, and F1 = 0 for every other class.
        baseline = (2 * majority_share / (1 + majority_share)) / int(present.sum())
        return {
            "MulticlassAvgFScore": float(f1[present].mean()),
            "baseline": float(baseline),
            "baselineClass": self.classes[majority],
            "count": self._records,
            "perClass": [
                {
                    "class": name,
                    "precision": float(precision[k]),
                    "recall": float(recall[k]),
                    "f1": float(f1[k]),
                    "trueCount": _count(true_counts[k], self._weighted),
                    "predictedCount": _count(predicted_counts[k], self._weighted),
                    "inAverage": bool(present[k]),
                }
                for k, name in enumerate(self.classes)
            ],
            "confusionMatrix": {
                "classes": list(self.classes),
                "counts": [_counts(row, self._weighted) for row in matrix],
            },
            "trueClassFrequencies": dict(
                zip(self.classes, _counts(true_counts, self._weighted), strict=True)
            ),
            "predictedClassFrequencies": dict(
                zip(self.classes, _counts(predicted_counts, self._weighted), strict=True)
            ),
            "consoleView": self._console_view(f1, present),
        }

    def _console_view(self, f1: np.ndarray, present: np.ndarray) -> dict[str, Any]:
        """The console's matrix of at most ``CONSOLE_CLASSES`` classes, by frequency in the evaluation data.

        With more classes, the 9 most frequent stay and the rest collapse into ``"others"`` (rows and
        columns summed); the F1 shown for ``"others"`` is the mean F1 of its classes present as true labels.
        Keys: ``classes``, ``othersClasses`` (the collapsed names, empty when nothing collapsed),
        ``counts``, ``percentages`` (each row as shares of its true class), ``f1``, ``trueFrequencies`` and
        ``predictedFrequencies`` (shares of all records).
        """
        size = len(self.classes)
        true_counts = self._matrix.sum(axis=1)
        order = np.lexsort((np.arange(size), -true_counts))
        shown, collapsed = (order, order[:0]) if size <= CONSOLE_CLASSES else (order[:9], order[9:])
        slot = np.full(size, shown.size)
        slot[shown] = np.arange(shown.size)
        width = shown.size + (1 if collapsed.size else 0)
        view = np.zeros((width, width))
        np.add.at(view, (slot[:, None], slot[None, :]), self._matrix)
        view_f1 = f1[shown].tolist()
        names = [self.classes[k] for k in shown]
        if collapsed.size:
            collapsed_present = collapsed[present[collapsed]]
            view_f1.append(float(f1[collapsed_present].mean()) if collapsed_present.size else 0.0)
            names.append(OTHERS)
        total = view.sum()
        return {
            "classes": names,
            "othersClasses": [self.classes[k] for k in collapsed],
            "counts": [_counts(row, self._weighted) for row in view],
            "percentages": _divide(view, view.sum(axis=1, keepdims=True)).tolist(),
            "f1": view_f1,
            "trueFrequencies": (view.sum(axis=1) / total).tolist(),
            "predictedFrequencies": (view.sum(axis=0) / total).tolist(),
        }


# ----------------------------------------------------------------------------------------- regression

# Residual magnitudes go to log-spaced buckets (as DDSketch) so the histogram range can be chosen at the
# end from the exact RMSE: every bucket's representative value is within relative error α of its residuals.
_RESIDUAL_MIN = 1e-12
_RESIDUAL_MAX = 1e12
_ALPHA = 1e-3
_GAMMA = (1 + _ALPHA) / (1 - _ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
_BUCKETS = math.ceil(math.log(_RESIDUAL_MAX / _RESIDUAL_MIN) / _LOG_GAMMA) + 1
_REPRESENTATIVE = 2 * _RESIDUAL_MIN * _GAMMA ** np.arange(_BUCKETS) / (_GAMMA + 1)


class RegressionEvaluation:
    """Accumulates residuals (actual − predicted) for ``RegressionRMSE``, its baseline and the histogram.

    The RMSE, mean residual and baseline come from exact running sums (targets through a pairwise-merged
    mean and sum of squared deviations, for stability). The residual histogram is built from log-spaced
    buckets of relative width 0.2%: a residual is placed within 0.1% of its value; magnitudes below 1e-12
    count as 0, magnitudes above 1e12 land in the outermost bucket.
    """

    def __init__(self) -> None:
        self._records = 0
        self._weight = 0.0
        self._residual_sum = 0.0
        self._squared_residual_sum = 0.0
        self._target_mean = 0.0
        self._target_squares = 0.0  # Σ w·(y − mean)²
        self._positive = np.zeros(_BUCKETS)
        self._negative = np.zeros(_BUCKETS)
        self._zero = 0.0
        self._weighted = False

    def update(self, predictions: Any, targets: Any, weights: Any = None) -> None:
        """Add one batch: ``predictions`` (n,), ``targets`` (n,), optional ``weights`` (n,) ≥ 0."""
        predicted = _vector("predictions", predictions)
        actual = _vector("targets", targets)
        n = predicted.shape[0]
        _check_length("targets", actual, n)
        _check_finite("predictions", predicted)
        _check_finite("targets", actual)
        weight = _weights(weights, n)
        if n == 0:
            return
        residual = actual - predicted
        batch_weight = float(n) if weight is None else float(weight.sum())
        self._records += n
        self._weighted = self._weighted or weight is not None
        if batch_weight <= 0:
            return
        w = np.ones(n) if weight is None else weight
        self._residual_sum += float(np.dot(w, residual))
        self._squared_residual_sum += float(np.dot(w, residual * residual))
        mean = float(np.dot(w, actual)) / batch_weight
        deviation = actual - mean
        self._add_moments(batch_weight, mean, float(np.dot(w, deviation * deviation)))
        self._add_residual_buckets(residual, w)

    def _add_moments(self, weight: float, mean: float, squares: float) -> None:
        # Chan et al.'s pairwise update keeps the deviation sums accurate for targets far from zero.
        total = self._weight + weight
        delta = mean - self._target_mean
        self._target_mean += delta * weight / total
        self._target_squares += squares + delta * delta * self._weight * weight / total
        self._weight = total

    def _add_residual_buckets(self, residual: np.ndarray, weight: np.ndarray) -> None:
        magnitude = np.abs(residual)
        tiny = magnitude < _RESIDUAL_MIN
        self._zero += float(weight[tiny].sum())
        index = np.ceil(np.log(np.maximum(magnitude, _RESIDUAL_MIN) / _RESIDUAL_MIN) / _LOG_GAMMA)
        index = np.clip(index, 0, _BUCKETS - 1).astype(np.int64)
        negative = residual < 0
        for buckets, side in ((self._positive, ~tiny & ~negative), (self._negative, ~tiny & negative)):
            buckets += np.bincount(index[side], weights=weight[side], minlength=_BUCKETS)

    def merge(self, other: RegressionEvaluation) -> None:
        """Add every record ``other`` has seen; ``other`` is left unchanged."""
        self._records += other._records
        self._weighted = self._weighted or other._weighted
        if other._weight <= 0:
            return
        self._residual_sum += other._residual_sum
        self._squared_residual_sum += other._squared_residual_sum
        self._add_moments(other._weight, other._target_mean, other._target_squares)
        self._positive += other._positive
        self._negative += other._negative
        self._zero += other._zero

    def result(self, training_mean: float) -> dict[str, Any]:
        """``RegressionRMSE``, its baseline (RMSE of always predicting ``training_mean``) and the insights.

        Keys: ``RegressionRMSE``, ``baseline``, ``meanResidual``, ``count``, ``residualHistogram``
        (``edges``: 51 values over ±4·RMSE, or ±1 when RMSE is 0; ``counts``: 50 bins [e_k, e_k+1), the
        last closed; ``below``/``above``: residuals outside the edges).
        """
        if not math.isfinite(training_mean):
            raise InvalidInputException(f"training_mean must be a finite number, got {training_mean}")
        if self._weight <= 0:
            raise DataError(
                f"the evaluation data has no records with positive weight ({self._records} records in all); "
                "RegressionRMSE needs at least one"
            )
        rmse = math.sqrt(self._squared_residual_sum / self._weight)
        offset = self._target_mean - training_mean
        baseline = math.sqrt((self._target_squares + self._weight * offset * offset) / self._weight)
        half_width = RESIDUAL_SPAN * rmse if rmse > 0 else 1.0
        edges = np.linspace(-half_width, half_width, RESIDUAL_BINS + 1)
        values = np.concatenate((-_REPRESENTATIVE, [0.0], _REPRESENTATIVE))
        weights = np.concatenate((self._negative, [self._zero], self._positive))
        below, above = values < edges[0], values > edges[-1]
        inside = ~below & ~above
        bins = np.minimum(np.searchsorted(edges, values[inside], side="right") - 1, RESIDUAL_BINS - 1)
        return {
            "RegressionRMSE": rmse,
            "baseline": baseline,
            "meanResidual": self._residual_sum / self._weight,
            "count": self._records,
            "residualHistogram": {
                "edges": edges.tolist(),
                "counts": _counts(
                    np.bincount(bins, weights=weights[inside], minlength=RESIDUAL_BINS), self._weighted
                ),
                "below": _count(float(weights[below].sum()), self._weighted),
                "above": _count(float(weights[above].sum()), self._weighted),
            },
        }


# --------------------------------------------------------------------------------------------- API


def performance_metrics(model_type: str, result: Mapping[str, Any]) -> dict[str, str]:
    """``PerformanceMetrics.Properties``: the model type's one metric as a full-precision decimal string."""
    key = MODEL_METRIC.get(model_type)
    if key is None:
        raise InvalidInputException(
            f"MLModelType must be one of {', '.join(MODEL_METRIC)}; got {model_type!r}"
        )
    if key not in result:
        raise InvalidInputException(f"the {model_type} evaluation result has no {key}")
    return {key: repr(float(result[key]))}
