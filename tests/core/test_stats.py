"""Datasource statistics: hand-computed cases per type, agreement with numpy, merging, serialization, the
row sample, target correlation on the real bank data, and bounded state."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.core.stats import (
    QUANTILE_RANKS,
    StatisticsAccumulator,
    hash_strings,
    mutual_information,
    normalized_tokens,
    quantile_codes,
    splitmix64,
    target_codes,
)
from emrml.core.stats.accumulator import TEXT_BACKLOG, _BottomKSample, _row_bytes
from emrml.core.stats.constants import SAMPLE_BYTES, TOKEN_PUNCTUATION
from emrml.core.stats.correlation import word_correlations

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"

N = AttributeType.NUMERIC
B = AttributeType.BINARY
C = AttributeType.CATEGORICAL
T = AttributeType.TEXT


def make_schema(*columns: tuple[str, AttributeType], **roles: Any) -> Schema:
    return Schema(tuple(Attribute(name, kind) for name, kind in columns), **roles)


def feed(
    acc: StatisticsAccumulator, data: dict[str, list[str]], *, batch_rows: int = 1000, key0: int = 0
) -> None:
    table = pa.table({name: pa.array(values, type=pa.string()) for name, values in data.items()})
    keys = np.arange(key0, key0 + table.num_rows, dtype=np.uint64)
    for start in range(0, table.num_rows, batch_rows):
        batch = table.slice(start, batch_rows).combine_chunks().to_batches()[0]
        acc.update(batch, keys[start : start + batch.num_rows])


def stats_of(schema: Schema, data: dict[str, list[str]], **kwargs: Any) -> dict[str, Any]:
    acc = StatisticsAccumulator(schema, **kwargs)
    feed(acc, data)
    return acc.result()


def attribute(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in result["attributes"] if a["name"] == name)


def load_dataset(name: str) -> tuple[Schema, pa.Table]:
    path = DATASETS / name / "data.csv"
    spec = json.loads((DATASETS / name / "data.csv.schema").read_text())
    schema = Schema(
        tuple(Attribute(a["attributeName"], AttributeType(a["attributeType"])) for a in spec["attributes"]),
        target=spec.get("targetAttributeName"),
        has_header=True,
    )
    table = pacsv.read_csv(
        path, convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in schema.names})
    )
    return schema, table


def approx_equal(left: Any, right: Any, rel: float = 1e-9) -> bool:
    """Deep equality with a relative tolerance for floats (means and deviations depend on summation order)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(approx_equal(left[k], right[k], rel) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            approx_equal(a, b, rel) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=rel, abs_tol=1e-12)
    return bool(left == right)


# ------------------------------------------------------------------------------------ hand-computed


def test_text_statistics_follow_the_developer_guide_example() -> None:
    rows = ["The fox jumped over the fence.", "This movie is intriguing.", "", "Fascinating movie."]
    review = attribute(stats_of(make_schema(("review", T)), {"review": rows}), "review")
    assert review["totalWords"] == 12
    assert review["uniqueWords"] == 10
    assert review["uniqueWordsExact"] is True
    assert review["wordsPerRow"] == {"min": 0, "max": 6, "mean": 3.0}
    assert review["wordLength"] == {"min": 2, "max": 11}
    assert review["missingCount"] == 1
    # Without a target, prominent words are the most frequent ones.
    assert [w["word"] for w in review["prominentWords"][:2]] == ["movie", "the"]
    assert review["prominentWords"][0] == {"word": "movie", "count": 2, "targetCorrelation": None}


def test_word_lengths_count_characters_not_bytes() -> None:
    # Two bytes per character in Greek: lengths in bytes would be 8 and 10.
    rows = ["Οδός, καφές!", "ab"]
    review = attribute(stats_of(make_schema(("review", T)), {"review": rows}), "review")
    assert review["wordLength"] == {"min": 2, "max": 5}
    assert review["wordsPerRow"] == {"min": 1, "max": 2, "mean": 1.5}


def test_normalized_tokens_strip_punctuation_and_case() -> None:
    tokens, rows = normalized_tokens(pa.array(['"Hello,', "world!!", None, " -- ", "e-mail  ME."]))
    assert tokens.to_pylist() == ["hello", "world", "e-mail", "me"]
    assert rows.tolist() == [0, 1, 4, 4]


# Characters on which Python's and Arrow's lower-casing agree, with punctuation (ASCII and not), Arrow's
# and Python's whitespace, and the ASCII separators only Python calls whitespace.
_TEXT_ROWS = st.lists(st.text(alphabet="aAbBéÉΩ-,.!“”… \t\x1c", max_size=14), min_size=1, max_size=8)


@given(_TEXT_ROWS)
@settings(deadline=None)
def test_text_statistics_equal_plain_python_counts(rows: list[str]) -> None:
    # Tokens are normalized once per distinct token: the figures must equal normalizing every occurrence.
    review = attribute(stats_of(make_schema(("review", T)), {"review": rows}), "review")
    words = [[w for w in (t.strip(TOKEN_PUNCTUATION) for t in row.lower().split()) if w] for row in rows]
    flat = [w for row in words for w in row]
    assert review["totalWords"] == len(flat)
    assert review["uniqueWords"] == len(set(flat))
    assert (review["wordsPerRow"]["min"], review["wordsPerRow"]["max"]) == (
        min(map(len, words)),
        max(map(len, words)),
    )
    lengths = [len(w) for w in flat]
    assert (review["wordLength"]["min"], review["wordLength"]["max"]) == (
        (min(lengths), max(lengths)) if flat else (None, None)
    )
    counts = {w["word"]: w["count"] for w in review["prominentWords"]}
    assert counts == {w: flat.count(w) for w in counts}
    if len(set(flat)) <= 10:  # the default top_k: every word is listed
        assert set(counts) == set(flat)


def test_numeric_hand_computed() -> None:
    data = {"x": ["1", "2", "3", "4", "", " x", "nan", "1e400"]}
    x = attribute(stats_of(make_schema(("x", N)), data), "x")
    assert (x["missingCount"], x["invalidCount"], x["validCount"]) == (1, 3, 4)
    assert (x["min"], x["max"], x["mean"], x["median"]) == (1.0, 4.0, 2.5, 2.5)
    assert x["stddev"] == pytest.approx(math.sqrt(1.25))
    assert x["exact"] is True
    expected = np.quantile([1.0, 2.0, 3.0, 4.0], QUANTILE_RANKS)
    assert [x["quantiles"][str(r)] for r in QUANTILE_RANKS] == pytest.approx(expected.tolist())
    assert len(x["histogram"]["edges"]) == 21 and x["histogram"]["edges"][0] == 1.0
    assert x["histogram"]["edges"][-1] == 4.0
    counts = x["histogram"]["counts"]
    assert sum(counts) == 4 and counts[0] == 1 and counts[-1] == 1


def test_numeric_without_valid_values_and_constant_column() -> None:
    result = stats_of(make_schema(("empty", N), ("same", N)), {"empty": ["", "?"], "same": ["7", "7.0"]})
    empty = attribute(result, "empty")
    assert (empty["missingCount"], empty["invalidCount"], empty["validCount"]) == (1, 1, 0)
    assert empty["mean"] is None and empty["median"] is None
    assert empty["histogram"] == {"edges": [], "counts": []}
    same = attribute(result, "same")
    assert same["histogram"] == {"edges": [7.0, 7.0], "counts": [2]}
    assert same["stddev"] == 0.0


def test_binary_hand_computed() -> None:
    data = {"b": ["1", "0", "yes", "No", " TRUE ", "", "maybe", "f"]}
    b = attribute(stats_of(make_schema(("b", B)), data), "b")
    assert b["counts"] == {"0": 3, "1": 3}
    assert (b["missingCount"], b["invalidCount"]) == (1, 1)
    assert b["percentTrue"] == 50.0


def test_categorical_hand_computed() -> None:
    values = ["red"] * 5 + ["blue"] * 3 + ["green"] * 2 + ["pink", ""]
    c = attribute(stats_of(make_schema(("c", C)), {"c": values}, top_k=2), "c")
    assert c["missingCount"] == 1
    assert c["distinctCount"] == 4 and c["distinctCountExact"] is True
    assert c["topValues"] == [{"value": "red", "count": 5}, {"value": "blue", "count": 3}]
    assert c["otherCount"] == 3
    assert c["leastFrequent"] == [{"value": "pink", "count": 1}, {"value": "green", "count": 2}]


def test_categorical_values_are_counted_as_training_reads_them() -> None:
    """Training and prediction trim a CATEGORICAL value (" red" is "red", " " is missing): so do the
    statistics, or a blank-padded target shows classes that training then drops."""
    values = ["red", " red", "red ", "blue", "blue\t", " ", "  ", "", "green"]
    c = attribute(stats_of(make_schema(("c", C)), {"c": values}), "c")
    assert c["missingCount"] == 3
    assert c["distinctCount"] == 3
    assert c["topValues"] == [
        {"value": "red", "count": 3},
        {"value": "blue", "count": 2},
        {"value": "green", "count": 1},
    ]
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    schema = make_schema(("x", C), ("y", C), target="y")
    padded = {
        "x": [f" x{v} " if k % 2 else f"x{v}" for k, v in enumerate(y)],
        "y": [" " if k % 7 == 0 else (f"c{v} " if k % 3 else f"c{v}") for k, v in enumerate(y)],
    }
    result = stats_of(schema, padded)
    distribution = result["target"]["distribution"]
    assert distribution["distinctCount"] == 2 and distribution["missingCount"] == len(range(0, 3000, 7))
    # The padded and plain spellings are one value, so x still determines y (log 2 nats).
    assert attribute(result, "x")["targetCorrelation"] == pytest.approx(math.log(2), abs=0.01)


def test_roles_type_counts_and_target_distribution() -> None:
    schema = make_schema(
        ("id", C),
        ("w", N),
        ("gone", C),
        ("x", N),
        ("y", B),
        target="y",
        row_id="id",
        row_weight="w",
        excluded=("gone",),
    )
    data = {
        "id": ["a", "b", "c", "d"],
        "w": ["1"] * 4,
        "gone": ["q"] * 4,
        "x": ["1", "2", "3", "4"],
        "y": ["0", "0", "1", "1"],
    }
    result = stats_of(schema, data)
    assert result["recordCount"] == 4
    assert result["attributeTypeCounts"] == {"BINARY": 1, "CATEGORICAL": 2, "NUMERIC": 2, "TEXT": 0}
    roles = {a["name"]: a["role"] for a in result["attributes"]}
    assert roles == {"id": "rowId", "w": "rowWeight", "gone": "excluded", "x": "input", "y": "target"}
    assert [a["name"] for a in result["attributes"] if "targetCorrelation" in a] == ["x"]
    assert result["target"] == {
        "name": "y",
        "type": "BINARY",
        "distribution": {
            "missingCount": 0,
            "invalidCount": 0,
            "counts": {"0": 2, "1": 2},
            "percentTrue": 50.0,
        },
        "entropy": pytest.approx(math.log(2) + 1 / 8),
    }
    json.dumps(result, allow_nan=False)


def test_without_usable_target_there_are_no_correlations() -> None:
    result = stats_of(make_schema(("x", N)), {"x": ["1", "2"]})
    assert result["target"] is None
    assert attribute(result, "x")["targetCorrelation"] is None
    text_target = stats_of(make_schema(("x", N), ("t", T), target="t"), {"x": ["1", "2"], "t": ["a b", "c"]})
    assert attribute(text_target, "x")["targetCorrelation"] is None
    assert text_target["target"]["entropy"] is None
    assert text_target["target"]["distribution"]["totalWords"] == 3


# ------------------------------------------------------------------------------- agreement with numpy


def test_numeric_agrees_with_numpy_on_continuous_data() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(3.0, 1.0, 60_000)
    x = attribute(stats_of(make_schema(("x", N)), {"x": [str(v) for v in values]}), "x")
    assert x["exact"] is False  # far more distinct values than the exact map holds
    assert x["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert x["stddev"] == pytest.approx(values.std(), rel=1e-12)
    assert (x["min"], x["max"]) == (values.min(), values.max())
    ordered = np.sort(values)
    for rank in (*QUANTILE_RANKS, 0.5):
        reported = x["median"] if rank == 0.5 else x["quantiles"][str(rank)]
        true_rank = np.searchsorted(ordered, reported) / len(ordered)
        assert abs(true_rank - rank) < 0.02
    counts = np.asarray(x["histogram"]["counts"])
    exact, _ = np.histogram(values, bins=np.asarray(x["histogram"]["edges"]))
    assert counts.sum() == len(values)
    assert np.abs(counts - exact).max() < 0.02 * len(values)
    # The sketch's answers are the same on every run over the same data.
    assert attribute(stats_of(make_schema(("x", N)), {"x": [str(v) for v in values]}), "x") == x


def test_numeric_integer_data_is_exact() -> None:
    rng = np.random.default_rng(8)
    values = rng.integers(-500, 500, 30_000)
    x = attribute(stats_of(make_schema(("x", N)), {"x": [str(v) for v in values]}), "x")
    assert x["exact"] is True
    assert [x["quantiles"][str(r)] for r in QUANTILE_RANKS] == np.quantile(values, QUANTILE_RANKS).tolist()
    assert x["median"] == float(np.median(values))
    exact, _ = np.histogram(values, bins=np.asarray(x["histogram"]["edges"]))
    assert x["histogram"]["counts"] == exact.tolist()


def test_high_cardinality_categorical_estimates() -> None:
    rng = np.random.default_rng(9)
    ids = [f"customer-{i}" for i in range(40_000)]
    heavy = ["alpha"] * 3000 + ["beta"] * 2000
    values = [*ids, *heavy]
    rng.shuffle(values)
    c = attribute(stats_of(make_schema(("c", C)), {"c": values}), "c")
    assert c["distinctCountExact"] is False
    assert c["distinctCount"] == pytest.approx(40_002, rel=0.03)
    assert c["topValues"][0]["value"] == "alpha" and c["topValues"][1]["value"] == "beta"
    assert c["topValues"][0]["count"] == pytest.approx(3000, rel=0.05)
    assert c["leastFrequent"] == []


@pytest.mark.parametrize(("distinct", "exact"), [(1536, True), (1537, False)])
def test_distinct_count_is_exact_while_every_value_is_held(distinct: int, exact: bool) -> None:
    values = [f"v{i % distinct}" for i in range(3 * distinct)]
    c = attribute(stats_of(make_schema(("c", C)), {"c": values}), "c")
    assert c["distinctCountExact"] is exact
    if exact:
        assert c["distinctCount"] == distinct
        assert all(v["count"] == 3 for v in c["topValues"])
    else:
        assert c["distinctCount"] == pytest.approx(distinct, rel=0.02)


def test_hash_strings_is_stable_and_distinguishes_values() -> None:
    values = pa.array(["", "a", "b", "ab", "ba", "a\x00", "héllo", "a"])
    hashes = hash_strings(values)
    assert hashes[1] == hashes[7]
    assert len(set(hashes[:7].tolist())) == 7
    # Slices hash like the values themselves.
    assert hash_strings(values.slice(3, 2)).tolist() == hashes[3:5].tolist()


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


# ------------------------------------------------------------------------------------ mutual information


def test_mutual_information_basics() -> None:
    rng = np.random.default_rng(10)
    x = rng.integers(0, 4, 20_000)
    assert mutual_information(x, x) == pytest.approx(math.log(4), abs=0.01)
    assert mutual_information(x, rng.integers(0, 2, 20_000)) < 0.001
    assert mutual_information(np.zeros(0), np.zeros(0)) == 0.0


_sample_texts = st.lists(st.sampled_from(["Rate", "rate,", "fee", "FEE!", "the", "!!", "naïve"]), max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_sample_texts, st.integers(3, 6)), min_size=1, max_size=40))
def test_word_correlations_are_each_words_mutual_information(rows: list[tuple[list[str], int]]) -> None:
    # All words' tables are built at once; each score must be exactly the mutual information of that
    # word's presence per row (a word twice in a row counts once) with the target codes.
    texts = [" ".join(words) for words, _ in rows]
    y = np.array([target for _, target in rows], dtype=np.int64)
    words = ["rate", "fee", "the", "naïve", "absent"]
    scores = word_correlations(pa.array(texts), words, y)
    for word in words:
        presence = np.array(
            [word in [t.strip(TOKEN_PUNCTUATION) for t in text.lower().split()] for text in texts]
        )
        assert scores[word] == mutual_information(presence.astype(np.int64), y)


def test_quantile_and_target_codes() -> None:
    assert quantile_codes(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist() == [0, 0, 1, 1]
    # Coinciding edges merge; a value goes to the first bin whose upper edge is >= it.
    assert quantile_codes(np.array([5.0] * 9 + [6.0]), 10).tolist() == [0] * 9 + [2]
    codes = quantile_codes(np.arange(1.0, 101.0), 10)
    assert np.bincount(codes).tolist() == [10] * 10
    assert target_codes(pa.array(["1", "no", "", "x"]), B).tolist() == [1, 0, -1, -1]
    categorical = target_codes(pa.array(["a", "b", "", "a"]), C)
    assert categorical[0] == categorical[3] != categorical[1] and categorical[2] == -1
    with pytest.raises(ValueError, match="cannot be a target"):
        target_codes(pa.array(["words"]), T)


def test_target_correlation_on_bank_marketing() -> None:
    schema, table = load_dataset("bank_marketing")
    rng = np.random.default_rng(11)
    shuffled = table.column("duration").take(pa.array(rng.permutation(table.num_rows)))
    table = table.append_column("duration_shuffled", shuffled)
    schema = Schema((*schema.attributes, Attribute("duration_shuffled", N)), target="y")
    acc = StatisticsAccumulator(schema)
    for i, batch in enumerate(table.to_batches(max_chunksize=10_000)):
        acc.update(batch, np.arange(i * 10_000, i * 10_000 + batch.num_rows, dtype=np.uint64))
    result = acc.result()
    correlation = {a["name"]: a["targetCorrelation"] for a in result["attributes"] if a["role"] == "input"}
    assert correlation["duration"] > 0.05
    assert correlation["duration"] > 10 * correlation["day_of_week"]
    assert correlation["duration_shuffled"] < 0.003
    assert correlation["pdays"] > 0.01  # the 999 "never contacted" mass point is informative
    target = result["target"]["distribution"]
    assert target["counts"] == {"0": 36548, "1": 4640}
    assert acc.sample_table().num_rows == 20_000


def test_text_prominent_words_rank_by_target_correlation() -> None:
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 2, 4000)
    filler = ["the", "a", "of", "and"]
    texts = [" ".join([*rng.choice(filler, 6), "refund" if y else "thanks"]) for y in labels]
    schema = make_schema(("t", T), ("y", B), target="y")
    result = stats_of(schema, {"t": texts, "y": [str(v) for v in labels]}, top_k=3)
    t = attribute(result, "t")
    assert {w["word"] for w in t["prominentWords"][:2]} == {"refund", "thanks"}
    assert t["prominentWords"][0]["targetCorrelation"] == pytest.approx(math.log(2), abs=0.01)
    assert t["targetCorrelation"] == t["prominentWords"][0]["targetCorrelation"]


def test_categorical_target() -> None:
    rng = np.random.default_rng(14)
    y = rng.integers(0, 3, 6000)
    schema = make_schema(("same", C), ("flag", B), ("noise", C), ("y", C), target="y")
    data = {
        "same": [f"s{v}" for v in y],
        "flag": [str(int(v == 2)) for v in y],
        "noise": [f"n{v}" for v in rng.integers(0, 20, 6000)],
        "y": [f"class{v}" for v in y],
    }
    result = stats_of(schema, data)
    assert attribute(result, "same")["targetCorrelation"] == pytest.approx(math.log(3), abs=0.01)
    assert 0.3 < attribute(result, "flag")["targetCorrelation"] < math.log(3)
    assert attribute(result, "noise")["targetCorrelation"] < 0.005
    assert result["target"]["distribution"]["distinctCount"] == 3
    # The target's entropy on the sample (Miller-Madow, as the correlations): what "same", which
    # determines it, reaches.
    shares = np.bincount(y) / len(y)
    plug_in = -(shares * np.log(shares)).sum()
    assert result["target"]["entropy"] == pytest.approx(plug_in + 2 / (2 * len(y)))
    assert attribute(result, "same")["targetCorrelation"] == pytest.approx(result["target"]["entropy"])


def test_numeric_target_is_discretised() -> None:
    rng = np.random.default_rng(13)
    x = rng.normal(size=5000)
    y = 3 * x + rng.normal(scale=0.1, size=5000)
    noise = rng.normal(size=5000)
    schema = make_schema(("x", N), ("noise", N), ("y", N), target="y")
    result = stats_of(
        schema, {"x": [str(v) for v in x], "noise": [str(v) for v in noise], "y": [str(v) for v in y]}
    )
    assert attribute(result, "x")["targetCorrelation"] > 1.0
    assert attribute(result, "noise")["targetCorrelation"] < 0.02
    assert result["target"]["distribution"]["validCount"] == 5000
    # Ten quantile bins of the target, equally full: log 10 nats, of which the nearly exact x has most.
    assert result["target"]["entropy"] == pytest.approx(math.log(10) + 9 / 10_000)
    assert attribute(result, "x")["targetCorrelation"] > 0.5 * result["target"]["entropy"]


# ------------------------------------------------------------------------------ a second thread


def test_text_columns_on_a_second_thread_give_the_same_statistics() -> None:
    schema, table = load_dataset("sms_spam")
    plain, threaded = StatisticsAccumulator(schema), StatisticsAccumulator(schema)
    keys = np.arange(table.num_rows, dtype=np.uint64)
    with ThreadPoolExecutor(1) as executor:
        for start in range(0, table.num_rows, 700):
            batch = table.slice(start, 700).combine_chunks().to_batches()[0]
            plain.update(batch, keys[start : start + batch.num_rows])
            threaded.update(batch, keys[start : start + batch.num_rows], executor=executor)
    assert threaded.result() == plain.result()


def test_correlations_scored_on_two_threads_equal_those_scored_on_one() -> None:
    schema, table = load_dataset("bank_marketing")
    notes = pc.binary_join_element_wise(table.column("job"), table.column("poutcome"), "x, ", " ")
    table = table.append_column("notes", notes)
    schema = Schema((*schema.attributes, Attribute("notes", T)), target="y")
    acc = StatisticsAccumulator(schema)
    for i, batch in enumerate(table.to_batches(max_chunksize=10_000)):
        acc.update(batch, np.arange(i * 10_000, i * 10_000 + batch.num_rows, dtype=np.uint64))
    one = acc.result()
    with ThreadPoolExecutor(1) as executor:
        two = acc.result(executor=executor)
    assert json.dumps(two) == json.dumps(one)
    assert attribute(two, "notes")["prominentWords"][0]["targetCorrelation"] is not None


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


def test_an_error_on_the_second_thread_reaches_the_caller() -> None:
    schema = make_schema(("n", N), ("t", T))
    accumulator = StatisticsAccumulator(schema)
    batch = pa.record_batch({"n": pa.array(["1"]), "t": pa.array(["a b"])})

    class Broken(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            def fail() -> None:
                raise RuntimeError("text statistics failed")

            return super().submit(fail)

    # The TEXT work may lag a few batches: its error comes out of a later update at the latest ...
    with Broken(1) as executor, pytest.raises(RuntimeError, match="text statistics failed"):
        for key in range(TEXT_BACKLOG + 1):
            accumulator.update(batch, np.array([key], dtype=np.uint64), executor=executor)
        pytest.fail("the error did not reach the caller")
    # ... or out of settle(), which the engine calls before reading the statistics.
    accumulator = StatisticsAccumulator(schema)
    with Broken(1) as executor:
        accumulator.update(batch, np.array([0], dtype=np.uint64), executor=executor)
        with pytest.raises(RuntimeError, match="text statistics failed"):
            accumulator.settle()


def test_numbers_near_the_float_range_give_json_statistics() -> None:
    # Squares of 1e200 and the width of [-1.7e308, 1.7e308] overflow: those figures are None, the rest
    # stay, and the whole result is strict JSON (GetDataSourceStatistics answered a 500 before).
    schema = make_schema(("wide", N), ("square", N), ("y", B), target="y")
    accumulator = StatisticsAccumulator(schema)
    batch = pa.record_batch(
        {
            "wide": pa.array(["1.7e308", "-1.7e308", "1", "2"]),
            "square": pa.array(["1e200", "-1e200", "3", "4"]),
            "y": pa.array(["0", "1", "0", "1"]),
        }
    )
    accumulator.update(batch, np.arange(4, dtype=np.uint64))
    result = json.loads(json.dumps(accumulator.result(), allow_nan=False))
    wide, square = result["attributes"][0], result["attributes"][1]
    assert (wide["min"], wide["max"], wide["histogram"]) == (-1.7e308, 1.7e308, {"edges": [], "counts": []})
    assert square["stddev"] is None and square["mean"] is not None
    assert square["histogram"]["counts"] and sum(square["histogram"]["counts"]) == 4
