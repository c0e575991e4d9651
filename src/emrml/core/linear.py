"""What a linear model is, what training takes and what it reports: ``LinearModel`` (``z = x @ W + b``,
scored in batches or one record at a time), ``TrainingParameters`` (the API's ``sgd.*`` parameters) and
``TrainingReport``. ``core.learn`` trains the models; scoring a record needs only this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp
# scipy is imported where it is used: a server that only scores single records never needs it.

ModelKind = Literal["BINARY", "MULTICLASS", "REGRESSION"]
MODEL_KINDS: tuple[str, ...] = ("BINARY", "MULTICLASS", "REGRESSION")


# --------------------------------------------------------------------------------------------- parameters

KEY_MAX_PASSES = "sgd.maxPasses"
KEY_SHUFFLE = "sgd.shuffleType"
KEY_L1 = "sgd.l1RegularizationAmount"
KEY_L2 = "sgd.l2RegularizationAmount"
KEY_MAX_SIZE = "sgd.maxMLModelSizeInBytes"
KEY_ALGORITHM = "algorithm"
PARAMETER_KEYS: tuple[str, ...] = (KEY_MAX_SIZE, KEY_MAX_PASSES, KEY_SHUFFLE, KEY_L1, KEY_L2)


def format_float(value: float) -> str:
    """Shortest round-tripping text, exponent without padding (``1e-6`` as in AWS's echo, not ``1e-06``)."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


@dataclass(frozen=True)
class TrainingParameters:
    """What training is told (spec 7.2): passes, shuffle, L1 or L2 amount, largest model in bytes.

    Defaults are the Amazon ML API's (spec 14); ``service.parameters`` reads the API's ``sgd.*``
    strings, ``to_api`` writes them."""

    max_passes: int = 10
    shuffle: Literal["auto", "none"] = "none"
    l1: float = 0.0
    l2: float = 0.0
    max_model_size: int = 33_554_432

    @classmethod
    def console(cls) -> TrainingParameters:
        """The defaults the AWS console sent: 100 MiB, shuffle ``auto``, L2 1e-6 (spec 14)."""
        return cls(shuffle="auto", l2=1e-6, max_model_size=104_857_600)

    def to_api(self) -> dict[str, str]:
        """The effective parameters as GetMLModel echoes them: five ``sgd.*`` keys and ``algorithm``."""
        return {
            KEY_ALGORITHM: "sgd",
            KEY_MAX_SIZE: str(self.max_model_size),
            KEY_MAX_PASSES: str(self.max_passes),
            KEY_SHUFFLE: self.shuffle,
            KEY_L1: format_float(self.l1),
            KEY_L2: format_float(self.l2),
        }


# ------------------------------------------------------------------------------------------------- model


class BatchSource(Protocol):
    """Featurized training data; each call starts a new pass.

    Yields ``(X, y, sample_weight)`` per batch: ``X`` a CSR matrix ``(rows, n_features)``; ``y`` of length
    rows holding 0/1 (BINARY), class indices ``0..K-1`` (MULTICLASS) or values (REGRESSION);
    ``sample_weight`` non-negative of length rows, or ``None`` for weight 1.
    """

    def __call__(self) -> Iterator[tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]]: ...


def n_outputs_of(kind: str, n_classes: int | None) -> int:
    """Outputs of a model of ``kind``: 1, or ``n_classes`` for MULTICLASS (``ValueError`` when invalid)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    if kind != "MULTICLASS":
        return 1
    if n_classes is None or n_classes < 1:
        raise ValueError(f"a MULTICLASS model needs n_classes >= 1; got {n_classes}")
    return n_classes


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True, eq=False)
class LinearModel:
    """A trained linear model: ``z = x @ weights + bias``.

    ``weights`` is float64 ``(n_features, n_outputs)`` (``n_outputs`` 1, or K for MULTICLASS), ``bias``
    float64 ``(n_outputs,)``. Regression weights are stored in target units (the standardization used during
    training is folded in), so every kind scores with the same formula. Equality compares values exactly.
    """

    kind: ModelKind
    weights: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        bias = np.ascontiguousarray(self.bias, dtype=np.float64).reshape(-1)
        if weights.ndim != 2:
            raise ValueError(f"weights must be 2-D (n_features, n_outputs); got shape {weights.shape}")
        if bias.shape != (weights.shape[1],):
            raise ValueError(f"bias must have {weights.shape[1]} values; got shape {bias.shape}")
        outputs = weights.shape[1] if self.kind == "MULTICLASS" else None
        if n_outputs_of(self.kind, outputs) != weights.shape[1]:
            raise ValueError(f"a {self.kind} model has 1 output; weights have {weights.shape[1]}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "bias", bias)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinearModel):
            return NotImplemented
        return (
            self.kind == other.kind
            and np.array_equal(self.weights, other.weights)
            and np.array_equal(self.bias, other.bias)
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.weights.shape[1])

    def decision(self, X: sp.csr_matrix) -> np.ndarray:
        """Raw scores: ``(n,)`` for BINARY (log-odds) and REGRESSION, ``(n, K)`` logits for MULTICLASS."""
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features; the model has {self.n_features}")
        if self.kind == "MULTICLASS":
            return np.asarray(X @ self.weights) + self.bias
        return np.asarray(X @ self.weights[:, 0]) + float(self.bias[0])

    def predict_scores(self, X: sp.csr_matrix) -> np.ndarray:
        """BINARY: ``(n,)`` probability of 1; MULTICLASS: ``(n, K)`` probabilities; REGRESSION: ``(n,)``."""
        return self.link(self.decision(X))

    def link(self, z: np.ndarray) -> np.ndarray:
        """Scores from raw scores ``z`` (as :meth:`decision` gives them): the sigmoid (BINARY), the softmax
        of each row (MULTICLASS), the values themselves (REGRESSION)."""
        if self.kind == "BINARY":
            from scipy.special import expit

            return expit(z)
        if self.kind == "MULTICLASS":
            # Infinite logits (huge NUMERIC values) give NaN rows, which every caller checks for: no warning.
            with np.errstate(invalid="ignore"):
                e = np.exp(z - z.max(axis=1, keepdims=True))
                return e / e.sum(axis=1, keepdims=True)
        return z

    def score_one(self, indices: Sequence[int], values: Sequence[float]) -> float | list[float]:
        """Score one featurized record (its active feature indices and values) in a few microseconds.

        Equal to ``predict_scores`` on the same row up to 1e-12: single-output sums run in the order of the
        sparse product; multiclass logits gather the active rows and take one small product.
        """
        if self.kind != "MULTICLASS":
            flat = memoryview(self.weights).cast("B").cast("d")
            total = 0.0
            for index, value in zip(indices, values, strict=True):
                total += value * flat[index]
            z = total + float(self.bias[0])
            return _sigmoid(z) if self.kind == "BINARY" else z
        rows = self.weights[np.asarray(indices, dtype=np.intp)]
        logits = (np.asarray(values, dtype=np.float64) @ rows + self.bias).tolist()
        top = max(logits)
        exps = [math.exp(z - top) for z in logits]
        total = sum(exps)
        return [e / total for e in exps]


@dataclass
class TrainingReport:
    """What training did, for the job log and the model artifact (``to_dict`` is JSON-ready).

    ``losses``: objective after each pass (mean loss + penalty of the model on the calibration sample, which
    is all the data when it has at most ``CALIBRATION_ROWS`` rows; regression in standardized units);
    ``progressive_losses``: mean loss of each pass's mini-batches, each taken before the step on it;
    ``validation_losses``: mean validation loss per pass (empty without validation);
    ``learning_rate_trials``: ``[rate, held-back loss]`` per candidate (empty when the sample was too small
    and the middle candidate was used); ``target_mean`` / ``target_std``: the regression standardization
    (folded into the weights), ``None`` otherwise.
    """

    passes: int
    rows: int
    rows_per_step: int
    learning_rate: float
    learning_rate_trials: list[list[float | None]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    progressive_losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    stopped_early: bool = False
    #: The pass whose model was kept: the one with the lowest loss (0 before any pass).
    best_pass: int = 0
    nonzero_features: int = 0
    pruned_features: int = 0
    estimated_size_bytes: int = 0
    target_mean: float | None = None
    target_std: float | None = None
    #: REGRESSION without L1: passes of the exact refinement after SGD (``core.least_squares``; 0 when
    #: it ran on the calibration sample, which then held every row) and its objective after each step.
    refinement_passes: int = 0
    refinement_objectives: list[float] = field(default_factory=list)
    #: Parts of the data each pass ran on in parallel, mixed after the pass (the Spark engine); 1 here.
    parallel_parts: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; a loss that overflowed to infinity or NaN becomes ``None``."""
        return {key: _finite_or_none(value) for key, value in asdict(self).items()}


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
