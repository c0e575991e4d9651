"""FeatureSpace.compacted: the vocabulary strings of zero weight rows leave the space, the scores stay."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from emrml.core.features import FeatureSpace
from emrml.core.recipe.grammar import parse_recipe
from emrml.core.schema import Attribute, AttributeType, Schema

T = AttributeType
SCHEMA = Schema(
    (
        Attribute("age", T.NUMERIC),
        Attribute("job", T.CATEGORICAL),
        Attribute("review", T.TEXT),
        Attribute("y", T.BINARY),
    ),
    target="y",
)
ROWS = [
    {"age": "20", "job": "admin.", "review": "great movie great cast", "y": "1"},
    {"age": "35", "job": "technician", "review": "dull movie", "y": "0"},
    {"age": "", "job": "retired", "review": "boring plot, great acting", "y": "1"},
    {"age": "50", "job": "admin.", "review": "", "y": "0"},
]
OUTPUTS = ["quantile_bin(age,5)", "job", "ngram(review,2)", "normalize(age)"]


def _batch(rows: list[dict[str, str]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {name: pa.array([row.get(name) for row in rows], pa.string()) for name in SCHEMA.names}
    )


def test_compacted_space_keeps_scores_and_drops_only_zeroed_strings() -> None:
    recipe = parse_recipe(json.dumps({"outputs": OUTPUTS}), SCHEMA)
    space = FeatureSpace.fit(recipe, SCHEMA, [_batch(ROWS)])
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(space.n_features, 2))
    names = space.feature_names
    # Zero every other string of the vocabularies (as pruning does) and one whole vocabulary's worth of
    # job strings; bins and numbers keep their rows whatever their weights.
    zeroed = [i for i, name in enumerate(names) if "=" in name and "bin_" not in name][::2]
    zeroed += [names.index("job=technician"), names.index("job=retired")]
    weights[zeroed] = 0.0
    weights[names.index("quantile_bin(age,5)=bin_0")] = 0.0

    compact, kept = space.compacted(weights)

    assert [names[i] for i in kept] == compact.feature_names
    assert set(compact.feature_names) == set(names) - {names[i] for i in zeroed}
    assert "quantile_bin(age,5)=bin_0" in compact.feature_names
    records = [*ROWS, {"job": "technician", "review": "great plot"}, {"age": "x", "review": "unknown words"}]
    batch = _batch(records)
    np.testing.assert_allclose(
        compact.product(compact.values(batch), weights[kept]),
        space.product(space.values(batch), weights),
        rtol=0,
        atol=1e-12,
    )
    for record in records:
        indices, values = compact.transform_record(record)
        full_indices, full_values = space.transform_record(record)
        got = np.asarray(values) @ weights[kept][indices] if indices else np.zeros(2)
        want = np.asarray(full_values) @ weights[full_indices] if full_indices else np.zeros(2)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # The compacted space round-trips through the model file's description.
    again = FeatureSpace.from_dict(compact.to_dict(), SCHEMA)
    assert again.feature_names == compact.feature_names
