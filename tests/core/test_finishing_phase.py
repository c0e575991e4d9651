"""The phase a model's training ends with, by model type: what ``Trainer.finishing_phase`` says (and the
Spark engine names its last step by) is the phase ``finish`` announces."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from emrml.core import learn
from emrml.core.linear import TrainingParameters


def _source(X: sp.csr_matrix, y: np.ndarray) -> Any:
    def source() -> Any:
        for start in range(0, X.shape[0], 100):
            yield X[start : start + 100], y[start : start + 100], None

    return source


@pytest.mark.parametrize(
    ("kind", "l1", "expected"),
    [
        ("BINARY", 0.0, learn.CALIBRATING_PHASE),
        ("MULTICLASS", 0.0, learn.CALIBRATING_PHASE),
        ("REGRESSION", 0.0, learn.REFINING_PHASE),
        ("BINARY", 1e-4, None),
        ("REGRESSION", 1e-4, None),
    ],
)
def test_the_finishing_phase_is_the_one_training_ends_with(
    monkeypatch: pytest.MonkeyPatch, kind: str, l1: float, expected: str | None
) -> None:
    rng = np.random.default_rng(7)
    X = sp.random(400, 20, density=0.3, format="csr", random_state=7)
    y = {
        "BINARY": rng.integers(0, 2, 400),
        "MULTICLASS": rng.integers(0, 3, 400),
        "REGRESSION": X @ rng.normal(size=20),
    }[kind].astype(float)
    said: list[str | None] = []
    finish = learn.Trainer.finish

    def finishing(self: learn.Trainer, source: Any) -> Any:
        said.append(self.finishing_phase())
        return finish(self, source)

    monkeypatch.setattr(learn.Trainer, "finish", finishing)
    phases: list[str] = []
    learn.train(
        kind,  # type: ignore[arg-type]
        _source(X, y),
        20,
        3 if kind == "MULTICLASS" else None,
        TrainingParameters(max_passes=3, l1=l1),
        phase=phases.append,
    )
    assert said == [expected]
    assert phases[-1] == (expected or learn.pass_phase(2))  # the last of its three passes
