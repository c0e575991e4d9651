"""Datasource statistics: merging, serialization, the row sample, and bounded state."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_helpers import B, C, N, T, approx_equal, attribute, feed, make_schema

from emrml.core.stats import StatisticsAccumulator, splitmix64
from emrml.core.stats.accumulator import _BottomKSample, _row_bytes
from emrml.core.stats.constants import SAMPLE_BYTES

# ----------------------------------------------------------------------------- merge and serialization


MIXED = make_schema(("n", N), ("b", B), ("c", C), ("t", T), ("y", C), target="y")


def mixed_data(rows: int, seed: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    words = ["alpha", "Beta", "gamma.", "delta,", "EPSILON"]
    return {
        "n": [str(v) if v % 17 else "" for v in rng.integers(0, 300, rows)],
        "b": [["0", "1", "yes", "", "bad"][v] for v in rng.integers(0, 5, rows)],
        "c": [f"cat{v}" if v else "" for v in rng.integers(0, 40, rows)],
        "t": [" ".join(rng.choice(words, int(k))) for k in rng.integers(0, 6, rows)],
        "y": [f"class{v}" for v in rng.integers(0, 3, rows)],
    }


def split(data: dict[str, list[str]], cut: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    return {k: v[:cut] for k, v in data.items()}, {k: v[cut:] for k, v in data.items()}


@settings(max_examples=12, deadline=None)
@given(cut=st.integers(0, 600), batch_rows=st.integers(9, 700))
def test_merge_equals_one_pass(cut: int, batch_rows: int) -> None:
    data = mixed_data(600, seed=1)
    whole = StatisticsAccumulator(MIXED, sample_size=200)
    feed(whole, data, batch_rows=batch_rows)
    first, second = split(data, cut)
    left = StatisticsAccumulator(MIXED, sample_size=200)
    right = StatisticsAccumulator(MIXED, sample_size=200)
    feed(left, first, batch_rows=batch_rows)
    feed(right, second, batch_rows=batch_rows, key0=cut)
    left.merge(right)
    assert approx_equal(left.result(), whole.result())
    assert left.sample_table().equals(whole.sample_table())


def test_merge_of_sketch_mode_numeric_with_exact_mode() -> None:
    rng = np.random.default_rng(3)
    continuous = rng.normal(0.0, 1.0, 20_000)
    schema = make_schema(("x", N))
    sketched = StatisticsAccumulator(schema)
    feed(sketched, {"x": [str(v) for v in continuous]}, batch_rows=5000)
    small = StatisticsAccumulator(schema)
    feed(small, {"x": ["100", "101", "", "oops"]}, key0=10**6)
    one_way = StatisticsAccumulator.from_bytes(schema, sketched.to_bytes())
    one_way.merge(small)
    other_way = StatisticsAccumulator.from_bytes(schema, small.to_bytes())
    other_way.merge(sketched)
    every = np.concatenate([continuous, [100.0, 101.0]])
    for merged in (one_way, other_way):
        x = attribute(merged.result(), "x")
        assert x["exact"] is False
        assert (x["validCount"], x["max"], x["min"]) == (20_002, 101.0, continuous.min())
        assert (x["missingCount"], x["invalidCount"]) == (1, 1)
        assert x["mean"] == pytest.approx(every.mean(), rel=1e-12)
        assert x["stddev"] == pytest.approx(every.std(), rel=1e-12)
        assert np.searchsorted(np.sort(every), x["quantiles"]["0.99"]) / every.size == pytest.approx(
            0.99, abs=0.01
        )


@pytest.mark.parametrize(("offset", "exact"), [(500, True), (1000, False)])
def test_merged_distinct_counts(offset: int, exact: bool) -> None:
    schema = make_schema(("c", C))
    left, right = StatisticsAccumulator(schema), StatisticsAccumulator(schema)
    feed(left, {"c": [f"v{i}" for i in range(1000)]})
    feed(right, {"c": [f"v{i}" for i in range(offset, offset + 1000)]}, key0=10_000)
    left.merge(right)
    c = attribute(left.result(), "c")
    assert c["distinctCountExact"] is exact
    assert c["distinctCount"] == pytest.approx(offset + 1000, rel=0 if exact else 0.02)


def test_merge_rejects_other_schemas() -> None:
    with pytest.raises(ValueError, match="different schemas"):
        StatisticsAccumulator(MIXED).merge(StatisticsAccumulator(make_schema(("n", N))))


def test_serialization_round_trip_and_continue() -> None:
    data = mixed_data(3000, seed=2)
    first, second = split(data, 1500)
    original = StatisticsAccumulator(MIXED, sample_size=500)
    feed(original, first, batch_rows=400)
    restored = StatisticsAccumulator.from_bytes(MIXED, original.to_bytes())
    assert restored.result() == original.result()
    assert restored.sample_table().equals(original.sample_table())
    for acc in (original, restored):
        feed(acc, second, batch_rows=400, key0=1500)
    assert restored.result() == original.result()
    assert b"pickle" not in original.to_bytes()
    json.loads(original.to_bytes())


def test_serialization_round_trip_in_sketch_modes() -> None:
    rng = np.random.default_rng(4)
    schema = make_schema(("x", N), ("c", C), ("t", T))
    acc = StatisticsAccumulator(schema)
    feed(
        acc,
        {
            "x": [str(v) for v in rng.normal(size=10_000)],
            "c": [f"id{i}" for i in range(10_000)],
            "t": [f"w{i} w{i + 1}" for i in range(10_000)],
        },
        batch_rows=2500,
    )
    restored = StatisticsAccumulator.from_bytes(schema, acc.to_bytes())
    result = acc.result()
    assert attribute(result, "x")["exact"] is False and attribute(result, "c")["distinctCountExact"] is False
    assert restored.result() == result


def test_from_bytes_rejects_bad_state() -> None:
    with pytest.raises(ValueError, match="invalid statistics state"):
        StatisticsAccumulator.from_bytes(MIXED, b"{not json")
    with pytest.raises(ValueError, match="invalid statistics state"):
        StatisticsAccumulator.from_bytes(make_schema(("other", N)), StatisticsAccumulator(MIXED).to_bytes())


def test_update_checks_its_inputs() -> None:
    acc = StatisticsAccumulator(MIXED)
    batch = pa.record_batch({"n": pa.array(["1"])})
    with pytest.raises(ValueError, match="no column for attribute"):
        acc.update(batch, np.zeros(1, dtype=np.uint64))
    full = pa.record_batch({name: pa.array(["1"]) for name in MIXED.names})
    with pytest.raises(ValueError, match="row_keys"):
        acc.update(full, np.zeros(2, dtype=np.uint64))


# ---------------------------------------------------------------------------------------- the sample


def test_sample_is_independent_of_batches_and_order() -> None:
    data = mixed_data(5000, seed=5)
    table = pa.table({k: pa.array(v) for k, v in data.items()})
    keys = np.arange(5000, dtype=np.uint64) * 7919
    samples = []
    for batch_rows, reverse in ((5000, False), (333, False), (1000, True)):
        acc = StatisticsAccumulator(MIXED, sample_size=400)
        starts = list(range(0, 5000, batch_rows))
        for start in reversed(starts) if reverse else starts:
            acc.update(
                table.slice(start, batch_rows).combine_chunks().to_batches()[0],
                keys[start : start + batch_rows],
            )
        samples.append(acc.sample_table())
    assert samples[0].num_rows == 400
    assert samples[0].column_names == ["n", "b", "c", "t", "y"]
    assert all(sample.equals(samples[0]) for sample in samples[1:])
    # The sample is the 400 rows with the smallest key hashes, in hash order.
    assert samples[0].equals(table.take(np.argsort(splitmix64(keys))[:400]))


@pytest.mark.parametrize("spill", [1, 2, 4])
def test_the_sample_gathers_its_candidates_without_changing_them(spill: int) -> None:
    # Whenever the candidates are gathered (every time past the sample's size, or never), the sample is
    # the rows with the smallest hashes, and candidates never exceed spill + 1 samples.
    rows = 20_000
    table = pa.table({"i": pa.array([str(i) for i in range(rows)])})
    hashes = splitmix64(np.arange(rows, dtype=np.uint64) * 31)
    sample = _BottomKSample(300, table.schema, spill=spill)
    most = 0
    for start in range(0, rows, 700):
        sample.offer(hashes[start : start + 700], table.slice(start, 700).to_batches()[0])
        most = max(most, len(sample.hashes))
    assert most <= (spill + 1) * 300 + 700
    kept, rows_kept = sample.sorted()
    best = np.argsort(hashes)[:300]
    assert np.array_equal(kept, hashes[best])
    assert rows_kept.equals(table.take(pa.array(best)))


@settings(max_examples=20, deadline=None)
@given(
    widths=st.lists(st.integers(0, 400), min_size=1, max_size=300),
    cut=st.integers(0, 300),
    batch_rows=st.integers(1, 80),
    max_bytes=st.integers(1, 6_000),
)
def test_the_sample_is_the_hash_prefix_within_its_byte_bound_however_fed(
    widths: list[int], cut: int, batch_rows: int, max_bytes: int
) -> None:
    # Wide rows fill the byte bound before the row bound: the sample is the longest prefix in hash order
    # within both (at least one row), the same when fed in other batches or as two merged partitions.
    table = pa.table({"t": pa.array(["x" * width for width in widths])})
    hashes = splitmix64(np.arange(len(widths), dtype=np.uint64) * 7)
    order = np.argsort(hashes)
    fitting = int(np.searchsorted(np.cumsum(np.array(widths)[order]), max_bytes, side="right"))
    expected = order[: max(1, min(fitting, 50))]

    def fed(rows: range) -> _BottomKSample:
        sample = _BottomKSample(50, table.schema, max_bytes=max_bytes, spill=2)
        for start in range(rows.start, rows.stop, batch_rows):
            stop = min(start + batch_rows, rows.stop)
            sample.offer(hashes[start:stop], table.slice(start, stop - start).to_batches()[0])
        return sample

    whole = fed(range(len(widths)))
    left, right = fed(range(min(cut, len(widths)))), fed(range(min(cut, len(widths)), len(widths)))
    left.merge(right)
    for sample in (whole, left):
        kept, rows_kept = sample.sorted()
        assert np.array_equal(kept, hashes[expected])
        assert rows_kept.equals(table.take(pa.array(expected)))


def test_a_sample_of_wide_text_rows_is_bounded_by_bytes_not_rows() -> None:
    # 1,000 rows of 20 KB: a sample of 20,000 rows would hold them all (20 MB) and more as data grows.
    schema = make_schema(("t", T), ("y", B), target="y")
    text = " ".join(f"w{i}" for i in range(4_000))[:20_000]
    acc = StatisticsAccumulator(schema)
    for start in range(0, 1_000, 100):
        batch = pa.record_batch({"t": pa.array([text] * 100), "y": pa.array(["1", "0"] * 50)})
        acc.update(batch, np.arange(start, start + 100, dtype=np.uint64))
    sample = acc.sample_table()
    assert 0 < sample.num_rows < 1_000
    values = sum(pc.sum(pc.binary_length(column)).as_py() for column in sample.columns)
    assert values <= SAMPLE_BYTES
    assert acc.result()["recordCount"] == 1_000


def test_state_stays_bounded_over_two_million_rows() -> None:
    schema = make_schema(("x", N), ("c", C), ("y", B), target="y")
    rng = np.random.default_rng(6)
    batch = pa.record_batch(
        {
            "x": pa.array([str(v) for v in rng.integers(0, 1000, 50_000)]),
            "c": pa.array([f"c{v}" for v in rng.integers(0, 100, 50_000)]),
            "y": pa.array([str(v) for v in rng.integers(0, 2, 50_000)]),
        }
    )
    acc = StatisticsAccumulator(schema, sample_size=1000)
    state_bytes, arrow_bytes = {}, {}
    for i in range(40):
        acc.update(batch, np.arange(i * 50_000, (i + 1) * 50_000, dtype=np.uint64))
        if i in (3, 39):
            state_bytes[i] = len(acc.to_bytes())
            arrow_bytes[i] = pa.total_allocated_bytes()
    assert acc.result()["recordCount"] == 2_000_000
    assert acc.sample_table().num_rows == 1000
    assert state_bytes[39] < 1.1 * state_bytes[3]
    assert arrow_bytes[39] < arrow_bytes[3] + 1_000_000


def test_row_bytes_of_the_sample_count_each_value_once_and_nulls_as_empty() -> None:
    values = pa.array(["ab", None, "", "héllo", "x"], type=pa.string())
    table = pa.table(
        {
            "plain": pa.chunked_array([values.slice(2, 2), values.slice(0, 1), pa.array(["yy", "z"])]),
            "nulls": pa.chunked_array([values]),
            "sliced": pa.chunked_array([pa.array(["skip", "a", "bb", "ccc", "dddd", "e"]).slice(1)]),
        }
    )
    expected = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        expected += pc.fill_null(pc.binary_length(column), 0).to_numpy()
    assert _row_bytes(table).tolist() == expected.tolist() == [3, 8, 5, 12, 3]
    assert _row_bytes(table.to_batches()[0]).tolist() == expected[:2].tolist()


def test_the_sample_read_before_more_rows_or_a_merge_is_read_anew_after() -> None:
    schema = make_schema(("x", C), ("y", B), target="y")
    data = {"x": [f"v{i % 7}" for i in range(3000)], "y": [str(i % 2) for i in range(3000)]}
    whole = StatisticsAccumulator(schema, sample_size=500)
    feed(whole, data)
    first = {name: values[:1000] for name, values in data.items()}
    rest = {name: values[1000:] for name, values in data.items()}
    fed, merged, other = (StatisticsAccumulator(schema, sample_size=500) for _ in range(3))
    feed(fed, first)
    feed(merged, first)
    feed(other, rest, key0=1000)
    before = fed.sample_table()
    assert fed.sample_table() is before  # read twice, gathered once
    feed(fed, rest, key0=1000)
    merged.sample_table()
    merged.merge(other)
    assert fed.sample_table().equals(whole.sample_table())
    assert merged.sample_table().equals(whole.sample_table())
    assert not before.equals(whole.sample_table())
