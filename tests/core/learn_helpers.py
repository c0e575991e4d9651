"""Helpers shared by the SGD learner's tests (test_learn_training, test_learn_scoring_and_real_data):
sources over fixed arrays, synthetic data of known models, AUC."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

Batch = tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]


def source_of(X: sp.csr_matrix, y: np.ndarray, w: np.ndarray | None = None, batch: int = 5000):
    """A re-iterable source over fixed arrays, in slices of ``batch`` rows; counts its passes."""

    def source() -> Iterator[Batch]:
        source.calls += 1  # type: ignore[attr-defined]
        for start in range(0, X.shape[0], batch):
            stop = start + batch
            yield X[start:stop], y[start:stop], None if w is None else w[start:stop]

    source.calls = 0  # type: ignore[attr-defined]
    return source


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula, ties sharing their mean rank."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mean_ranks = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_ranks, counts)
    positive = y == 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gaussian_rows(rng: np.random.Generator, n: int, d: int, active: int) -> sp.csr_matrix:
    """``active`` distinct random features per row with standard normal values."""
    if d <= 100:
        columns = np.argsort(rng.random((n, d)), axis=1)[:, :active]
    else:  # rejection of the rare rows with a repeated feature keeps this fast for wide models
        columns = rng.integers(0, d, size=(n, active))
        while True:
            ordered = np.sort(columns, axis=1)
            repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
            if not repeated.any():
                break
            columns[repeated] = rng.integers(0, d, size=(int(repeated.sum()), active))
    values = rng.normal(size=n * active)
    return sp.csr_matrix((values, columns.ravel(), np.arange(0, n * active + 1, active)), shape=(n, d))


def logistic_data(seed: int = 0, n: int = 20_000, d: int = 20, active: int = 10):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=d)
    X = gaussian_rows(rng, n, d, active)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ truth - 0.5)))).astype(float)
    return X, y, truth
