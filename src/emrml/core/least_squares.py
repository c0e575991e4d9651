"""The exact minimum of a regression model's objective, by preconditioned conjugate gradients over batches.

A REGRESSION model without L1 minimizes a smooth quadratic: the mean half squared error of the
standardized target plus ``l2 / 2 * |w|^2`` (the bias is not regularized). SGD gets near that minimum fast
but approaches it slowly where the problem is ill-conditioned: rare categories (a feature present in a
handful of rows gets a handful of steps a pass), correlated numbers, heavy-tailed targets. Conjugate
gradients on the normal equations reach it in a few passes more, each pass one product with ``X`` and one
with ``X.T`` per batch, so memory stays at a few vectors of ``n_features`` whatever the number of rows (a
Gram matrix would be ``n_features^2``; scipy's ``lsqr`` would keep a residual per row).

With ``x = (w, b)`` and the batches' rows ``X``, targets ``y`` and weights ``ω`` (summing to ``S``), the
system is ``A x = c`` with ``A = [X 1]^T diag(ω) [X 1] / S + diag(l2, ..., l2, 0)`` and
``c = [X 1]^T diag(ω) y / S``. The preconditioner is ``A``'s diagonal (Jacobi): the features are of very
different frequencies, and scaling by it makes a rare category's coordinate converge as fast as a common
one's. Starting from the SGD model, every iteration lowers the objective (conjugate gradients minimize
it over a growing subspace), so the refined model is never worse on the training objective.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: A batch as the learner sees it: features ``(m, n)`` CSR, standardized targets ``(m,)``, weights ``(m,)``.
Batch = tuple[sp.csr_matrix, np.ndarray, np.ndarray]
#: Stop when the preconditioned residual norm falls below this share of the right-hand side's.
TOLERANCE = 1e-6


@dataclass
class Solution:
    weights: np.ndarray  # (n_features,)
    bias: float
    #: Passes over the batches: one for the right-hand side and the starting residual, one per iteration.
    passes: int
    #: The objective after the start and after each iteration (non-increasing).
    objectives: list[float]


def _products(batches: Iterable[Batch], n: int, p: np.ndarray, with_rhs: bool) -> tuple[np.ndarray, ...]:
    """One pass: ``[X 1]^T ω ([X 1] p)`` summed over the batches, and on request ``[X 1]^T ω y``,
    the diagonal ``[X² 1]^T ω``, ``Σ ω`` and ``Σ ω y²`` (unscaled by ``S``)."""
    product = np.zeros(n + 1)
    rhs = np.zeros(n + 1)
    diagonal = np.zeros(n + 1)
    sums = np.zeros(2)  # Σ ω, Σ ω y²
    for X, y, weight in batches:
        q = weight * (X @ p[:n] + p[n])
        product[:n] += X.T @ q
        product[n] += q.sum()
        if with_rhs:
            wy = weight * y
            rhs[:n] += X.T @ wy
            rhs[n] += wy.sum()
            diagonal[:n] += X.multiply(X).T @ weight
            diagonal[n] += weight.sum()
            sums += (weight.sum(), float(wy @ y))
    return product, rhs, diagonal, sums


def refine(
    batches: Callable[[], Iterable[Batch]],
    n_features: int,
    l2: float,
    weights: np.ndarray,
    bias: float,
    max_passes: int,
    on_pass: Callable[[int], None] | None = None,
) -> Solution:
    """Minimize the regression objective from ``(weights, bias)`` in at most ``max_passes`` passes.

    ``batches()`` yields one pass of the training batches (any order; targets already standardized).
    Returns the start unchanged (``passes`` still counted) when the batches hold no weight. ``on_pass``
    receives the number of passes done after each one.
    """
    n = n_features
    x = np.concatenate([np.asarray(weights, dtype=np.float64), [float(bias)]])
    regularization = np.full(n + 1, l2)
    regularization[n] = 0.0
    product, rhs, diagonal, (total, y_squares) = _products(batches(), n, x, with_rhs=True)
    passes = 1
    if on_pass is not None:
        on_pass(passes)
    if not total > 0:
        return Solution(x[:n], float(x[n]), passes, [])
    rhs /= total
    diagonal = diagonal / total + regularization
    inverse = np.divide(1.0, diagonal, out=np.zeros_like(diagonal), where=diagonal > 0)
    constant = 0.5 * y_squares / total

    def objective(x: np.ndarray, residual: np.ndarray) -> float:
        # f(x) = x·Ax/2 - c·x + const and A x = c - r, so f = const - x·(c + r)/2 with no extra pass.
        return float(constant - 0.5 * x @ (rhs + residual))

    residual = rhs - (product / total + regularization * x)
    objectives = [objective(x, residual)]
    z = inverse * residual
    rz = float(residual @ z)
    stop = TOLERANCE**2 * float(rhs @ (inverse * rhs))
    direction = z.copy()
    while passes < max_passes and rz > stop:
        q = _products(batches(), n, direction, with_rhs=False)[0] / total + regularization * direction
        passes += 1
        if on_pass is not None:
            on_pass(passes)
        curvature = float(direction @ q)
        if not curvature > 0:
            break
        step = rz / curvature
        x += step * direction
        residual -= step * q
        objectives.append(objective(x, residual))
        z = inverse * residual
        rz, previous = float(residual @ z), rz
        direction = z + (rz / previous) * direction
    return Solution(x[:n], float(x[n]), passes, objectives)
