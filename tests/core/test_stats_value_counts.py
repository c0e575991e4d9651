"""Value counts of a column's batches (core.stats.value_counts): the cheaper counts of one-byte values and of
columns of few values are Arrow's counts, and the statistics that depend on the values' order get Arrow's."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_helpers import C, attribute, make_schema

from emrml.core.stats import StatisticsAccumulator
from emrml.core.stats import value_counts as counting
from emrml.core.stats.constants import FREQUENT_CAPACITY
from emrml.core.stats.value_counts import ValueCounts


def _as_dict(strings: pa.Array, counts: np.ndarray) -> dict[str | None, int]:
    assert len(strings) == len(counts) == len(set(strings.to_pylist()))
    return dict(zip(strings.to_pylist(), counts.tolist(), strict=True))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["0", "1", "y", "é", "", " a", "ab", "no", "yes", None]), max_size=30),
        min_size=1,
        max_size=8,
    )
)
def test_counts_are_arrows_batch_after_batch(batches: list[list[str | None]]) -> None:
    # One-byte values, a few values seen before, new values, empty strings, nulls, two-byte characters:
    # every batch's counts are those of Arrow's hashing, whichever way they were found.
    count = ValueCounts()
    for values in batches:
        column = pa.array(values, pa.string())
        counted = pc.value_counts(column)
        expected = dict(
            zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
        )
        assert _as_dict(*count(column)) == expected


def test_one_byte_values_and_few_values_are_counted_without_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    count = ValueCounts()
    first = pa.array(["yes", "no", "no", "unknown"])
    assert _as_dict(*count(first)) == {"yes": 1, "no": 2, "unknown": 1}

    def no_hashing(column: pa.Array) -> None:
        raise AssertionError("hashed")

    monkeypatch.setattr(counting, "value_counts", no_hashing)
    # The values of the batch before, compared with each: "unknown" is not there this time.
    assert _as_dict(*count(pa.array(["no", "yes", "yes"]))) == {"no": 1, "yes": 2}
    # Sliced, as batches are: only the slice's bytes count.
    assert _as_dict(*count(pa.array(["x", "1", "0", "1", "xx"]).slice(1, 3))) == {"0": 1, "1": 2}
    assert _as_dict(*ValueCounts()(pa.array(["7"] * 5 + ["3"]))) == {"7": 5, "3": 1}
    with pytest.raises(AssertionError, match="hashed"):
        count(pa.array(["no", "maybe"]))  # a new value: hashed after all


def test_a_categorical_column_near_its_sketch_capacity_keeps_arrows_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past its capacity the frequent-values sketch purges, and what it keeps depends on the order the values
    # came in: one-byte values whose bytes' order is not the order they first appear in, arriving when the
    # sketch is full, are counted as Arrow lists them.
    schema = make_schema(("c", C))
    known = [f"v{i}" for i in range(FREQUENT_CAPACITY - 2)] * 2
    late = [letter for count, letter in enumerate("kjihgfedcba", 1) for _ in range(count)]

    def statistics() -> dict[str, object]:
        accumulator = StatisticsAccumulator(schema)
        for at, values in enumerate((known, late)):
            keys = np.arange(len(values), dtype=np.uint64) + (at << 20)
            accumulator.update(pa.record_batch({"c": pa.array(values)}), keys)
        return attribute(accumulator.result(), "c")

    counted = statistics()
    monkeypatch.setattr(
        ValueCounts, "__call__", lambda self, column, any_order=True: counting.value_counts(column)
    )
    assert counted == statistics()
    assert counted["distinctCountExact"] is False


def test_a_batch_is_hashed_once_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    # A column of a thousand categories: its sketch may purge on every batch, so its values come in Arrow's
    # order, counted once per batch (not counted, then counted again in Arrow's order).
    hashed: list[int] = []
    value_counts = pc.value_counts

    def counted(column: pa.Array) -> pa.StructArray:
        hashed.append(len(column))
        return value_counts(column)

    monkeypatch.setattr(counting.pc, "value_counts", counted)
    schema = make_schema(("c", C))
    accumulator = StatisticsAccumulator(schema)
    for at in range(4):
        values = pa.array([f"c{i % 1000}" for i in range(2000)])
        accumulator.update(pa.record_batch({"c": values}), np.arange(2000, dtype=np.uint64) + 2000 * at)
    assert hashed == [2000] * 4
