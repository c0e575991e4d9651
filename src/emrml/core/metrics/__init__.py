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

from collections.abc import Mapping
from typing import Any

from emrml.core.metrics.binary import SCORE_EDGES, THRESHOLD_METRICS, BinaryEvaluation
from emrml.core.metrics.multiclass import MulticlassEvaluation
from emrml.core.metrics.regression import RegressionEvaluation
from emrml.errors import InvalidInputException

__all__ = [
    "MODEL_METRIC",
    "SCORE_EDGES",
    "THRESHOLD_METRICS",
    "BinaryEvaluation",
    "MulticlassEvaluation",
    "RegressionEvaluation",
    "performance_metrics",
]

#: The one metric the API reports per model type (``PerformanceMetrics.Properties``).
MODEL_METRIC = {"BINARY": "BinaryAUC", "MULTICLASS": "MulticlassAvgFScore", "REGRESSION": "RegressionRMSE"}


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
