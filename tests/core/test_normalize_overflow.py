"""normalize() over NUMERIC values whose mean or variance overflows: refused naming the attribute, where
it trained on the values unscaled."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from emrml.core.features import FeatureSpace
from emrml.core.recipe.grammar import parse_recipe
from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.errors import DataError

SCHEMA = Schema((Attribute("x", AttributeType.NUMERIC), Attribute("y", AttributeType.BINARY)), target="y")


def fit(values: list[str], outputs: list[str], parts: int = 1) -> FeatureSpace:
    recipe = parse_recipe(json.dumps({"outputs": outputs}), SCHEMA)
    size = -(-len(values) // parts)
    batches = [
        pa.record_batch({"x": values[i : i + size], "y": ["1"] * len(values[i : i + size])})
        for i in range(0, len(values), size)
    ]
    return FeatureSpace.fit(recipe, SCHEMA, batches)


@pytest.mark.parametrize(
    "values",
    [
        ["1e300", "-1e300", "5", ""],  # the variance overflows to NaN, taken for a constant's: std 1
        ["1e160", "-1e160", "0"],  # to infinity: every value normalized to 0
        ["1.7e308", "1.7e308", "1"],  # the mean overflows
    ],
)
@pytest.mark.parametrize("parts", [1, 3])  # a batch, or moments merged across batches
def test_normalize_refuses_values_whose_moments_overflow(values: list[str], parts: int) -> None:
    with pytest.raises(DataError) as raised:
        fit(values * 3, ["normalize(x)"], parts)
    assert str(raised.value) == (
        "NUMERIC attribute 'x' has values too large for normalize(): their mean or variance overflows the "
        "range of floating-point numbers; quantile_bin it in the recipe instead"
    )
    assert fit(values * 3, ["quantile_bin(x,5)"], parts).n_features > 0


def test_normalize_takes_large_values_whose_moments_fit() -> None:
    space = fit(["1e150", "-1e150", "0"], ["normalize(x)"])
    assert space.to_dict()["moments"]["x"]["std"] == pytest.approx(1e150 * (2 / 3) ** 0.5)
