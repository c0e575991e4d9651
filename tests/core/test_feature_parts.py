"""The batch featurizer's parts: a category's or bin's features through the batch's codes (``Coded``), and
the NUMERIC columns of a batch parsed together."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emrml.core.features import batch as batch_features
from emrml.core.features.layout import Parameters

_cells = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "1", "-2.5", " 3e2 ", ".5", "nan", "inf", "abc", "1,000", "0x10", "7."]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_cells, _cells, _cells), min_size=1, max_size=30))
def test_numeric_columns_parsed_together_equal_each_parsed_alone(rows: list[tuple[str | None, ...]]) -> None:
    # One column may hold an invalid value and another none: parsed together, each keeps its own verdicts.
    names = ["a", "b", "c"]
    batch = pa.RecordBatch.from_pydict(
        {name: pa.array([row[i] for row in rows], pa.string()) for i, name in enumerate(names)}
    )
    together = batch_features.BatchValues(batch, Parameters({}, {}))
    together.parse_numeric_columns([*names, "not-a-column", "a"])
    for name in names:
        got = together.numeric(name)
        expected = batch_features.parsed_numbers(batch.column(name), batch_features.parse_numeric)
        np.testing.assert_array_equal(got.codes, expected.codes)
        np.testing.assert_array_equal(got.values, expected.values)
        np.testing.assert_array_equal(got.absent, expected.absent)
        np.testing.assert_array_equal(got.invalid, expected.invalid)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(-1, 5), min_size=1, max_size=40),
    st.lists(st.integers(-1, 9), min_size=7, max_size=7),
    st.integers(0, 2**32 - 1),
)
def test_coded_parts_score_bit_for_bit_as_their_columns(
    codes: list[int], table: list[int], seed: int
) -> None:
    # Code -1 (a null) reads the table's last entry; an entry -1 is no feature. Weights per code, then per
    # row, add the same terms in the same order as weights per row: the sums are equal to the last bit.
    coded = batch_features.Coded(np.array(codes, dtype=np.int64), np.array(table, dtype=np.int64))
    other = batch_features.Single(np.arange(len(codes), dtype=np.int64) % 10, np.linspace(-3, 3, len(codes)))
    weights = np.random.default_rng(seed).normal(size=(10, 2)) * 1e3
    got = batch_features.dot_parts([other, coded, other], len(codes), weights)
    expected = batch_features.dot_parts([other, coded.single(), other], len(codes), weights)
    assert np.array_equal(got, expected)
    matrix = batch_features.assemble([coded], len(codes), 10)
    columns = np.array(table)[codes]
    assert matrix.indices.tolist() == columns[columns >= 0].tolist()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 40),
    st.integers(1, 12),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 3]),
    st.booleans(),
)
def test_marked_token_features_score_bit_for_bit_as_their_pairs(
    num_rows: int, width: int, seed: int, outputs: int, infinite: bool
) -> None:
    # Rows sum their features' weights in column order either way; a row without features scores 0. An
    # infinite weight (never trained, but a file may hold one) is scored through the pairs.
    rng = np.random.default_rng(seed)
    grid = rng.random((width, num_rows)) < rng.random()
    marks = batch_features.Marks(grid, start=2)
    weights = rng.normal(size=(width + 4, outputs)) * 10.0 ** rng.integers(-3, 4, size=(width + 4, 1))
    if infinite:
        weights[2 + rng.integers(width), 0] = np.inf
    got = batch_features.dot_parts([marks], num_rows, weights)
    bag = marks.bag()
    assert [(r, c) for r, c in zip(bag.rows.tolist(), bag.columns.tolist(), strict=True)] == sorted(
        (row, 2 + place) for place, row in zip(*np.nonzero(grid), strict=True)
    )
    expected = batch_features.dot_parts([bag], num_rows, weights)
    np.testing.assert_array_equal(got.view(np.int64), expected.view(np.int64))
    matrix = batch_features.assemble([marks], num_rows, width + 4)
    assert (matrix != batch_features.assemble([bag], num_rows, width + 4)).nnz == 0
