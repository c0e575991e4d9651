"""Scoring with a trained model: one record for the Predict API, or a batch of records.

``Predictor`` wraps a ``ModelArtifact``: ``predict(record)`` answers the Predict API's ``Prediction`` member
(spec 10.2) in microseconds — everything that does not depend on the record is prepared in ``__init__`` —
and ``score_batch(batch)`` scores an Arrow batch vectorized. Both paths use the same fitted
``FeatureSpace`` and weights and agree to 1e-12 (a property test holds them to it).

The batch path imports pyarrow when first called: a server that only answers Predict loads no Arrow.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emrml.core.features import FeatureSpace, record_flag, record_number
from emrml.core.linear import LinearModel
from emrml.core.model import ExpectedModel, ModelArtifact, load_artifact
from emrml.core.record_values import string_values
from emrml.core.schema import AttributeType, Schema, parse_schema
from emrml.errors import InvalidInputException

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from emrml.core.features.batch import BatchValues

#: The cut-off of a BINARY model whose artifact records none (spec 7.3).
DEFAULT_THRESHOLD = 0.5


def in_float_range(value: float) -> float:
    """``value`` with an infinity replaced by the largest float of its sign: what a JSON answer can carry
    of a prediction that overflowed (huge NUMERIC values on a raw numeric output). NaN stays NaN."""
    return max(-sys.float_info.max, min(value, sys.float_info.max)) if value == value else value


def unscorable_rows(scores: np.ndarray) -> np.ndarray | None:
    """Which rows of batch ``scores`` (``Predictor.score_batch``'s) are no number at all (NaN: terms
    overflowing to infinities of both signs, a MULTICLASS softmax of infinite logits), records Predict
    refuses; None when no row is."""
    import numpy as np

    nan = np.isnan(scores)
    rows = nan.any(axis=1) if nan.ndim == 2 else nan
    return rows if rows.any() else None


#: Why a record whose prediction is no number (``unscorable_rows``) is not scored: Predict's error, a
#: stream's dead-letter reason.
OVERFLOW_MESSAGE = (
    "Record: its NUMERIC values are too large for this model: the prediction overflows the range of "
    "floating-point numbers"
)


def _overflow() -> InvalidInputException:
    return InvalidInputException(OVERFLOW_MESSAGE)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class Predictor:
    """A loaded model ready to score records and batches.

    ``model_type`` is BINARY, MULTICLASS or REGRESSION; ``labels`` the MULTICLASS class names in output order
    (sorted), else None; ``schema`` the training schema; ``score_threshold`` the BINARY cut-off (score ≥
    threshold → label "1"), None for other types; ``size_in_bytes`` the artifact file's size when loaded
    from a file, else None. Immutable after construction and safe to share between threads.
    """

    def __init__(self, artifact: ModelArtifact, *, score_threshold: float | None = None) -> None:
        self.artifact = artifact
        self.model_type: str = artifact.model_type
        self.labels: list[str] | None = list(artifact.labels) if artifact.labels is not None else None
        self.schema: Schema = parse_schema(artifact.schema_json, source="the model's schema")
        self.space = FeatureSpace.from_dict(artifact.feature_space, self.schema)
        self.score_threshold: float | None = None
        if self.model_type == "BINARY":
            if score_threshold is None:
                score_threshold = artifact.score_threshold
            self.score_threshold = DEFAULT_THRESHOLD if score_threshold is None else float(score_threshold)
        self.size_in_bytes: int | None = None
        linear = artifact.linear
        self._bias = linear.bias_values[0]
        self._inputs = tuple(attribute.name for attribute in self.schema.input_attributes)
        # Values that can be unparsable: numbers and flags (a category or a text is whatever it says).
        self._parsed = tuple(
            (attribute.name, record_number if attribute.type is AttributeType.NUMERIC else record_flag)
            for attribute in self.schema.input_attributes
            if attribute.type in (AttributeType.NUMERIC, AttributeType.BINARY)
        )
        # BINARY and REGRESSION: featurizing, the dot product and the unparsed-value check fused, weights
        # folded into the record compiler's functions; only the numbers and flags that no output reads are
        # checked apart. MULTICLASS: transform_record, then the K dot products.
        self._score: Callable[[Mapping[str, str], list[str]], float] | None = None
        self._unscored = self._parsed
        self._safe_sum = 0.0
        if linear.n_outputs == 1:
            self._score, checked = self.space.record_scorer(linear.output_weights(0))
            self._unscored = tuple((name, parse) for name, parse in self._parsed if name not in checked)
        else:
            import numpy as np

            # No logit can overflow while Σ|value| × the largest |weight| + the largest |bias| stays below
            # this; past it numpy's product warns of the overflow on stderr, so it runs with the warnings
            # off (an errstate costs a microsecond: only the rare record of huge numbers pays it).
            largest = float(np.abs(linear.weights).max(initial=0.0))
            self._safe_sum = (sys.float_info.max / 4 - max(map(abs, linear.bias_values))) / max(largest, 1.0)

    def __repr__(self) -> str:
        # What a notebook shows for ``model.predictor()``: the type, what it predicts, and from what.
        detail = {
            "BINARY": f"score_threshold={self.score_threshold}",
            "MULTICLASS": f"labels={self.labels}",
        }.get(self.model_type, "")
        target = self.schema.target
        return (
            f"Predictor({self.model_type}, target={target!r}, {len(self._inputs)} inputs"
            + (f", {detail}" if detail else "")
            + ")"
        )

    @classmethod
    def load(
        cls, path: Path, *, score_threshold: float | None = None, expected: ExpectedModel | None = None
    ) -> Predictor:
        """Load a model artifact file (``InvalidInputException`` naming it when it is not usable, or not the
        ``expected`` MLModel's)."""
        predictor = cls(load_artifact(Path(path), expected), score_threshold=score_threshold)
        predictor.size_in_bytes = Path(path).stat().st_size
        return predictor

    def predict(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The Predict API's ``Prediction`` member for one record (attribute name → value).

        A value is a string, or a number, a boolean or None written as one (``string_values``: ``{"age":
        41}`` is ``{"age": "41"}``), as ``Model.predict`` takes it. Unknown keys are ignored, a key left out
        is a missing value, the target is ignored. Raises ``InvalidInputException`` naming the key when a
        value is none of those (a list, an object, an infinity). A REGRESSION value past the
        float range (huge NUMERIC values on a raw numeric output) is the largest float of its sign, as JSON
        has no infinity; a score that is no number at all (terms overflowing to infinities of both signs)
        is an ``InvalidInputException``.
        """
        try:
            "".join(record.values())
        except (TypeError, AttributeError):
            # Not all strings: converted here, so that a record of strings (the usual one) pays one join.
            return self.predict_strings(string_values(record, "Record"))
        return self.predict_strings(record)

    def predict_strings(self, record: Mapping[str, str]) -> dict[str, Any]:
        """:meth:`predict` for a record whose values are known to be strings (a caller that has checked
        them, like the Predict operation, skips checking them twice)."""
        kind = self.model_type
        unparsed: list[str] = []
        if self._score is None:  # MULTICLASS
            indices, values = self.space.transform_record(record)
            if sum(map(abs, values)) < self._safe_sum:
                probabilities = self.artifact.linear.score_one(indices, values)
            else:  # the logits may overflow (then the record is refused below), quietly
                import numpy as np

                with np.errstate(over="ignore", invalid="ignore"):
                    probabilities = self.artifact.linear.score_one(indices, values)
            assert isinstance(probabilities, list) and self.labels is not None
            if any(p != p for p in probabilities):
                raise _overflow()
            scores = dict(zip(self.labels, probabilities, strict=True))
            best = self.labels[probabilities.index(max(probabilities))]
            details = self._details(record, unparsed)
            return {"details": details, "predictedLabel": best, "predictedScores": scores}
        z = self._score(record, unparsed) + self._bias
        if z - z != 0.0:  # not finite: JSON has no infinity, and an answer must be a JSON number
            if z != z:
                raise _overflow()
            z = in_float_range(z)
        details = self._details(record, unparsed)
        if kind == "REGRESSION":
            return {"details": details, "predictedValue": z}
        score = _sigmoid(z)
        assert self.score_threshold is not None
        label = "1" if score >= self.score_threshold else "0"
        return {"details": details, "predictedLabel": label, "predictedScores": {label: score}}

    def _details(self, record: Mapping[str, str], unparsed: list[str]) -> dict[str, str]:
        """The ``details`` member: the model's type and algorithm, and the record's problems if it has any.

        ``NoSchemaAttributes`` ("true") says the record named none of the model's attributes, so the
        prediction is the one for a record of missing values; ``UnparsedAttributes`` lists (comma-separated)
        the attributes whose values could not be read as their type (a NUMERIC "heavy" or "inf", a BINARY
        "maybe") and counted as missing. The usual record costs one lookup and one parse per NUMERIC or
        BINARY attribute, made while scoring; ``unparsed`` holds the attributes the scoring found unreadable.
        """
        details = {"PredictiveModelType": self.model_type, "Algorithm": "SGD"}
        for name in self._inputs:
            if name in record:
                break
        else:
            details["NoSchemaAttributes"] = "true"
            return details
        for name, parse in self._unscored:
            text = record.get(name)
            if not text:
                continue
            if parse is record_number:
                # The usual case, a plain finite ASCII number, without a call (as in the record compiler).
                try:
                    value = float(text)
                except ValueError:
                    pass
                else:
                    if value - value == 0.0 and text.isascii() and "_" not in text:
                        continue
            if text.strip() and parse(text) is None:
                unparsed.append(name)
        if unparsed:
            if len(unparsed) > 1:  # in schema order, once each (an attribute may feed several outputs)
                found = set(unparsed)
                unparsed = [name for name, _ in self._parsed if name in found]
            details["UnparsedAttributes"] = ",".join(unparsed)
        return details

    def score_batch(self, batch: pa.RecordBatch) -> np.ndarray:
        """Scores of every row of a batch of string columns named as the schema's attributes.

        BINARY: ``(n,)`` probability of class 1; MULTICLASS: ``(n, K)`` class probabilities in ``labels``
        order; REGRESSION: ``(n,)`` predicted values. A model input the batch lacks counts as missing in
        every row, extra columns are ignored.
        """
        return batch_scores(self.space, self.artifact.linear, self._values(batch))

    def score_and_check(self, batch: pa.RecordBatch) -> tuple[np.ndarray, int]:
        """:meth:`score_batch`, and how many rows have a NUMERIC or BINARY input value that cannot be read
        as its type (scored as missing; Predict reports them as ``UnparsedAttributes``): every value is
        parsed once for both."""
        import numpy as np

        values = self._values(batch)
        scores = batch_scores(self.space, self.artifact.linear, values)
        names = batch.schema.names
        unparsed = np.zeros(batch.num_rows, dtype=bool)
        for name, parse in self._parsed:
            if name in names:  # an input the batch lacks is missing, never unreadable
                numbers = values.numeric(name) if parse is record_number else values.binary(name)
                unparsed |= numbers.invalid[numbers.codes]
        return scores, int(np.count_nonzero(unparsed))

    def _values(self, batch: pa.RecordBatch) -> BatchValues:
        """The featurizer's view of ``batch``, with an empty (missing) column for every input it lacks."""
        names = batch.schema.names
        absent = [name for name in self._inputs if name not in names]
        if absent:
            import pyarrow as pa

            empty = pa.array([""] * batch.num_rows, pa.string())
            batch = pa.RecordBatch.from_arrays(
                [*batch.columns, *([empty] * len(absent))], names=[*names, *absent]
            )
        return self.space.values(batch)


def batch_scores(space: FeatureSpace, linear: LinearModel, values: BatchValues) -> np.ndarray:
    """The scores of a batch (``LinearModel.predict_scores`` of its features), from the featurizer's
    product with the weights: the feature matrix is never built."""
    z = space.product(values, linear.weights) + linear.bias
    return linear.link(z if linear.kind == "MULTICLASS" else z[:, 0])
