"""Helpers shared by the evaluation metrics' tests (test_metrics_binary, test_metrics_multiclass_regression,
test_metrics_alerts)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from emrml.core.metrics import BinaryEvaluation

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


@cache
def dataset_columns(name: str, *columns: str) -> dict[str, np.ndarray]:
    path = DATASETS / name / "data.csv"
    if not path.is_file():
        pytest.skip(f"the shared datasets are not beside the checkout ({path})")
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=list(columns)))
    return {column: table.column(column).to_numpy() for column in columns}


def binary(scores, labels, weights=None) -> BinaryEvaluation:
    evaluation = BinaryEvaluation()
    evaluation.update(np.asarray(scores, dtype=float), np.asarray(labels), weights)
    return evaluation


def split_points(cuts: list[int], n: int) -> list[int]:
    """Batch boundaries 0 … n from arbitrary cut positions (clipped to n, possibly empty batches)."""
    return [0, *sorted(min(c, n) for c in cuts), n]
