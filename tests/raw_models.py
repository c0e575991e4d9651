"""Small hand-made schemas and models the tests share: the two smallest labelled schemas (``XY_SCHEMA``,
``XWY_SCHEMA``), a model over raw NUMERIC outputs whose sums overflow on purpose (the tests of Predict
and of stream scoring), and a model file edited into another model type (``retyped``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from emrml.core.features import FeatureSpace
from emrml.core.linear import LinearModel
from emrml.core.model import ModelArtifact, load_artifact, save_artifact
from emrml.core.predict import Predictor
from emrml.core.recipe.grammar import parse_recipe
from emrml.core.schema import Attribute, AttributeType, Schema

#: A NUMERIC ``x`` and the BINARY target ``y``, in a CSV file with a header line (a schema document: pass it
#: through ``json.dumps``, and ``parse_schema`` for a ``Schema``; copy it to change it).
XY_SCHEMA: dict[str, Any] = {
    "version": "1.0",
    "targetAttributeName": "y",
    "dataFormat": "CSV",
    "dataFileContainsHeader": True,
    "attributes": [
        {"attributeName": "x", "attributeType": "NUMERIC"},
        {"attributeName": "y", "attributeType": "BINARY"},
    ],
}
#: A NUMERIC ``x``, a TEXT ``words`` and the BINARY target ``y``, in a CSV file with a header line.
XWY_SCHEMA: dict[str, Any] = {
    "version": "1.0",
    "targetAttributeName": "y",
    "dataFileContainsHeader": True,
    "attributes": [
        {"attributeName": "x", "attributeType": "NUMERIC"},
        {"attributeName": "words", "attributeType": "TEXT"},
        {"attributeName": "y", "attributeType": "BINARY"},
    ],
}


def raw_numbers_predictor(kind: str, weights: list[float]) -> Predictor:
    """A model whose outputs are the raw NUMERIC values ``a`` and ``b``, with the given weights (MULTICLASS:
    the classes ``0`` and ``1``, of the weights negated and as given)."""
    target = AttributeType.NUMERIC if kind == "REGRESSION" else AttributeType.BINARY
    columns = (("a", AttributeType.NUMERIC), ("b", AttributeType.NUMERIC), ("y", target))
    schema = Schema(tuple(Attribute(name, type_) for name, type_ in columns), target="y", has_header=True)
    table = pa.table({"a": ["1", "2"], "b": ["3", "4"], "y": ["0", "1"]})
    one = np.array([[weights[0]], [weights[1]]])
    artifact = linear_artifact("BINARY" if kind == "MULTICLASS" else kind, schema, ["a", "b"], table, one)
    assert len(artifact.linear.weights) == 2
    if kind == "MULTICLASS":
        linear = LinearModel(kind, np.hstack([-one, one]), np.zeros(2))  # type: ignore[arg-type]
        artifact = replace(artifact, model_type=kind, linear=linear, labels=["0", "1"], score_threshold=None)
    return Predictor(artifact)


def linear_artifact(
    kind: str, schema: Schema, outputs: list[str], table: pa.Table, weights: np.ndarray | None = None
) -> ModelArtifact:
    """A one-output model (BINARY or REGRESSION) of the recipe ``outputs`` fitted on ``table``, with the
    given weights (``(n_features, 1)``; default: evenly spaced from -1 to 1) and no bias."""
    recipe = json.dumps({"groups": {}, "assignments": {}, "outputs": outputs})
    space = FeatureSpace.fit(parse_recipe(recipe, schema), schema, table.to_batches())
    if weights is None:
        weights = np.linspace(-1, 1, space.n_features)[:, None]
    assert space.n_features == len(weights)
    return ModelArtifact(
        model_type=kind,
        schema_json=schema.to_json(),
        recipe=recipe,
        feature_space=space.to_dict(),
        linear=LinearModel(kind, weights, np.zeros(1)),  # type: ignore[arg-type]
        labels=None,
        score_threshold=0.5 if kind == "BINARY" else None,
        parameters={},
        report={},
    )


def retyped(path: Path, model_type: str) -> None:
    """Rewrite the model file at ``path`` as a self-consistent model of ``model_type``, as an edit of its
    ``model.json`` and weights could: the same schema, recipe and features, its first output kept (and, for
    MULTICLASS, mirrored as the classes ``0`` and ``1``)."""
    artifact = load_artifact(path)
    weights, bias = artifact.linear.weights[:, :1], artifact.linear.bias[:1]
    labels = None
    if model_type == "MULTICLASS":
        weights, bias, labels = np.hstack([-weights, weights]), np.concatenate([-bias, bias]), ["0", "1"]
    edited = replace(
        artifact,
        model_type=model_type,
        linear=LinearModel(model_type, weights, bias),  # type: ignore[arg-type]
        labels=labels,
        score_threshold=0.5 if model_type == "BINARY" else None,
    )
    save_artifact(edited, path)
