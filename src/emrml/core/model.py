"""The model artifact: a versioned zip holding everything needed to score, and no code (DESIGN idea 3).

Members (``docs/model-format.md`` is the full reference):

* ``model.json``: format marker and version, model type, schema JSON, recipe, feature space, class labels,
  score threshold, training parameters and report, metrics, bias, and the shape of the weights;
* ``weights.npy``: the ``(n_features, n_outputs)`` float64 weight matrix in NumPy's ``.npy`` format, read with
  ``allow_pickle=False``;
* ``feature_names.json`` (optional): one name per feature row.

``save_artifact`` writes atomically (a temporary file in the target directory, then ``os.replace``).
``load_artifact`` checks the marker, the version and every member and never unpickles; anything else is an
``InvalidInputException`` naming the file and the problem. Given the ``ExpectedModel`` the metastore
records, it also refuses a file that is not that MLModel's (another model's file, or one edited into another
self-consistent model), naming the model and what differs.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import sys
import tempfile
import zipfile
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrml.core.linear import KEY_SHUFFLE, MODEL_KINDS, PARAMETER_KEYS, LinearModel
from emrml.core.schema import AttributeType, Schema, parse_schema
from emrml.errors import InvalidInputException

FORMAT = "emrml-model"
FORMAT_VERSION = 1
MODEL_MEMBER = "model.json"
WEIGHTS_MEMBER = "weights.npy"
FEATURE_NAMES_MEMBER = "feature_names.json"
# Dense float64 weights deflate by under 5 % and inflate five times slower than a plain read, while pruned
# and L1 models are mostly zeros that deflate to almost nothing: compress only the latter.
_COMPRESS_ZERO_FRACTION = 0.5


@dataclass
class ModelArtifact:
    """A trained model with everything needed to featurize records and score them.

    ``feature_space`` is the featurizer's JSON description (opaque here); ``labels`` the class names of a
    MULTICLASS model in output order; ``score_threshold`` the BINARY cut-off; ``parameters`` the effective
    ``TrainingParameters.to_api()``; ``report`` ``TrainingReport.to_dict()``; ``metrics`` any JSON numbers
    (e.g. from an evaluation at training time); ``feature_names`` one name per weight row, optional.
    """

    model_type: str
    schema_json: str
    recipe: str
    feature_space: dict[str, Any]
    linear: LinearModel
    labels: list[str] | None
    score_threshold: float | None
    parameters: dict[str, str]
    report: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    feature_names: list[str] | None = None
    format_version: int = FORMAT_VERSION


def _model_json(artifact: ModelArtifact) -> bytes:
    linear = artifact.linear
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": artifact.model_type,
        "schema": artifact.schema_json,
        "recipe": artifact.recipe,
        "feature_space": artifact.feature_space,
        "labels": artifact.labels,
        "score_threshold": artifact.score_threshold,
        "training_parameters": artifact.parameters,
        "training_report": artifact.report,
        "metrics": artifact.metrics,
        "bias": list(linear.bias_values),
        "weights": {
            "member": WEIGHTS_MEMBER,
            "shape": list(linear.weights.shape),
            "dtype": "float64",
        },
        "feature_names": FEATURE_NAMES_MEMBER if artifact.feature_names is not None else None,
    }
    return json.dumps(document, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode()


def _check_consistent(artifact: ModelArtifact) -> None:
    if artifact.format_version != FORMAT_VERSION:
        raise ValueError(
            f"this emrml writes model format version {FORMAT_VERSION}, not {artifact.format_version}"
        )
    if artifact.model_type != artifact.linear.kind:
        raise ValueError(
            f"model_type {artifact.model_type} does not match the {artifact.linear.kind} weights"
        )
    labels, threshold = artifact.labels, artifact.score_threshold
    # What scoring relies on, refused here so that a file altered since training cannot reach it: a
    # "MULTICLASS" file of one output was scored as BINARY and its Predict failed on an assertion.
    if artifact.model_type == "MULTICLASS":
        if labels is None or len(labels) != artifact.linear.n_outputs:
            raise ValueError(f"a MULTICLASS model needs {artifact.linear.n_outputs} labels; got {labels}")
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"a MULTICLASS model needs two or more distinct labels; got {labels}")
    elif labels is not None:
        raise ValueError(f"a {artifact.model_type} model has no labels; got {labels}")
    if threshold is not None and (artifact.model_type != "BINARY" or not 0 <= threshold <= 1):
        raise ValueError(f"score_threshold must be null or, for a BINARY model, from 0 to 1; got {threshold}")
    if artifact.feature_names is not None and len(artifact.feature_names) != artifact.linear.n_features:
        raise ValueError(
            f"{len(artifact.feature_names)} feature names for {artifact.linear.n_features} weight rows"
        )


def _weights_compression(linear: LinearModel) -> int:
    import numpy as np

    zeros = linear.weights.size - np.count_nonzero(linear.weights)
    if zeros >= _COMPRESS_ZERO_FRACTION * linear.weights.size:
        return zipfile.ZIP_DEFLATED
    return zipfile.ZIP_STORED


def save_artifact(
    artifact: ModelArtifact, path: Path, commit: Callable[[Callable[[], None]], None] | None = None
) -> int:
    """Write ``artifact`` to ``path`` atomically; returns the file size in bytes. ``commit`` runs the rename
    that makes the file appear (a training job's attempt: only while it holds the job), and may refuse it
    by raising, which leaves no file.

    Raises ``ValueError`` for an inconsistent artifact (type vs weights, labels, feature names, version) or
    values JSON cannot hold (NaN, infinity).
    """
    import numpy as np

    _check_consistent(artifact)
    document = _model_json(artifact)
    linear = artifact.linear
    weights = io.BytesIO()
    np.save(weights, linear.weights, allow_pickle=False)
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            with zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(MODEL_MEMBER, document)
                archive.writestr(
                    WEIGHTS_MEMBER, weights.getbuffer(), compress_type=_weights_compression(linear)
                )
                if artifact.feature_names is not None:
                    names = json.dumps(artifact.feature_names, ensure_ascii=False).encode()
                    archive.writestr(FEATURE_NAMES_MEMBER, names)
            file.flush()
            os.fsync(file.fileno())
        size = os.stat(temporary).st_size
        (commit or _now)(lambda: os.replace(temporary, path))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return size


def _now(step: Callable[[], None]) -> None:
    step()


def _invalid(path: Path, problem: str) -> InvalidInputException:
    return InvalidInputException(f"{path} is not a usable emrml model: {problem}")


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise _invalid(path, f"the zip has no {name} member") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        raise _invalid(path, f"the {name} member is damaged ({exc})") from None


def _parse_json(data: bytes, name: str, path: Path) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(path, f"{name} is not valid JSON ({exc})") from None
    except RecursionError:
        raise _invalid(path, f"{name} is not valid JSON (it is nested too deeply)") from None


def _require(document: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = document.get(key)
    if not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise _invalid(path, f"{MODEL_MEMBER} key {key!r} must be {names}; got {value!r:.80}")
    return value


def _plain_weights(data: bytes, path: Path) -> tuple[tuple[int, int], array[float]] | None:
    """The shape and row-major values of a ``.npy`` member as ``save_artifact`` writes it (version 1.0,
    ``<f8``, C order, 2-D), read without NumPy; None for any other member, which NumPy's reader then
    reads or refuses (``_numpy_weights``).

    Written by hand, as a fast path only: importing NumPy costs a server 0.15–0.2 s of its start, and a
    one-output model's Predict needs none of it. The header is a Python literal, read by
    ``ast.literal_eval`` as NumPy's reader does (no code runs).
    """
    if data[:8] != b"\x93NUMPY\x01\x00" or len(data) < 10:
        return None
    end = 10 + int.from_bytes(data[8:10], "little")
    try:
        header = ast.literal_eval(data[10:end].decode("latin-1"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(header, dict) or header.keys() != {"descr", "fortran_order", "shape"}:
        return None
    shape = header["shape"]
    if (
        header["descr"] != "<f8"
        or header["fortran_order"] is not False
        or not (
            isinstance(shape, tuple) and len(shape) == 2 and all(type(n) is int and n >= 0 for n in shape)
        )
    ):
        return None
    if len(data) - end != 8 * shape[0] * shape[1]:
        raise _invalid(
            path, f"{WEIGHTS_MEMBER} is damaged: {len(data) - end} bytes of values for shape {list(shape)}"
        )
    values = array("d")
    values.frombytes(memoryview(data)[end:])
    if sys.byteorder != "little":
        values.byteswap()
    return (shape[0], shape[1]), values


def _load_weights(data: bytes, path: Path) -> tuple[tuple[int, int], array[float]]:
    """The weight matrix's shape and its values as a flat ``array('d')`` in row-major order
    (``InvalidInputException`` for a member that is no finite 2-D float64 array)."""
    shape, values = _plain_weights(data, path) or _numpy_weights(data, path)
    if not all(map(math.isfinite, values)):
        raise _invalid(path, f"{WEIGHTS_MEMBER} holds values that are not finite")
    return shape, values


def _numpy_weights(data: bytes, path: Path) -> tuple[tuple[int, int], array[float]]:
    """``_plain_weights`` of any other ``.npy`` layout NumPy reads (another byte order, Fortran order, a
    later format version)."""
    import numpy as np

    try:
        weights = np.load(io.BytesIO(data), allow_pickle=False)
    except MemoryError:  # NumPy allocates the array its header declares before reading its values
        raise _invalid(path, f"{WEIGHTS_MEMBER} declares more values than it can hold") from None
    except ValueError as exc:
        raise _invalid(path, f"{WEIGHTS_MEMBER} is not a plain numeric .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise _invalid(path, f"{WEIGHTS_MEMBER} is damaged ({exc})") from None
    if weights.dtype.kind != "f" or weights.dtype.itemsize != 8 or weights.ndim != 2:
        raise _invalid(
            path, f"{WEIGHTS_MEMBER} must hold a 2-D float64 array; got {weights.ndim}-D {weights.dtype}"
        )
    values = array("d")
    values.frombytes(np.ascontiguousarray(weights, dtype=np.float64).tobytes())  # native order, row-major
    return (int(weights.shape[0]), int(weights.shape[1])), values


@dataclass(frozen=True)
class ExpectedModel:
    """What the metastore records of an MLModel that its model file states too: a file loaded for the model
    must say the same. A file is self-consistent however it was edited, so only this tells a BINARY model's
    file from one turned into a REGRESSION model, or from another model's file copied over it.

    ``schema_json``: the training schema (the MLModel's ``data_schema``); ``recipe`` its recipe text;
    ``parameters_json``: its ``TrainingParameters`` as JSON. Each is None where the metastore has none, and
    is then not compared. Hashable: loaders that cache a model per file key the cache with it.
    """

    model_id: str
    model_type: str
    schema_json: str | None = None
    recipe: str | None = None
    parameters_json: str | None = None


def check_expected(artifact: ModelArtifact, expected: ExpectedModel, path: Path) -> None:
    """Raise ``InvalidInputException`` naming the model, the file and every difference when ``artifact`` is
    not the model ``expected`` describes."""
    differences: list[str] = []
    if artifact.model_type != expected.model_type:
        differences.append(f"it holds a {artifact.model_type} model; the MLModel is {expected.model_type}")
    if expected.schema_json is not None and expected.schema_json != artifact.schema_json:
        difference = _schema_difference(
            parse_schema(artifact.schema_json, source=f"{path} schema"),
            parse_schema(expected.schema_json, source=f"MLModel {expected.model_id!r} schema"),
        )
        if difference:
            differences.append(difference)
    if expected.recipe is not None and expected.recipe != artifact.recipe:
        differences.append("its recipe is not the MLModel's")
    if expected.parameters_json is not None:
        differences += _parameter_differences(artifact.parameters, expected.parameters_json)
    if differences:
        raise InvalidInputException(
            f"the model file {path} is not that of MLModel {expected.model_id!r}: " + "; ".join(differences)
        )


def _schema_difference(stated: Schema, recorded: Schema) -> str | None:
    """How the file's training schema differs from the MLModel's (None: the same schema, written apart)."""
    if stated == recorded:
        return None
    if stated.target != recorded.target:
        return f"it predicts the target {stated.target!r}; the MLModel predicts {recorded.target!r}"
    types = {attribute.name: attribute.type.value for attribute in recorded.attributes}
    for attribute in stated.attributes:
        if attribute.name not in types:
            return f"its schema has the attribute {attribute.name!r}, which the MLModel's has not"
        recorded_type = types.pop(attribute.name)
        if recorded_type != attribute.type.value:
            return (
                f"its schema types {attribute.name!r} {attribute.type.value}; the MLModel's types it "
                f"{recorded_type}"
            )
    if types:
        return f"its schema lacks the MLModel's attribute {next(iter(types))!r}"
    return "its training schema is not the MLModel's"


def _parameter_differences(stated: dict[str, Any], recorded_json: str) -> list[str]:
    """The training parameters whose values differ. The MLModel echoes the values as its caller wrote them
    (``1e-4``), the file as emrml does (``0.0001``): compared as values, not as text. Only the keys the
    MLModel records are compared."""
    try:
        recorded = json.loads(recorded_json)
    except ValueError:
        return []
    if not isinstance(recorded, dict):
        return []
    differences = []
    for key in PARAMETER_KEYS:
        if key in recorded and _parameter_value(key, stated.get(key)) != _parameter_value(key, recorded[key]):
            differences.append(f"its {key} is {stated.get(key)!r}; the MLModel's is {recorded[key]!r}")
    return differences


def _parameter_value(key: str, text: Any) -> object:
    if not isinstance(text, str):
        return text
    if key == KEY_SHUFFLE:
        return text.strip()
    try:
        return float(text)
    except ValueError:
        return text


def load_artifact(path: Path, expected: ExpectedModel | None = None) -> ModelArtifact:
    """Read and validate a model written by ``save_artifact``; with ``expected``, the model the metastore
    says the file is (``check_expected``).

    Raises ``InvalidInputException`` naming the file for a missing, damaged or foreign file, a missing member,
    an unknown format version, members that disagree with each other, or a model that is not ``expected``.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise _invalid(path, "the file does not exist") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise _invalid(path, f"not a zip archive ({exc})") from None
    with archive:
        document = _parse_json(_read_member(archive, MODEL_MEMBER, path), MODEL_MEMBER, path)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise _invalid(path, f'{MODEL_MEMBER} lacks the marker "format": "{FORMAT}"')
        version = document.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise _invalid(
                path, f"model format version {version!r}; this emrml reads version {FORMAT_VERSION}"
            )
        model_type = _require(document, "model_type", str, path)
        if model_type not in MODEL_KINDS:
            raise _invalid(path, f"unknown model_type {model_type!r}")
        shape, weights = _load_weights(_read_member(archive, WEIGHTS_MEMBER, path), path)
        names_member = document.get("feature_names")
        feature_names = None
        if names_member is not None:
            if names_member != FEATURE_NAMES_MEMBER:
                raise _invalid(path, f"feature_names must name {FEATURE_NAMES_MEMBER!r} or be null")
            feature_names = _parse_json(_read_member(archive, names_member, path), names_member, path)
    artifact = _artifact_from(document, model_type, shape, weights, feature_names, path)
    if expected is not None:
        check_expected(artifact, expected, path)
    return artifact


def _artifact_from(
    document: dict[str, Any],
    model_type: str,
    shape: tuple[int, int],
    weights: array[float],
    feature_names: Any,
    path: Path,
) -> ModelArtifact:
    declared = _require(document, "weights", dict, path).get("shape")
    if declared != list(shape):
        raise _invalid(path, f"{WEIGHTS_MEMBER} has shape {list(shape)}; {MODEL_MEMBER} says {declared}")
    bias = _require(document, "bias", list, path)
    if not all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in bias):
        raise _invalid(path, "bias must be a list of finite numbers")
    labels = document.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise _invalid(path, "labels must be a list of strings or null")
    threshold = document.get("score_threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or isinstance(threshold, bool)):
        raise _invalid(path, "score_threshold must be a number or null")
    if feature_names is not None and not (
        isinstance(feature_names, list) and all(isinstance(x, str) for x in feature_names)
    ):
        raise _invalid(path, f"{FEATURE_NAMES_MEMBER} must be a list of strings")
    try:
        linear = LinearModel.from_values(model_type, shape, weights, bias)  # type: ignore[arg-type]
        artifact = ModelArtifact(
            model_type=model_type,
            schema_json=_require(document, "schema", str, path),
            recipe=_require(document, "recipe", str, path),
            feature_space=_require(document, "feature_space", dict, path),
            linear=linear,
            labels=labels,
            score_threshold=None if threshold is None else float(threshold),
            parameters=_require(document, "training_parameters", dict, path),
            report=_require(document, "training_report", dict, path),
            metrics=_require(document, "metrics", dict, path),
            feature_names=feature_names,
        )
        _check_consistent(artifact)
    except ValueError as exc:
        raise _invalid(path, str(exc)) from None
    return artifact


# --- What a model type needs, and what a trained model tells -------------------------------------------

#: The target type each model type learns (spec 7.1).
TARGET_TYPES = {
    "BINARY": AttributeType.BINARY,
    "MULTICLASS": AttributeType.CATEGORICAL,
    "REGRESSION": AttributeType.NUMERIC,
}


def check_target(schema: Schema, model_type: str, *, what: str = "the training datasource") -> None:
    """The schema must name a target whose type fits the model type."""
    if schema.target is None:
        raise InvalidInputException(f"{what} has no targetAttributeName: a model needs a target to learn")
    actual = schema.attribute(schema.target).type
    expected = TARGET_TYPES[model_type]
    if actual != expected:
        fitting = [kind for kind, needed in TARGET_TYPES.items() if needed == actual]
        hint = f"; a {actual} target makes a {fitting[0]} model" if fitting else ""
        raise InvalidInputException(
            f"a {model_type} model needs a {expected} target, but in {what} the target {schema.target!r} "
            f"is {actual}{hint}. For a {model_type} model, give the datasource a schema "
            f"that types {schema.target!r} as {expected} (inference types a column of numbers NUMERIC and "
            "one of two values such as 0/1 BINARY)"
        )


def check_evaluation_target(model_schema: Schema, data_schema: Schema, *, what: str) -> None:
    """An evaluation compares the model's predictions with the target (spec 8): its datasource must name
    the model's target. Its type there does not matter: the training schema's type wins (spec 5.2). A batch
    prediction needs none of this."""
    target = model_schema.target
    if target is None:
        return
    if data_schema.target is None:
        raise InvalidInputException(
            f"{what} has no targetAttributeName: an evaluation compares the predictions with the target "
            f"{target!r}, so its datasource needs a schema naming {target!r} as targetAttributeName "
            "(a datasource without a target can still be scored by a batch prediction)"
        )
    if data_schema.target != target:
        raise InvalidInputException(
            f"{what} has targetAttributeName {data_schema.target!r}, but the model predicts {target!r}: "
            f"an evaluation datasource needs {target!r} as its targetAttributeName"
        )


#: How many of a model's features ``insights`` lists.
TOP_FEATURES = 20


def insights(artifact: ModelArtifact) -> dict[str, Any]:
    """The training report, the ``TOP_FEATURES`` features with the largest weights and the alerts about the
    training data (GetMLModelInsights)."""
    import numpy as np

    weights = artifact.linear.weights
    strength = np.abs(weights).max(axis=1) if weights.size else np.zeros(0)
    order = np.argsort(-strength, kind="stable")[:TOP_FEATURES]
    names = artifact.feature_names or [f"feature {i}" for i in range(weights.shape[0])]
    top = []
    for i in order:
        if strength[i] == 0:
            break
        row = weights[i]
        weight: Any = float(row[0])
        if weights.shape[1] > 1:
            weight = {label: float(w) for label, w in zip(artifact.labels or [], row, strict=True)}
        top.append({"feature": names[i], "weight": weight})
    return {
        "TrainingReport": artifact.report,
        "TopFeatures": top,
        "FeatureCount": int(weights.shape[0]),
        "Labels": artifact.labels,
        "Alerts": artifact.report.get("alerts", []),
    }
