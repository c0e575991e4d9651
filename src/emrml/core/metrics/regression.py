"""REGRESSION evaluation: RMSE, its baseline and the residual histogram."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from emrml.core.metrics.common import (
    check_finite,
    check_length,
    checked_weights,
    json_count,
    json_counts,
    vector,
)
from emrml.errors import DataError, InvalidInputException

#: Residual histogram: bins over ±RESIDUAL_SPAN·RMSE.
RESIDUAL_BINS = 50
RESIDUAL_SPAN = 4.0


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
        predicted = vector("predictions", predictions)
        actual = vector("targets", targets)
        n = predicted.shape[0]
        check_length("targets", actual, n)
        check_finite("predictions", predicted)
        check_finite("targets", actual)
        weight = checked_weights(weights, n)
        if n == 0:
            return
        residual = actual - predicted
        batch_weight = float(n) if weight is None else float(weight.sum())
        self._records += n
        self._weighted = self._weighted or weight is not None
        if batch_weight <= 0:
            return
        w = np.ones(n) if weight is None else weight
        # Sums past the float range (targets near 1e160: their squares) are refused by ``result``.
        with np.errstate(over="ignore", invalid="ignore"):
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
        with np.errstate(over="ignore", invalid="ignore"):  # refused by ``result``, as in ``update``
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
        rmse = math.sqrt(self._squared_residual_sum / self._weight)  # inf or NaN past the float range
        offset = self._target_mean - training_mean
        baseline = math.sqrt((self._target_squares + self._weight * offset * offset) / self._weight)
        if not all(math.isfinite(value) for value in (rmse, baseline, self._residual_sum)):
            # Targets near 1e160: the residual histogram failed with an internal error ("'list' argument
            # must have no negative elements") on the edges of an infinite RMSE.
            raise DataError(
                "the evaluation data's target values are too large to evaluate: the squares of their "
                "differences from the predictions (or from their mean) overflow the range of floating-point "
                "numbers, so RegressionRMSE cannot be computed"
            )
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
                "counts": json_counts(
                    np.bincount(bins, weights=weights[inside], minlength=RESIDUAL_BINS), self._weighted
                ),
                "below": json_count(float(weights[below].sum()), self._weighted),
                "above": json_count(float(weights[above].sum()), self._weighted),
            },
        }
