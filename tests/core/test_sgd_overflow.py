"""Feature values near the range of floats overflow SGD's products and squared gradients to inf, which the
learner handles (such a feature's weight stays 0, and the training refuses the state as it finishes): its
steps print no RuntimeWarning, in either mode, for any kind, and its state is still the one refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from emrml.core.sgd import DualAveraging

KINDS = {"BINARY": 1, "MULTICLASS": 3, "REGRESSION": 1}


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("kind", list(KINDS))
def test_steps_on_huge_feature_values_print_no_warning(kind: str, dense: bool) -> None:
    rng = np.random.default_rng(7)
    X = sp.csr_matrix(rng.normal(size=(120, 4)) * 1e200)
    y = (
        rng.normal(size=120)
        if kind == "REGRESSION"
        else rng.integers(0, max(2, KINDS[kind]), 120).astype(float)
    )
    state = DualAveraging(kind, 4, np.zeros(KINDS[kind]), 0.1, 1e-3, 1e-6, dense=dense)
    state.start_average(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state.fit_rows(X, y, np.ones(120), 8)
        weights, _ = state.model()
    assert not np.isfinite(state.squares).all()  # the state the training refuses as it finishes
    assert np.isfinite(weights).all()
    # Outside the steps, numpy's settings are as they were.
    with warnings.catch_warnings(), pytest.raises(RuntimeWarning):
        warnings.simplefilter("error")
        np.float64(1e300) * np.float64(1e300)
