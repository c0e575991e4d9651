"""Datasource statistics: mutual information and target correlation (on the real bank data too), and the
work done on a second thread."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_helpers import B, C, N, T, attribute, load_dataset, make_schema, stats_of

from emrml.core.schema import Attribute, Schema
from emrml.core.stats import StatisticsAccumulator, mutual_information, quantile_codes, target_codes
from emrml.core.stats.accumulator import TEXT_BACKLOG
from emrml.core.stats.constants import TOKEN_PUNCTUATION
from emrml.core.stats.correlation import word_correlations

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
