"""The regression refinement: conjugate gradients over batches reach the exact regularized least squares."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from learn_helpers import gaussian_rows, source_of

from emrml.core import learn, least_squares
from emrml.core.learn import train
from emrml.core.linear import TrainingParameters


def exact(X: sp.csr_matrix, y: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    """``(weights, bias)`` minimizing mean(w·(Xβ + b − y)²)/2 + l2/2·|β|², from the normal equations."""
    design = np.column_stack([X.toarray(), np.ones(X.shape[0])])
    gram = design.T @ (design * w[:, None]) / w.sum()
    gram[:-1, :-1] += l2 * np.eye(X.shape[1])
    return np.linalg.solve(gram, design.T @ (w * y) / w.sum())


def objective(X: sp.csr_matrix, y: np.ndarray, w: np.ndarray, l2: float, beta: np.ndarray, b: float) -> float:
    residual = X @ beta + b - y
    return float(0.5 * (w @ residual**2) / w.sum() + 0.5 * l2 * beta @ beta)


def problem(seed: int = 0, n: int = 3000, d: int = 40) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Rows with features of very different frequencies (a rare-category shape) and a noisy linear target."""
    rng = np.random.default_rng(seed)
    X = gaussian_rows(rng, n, d, 6)
    X = sp.csr_matrix(X.multiply(rng.random(X.shape[1]) ** 3 * 10))  # badly scaled columns
    y = X @ rng.normal(size=d) + 2.0 + rng.normal(scale=0.3, size=n)
    return X, y, rng.random(n) + 0.5


def batches(X: sp.csr_matrix, y: np.ndarray, w: np.ndarray, size: int = 700):
    def source():
        for start in range(0, X.shape[0], size):
            yield X[start : start + size], y[start : start + size], w[start : start + size]

    return source


@pytest.mark.parametrize("l2", [0.0, 1e-3, 0.5])
def test_refine_reaches_the_exact_minimum_over_batches(l2: float) -> None:
    X, y, w = problem()
    truth = exact(X, y, w, l2)
    solution = least_squares.refine(batches(X, y, w), X.shape[1], l2, np.zeros(X.shape[1]), 0.0, 200)
    # The predictions are the exact fit's; weights of columns with tiny values are barely determined.
    assert np.allclose(X @ solution.weights + solution.bias, X @ truth[:-1] + truth[-1], atol=1e-4)
    assert objective(X, y, w, l2, solution.weights, solution.bias) == pytest.approx(
        objective(X, y, w, l2, truth[:-1], truth[-1]), rel=1e-9
    )
    assert all(b <= a + 1e-12 for a, b in zip(solution.objectives, solution.objectives[1:], strict=False))
    assert solution.passes < 200  # converged before the budget


def test_refine_from_a_warm_start_only_lowers_the_objective_and_respects_the_pass_budget() -> None:
    X, y, w = problem(seed=1)
    start = np.random.default_rng(3).normal(size=X.shape[1])
    solution = least_squares.refine(batches(X, y, w), X.shape[1], 0.0, start, 5.0, 4)
    assert solution.passes == 4
    assert len(solution.objectives) == 4  # the start, then one per iteration
    assert solution.objectives[-1] < solution.objectives[0]


def test_refine_without_weight_returns_the_start() -> None:
    X, y, _ = problem(n=50)
    start = np.arange(X.shape[1], dtype=float)
    solution = least_squares.refine(batches(X, y, np.zeros(50)), X.shape[1], 0.0, start, 1.5, 10)
    assert np.array_equal(solution.weights, start) and solution.bias == 1.5 and solution.objectives == []


def test_regression_training_ends_at_the_exact_minimum_of_its_objective() -> None:
    X, y, w = problem(seed=2)
    params = TrainingParameters(max_passes=3, l2=1e-4)
    model, report = train("REGRESSION", source_of(X, y, w), X.shape[1], None, params)
    mean, std = report.target_mean, report.target_std
    truth = exact(X, (y - mean) / std, w, params.l2)  # the objective is in standardized units
    assert np.allclose(model.predict_scores(X), (X @ truth[:-1] + truth[-1]) * std + mean, atol=1e-4 * std)
    assert report.refinement_passes == 0  # every row was in the calibration sample: refined in memory
    assert report.refinement_objectives[-1] < report.refinement_objectives[0]


def test_large_data_is_refined_by_streaming_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(learn, "CALIBRATION_ROWS", 500)  # the sample no longer holds every row
    X, y, w = problem(seed=4)
    source = source_of(X, y, w)
    params = TrainingParameters(max_passes=30)
    seen: list[float] = []
    _, report = train("REGRESSION", source, X.shape[1], None, params, progress=seen.append)
    assert 1 < report.refinement_passes <= params.max_passes
    # SGD fills the first half of the progress bar and the refinement's passes the second
    assert seen == sorted(seen) and seen[-1] == 1.0 and any(0.5 < f < 1.0 for f in seen)
    # calibration + SGD passes + the refinement's passes, each one read of the source
    assert source.calls == 1 + report.passes + report.refinement_passes


def test_l1_models_are_not_refined() -> None:
    X, y, w = problem(seed=5)
    _, report = train("REGRESSION", source_of(X, y, w), X.shape[1], None, TrainingParameters(l1=1e-3))
    assert report.refinement_objectives == [] and report.refinement_passes == 0
