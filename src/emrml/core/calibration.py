"""The calibration sample and what training chooses from it (see ``core.learn``'s docstring): a uniform
random sample of the rows drawn while reading them once, from which come the regression target's scale,
the prior, the mini-batch size, the dense mode and the learning rate (each candidate rate trained on 90 %
of the sample and scored on the rest). Keyed samples of parts of the data merge into a sample of the whole
(the Spark engine's partitions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from emrml.core.sgd import Batch, DualAveraging, average_every, loss_sum

if TYPE_CHECKING:
    import scipy.sparse as sp

    from emrml.core.learn import Checker
    from emrml.core.linear import TrainingParameters

#: Candidate base learning rates, tried on the calibration sample.
LEARNING_RATES: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
#: Candidates whose held-back loss is within this relative distance of the best count as ties.
RATE_TOLERANCE = 0.01
#: Rows read up front to choose the learning rate, the mini-batch size and the target scale.
CALIBRATION_ROWS = 65_536
#: Non-zero values the calibration sample holds at most (12 bytes each, about 100 MB): rows of long text
#: have thousands, and 65,536 of them would take gigabytes. Rows of tens of features never reach it.
CALIBRATION_NONZEROS = 1 << 23
#: Fraction of the calibration rows held back to score the candidate rates.
HOLDOUT_FRACTION = 0.1
#: Dense steps while n_features * n_outputs <= this * non-zeros per step (measured crossover: 10-15).
DENSE_RATIO = 12
#: A source of raw batches (``core.linear.BatchSource``).
Source = Callable[[], Iterable[tuple["sp.csr_matrix", np.ndarray, np.ndarray | None]]]


def calibration_sample(
    source: Source, check: Checker, rows: int, rng: np.random.Generator
) -> tuple[Batch, int]:
    """A uniform random sample of ``rows`` rows of the source (all of them when it has fewer), in data order,
    and the number of rows it was drawn from.

    Every row gets a random key and the ``rows`` smallest keys win (a bottom-k sample, kept while reading):
    the first rows would misjudge the target's scale and the learning rate for data in a meaningful order,
    such as rows sorted by the target. Fewer win when their non-zero values would pass
    :data:`CALIBRATION_NONZEROS` (``_smallest_keys``). Memory holds at most that sample beside one batch.
    """
    sample, _, read = keyed_sample(source, check, rows, rng)
    return sample, read


def keyed_sample(
    source: Source, check: Checker, rows: int, rng: np.random.Generator
) -> tuple[Batch, np.ndarray, int]:
    """``calibration_sample`` with the rows' keys (between the sample and the rows read): samples of parts
    of the data merge (``merge_samples``)."""
    import scipy.sparse as sp

    kept: Batch | None = None
    keys = np.zeros(0)
    read = 0
    for batch in source():
        X, y, weight = check(batch)
        read += X.shape[0]
        batch_keys = rng.random(X.shape[0])
        if kept is None:
            kept, keys = (X, y, weight), batch_keys
        else:
            kept = (
                sp.vstack([kept[0], X], format="csr"),
                np.concatenate([kept[1], y]),
                np.concatenate([kept[2], weight]),
            )
            keys = np.concatenate([keys, batch_keys])
        chosen = _smallest_keys(keys, kept[0], rows)
        if chosen is not None:
            kept = (kept[0][chosen], kept[1][chosen], kept[2][chosen])
            keys = keys[chosen]
    if kept is None:
        return (sp.csr_matrix((0, check.n_features)), np.zeros(0), np.zeros(0)), keys, read
    return kept, keys, read


def _smallest_keys(keys: np.ndarray, X: sp.csr_matrix, rows: int) -> np.ndarray | None:
    """Indices, in data order, of the rows with the smallest keys: the most in key order that number at
    most ``rows`` and hold at most :data:`CALIBRATION_NONZEROS` non-zero values (at least one row); None
    when every row is within both. A row left out never comes back as rows are added, so the sample does
    not depend on batch boundaries or partitioning."""
    nonzeros = np.diff(X.indptr)
    if len(keys) <= rows and int(nonzeros.sum()) <= CALIBRATION_NONZEROS:
        return None
    if len(keys) > rows:
        chosen = np.argpartition(keys, rows)[:rows]
        if int(nonzeros[chosen].sum()) <= CALIBRATION_NONZEROS:
            return np.sort(chosen)
    order = np.argsort(keys)
    fitting = int(np.searchsorted(np.cumsum(nonzeros[order]), CALIBRATION_NONZEROS, side="right"))
    return np.sort(order[: max(1, min(fitting, rows))])


def merge_samples(
    parts: Sequence[tuple[Batch, np.ndarray, int]], rows: int, n_features: int
) -> tuple[Batch, int]:
    """The rows with the smallest keys of the parts' keyed samples (``_smallest_keys``), in part order then
    data order: a uniform sample of the union when each part's keys were drawn independently; and the
    number of rows read in all."""
    import scipy.sparse as sp

    read = sum(part[2] for part in parts)
    parts = [part for part in parts if len(part[1])]
    if not parts:
        return (sp.csr_matrix((0, n_features)), np.zeros(0), np.zeros(0)), read
    keys = np.concatenate([part[1] for part in parts])
    X = sp.vstack([part[0][0] for part in parts], format="csr")
    y = np.concatenate([part[0][1] for part in parts])
    weight = np.concatenate([part[0][2] for part in parts])
    chosen = _smallest_keys(keys, X, rows)
    if chosen is not None:
        return (X[chosen], y[chosen], weight[chosen]), read
    return (X, y, weight), read


def target_scale(y: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    total = weight.sum()
    w = weight if total > 0 else np.ones_like(y)
    mean = float(np.average(y, weights=w)) if len(y) else 0.0
    std = float(np.sqrt(np.average((y - mean) ** 2, weights=w))) if len(y) else 0.0
    if not std > 0:
        std = abs(mean) if mean != 0 else 1.0
    return mean, std


def initial_bias(kind: str, y: np.ndarray, weight: np.ndarray, k: int) -> np.ndarray:
    """The prior as bias: smoothed log-odds / centred log class frequencies / 0 (standardized mean)."""
    if kind == "BINARY":
        p = (float(y @ weight) + 0.5) / (float(weight.sum()) + 1.0)
        # Below 1 as computed, but rounded to 1 when the positive records hold all but a rounding error of
        # the weight (one of them weighing 1e20 times the others): then the log-odds of the largest p below 1.
        p = min(p, math.nextafter(1.0, 0.0))
        return np.array([math.log(p / (1.0 - p))])
    if kind == "MULTICLASS":
        counts = np.bincount(y.astype(np.intp), weights=weight, minlength=k) + 0.5
        logs = np.log(counts / counts.sum())
        return logs - logs.mean()
    return np.zeros(1)


def rows_per_step(sample_rows: int) -> int:
    return min(1024, max(32, sample_rows // 128))


def use_dense(n_features: int, k: int, sample: sp.csr_matrix, rows_per_step: int) -> bool:
    """Dense vector updates beat gathering the touched features when the model is about one step's data."""
    nnz_per_step = sample.nnz / max(sample.shape[0], 1) * rows_per_step
    return n_features * k <= DENSE_RATIO * nnz_per_step


def choose_rate(
    kind: str,
    sample: Batch,
    bias: np.ndarray,
    params: TrainingParameters,
    rows_per_step: int,
    dense: bool,
    rng: np.random.Generator,
) -> tuple[float, list[list[float | None]]]:
    X, y, weight = sample
    held = rng.random(X.shape[0]) < HOLDOUT_FRACTION
    fit_rows = np.flatnonzero(~held)
    held_rows = np.flatnonzero(held)
    if params.shuffle == "auto":
        fit_rows = rng.permutation(fit_rows)
    held_weight = float(weight[held_rows].sum())
    if len(fit_rows) == 0 or held_weight <= 0:
        return LEARNING_RATES[len(LEARNING_RATES) // 2], []
    X_fit, y_fit, w_fit = X[fit_rows], y[fit_rows], weight[fit_rows]
    X_held, y_held, w_held = X[held_rows], y[held_rows], weight[held_rows]
    trials: list[list[float | None]] = []
    losses: list[float] = []
    for rate in LEARNING_RATES:
        state = DualAveraging(kind, X.shape[1], bias, rate, params.l1, params.l2, dense)
        state.fit_rows(X_fit, y_fit, w_fit, rows_per_step)
        state.start_average(average_every(state, state.steps, X_fit.nnz))
        state.fit_rows(X_fit, y_fit, w_fit, rows_per_step)
        loss = loss_sum(kind, *state.model(), X_held, y_held, w_held) / held_weight
        losses.append(loss if math.isfinite(loss) else math.inf)
        trials.append([rate, loss if math.isfinite(loss) else None])
    best = min(losses)
    if not math.isfinite(best):
        return LEARNING_RATES[0], trials
    # Near-ties go to the smaller rate: its model is as good on held-back rows and less noisy, and it is
    # the safer choice when the sample is not like the rest of the data.
    near = [
        r for r, loss in zip(LEARNING_RATES, losses, strict=True) if loss <= best + RATE_TOLERANCE * abs(best)
    ]
    rate = min(near)
    return rate, trials
