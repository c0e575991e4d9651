"""MULTICLASS evaluation: the confusion matrix, macro-average F1 and its baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from emrml.core.metrics.common import (
    check_finite,
    check_length,
    checked_weights,
    divide,
    json_count,
    json_counts,
)
from emrml.errors import DataError, InvalidInputException

#: The console collapses classes beyond this many into "others" (9 shown + 1).
CONSOLE_CLASSES = 10
OTHERS = "others"


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
        check_length("labels", label, n)
        if n and not np.issubdtype(label.dtype, np.integer):
            raise DataError(f"labels must be integer class indices, got dtype {label.dtype}")
        outside = (label < 0) | (label >= size)
        if n and outside.any():
            position = int(np.flatnonzero(outside)[0])
            raise DataError(
                f"labels must be class indices in [0, {size}); record {position} of the batch has "
                f"{label[position]}"
            )
        check_finite("probabilities", probability)
        weight = checked_weights(weights, n)
        if n == 0:
            return
        cells = label.astype(np.int64) * size + np.argmax(probability, axis=1)
        self._matrix += np.bincount(cells, weights=weight, minlength=size * size).reshape(size, size)
        self._records += n
        self._weighted = self._weighted or weight is not None

    def with_unseen(self, rows: Mapping[str, Sequence[float]], records: int) -> MulticlassEvaluation:
        """This evaluation with more true classes: ``rows`` maps a class the model does not know (it never
        saw it in training, so it can never predict it) to the counts (weights, with row weights) of its
        ``records`` records per predicted class, in ``classes`` order. Such records are misclassified by
        construction: their class joins the average with F1 0 and they count against the precision of the
        classes predicted for them, as they would in a model that knew the class and never predicted it."""
        size = len(self.classes)
        extra = [name for name in rows if name not in self.classes]
        if len(extra) != len(rows):
            raise InvalidInputException("unseen classes must not be classes of the model")
        grown = MulticlassEvaluation([*self.classes, *extra])
        grown._matrix[:size, :size] = self._matrix
        for position, name in enumerate(extra, start=size):
            counts = np.asarray(rows[name], dtype=np.float64)
            if counts.shape != (size,):
                raise DataError(f"unseen class {name!r} needs {size} predicted counts, got {counts.shape}")
            grown._matrix[position, :size] = counts
        grown._records = self._records + records
        grown._weighted = self._weighted
        return grown

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
            # Records weighted 0 are there but count for nothing: say so, as the regression's metric does.
            weighed = f" with positive weight ({self._records} records in all)" if self._records else ""
            raise DataError(
                f"the evaluation data has no records{weighed}; MulticlassAvgFScore needs at least one"
            )
        correct = np.diag(matrix)
        precision = divide(correct, predicted_counts)
        recall = divide(correct, true_counts)
        f1 = divide(2 * correct, true_counts + predicted_counts)
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
                    "trueCount": json_count(true_counts[k], self._weighted),
                    "predictedCount": json_count(predicted_counts[k], self._weighted),
                    "inAverage": bool(present[k]),
                }
                for k, name in enumerate(self.classes)
            ],
            "confusionMatrix": {
                "classes": list(self.classes),
                "counts": [json_counts(row, self._weighted) for row in matrix],
            },
            "trueClassFrequencies": dict(
                zip(self.classes, json_counts(true_counts, self._weighted), strict=True)
            ),
            "predictedClassFrequencies": dict(
                zip(self.classes, json_counts(predicted_counts, self._weighted), strict=True)
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
            "counts": [json_counts(row, self._weighted) for row in view],
            "percentages": divide(view, view.sum(axis=1, keepdims=True)).tolist(),
            "f1": view_f1,
            "trueFrequencies": (view.sum(axis=1) / total).tolist(),
            "predictedFrequencies": (view.sum(axis=0) / total).tolist(),
        }
