"""Classification models reach their objective's minimum when the data fits in memory, in any row order."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit, softmax

from emrml.core import learn
from emrml.core.learn import train
from emrml.core.linear import LinearModel, TrainingParameters

Batch = tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]


def source_of(X: sp.csr_matrix, y: np.ndarray, batch: int = 1000):
    def source() -> Iterator[Batch]:
        for start in range(0, X.shape[0], batch):
            yield X[start : start + batch], y[start : start + batch], None

    return source


def drifting_binary(seed: int, n: int = 6000) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows in time order: one-hot 'month' (12 levels) whose positive rate drifts, a few one-hot
    categories and two numbers; sorted by month, as chronological data is."""
    rng = np.random.default_rng(seed)
    month = np.sort(rng.integers(0, 12, size=n))
    category = rng.integers(0, 8, size=n)
    numbers = rng.normal(size=(n, 2))
    logit = np.linspace(-3.0, 1.0, 12)[month] + rng.normal(size=8)[category] + numbers @ [1.0, -0.5]
    y = (rng.random(n) < expit(logit)).astype(float)
    rows = np.arange(n)
    X = sp.hstack(
        [
            sp.csr_matrix((np.ones(n), (rows, month)), shape=(n, 12)),
            sp.csr_matrix((np.ones(n), (rows, category)), shape=(n, 8)),
            sp.csr_matrix(numbers),
        ],
        format="csr",
    )
    return X, y


def gradient_norm(model: LinearModel, X: sp.csr_matrix, y: np.ndarray, l2: float) -> float:
    """Largest coordinate of the gradient of the mean loss + l2/2 |W|^2 at the model: 0 at the minimum."""
    z = model.decision(X)
    if model.kind == "BINARY":
        residual = (expit(z) - y)[:, None]
    else:
        residual = softmax(z, axis=1)
        residual[np.arange(len(y)), y.astype(int)] -= 1.0
    weights_gradient = X.T @ residual / len(y) + l2 * model.weights
    return float(max(np.abs(weights_gradient).max(), np.abs(residual.mean(axis=0)).max()))


@pytest.mark.parametrize(
    "params", [TrainingParameters(), TrainingParameters.console()], ids=["api", "console"]
)
def test_rows_in_time_order_train_the_model_shuffled_rows_train(params: TrainingParameters) -> None:
    X, y = drifting_binary(seed=1)
    ordered, report = train("BINARY", source_of(X, y), X.shape[1], None, params)
    order = np.random.default_rng(2).permutation(len(y))
    shuffled, _ = train("BINARY", source_of(X[order], y[order]), X.shape[1], None, params)
    # The same scores (the one-hot blocks and the bias are collinear: the weights themselves need not be
    # equal). Without the refinement the API defaults (no shuffle) leave the ordered model's 0.3 away.
    assert np.abs(ordered.decision(X) - shuffled.decision(X)).max() < 1e-4
    assert gradient_norm(ordered, X, y, params.l2) < 1e-5
    assert report.refinement_objectives[-1] < report.refinement_objectives[0]
    assert report.refinement_objectives[-1] <= report.losses[-1]


def test_a_multiclass_model_is_at_its_objective_minimum() -> None:
    rng = np.random.default_rng(3)
    n, k = 3000, 5
    X = sp.csr_matrix(np.hstack([rng.normal(size=(n, 6)), np.eye(4)[rng.integers(0, 4, size=n)]]))
    truth = rng.normal(size=(10, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(X @ truth, axis=1)], dtype=float)
    y = y[np.argsort(y, kind="stable")]  # sorted by class: the worst order for SGD without shuffling
    X = X[np.argsort(np.argsort(y, kind="stable"))]
    params = TrainingParameters(l2=1e-4)
    model, _ = train("MULTICLASS", source_of(X, y), X.shape[1], k, params)
    assert gradient_norm(model, X, y, params.l2) < 1e-5


def test_separable_classes_without_regularization_keep_finite_weights() -> None:
    rng = np.random.default_rng(4)
    X = sp.csr_matrix(rng.normal(size=(2000, 5)))
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0, 1.0]) > 0).astype(float)
    model, report = train("BINARY", source_of(X, y), 5, None, TrainingParameters())
    assert np.isfinite(model.weights).all() and np.isfinite(model.bias).all()
    assert ((model.predict_scores(X) >= 0.5) == (y == 1)).all()
    assert report.refinement_objectives[-1] < 1e-3 < report.refinement_objectives[0]


def test_data_beyond_the_calibration_sample_and_l1_models_are_not_refined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    X, y = drifting_binary(seed=5, n=3000)
    _, report = train("BINARY", source_of(X, y), X.shape[1], None, TrainingParameters(l1=1e-4))
    assert report.refinement_objectives == []  # L1's exact zeros are SGD's to find
    monkeypatch.setattr(learn, "CALIBRATION_ROWS", 1000)
    _, report = train("BINARY", source_of(X, y), X.shape[1], None, TrainingParameters())
    assert report.refinement_objectives == []  # the rows are not all in memory: not read again
