"""What a linear model is, what training takes and what it reports: ``LinearModel`` (``z = x @ W + b``,
scored in batches or one record at a time), ``TrainingParameters`` (the API's ``sgd.*`` parameters) and
``TrainingReport``. ``core.learn`` trains the models; scoring a record needs only this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from array import array

    import numpy as np
    import scipy.sparse as sp
# NumPy and scipy are imported where they are used: a server that only scores single records of one-output
# models needs neither.

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


class LinearModel:
    """A trained linear model: ``z = x @ weights + bias``.

    ``weights`` is float64 ``(n_features, n_outputs)`` (``n_outputs`` 1, or K for MULTICLASS), ``bias``
    float64 ``(n_outputs,)``. Regression weights are stored in target units (the standardization used during
    training is folded in), so every kind scores with the same formula. Equality compares values exactly.

    A model read from a file (:meth:`from_values`) holds its weights as a flat ``array('d')`` and makes the
    NumPy arrays on first use: a server scoring single records of one-output models never imports NumPy
    (0.15–0.2 s of its start, and OpenBLAS's threads), as ``score_one``, ``output_weights`` and
    ``bias_values`` need none.
    """

    __slots__ = ("_bias", "_bias_values", "_flat", "_shape", "_weights", "kind")

    def __init__(self, kind: ModelKind, weights: np.ndarray, bias: np.ndarray) -> None:
        import numpy as np

        weights = np.ascontiguousarray(weights, dtype=np.float64)
        bias = np.ascontiguousarray(bias, dtype=np.float64).reshape(-1)
        if weights.ndim != 2:
            raise ValueError(f"weights must be 2-D (n_features, n_outputs); got shape {weights.shape}")
        self._set(kind, (int(weights.shape[0]), int(weights.shape[1])), bias.tolist())
        self._weights: np.ndarray | None = weights
        self._bias: np.ndarray | None = bias
        self._flat: array[float] | memoryview = memoryview(weights.reshape(-1))  # row-major, as the file's

    @classmethod
    def from_values(
        cls, kind: ModelKind, shape: tuple[int, int], flat: array[float], bias: Sequence[float]
    ) -> LinearModel:
        """The model whose weights are ``flat``, the ``shape`` matrix in row-major order (not copied)."""
        if len(flat) != shape[0] * shape[1]:
            raise ValueError(f"{len(flat)} weights for shape {list(shape)}")
        model = cls.__new__(cls)
        model._set(kind, shape, [float(b) for b in bias])
        model._weights = model._bias = None
        model._flat = flat
        return model

    def _set(self, kind: ModelKind, shape: tuple[int, int], bias: list[float]) -> None:
        if len(bias) != shape[1]:
            raise ValueError(f"bias must have {shape[1]} values; got shape ({len(bias)},)")
        outputs = shape[1] if kind == "MULTICLASS" else None
        if n_outputs_of(kind, outputs) != shape[1]:
            raise ValueError(f"a {kind} model has 1 output; weights have {shape[1]}")
        self.kind: ModelKind = kind
        self._shape = shape
        self._bias_values = tuple(bias)

    @property
    def weights(self) -> np.ndarray:
        if self._weights is None:
            import numpy as np

            self._weights = np.frombuffer(self._flat, dtype=np.float64).reshape(self._shape)
        return self._weights

    @property
    def bias(self) -> np.ndarray:
        if self._bias is None:
            import numpy as np

            self._bias = np.array(self._bias_values, dtype=np.float64)
        return self._bias

    @property
    def bias_values(self) -> tuple[float, ...]:
        """The bias as floats, one per output."""
        return self._bias_values

    def output_weights(self, output: int) -> list[float]:
        """The weights of one output (a column of ``weights``), as floats."""
        return self._flat[output :: self._shape[1]].tolist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinearModel):
            return NotImplemented
        import numpy as np

        return (
            self.kind == other.kind
            and np.array_equal(self.weights, other.weights)
            and np.array_equal(self.bias, other.bias)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LinearModel({self.kind}, {self._shape[0]} features, {self._shape[1]} outputs)"

    def __reduce__(self) -> tuple[type, tuple[str, np.ndarray, np.ndarray]]:
        # Copied or sent to another process as its arrays (a memoryview does not pickle).
        return (LinearModel, (self.kind, self.weights, self.bias))

    @property
    def n_features(self) -> int:
        return self._shape[0]

    @property
    def n_outputs(self) -> int:
        return self._shape[1]

    def decision(self, X: sp.csr_matrix) -> np.ndarray:
        """Raw scores: ``(n,)`` for BINARY (log-odds) and REGRESSION, ``(n, K)`` logits for MULTICLASS."""
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features; the model has {self.n_features}")
        import numpy as np

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
            import numpy as np

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
            flat = self._flat
            total = 0.0
            for index, value in zip(indices, values, strict=True):
                total += value * flat[index]
            z = total + self._bias_values[0]
            return _sigmoid(z) if self.kind == "BINARY" else z
        import numpy as np

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
