"""Checks and JSON helpers shared by the evaluation accumulators."""

from __future__ import annotations

from typing import Any

import numpy as np

from emrml.errors import DataError


def vector(name: str, values: Any, dtype: type = np.float64) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise DataError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def check_length(name: str, array: np.ndarray, n: int) -> None:
    if array.shape[0] != n:
        raise DataError(f"{name} has {array.shape[0]} values but the batch has {n} records")


def check_finite(name: str, array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        position = int(np.flatnonzero(~finite.reshape(array.shape[0], -1).all(axis=1))[0])
        raise DataError(f"{name} must be finite; record {position} of the batch is not")


def checked_weights(weights: Any, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    array = vector("weights", weights)
    check_length("weights", array, n)
    check_finite("weights", array)
    if (array < 0).any():
        position = int(np.flatnonzero(array < 0)[0])
        raise DataError(f"weights must not be negative; record {position} of the batch has {array[position]}")
    return array


def divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ratio with 0 where the denominator is 0 (an empty set has precision 0, as scikit-learn)."""
    numerator, denominator = np.broadcast_arrays(
        np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    )
    out = np.zeros(numerator.shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def json_counts(values: np.ndarray, weighted: bool) -> list[Any]:
    """JSON-ready counts: integers unless the records were weighted."""
    return values.tolist() if weighted else np.rint(values).astype(np.int64).tolist()


def json_count(value: float, weighted: bool) -> float | int:
    return float(value) if weighted else round(float(value))
