"""Datasource statistics per attribute type: hand-computed cases, agreement with numpy, numbers near the
float range."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_helpers import B, C, N, T, attribute, make_schema, stats_of

from emrml.core.stats import QUANTILE_RANKS, StatisticsAccumulator, hash_strings, normalized_tokens
from emrml.core.stats.constants import TOKEN_PUNCTUATION

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
