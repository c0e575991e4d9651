"""The suggested recipe: what a model uses when CreateMLModel names no recipe (spec 6.4, open question 11).

Outputs ``ALL_BINARY``, ``ALL_CATEGORICAL`` and ``ALL_TEXT`` (each when the schema has such inputs), then
every NUMERIC input quantile-binned, with the bin count ``n`` from :data:`BIN_COUNTS` whose bins predict the
target best on held-out rows of a sample of the training data (:func:`binning_score`). Attributes sharing
a count form a group ``NUMERIC_VARS_QB_<n>``, as in the recipes the service generated.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from emrml.core.recipe import arrays as ta
from emrml.core.recipe import transforms as tf
from emrml.core.schema import AttributeType, Schema
from emrml.core.values import parse_binary, parse_numeric
from emrml.errors import InvalidInputException

#: Bin counts a suggestion chooses from (the values seen in real suggested recipes).
BIN_COUNTS = (5, 10, 20, 50, 100, 200, 500)
#: Folds of the held-out score (``binning_score``): bins are counted on nine tenths of the sample, about
#: as full as the model's bins will be. Two folds (counting on half) chose bins for half the data, too
#: coarse: on the shared datasets ten folds gave every suggested model a metric as good or better
#: (wine_quality macro F1 0.219 -> 0.225, california_housing RMSE 57,738 -> 57,352).
SCORE_FOLDS = 10
#: Quantile bins a NUMERIC (regression) target is cut into before measuring information.
TARGET_BINS = 10
# Scores closer than this are a tie (the smaller bin count wins).
_TIE = 1e-12
_MODEL_TYPES = {
    "BINARY": AttributeType.BINARY,
    "MULTICLASS": AttributeType.CATEGORICAL,
    "REGRESSION": AttributeType.NUMERIC,
}


def _binned(values: np.ndarray, n: int) -> np.ndarray:
    """Quantile-bin codes of ``values`` (NaN = missing, its own code after the bins) by the feature rule."""
    present = ~np.isnan(values)
    distinct, counts = np.unique(values[present], return_counts=True)
    edges = tf.quantile_edges(distinct, counts, n)
    codes = np.full(len(values), len(edges) + 1, dtype=np.int64)
    codes[present] = tf.bin_indices(edges, values[present])
    return codes


def _target_codes(column: pa.Array, target_type: AttributeType) -> tuple[np.ndarray, np.ndarray]:
    """Class codes of the usable target values, and the mask of rows whose target is usable."""
    if target_type == AttributeType.CATEGORICAL:
        labels = ta.category_array(column)
        usable = np.asarray(labels.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        _, codes = np.unique(np.asarray(labels.drop_null().to_pylist(), dtype=object), return_inverse=True)
        return codes.astype(np.int64), usable
    parsed = parse_binary(column) if target_type == AttributeType.BINARY else parse_numeric(column)
    usable = ~(parsed.missing | parsed.invalid)
    values = parsed.values[usable]
    if target_type == AttributeType.BINARY:
        return values.astype(np.int64), usable
    return _binned(values, TARGET_BINS), usable


def binning_score(x: np.ndarray, y: np.ndarray) -> float:
    """How well bin codes ``x`` predict target codes ``y`` on rows they were not counted on (nats per row).

    ``SCORE_FOLDS``-fold: the class frequencies of each bin (smoothed towards the overall class
    frequencies) are counted on all folds but one and scored by log-likelihood on that one, each fold in
    turn; the score is the gain over predicting the overall frequencies. Bias-corrected mutual information
    (Miller–Madow, or the chance level (Kx - 1)(Ky - 1) / 2N) still rewarded 500 bins on samples of a few
    thousand rows, where most bins hold a handful of rows; held-out rows penalize exactly the bins too thin
    to learn from.
    """
    if len(x) < 2:
        return 0.0
    bins, classes = int(x.max()) + 1, int(y.max()) + 1
    fold = np.arange(len(x)) % SCORE_FOLDS
    # Each fold's (bin, class) counts, in one pass; the counts a fold is scored against are the others'.
    size = bins * classes
    per_fold = np.bincount(fold * size + x * classes + y, minlength=SCORE_FOLDS * size)
    per_fold = per_fold.reshape(SCORE_FOLDS, bins, classes)
    total = per_fold.sum(axis=0)
    gain = 0.0
    for held in range(SCORE_FOLDS):
        scored = fold == held
        if not scored.any():
            break
        joint = total - per_fold[held]
        prior = (joint.sum(axis=0) + 1.0) / (joint.sum() + classes)
        conditional = (joint + prior) / (joint.sum(axis=1, keepdims=True) + 1.0)
        x_held, y_held = x[scored], y[scored]
        gain += float(np.log(conditional[x_held, y_held]).sum() - np.log(prior[y_held]).sum())
    return gain / len(x)


def best_bin_count(values: np.ndarray, target: np.ndarray) -> int:
    """The count from :data:`BIN_COUNTS` (at most the number of rows) whose bins of ``values`` (NaN =
    missing) predict ``target`` codes best on held-out rows (:func:`binning_score`); ties go to the
    smaller count."""
    best, best_score = BIN_COUNTS[0], -np.inf
    for n in BIN_COUNTS:
        if n > len(values):
            break
        score = binning_score(_binned(values, n), target)
        if score > best_score + _TIE:
            best, best_score = n, score
    return best


def _quoted(name: str) -> str:
    return f'"{name}"' if "'" in name else f"'{name}'"


def suggest_recipe(
    schema: Schema, sample: pa.Table, target_type: AttributeType | str, *, extras: bool = False
) -> str:
    """The suggested recipe (JSON text) for ``schema``, measured on ``sample``: a table of string columns
    named as the schema's attributes, rows of the training data.

    ``target_type`` is the target's attribute type or the model type (``BINARY``, ``MULTICLASS``,
    ``REGRESSION``). Rows whose target is missing or invalid are ignored. ``extras`` adds
    ``normalize(ALL_NUMERIC)`` and ``ngram(lowercase(no_punct(ALL_TEXT)),2)`` (when those groups are
    non-empty). A NUMERIC attribute whose name holds both quote characters cannot be named in a recipe and
    is left out of the bins.
    """
    if schema.target is None:
        raise InvalidInputException("a suggested recipe needs a schema with a targetAttributeName")
    kind = _MODEL_TYPES.get(str(target_type)) or AttributeType(str(target_type))
    if schema.target not in sample.column_names:
        raise InvalidInputException(f"the sample has no column for the target {schema.target!r}")
    target, usable = _target_codes(ta.as_strings(sample.column(schema.target)), kind)
    types = {a.type for a in schema.input_attributes}
    outputs = [
        group
        for group, attribute_type in (
            ("ALL_BINARY", AttributeType.BINARY),
            ("ALL_CATEGORICAL", AttributeType.CATEGORICAL),
            ("ALL_TEXT", AttributeType.TEXT),
        )
        if attribute_type in types
    ]
    chosen: dict[int, list[str]] = {}
    for attribute in schema.input_attributes:
        if attribute.type != AttributeType.NUMERIC or ("'" in attribute.name and '"' in attribute.name):
            continue
        if attribute.name not in sample.column_names:
            raise InvalidInputException(f"the sample has no column for the attribute {attribute.name!r}")
        parsed = parse_numeric(ta.as_strings(sample.column(attribute.name)))
        values = np.where(parsed.missing | parsed.invalid, np.nan, parsed.values)[usable]
        chosen.setdefault(best_bin_count(values, target), []).append(attribute.name)
    if not outputs and not chosen:
        raise InvalidInputException("the schema has no input attribute a recipe could use")
    groups = {
        f"NUMERIC_VARS_QB_{n}": f"group({','.join(_quoted(name) for name in sorted(chosen[n]))})"
        for n in sorted(chosen, reverse=True)
    }
    outputs += [f"quantile_bin({group},{group.rsplit('_', 1)[1]})" for group in groups]
    if extras:
        if AttributeType.NUMERIC in types:
            outputs.append("normalize(ALL_NUMERIC)")
        if AttributeType.TEXT in types:
            outputs.append("ngram(lowercase(no_punct(ALL_TEXT)),2)")
    return json.dumps({"groups": groups, "assignments": {}, "outputs": outputs}, indent=2, ensure_ascii=False)
