"""The SGD learner's state: AdaGrad dual averaging over sparse mini-batches (see ``core.learn`` for the
algorithm and the choices around it).

``DualAveraging`` keeps per-coordinate gradient sums from which the weights follow in closed form;
``DualAveraging.mix`` averages states that ran one pass each on a part of the data (the Spark engine's
data-parallel passes, engine/spark/training.py).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

# Keeps 0 / 0 out of the weight of a coordinate that has had no gradient yet.
_EPSILON = 1e-12
#: Fewest weight snapshots per pass averaged into the model (sparse mode).
MIN_SNAPSHOTS = 16
#: A mini-batch source's batch after checking: features ``(m, n_features)`` CSR, targets ``(m,)``, weights.
Batch = tuple["sp.csr_matrix", np.ndarray, np.ndarray]
#: The arrays parameter mixing averages.
_MIXED = ("sums", "squares", "bias_sums", "bias_squares", "average_weights", "average_bias")


def losses_and_gradient(kind: str, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss ``(m,)`` and d loss / d z (shaped like ``z``): ``z`` is ``(m,)``, or ``(m, K)`` logits."""
    if kind == "BINARY":
        from scipy.special import expit

        return np.logaddexp(0.0, z) - y * z, expit(z) - y
    if kind == "MULTICLASS":
        top = z.max(axis=1, keepdims=True)
        exps = np.exp(z - top)
        sums = exps.sum(axis=1)
        rows = np.arange(len(y))
        classes = y.astype(np.intp)
        losses = np.log(sums) + top[:, 0] - z[rows, classes]
        gradient = exps / sums[:, None]
        gradient[rows, classes] -= 1.0
        return losses, gradient
    residual = z - y
    return 0.5 * residual * residual, residual


def _row_items(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous ``(n, k)`` float64 array with one item per row.

    For k = 1 the items are the floats; otherwise ``k * 8``-byte blocks, which numpy gathers and scatters
    about twice as fast as rows of a 2-D array. Sparse matrix-vector products with 1-D vectors are also
    about twice as fast as with one-column matrices.
    """
    if a.shape[1] == 1:
        return a.reshape(-1)
    return a.view(np.dtype((np.void, a.itemsize * a.shape[1]))).reshape(-1)


class DualAveraging:
    """AdaGrad dual averaging: per-coordinate gradient sums, from which the weights follow in closed form.

    With ``u`` the sum and ``H`` the sum of squares of a coordinate's gradients over the ``t`` steps so far,
    its weight is ``-sign(u) * max(|u| - l1 * t, 0) / (l2 * t + (sqrt(H) + eps) / rate)``: the minimizer of
    ``<u, w> + t * (l1 |w| + l2 / 2 w^2) + (sqrt(H) + eps) / (2 rate) w^2``. The regularization is therefore
    exact at every step for every coordinate, yet costs nothing for coordinates a step does not touch: their
    weight is only computed when read. The bias follows the same rule around its prior, unregularized.

    Iterate averaging: after ``start_average``, the weights before every ``average_every``-th step are added
    to a running sum (in dense mode the step has computed them all anyway; else they are computed).
    """

    def __init__(
        self, kind: str, n_features: int, bias: np.ndarray, rate: float, l1: float, l2: float, dense: bool
    ) -> None:
        self.k = len(bias)
        self.kind = kind
        # Single-output kinds work on 1-D vectors; MULTICLASS on (n, K) even when K is 1.
        self.single = kind != "MULTICLASS"
        self.rate = rate
        self.l1 = l1
        self.l2 = l2
        self.dense = dense
        self.steps = 0
        self.sums = np.zeros((n_features, self.k))
        self.squares = np.zeros((n_features, self.k))
        self.prior = bias.copy()
        self.bias_sums = np.zeros(self.k)
        self.bias_squares = np.zeros(self.k)
        self._sum_items = _row_items(self.sums)
        self._square_items = _row_items(self.squares)
        # Scratch map feature -> column of the current mini-batch; only entries just written are read.
        index_type = np.int32 if n_features < 2**31 else np.int64
        self._position = np.zeros(0 if dense else n_features, dtype=index_type)
        self.average_every = 0
        self.average_weights = np.zeros((0, self.k))
        self.average_bias = np.zeros(self.k)
        self.average_count: float = 0
        #: How many states this one adds up (``add_up``); 1 for a learner's own state.
        self.summed = 1

    def __getstate__(self) -> dict[str, Any]:
        # The item views share memory with ``sums`` and ``squares``; pickled, they would not.
        state = self.__dict__.copy()
        for name in ("_sum_items", "_square_items", "_position"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sum_items = _row_items(self.sums)
        self._square_items = _row_items(self.squares)
        index_type = np.int32 if len(self.sums) < 2**31 else np.int64
        self._position = np.zeros(0 if self.dense else len(self.sums), dtype=index_type)

    @classmethod
    def mix(cls, parts: Sequence[DualAveraging]) -> DualAveraging:
        """Parameter mixing of states that started a pass from the same state on different data.

        The mean of the gradient sums, squared sums, step counts and averaging snapshots: each coordinate's
        weight becomes (nearly: exactly when the squared sums agree) the mean of the parts' weights, and
        the state stays one a single learner could have reached, so later passes continue from it.
        Deterministic: the parts are added in the order given.
        """
        return cls.add_up(parts).mean()

    @classmethod
    def add_up(cls, parts: Sequence[DualAveraging]) -> DualAveraging:
        """The sum of the states (of sums, in the order given): ``mix`` in steps, so that partial sums can
        be added up where the parts are (a tree of sums) before ``mean`` divides by the states counted."""
        first = parts[0]
        total = copy.copy(first)
        for name in _MIXED:
            array = getattr(first, name).copy()
            for part in parts[1:]:
                array += getattr(part, name)
            setattr(total, name, array)
        total.steps = sum(part.steps for part in parts)
        total.average_count = sum(part.average_count for part in parts)
        total.summed = sum(part.summed for part in parts)
        total.__setstate__({})
        return total

    def mean(self) -> DualAveraging:
        """A sum of states (``add_up``) divided by the number of states in it."""
        mixed = copy.copy(self)
        for name in _MIXED:
            setattr(mixed, name, getattr(self, name) / self.summed)
        mixed.steps = round(self.steps / self.summed)
        mixed.average_count = self.average_count / self.summed
        mixed.summed = 1
        mixed.__setstate__({})
        return mixed

    def _vectors(self, items: np.ndarray) -> np.ndarray:
        """Items as vectors: ``(n,)`` for single-output kinds, ``(n, k)`` otherwise (a view, no copy)."""
        return items if self.single else items.view(np.float64).reshape(len(items), self.k)

    def _weights_of(self, sums: np.ndarray, squares: np.ndarray) -> np.ndarray:
        """Amounts up to MAX_DOUBLE overflow to inf, which correctly zeroes the weights: its callers
        (``weights``, ``fit_rows``) keep numpy from warning of it."""
        scale = np.sqrt(squares)
        scale += _EPSILON
        scale /= self.rate
        if self.l2 > 0:
            scale += self.l2 * self.steps
        if self.l1 > 0:
            magnitude = np.abs(sums)
            magnitude -= self.l1 * self.steps
            np.maximum(magnitude, 0.0, out=magnitude)
            np.copysign(magnitude, sums, out=magnitude)
            numerator = magnitude
        else:
            numerator = sums
        weights = np.divide(numerator, scale)
        np.negative(weights, out=weights)
        return weights

    def weights(self) -> np.ndarray:
        """The current weights ``(n_features, k)``."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._weights_of(self.sums, self.squares)

    def bias(self) -> np.ndarray:
        return self.prior - self.rate * self.bias_sums / (np.sqrt(self.bias_squares) + _EPSILON)

    def start_average(self, every: int) -> None:
        """Average all iterates from now on, one snapshot every ``every`` steps."""
        self.average_every = max(1, every)
        self.average_weights = np.zeros_like(self.sums)

    def model(self) -> tuple[np.ndarray, np.ndarray]:
        """The weights and bias to keep: the average of the snapshots and the current iterate.

        With L1 the average keeps the exact zeros of the current iterate (an average of sparse iterates is
        not sparse, and the current support is where the mean gradient exceeds the L1 amount).
        """
        weights = self.weights()
        if self.average_count == 0:
            return weights, self.bias()
        count = self.average_count + 1
        averaged = (self.average_weights + weights) / count
        if self.l1 > 0:
            averaged[weights == 0.0] = 0.0
        return averaged, (self.average_bias + self.bias()) / count

    def _snapshot(self, weights: np.ndarray | None) -> None:
        self.average_weights += self.weights() if weights is None else weights.reshape(self.sums.shape)
        self.average_bias += self.bias()
        self.average_count += 1

    def step(
        self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, y: np.ndarray, weight: np.ndarray
    ) -> float:
        """One step on a mini-batch, the CSR arrays of its rows (``indptr`` starting at 0); returns its
        weighted loss sum taken before the step. Arrays, not a matrix: each sparse matrix built costs
        about 40 µs, as much as a step's products. Taken within ``fit_rows``'s ``np.errstate``."""
        import scipy.sparse as sp

        m = len(indptr) - 1
        if self.dense:
            columns = None
            local = sp.csr_array((data, indices, indptr), shape=(m, len(self.sums)), copy=False)
            u = self._vectors(self._sum_items)
            h = self._vectors(self._square_items)
        else:
            ordered = np.sort(indices)
            keep = np.empty(len(ordered), dtype=bool)
            keep[:1] = True
            np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
            columns = ordered[keep]
            self._position[columns] = np.arange(len(columns), dtype=self._position.dtype)
            local = sp.csr_array((data, self._position[indices], indptr), shape=(m, len(columns)), copy=False)
            u = self._vectors(np.take(self._sum_items, columns))
            h = self._vectors(np.take(self._square_items, columns))
        w = self._weights_of(u, h)
        if self.average_every and self.steps % self.average_every == 0:
            self._snapshot(w if self.dense else None)
        bias = self.bias()
        z = local @ w + (float(bias[0]) if self.single else bias)
        losses, gradient = losses_and_gradient(self.kind, z, y)
        scale = weight / m
        gradient *= scale if self.single else scale[:, None]
        g = local.T @ gradient
        u += g
        h += g * g
        if columns is not None:
            self._sum_items[columns] = u.reshape(-1).view(self._sum_items.dtype)
            self._square_items[columns] = h.reshape(-1).view(self._square_items.dtype)
        gb = gradient.sum(axis=0)
        self.bias_sums += gb
        self.bias_squares += gb * gb
        self.steps += 1
        return float(losses @ weight)

    def penalty(self, weights: np.ndarray) -> float:
        """The regularization term of the objective for ``weights``."""
        if self.l1 > 0:
            return self.l1 * float(np.abs(weights).sum())
        if self.l2 > 0:
            return 0.5 * self.l2 * float(np.square(weights).sum())
        return 0.0

    def fit_rows(self, X: sp.csr_matrix, y: np.ndarray, weight: np.ndarray, rows_per_step: int) -> float:
        """Steps over the rows of ``X`` in order; returns the weighted progressive loss sum.

        Feature values near the range of floats overflow the products, gradients and their squares to inf
        (a weight whose squared sum is inf is 0, and the training refuses such a state as it finishes:
        ``learn.Trainer.finish``): numpy is kept from warning of it on every step, by one ``np.errstate``
        for all of them."""
        total = 0.0
        indptr = X.indptr
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, X.shape[0], rows_per_step):
                stop = min(start + rows_per_step, X.shape[0])
                lo, hi = indptr[start], indptr[stop]
                rows = (X.data[lo:hi], X.indices[lo:hi], indptr[start : stop + 1] - lo)
                total += self.step(*rows, y[start:stop], weight[start:stop])
        return total


def loss_sum(
    kind: str, weights: np.ndarray, bias: np.ndarray, X: sp.csr_matrix, y: np.ndarray, weight: np.ndarray
) -> float:
    z = X @ weights + bias if kind == "MULTICLASS" else X @ weights[:, 0] + float(bias[0])
    losses, _ = losses_and_gradient(kind, z, y)
    return float(losses @ weight)


def average_every(state: DualAveraging, steps_per_pass: int, nnz_per_pass: int) -> int:
    """Steps between weight snapshots for averaging: as many snapshots as keep their cost
    (``O(n_features * k)`` each) near a quarter of the pass's, at least ``MIN_SNAPSHOTS`` per pass.

    The schedule does not depend on the dense mode, so both modes give the same model."""
    affordable = nnz_per_pass // (4 * state.sums.size) if state.sums.size else steps_per_pass
    snapshots = max(MIN_SNAPSHOTS, min(affordable, steps_per_pass))
    return max(1, steps_per_pass // snapshots)
