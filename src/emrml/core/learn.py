"""Linear models trained by mini-batch AdaGrad over sparse feature batches (spec 7, open questions 23, 24).

Models: logistic regression (BINARY), multinomial logistic regression (MULTICLASS) and least squares
(REGRESSION), all of the form ``z = x @ W + b`` with ``W`` of shape ``(n_features, n_outputs)``.

The model, the parameters and the report are in ``core.linear``, the learner's state and step in
``core.sgd``, the calibration sample and the choices made from it in ``core.calibration``; this module
validates batches, runs the passes (``train``, or ``Trainer`` for an engine that runs each pass itself)
and keeps the best model.

Algorithm
---------
* **Mini-batch AdaGrad, dual-averaging form** (Duchi, Hazan and Singer 2011; the form of FTRL-Proximal).
  Rows are taken ``rows_per_step`` at a time from each source batch; a step adds the gradient ``g`` of the
  mini-batch's mean (sample-weighted) loss to each coordinate's sums ``u += g`` and ``H += g^2``. After
  ``t`` steps a weight is, in closed form, ``-sign(u) * max(|u| - l1 * t, 0) / (l2 * t + sqrt(H) / rate)``.
  Per-coordinate steps (through ``sqrt(H)``) make the learner insensitive to feature and loss scale, the
  safeguard a constant step lacked on the regression datasets. A step reads and writes only the features
  present in its rows, so it costs ``O(nnz)``; when the model is not much larger than a step's data, dense
  vector operations over all features are faster and give bitwise the same result.
* **Regularization** is exact for every coordinate at every step without touching absent features: a
  weight is only computed when read, from the current ``t``. The objective is the mean loss plus
  ``l1 * |W|_1`` or ``l2 / 2 * |W|_2^2`` (in the standardized space for regression). L1 gives exact zeros
  wherever a feature's mean gradient stays below ``l1``; very large amounts zero every weight.
* **Iterate averaging** (Polyak-Ruppert): the iterates from the second pass on are averaged (a snapshot
  every few steps, as often as costs at most about a quarter of the pass, and at least ``MIN_SNAPSHOTS``
  times per pass) and the average is the model; it removes the step noise that otherwise dominates the
  final weights. With L1 the average keeps the exact
  zeros of the final iterate. A single pass returns the final iterate.
* **Losses.** Logistic loss, softmax cross-entropy, and half squared error on a *standardized* target:
  regression trains on ``(y - mean) / std`` with mean and std estimated on the calibration sample (below),
  then folds them into the stored weights, so a target in the 1e5 range trains like one in the unit range.
  The bias is never regularized; it starts at the prior (log-odds / log class frequencies / 0).
* **Learning rate** (spec: "chosen automatically"; open question 24): a uniform random sample of up to
  ``CALIBRATION_ROWS`` rows (fewer for rows of long text, ``CALIBRATION_NONZEROS`` values in all) is drawn
  while reading the data once (not the first rows: data sorted by the target would misjudge its scale);
  10 % of it is held back at random, a fresh model is trained on the rest with each rate of
  ``LEARNING_RATES`` the way training runs (a pass, then a pass averaged), and the rate whose model has
  the lowest held-back loss wins; rates within ``RATE_TOLERANCE`` (1 %) of it count as ties, won by the
  smallest (as good on held-back rows, and less noisy). Training then starts over on all data. Too small
  a sample (no held-back weight) uses the middle candidate.
* **Mini-batch size** ``rows_per_step = clamp(calibration rows // 128, 32, 1024)``: small data still gets
  about 128 steps per pass, large data gets the throughput of large mini-batches.
* **Shuffle** ``auto``: the source yields batches in data order (the training engine's source yields them
  in a new random order every pass); each pass mixes the rows of ``SHUFFLE_WINDOW`` batches at a time
  and deals them out again (a new order every pass, derived from the seed). ``none`` keeps data order.
* **Early stop and the kept model**: after each pass the training objective of the model (the average)
  on the calibration sample, or the validation loss when a validation source is given, is compared with
  the best so far; a pass better by less than ``EARLY_STOP_TOLERANCE`` relatively does not count, and
  ``PATIENCE`` such passes in a row stop training. The model of the best pass is the one returned, so one
  bad pass neither stops training nor is kept. The sample is fixed, so the measure is free of the step
  noise that makes the progressive loss (each mini-batch's loss before its step) rise and fall.
* **Regression refinement**: a REGRESSION model without L1 minimizes a quadratic, which SGD approaches
  slowly where it is ill-conditioned (rare categories, correlated numbers, heavy-tailed targets). From the
  kept model, preconditioned conjugate gradients (``core.least_squares``) reach the objective's exact
  minimum: on the calibration sample in memory when it holds every row, else in at most ``max_passes``
  further passes over the data.
* **Classification refinement**: a BINARY or MULTICLASS model without L1 minimizes a smooth convex
  objective too, which ten passes of SGD over rows in a meaningful order (``shuffle none``) leave far
  short of. When the calibration sample holds every row (at most ``CALIBRATION_ROWS``), L-BFGS
  (``core.logistic_refinement``) takes the kept model towards the minimum in memory, for as many steps (at
  most ``IN_MEMORY_REFINEMENT_STEPS``) as lower the loss of held-back rows: a model SGD brought near the
  minimum is kept as it is, since the minimum itself may over-fit. Larger data gets many SGD steps a pass
  and is not read again, so training time there is unchanged.
* **Model size** (open question 23): a stored feature is estimated at 8 bytes of key plus 8 bytes per
  output (16 bytes for BINARY and REGRESSION). When the non-zero rows of ``W`` exceed
  ``max_model_size``, the rows with the smallest L2 norm are zeroed until the estimate fits.

Everything is deterministic for a seed. Memory holds the model (three arrays of ``n_features *
n_outputs``: gradient sums, squared sums, average), the calibration sample (at most ``CALIBRATION_ROWS``
rows and ``CALIBRATION_NONZEROS`` non-zero values) and at most ``SHUFFLE_WINDOW`` source batches; the data
is never concatenated.

Why not scikit-learn's ``SGDClassifier`` / ``SGDRegressor``: they have no multinomial (softmax) SGD (only
one-vs-rest), their fast per-sample updates use global learning-rate schedules only (constant,
``optimal``, ``invscaling``, ``adaptive``), which diverged on the regression datasets, and they have no
per-feature adaptive steps; they would also add a large dependency for a few dozen lines of numpy.

Degenerate input does not fail here: a BINARY target with one class trains a model that always predicts
that class (the caller rejects such data, spec open question 18), and an empty source returns an all-zero
model after zero passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emrml.core.calibration import (
    CALIBRATION_ROWS,
    calibration_sample,
    choose_rate,
    initial_bias,
    rows_per_step,
    target_scale,
    use_dense,
)
from emrml.core.linear import (
    BatchSource,
    LinearModel,
    ModelKind,
    TrainingParameters,
    TrainingReport,
    n_outputs_of,
)
from emrml.core.sgd import Batch, DualAveraging, average_every, loss_sum
from emrml.errors import DataError

if TYPE_CHECKING:
    import scipy.sparse as sp
# scipy is imported where it is used: a server that only scores single records never needs it.


#: Relative improvement of the loss below which a pass does not count as better (open question 24) ...
EARLY_STOP_TOLERANCE = 1e-4
#: ... and how many passes in a row that are not better stop training (the best model is kept).
PATIENCE = 2
#: Source batches held at once to randomize their order when shuffling.
SHUFFLE_WINDOW = 4
#: Most steps of the exact refinement (conjugate gradients for regression, L-BFGS for classification) when
#: the data fits the calibration sample.
IN_MEMORY_REFINEMENT_STEPS = 200
#: The share of the progress bar the in-memory refinement of a classification model fills: on every row
#: in memory its L-BFGS search takes about as long as the SGD passes (28k rows: seconds on either engine).
CLASSIFICATION_REFINEMENT_SHARE = 0.3
#: The phases ``phase`` announces: the setup (the learning rate's trials), each SGD pass (``pass_phase``),
#: then the refinement of a model without L1.
TRAINING_PHASE = "training"
CALIBRATING_PHASE = "calibrating scores"
REFINING_PHASE = "refining the model"
#: Estimated stored bytes of one feature key and of one weight (open question 23).
KEY_BYTES = 8
WEIGHT_BYTES = 8


# ---------------------------------------------------------------------------------------------- learning


#: Training's failure when its arithmetic leaves the float range (weights, or a feature's squared gradients).
_DIVERGED = (
    "training diverged: the model's weights or their squared gradients overflowed the range of "
    "floating-point numbers. NUMERIC values are too large for SGD: raw values in the recipe (quantile_bin "
    "those attributes instead), the regression target or the row weights"
)


class Checker:
    """Validates and normalizes the batches of a source for one model kind."""

    def __init__(self, kind: str, n_features: int, k: int, mean: float = 0.0, std: float = 1.0) -> None:
        self.kind = kind
        self.n_features = n_features
        self.k = k
        self.mean = mean
        self.std = std

    def __call__(self, batch: tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]) -> Batch:
        import scipy.sparse as sp

        X, y, weight = batch
        if not sp.issparse(X) or X.format != "csr":
            raise ValueError(f"a batch must be a CSR matrix; got {type(X).__name__}")
        if X.dtype != np.float64:
            X = X.astype(np.float64)
        n = X.shape[0]
        if X.shape[1] != self.n_features:
            raise ValueError(f"a batch has {X.shape[1]} features; expected {self.n_features}")
        if not np.isfinite(X.data).all():
            raise DataError(
                "a feature value overflowed the range of floating-point numbers: NUMERIC values near it "
                "(such as 1e308) are too large for normalize() or a raw numeric output; quantile_bin those "
                "attributes in the recipe instead"
            )
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(y) != n:
            raise ValueError(f"a batch has {n} rows but {len(y)} targets")
        weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64).reshape(-1)
        if len(weight) != n:
            raise ValueError(f"a batch has {n} rows but {len(weight)} sample weights")
        if n and not (np.isfinite(weight).all() and weight.min() >= 0):
            raise ValueError("sample weights must be finite and non-negative")
        if self.kind == "REGRESSION":
            if not np.isfinite(y).all():
                raise DataError("the regression target holds a value too large to train on (not finite)")
            y = (y - self.mean) / self.std
        elif n and self.kind == "BINARY" and not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("a BINARY target must hold only 0 and 1")
        elif (
            n
            and self.kind == "MULTICLASS"
            and (not (np.floor(y) == y).all() or y.min() < 0 or y.max() >= self.k)
        ):
            raise ValueError(f"a MULTICLASS target must hold class indices 0..{self.k - 1}")
        return X, y, weight


def pass_batches(source: BatchSource, check: Checker, rng: np.random.Generator | None) -> Iterator[Batch]:
    """One pass over the source; with ``rng``, rows are shuffled across windows of ``SHUFFLE_WINDOW``
    batches (the rows of a window are mixed together and dealt out again as batches of the same sizes)."""
    if rng is None:
        for batch in source():
            yield check(batch)
        return
    window: list[Batch] = []
    for batch in source():
        window.append(check(batch))
        if len(window) == SHUFFLE_WINDOW:
            yield from _mixed(window, rng)
            window = []
    if window:
        yield from _mixed(window, rng)


def _mixed(window: list[Batch], rng: np.random.Generator) -> Iterator[Batch]:
    if len(window) == 1:
        X, y, weight = window[0]
        order = rng.permutation(X.shape[0])
        yield X[order], y[order], weight[order]
        return
    import scipy.sparse as sp

    X = sp.vstack([b[0] for b in window], format="csr")
    y = np.concatenate([b[1] for b in window])
    weight = np.concatenate([b[2] for b in window])
    order = rng.permutation(X.shape[0])
    start = 0
    for size in rng.permutation([b[0].shape[0] for b in window]):
        rows = order[start : start + size]
        start += size
        yield X[rows], y[rows], weight[rows]


def _prune(weights: np.ndarray, max_bytes: int) -> tuple[np.ndarray, int, int, int]:
    """Zero the weakest feature rows until the size estimate fits: (weights, kept, pruned, bytes)."""
    row_bytes = KEY_BYTES + WEIGHT_BYTES * weights.shape[1]
    norms = np.sqrt(np.square(weights).sum(axis=1))
    nonzero = np.flatnonzero(norms > 0)
    capacity = max_bytes // row_bytes
    pruned = 0
    if len(nonzero) > capacity:
        order = nonzero[np.argsort(-norms[nonzero], kind="stable")]
        weights = weights.copy()
        weights[order[capacity:]] = 0.0
        pruned = len(nonzero) - capacity
    kept = len(nonzero) - pruned
    return weights, kept, pruned, kept * row_bytes


def train(
    kind: ModelKind,
    source: BatchSource,
    n_features: int,
    n_classes: int | None,
    params: TrainingParameters,
    *,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    validation: BatchSource | None = None,
    phase: Callable[[str], None] | None = None,
) -> tuple[LinearModel, TrainingReport]:
    """Train a linear model of ``kind`` over the batches of ``source`` (see the module docstring).

    ``n_classes`` is required for MULTICLASS (targets are class indices ``0..n_classes-1``) and ignored
    otherwise. ``progress`` receives the fraction done in [0, 1] after each pass (and after each batch once
    the number of batches per pass is known). ``validation``, if given, is scored after every pass and
    drives early stopping instead of the training loss. ``phase`` receives the name of each phase as it
    begins (``TRAINING_PHASE``, each pass's ``pass_phase``, then ``CALIBRATING_PHASE`` or
    ``REFINING_PHASE``). Raises ``ValueError`` for batches that break the ``BatchSource`` contract and
    ``DataError`` for a non-finite regression target.
    """
    seeds = np.random.SeedSequence(seed).spawn(2)
    calibration_rng = np.random.default_rng(seeds[0])
    shuffle_rng = np.random.default_rng(seeds[1]) if params.shuffle == "auto" else None
    k = n_outputs_of(kind, n_classes)
    raw, read = calibration_sample(source, Checker(kind, n_features, k), CALIBRATION_ROWS, calibration_rng)
    trainer = Trainer(kind, n_features, n_classes, params, raw, read, calibration_rng, progress, phase)
    batches_per_pass: int | None = None
    for pass_index in trainer.passes():
        done = PassTotals()
        for X, y, weight in pass_batches(source, trainer.check, shuffle_rng):
            done.loss += trainer.state.fit_rows(X, y, weight, trainer.rows_per_step)
            done.add(X, weight)
            if batches_per_pass:
                trainer.sgd_progress((pass_index + done.batches / batches_per_pass) / params.max_passes)
        batches_per_pass = done.batches
        trainer.end_pass(done, validation)
    return trainer.finish(source)


@dataclass
class PassTotals:
    """What one pass (or one part of it) went over: loss before each step, weight, rows, non-zeros."""

    loss: float = 0.0
    weight: float = 0.0
    rows: int = 0
    nnz: int = 0
    batches: int = 0
    steps: int = 0

    def add(self, X: sp.csr_matrix, weight: np.ndarray) -> None:
        self.weight += float(weight.sum())
        self.rows += X.shape[0]
        self.nnz += X.nnz
        self.batches += 1

    def merge(self, other: PassTotals) -> None:
        for name in ("loss", "weight", "rows", "nnz", "batches", "steps"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Trainer:
    """``train`` in steps, for an engine that runs each pass itself (the Spark engine runs parts of a pass
    on its executors from ``state`` and mixes them back, engine/spark/training.py).

    Built from the calibration sample (``calibration_sample``, in data order): it fixes the target's
    scale, ``check`` (the batch validation and normalization every pass applies), ``rows_per_step``, the
    dense mode, the prior and the learning rate. Then ``for i in passes(): ...; end_pass(totals)``, and
    ``finish(source)`` returns the model and the report.
    """

    def __init__(
        self,
        kind: ModelKind,
        n_features: int,
        n_classes: int | None,
        params: TrainingParameters,
        raw: Batch,
        rows_read: int,
        rng: np.random.Generator,
        progress: Callable[[float], None] | None = None,
        phase: Callable[[str], None] | None = None,
    ) -> None:
        k = n_outputs_of(kind, n_classes)
        self.kind = kind
        self.n_features = n_features
        self.params = params
        self.progress = progress
        self.phase = phase
        self.refining = kind == "REGRESSION" and params.l1 == 0
        # SGD fills the first half of the progress bar when the refinement may take the second, and most
        # of it when a classification model will be refined in memory (the sample holds every row read).
        calibrating = kind != "REGRESSION" and params.l1 == 0 and 0 < rows_read <= raw[0].shape[0]
        self._sgd_share = (
            0.5 if self.refining else 1.0 - CLASSIFICATION_REFINEMENT_SHARE if calibrating else 1.0
        )
        self._sgd_progress = _part_of(progress, 0.0, self._sgd_share)
        if kind == "REGRESSION":
            with np.errstate(over="ignore", invalid="ignore"):
                self.mean, self.std = target_scale(raw[1], raw[2])
            if not (math.isfinite(self.mean) and math.isfinite(self.std)):
                raise DataError(
                    "the regression target's values or the row weights are too large to train on: the "
                    "target's weighted mean or standard deviation overflows the range of floating-point "
                    "numbers"
                )
            self.sample: Batch = (raw[0], (raw[1] - self.mean) / self.std, raw[2])
        else:
            self.mean, self.std = 0.0, 1.0
            self.sample = raw
            with np.errstate(over="ignore"):
                total_weight = float(raw[2].sum())
            if not math.isfinite(total_weight):
                raise DataError(
                    "the row weights are too large to train on: their sum overflows the range of "
                    "floating-point numbers"
                )
        self.check = Checker(kind, n_features, k, self.mean, self.std)
        # From the rows the sample stands for, not its own: a sample of long rows is cut short in non-zero
        # values (``CALIBRATION_NONZEROS``), and its steps would be needlessly small.
        self.rows_per_step = rows_per_step(min(rows_read, CALIBRATION_ROWS))
        dense = use_dense(n_features, k, self.sample[0], self.rows_per_step)
        bias = initial_bias(kind, self.sample[1], self.sample[2], k)
        rate, trials = choose_rate(kind, self.sample, bias, params, self.rows_per_step, dense, rng)
        self.report = TrainingReport(passes=0, rows=0, rows_per_step=self.rows_per_step, learning_rate=rate)
        self.report.learning_rate_trials = trials
        if kind == "REGRESSION":
            self.report.target_mean, self.report.target_std = self.mean, self.std
        self.state = DualAveraging(kind, n_features, bias, rate, params.l1, params.l2, dense)
        self._best_loss = math.inf
        self._best_model: tuple[np.ndarray, np.ndarray] | None = None
        self._worse_passes = 0
        self._stopped = False
        if phase is not None:
            phase(TRAINING_PHASE)

    def passes(self) -> Iterator[int]:
        """The indices of the passes to run: none without data, and none after an early stop. Each pass's
        phase is announced as it begins, and stays until the next: the progress a pass's end reports is
        still that pass's (the Spark engine's steps say the same, with their tasks done)."""
        if not self.sample[0].shape[0]:
            return
        for pass_index in range(self.params.max_passes):
            if self._stopped:
                return
            if self.phase is not None:
                self.phase(pass_phase(pass_index))
            yield pass_index

    def pass_span(self, pass_index: int) -> tuple[float, float]:
        """The part of ``progress``'s [0, 1] that pass ``pass_index`` fills: for an engine that reports
        progress within a pass itself (the Spark engine, from the pass's tasks done)."""
        share = self._sgd_share / self.params.max_passes
        return pass_index * share, (pass_index + 1) * share

    def sgd_progress(self, fraction: float) -> None:
        if self._sgd_progress is not None:
            self._sgd_progress(min(1.0, fraction))

    def end_pass(self, totals: PassTotals, validation: BatchSource | None = None, parts: int = 1) -> None:
        """Record a pass ``state`` has made: in one part, or in ``parts`` parts mixed into ``state``
        (whose ``totals.steps`` then counts the parts' steps, which set each part's averaging schedule)."""
        report = self.report
        report.parallel_parts = parts
        if report.passes == 0:
            steps = totals.steps // parts if parts > 1 else self.state.steps
            self.state.start_average(average_every(self.state, steps, totals.nnz // parts))
        report.passes += 1
        report.rows = totals.rows
        report.progressive_losses.append(totals.loss / totals.weight if totals.weight > 0 else 0.0)
        current = _objective(self.kind, self.state, self.sample)
        report.losses.append(current)
        if validation is not None:
            current = _validation_loss(self.kind, self.state, validation, self.check)
            report.validation_losses.append(current)
        self.sgd_progress(report.passes / self.params.max_passes)
        better = current < self._best_loss - EARLY_STOP_TOLERANCE * abs(self._best_loss)
        if better or self._best_model is None:
            self._best_loss, self._worse_passes = current, 0
            weights, bias = self.state.model()
            self._best_model = (weights.copy(), bias.copy())
            report.best_pass = report.passes
        else:
            self._worse_passes += 1
            if self._worse_passes >= PATIENCE:
                report.stopped_early = report.passes < self.params.max_passes
                self._stopped = True

    def finishing_phase(self) -> str | None:
        """The phase ``finish`` runs after the passes: a classification model without L1 whose rows all
        fit the calibration sample is calibrated in memory, a regression model without L1 is refined by
        reading the data again; ``None``: no phase (L1, or no rows read)."""
        rows = self.report.rows
        if self.kind != "REGRESSION" and self.params.l1 == 0 and 0 < rows <= self.sample[0].shape[0]:
            return CALIBRATING_PHASE
        if self.refining and rows:
            return REFINING_PHASE
        return None

    def finish(self, source: BatchSource) -> tuple[LinearModel, TrainingReport]:
        """The kept model, refined (REGRESSION: ``source`` is read again), rescaled and pruned."""
        report, params = self.report, self.params
        if not (np.isfinite(self.state.squares).all() and np.isfinite(self.state.bias_squares).all()):
            # A feature's squared gradients past the float range (raw values near 1e200) stop its steps: it
            # kept the weight 0, and the model, trained on nothing else, scored every record alike.
            raise DataError(_DIVERGED)
        # The best pass's model, not the last: a pass that made the loss worse is not kept.
        weights, bias_out = self._best_model if self._best_model is not None else self.state.model()
        phase = self.finishing_phase()
        if phase == CALIBRATING_PHASE:
            from emrml.core import logistic_refinement

            self._begin(CALIBRATING_PHASE)
            solution = logistic_refinement.refine(
                self.kind,
                self.sample,
                params.l2,
                weights,
                bias_out,
                IN_MEMORY_REFINEMENT_STEPS,
                _part_of(self.progress, self._sgd_share, 1.0),
            )
            weights, bias_out = solution.weights, solution.bias
            report.refinement_objectives = solution.objectives
        if phase == REFINING_PHASE:
            self._begin(REFINING_PHASE)
            weights, bias_out = _refine(
                source,
                self.check,
                self.sample,
                self.n_features,
                params,
                weights,
                bias_out,
                report,
                _part_of(self.progress, self._sgd_share, 1.0),
            )
        weights = weights * self.std
        bias_out = bias_out * self.std
        if self.kind == "REGRESSION":
            bias_out = bias_out + self.mean
        if not (np.isfinite(weights).all() and np.isfinite(bias_out).all()):
            raise DataError(_DIVERGED)
        weights, kept, pruned, size = _prune(weights, params.max_model_size)
        report.nonzero_features, report.pruned_features, report.estimated_size_bytes = kept, pruned, size
        if self.progress is not None:
            self.progress(1.0)
        return LinearModel(self.kind, weights, bias_out), report

    def _begin(self, name: str) -> None:
        """Announce phase ``name``, at the progress the passes left (an early stop leaves it short)."""
        if self.phase is not None:
            self.phase(name)
        self.sgd_progress(1.0)


def pass_phase(pass_index: int) -> str:
    """The phase of the SGD pass ``pass_index`` (from 0), as both engines name it."""
    return f"training pass {pass_index + 1}"


def _part_of(
    progress: Callable[[float], None] | None, start: float, stop: float
) -> Callable[[float], None] | None:
    """``progress`` for one phase of training: its fraction done mapped onto ``[start, stop]``."""
    if progress is None:
        return None
    return lambda fraction: progress(start + (stop - start) * fraction)


def _refine(
    source: BatchSource,
    check: Checker,
    sample: Batch,
    n_features: int,
    params: TrainingParameters,
    weights: np.ndarray,
    bias: np.ndarray,
    report: TrainingReport,
    progress: Callable[[float], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The regression objective's exact minimum from the SGD model (``core.least_squares``): in memory
    when the calibration sample holds every row, else in at most ``max_passes`` more passes."""
    from emrml.core import least_squares

    in_memory = report.rows <= sample[0].shape[0]
    solution = least_squares.refine(
        (lambda: (sample,)) if in_memory else (lambda: pass_batches(source, check, None)),
        n_features,
        params.l2,
        weights[:, 0],
        float(bias[0]),
        IN_MEMORY_REFINEMENT_STEPS if in_memory else params.max_passes,
        None if progress is None else lambda done: progress(min(1.0, done / params.max_passes)),
    )
    report.refinement_passes = 0 if in_memory else solution.passes
    report.refinement_objectives = solution.objectives
    return solution.weights[:, None], np.array([solution.bias])


def _objective(kind: str, state: DualAveraging, sample: Batch) -> float:
    """Mean loss plus penalty of the model as it stands (the average, if any) on the calibration sample."""
    weights, bias = state.model()
    X, y, weight = sample
    total = float(weight.sum())
    mean = loss_sum(kind, weights, bias, X, y, weight) / total if total > 0 else 0.0
    return mean + state.penalty(weights)


def _validation_loss(kind: str, state: DualAveraging, validation: BatchSource, check: Checker) -> float:
    weights, bias = state.model()
    total = weight_total = 0.0
    for batch in validation():
        X, y, weight = check(batch)
        total += loss_sum(kind, weights, bias, X, y, weight)
        weight_total += float(weight.sum())
    return total / weight_total if weight_total > 0 else 0.0
