"""Recipe transformations: the spec's examples, and the scalar and vectorized paths agreeing exactly."""

from __future__ import annotations

import string
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrml.core.recipe import arrays as ta
from emrml.core.recipe import transforms as tf


def _vectorized(texts: list[str | None], *steps: object) -> list[list[str]]:
    tokens = ta.tokenize_array(pa.array(texts, pa.string()))
    for step in steps:
        tokens = step(tokens)  # type: ignore[operator]
    return tokens.to_lists()


# --- The spec's examples (6.2, 5.2), through both paths -----------------------------------------------------


def test_tokens_split_on_whitespace_only() -> None:
    assert tf.tokenize("email-subject here") == ["email-subject", "here"]
    assert tf.tokenize("red, green, blue") == ["red,", "green,", "blue"]
    assert _vectorized(["email-subject here", "red, green, blue"]) == [
        ["email-subject", "here"],
        ["red,", "green,", "blue"],
    ]


def test_ngram_example() -> None:
    expected = {
        "I", "really", "enjoyed", "reading", "this", "book",
        "I really", "really enjoyed", "enjoyed reading", "reading this", "this book",
    }  # fmt: skip
    text = "I really enjoyed reading this book"
    assert set(tf.ngrams(tf.tokenize(text), 2)) == expected
    assert len(tf.ngrams(tf.tokenize(text), 2)) == 11
    assert _vectorized([text], lambda t: ta.ngrams_array(t, 2)) == [tf.ngrams(tf.tokenize(text), 2)]


def test_ngram_keeps_punctuation_attached() -> None:
    # The DG prints "blue," here; the whitespace rule gives "blue" (spec 6.2).
    grams = tf.ngrams(tf.tokenize("red, green, blue"), 2)
    assert grams == ["red,", "green,", "blue", "red, green,", "green, blue"]
    assert tf.ngrams(tf.tokenize("a b c"), 10) == ["a", "b", "c", "a b", "b c", "a b c"]


def test_osb_example() -> None:
    text = "The quick brown fox jumps over the lazy dog"
    pairs = tf.osb(tf.tokenize(text), 4)
    expected_start = {"The_quick", "The__brown", "The___fox", "quick_brown", "quick__fox", "quick___jumps"}
    expected_end = {"over_the", "over__lazy", "over___dog", "the_lazy", "the__dog", "lazy_dog"}
    assert expected_start <= set(pairs) and expected_end <= set(pairs)
    # 9 tokens: 8 + 7 + 6 pairs at distances 1, 2, 3; windows shrink at the end.
    assert len(pairs) == 21 and "fox___the" in pairs and "over___dog" in pairs
    assert not any(pair.count("_") > 3 for pair in pairs)
    assert _vectorized([text], lambda t: ta.osb_array(t, 4)) == [pairs]


def test_no_punct_example() -> None:
    text = "Welcome to AML - please fasten your seat-belts!"
    expected = ["Welcome", "to", "AML", "please", "fasten", "your", "seat-belts"]
    assert tf.no_punct(tf.tokenize(text)) == expected
    assert _vectorized([text], ta.no_punct_array) == [expected]


def test_no_punct_strips_unicode_punctuation_and_symbols() -> None:
    tokens = ["«film»", "$100", "100%", "😀hi😀", "¿qué?", "…", "a+b", "(x)", "—", "don't"]
    expected = ["film", "100", "100", "hi", "qué", "a+b", "x", "don't"]
    assert tf.no_punct(tokens) == expected
    assert _vectorized([" ".join(tokens)], ta.no_punct_array) == [expected]


def test_cartesian_examples() -> None:
    assert tf.cartesian(["university.degree"], ["technician"]) == ["university.degree_technician"]
    title = tf.no_punct(tf.tokenize("Fun With Problems"))
    assert tf.cartesian(title, ["Softcover"]) == ["Fun_Softcover", "With_Softcover", "Problems_Softcover"]
    left = ta.tokenize_array(pa.array(["Fun With Problems", "", "a b"]))
    right = ta.single_tokens(pa.array(["Softcover", "Hardcover", None]))
    assert ta.cartesian_array(left, right).to_lists() == [
        ["Fun_Softcover", "With_Softcover", "Problems_Softcover"],
        [],
        [],
    ]


def test_cartesian_of_three_varies_the_first_slowest() -> None:
    assert tf.cartesian(["a", "b"], ["x"], ["1", "2"]) == ["a_x_1", "a_x_2", "b_x_1", "b_x_2"]
    arrays = [ta.tokenize_array(pa.array([text])) for text in ("a b", "x", "1 2")]
    assert ta.cartesian_array(*arrays).to_lists() == [["a_x_1", "a_x_2", "b_x_1", "b_x_2"]]


def test_lowercase_uses_full_unicode_case_mapping_in_both_paths() -> None:
    texts = ["İSTANBUL", "ΟΔΟΣ ΟΔΟΣ", "STRASSE Straße", "ǅ", "ABC"]
    expected = [text.lower() for text in texts]
    assert [tf.lowercase(text) for text in texts] == expected
    assert ta.lowercase_array(pa.array([*texts, None])).to_pylist() == [*expected, None]


def test_categorical_values() -> None:
    assert tf.category_value("  admin. ") == "admin."
    assert tf.category_value(" \t") is None
    assert tf.category_no_punct(" «admin.» ") == "admin"
    assert tf.category_no_punct("high school!") == "high school"
    assert tf.category_no_punct("...") is None
    values = pa.array(["  admin. ", " \t", None, "x"])
    assert ta.category_array(values).to_pylist() == ["admin.", None, None, "x"]
    assert ta.category_no_punct_array(pa.array([" «admin.» ", "...", None])).to_pylist() == [
        "admin",
        None,
        None,
    ]


# --- Character classes ------------------------------------------------------------------------------------


def test_whitespace_is_exactly_what_python_and_arrow_agree_on() -> None:
    every = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    assert set(tf.WHITESPACE) == {c for c in every if c.isspace()}
    # The vectorized tokenizer and Arrow's trim see the same set.
    tokens = ta.tokenize_array(pa.array([f"a{c}b" for c in every]))
    split = {c for c, length in zip(every, tokens.lengths(), strict=True) if length == 2}
    assert split == set(tf.WHITESPACE)
    trimmed = pc.utf8_trim_whitespace(pa.array([f"{c}x" for c in every])).to_pylist()
    assert {c for c, value in zip(every, trimmed, strict=True) if value == "x"} == set(tf.WHITESPACE)


def test_punctuation_is_unicode_p_and_s() -> None:
    punctuation = tf.punctuation_characters()
    assert {c for c in punctuation if c.isascii()} == set(string.punctuation) == set(tf.ASCII_PUNCTUATION)
    assert all(unicodedata.category(c)[0] in "PS" for c in punctuation)
    assert {"«", "»", "…", "€", "😀", "—", "¿"} <= punctuation
    assert not {"a", "1", "é", " ", "x"} & punctuation


def test_trailing_space_after_non_ascii_text_is_never_kept() -> None:
    # pyarrow 26's utf8_split_whitespace sometimes kept "... " here; the tokenizer must not.
    texts = ["", "naïve ", "Great  Great\tseat-belts! İstanbul Great seat-belts! ... "]
    for _ in range(200):
        assert ta.tokenize_array(pa.array(texts)).to_lists() == [text.split() for text in texts]


# --- Quantile bins ----------------------------------------------------------------------------------------


def test_quantile_edges() -> None:
    values = np.arange(1.0, 101.0)
    assert tf.quantile_edges(values, np.ones(100, dtype=np.int64), 10) == [
        float(v) for v in range(10, 100, 10)
    ]
    # Duplicate edges merge and an edge at the maximum is dropped: fewer bins.
    assert tf.quantile_edges(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 3, 1]), 5) == [2.0, 3.0]
    assert tf.quantile_edges(np.array([7.0]), np.array([50]), 10) == []
    assert tf.quantile_edges(np.empty(0), np.empty(0, dtype=np.int64), 10) == []


def test_bin_index_paths_agree() -> None:
    edges = [10.0, 20.0, 30.0]
    values = np.array([-5.0, 10.0, 10.5, 20.0, 29.9, 30.0, 30.1, 1e300])
    assert [tf.bin_index(edges, v) for v in values] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert tf.bin_indices(edges, values).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert tf.bin_label(3) == "bin_3"


# --- Property: both paths give the same tokens, in the same order -----------------------------------------

_words = st.sampled_from(["a", "The", "ΟΔΟΣ", "İ", "x,", "...", "«y»", "😀", "naïve", "-", "ß"])
_separators = st.sampled_from([" ", "  ", "\t", "\n", "\u3000", "\x1c", "\xa0", "\u2028"])
_texts = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=25),
    st.lists(st.tuples(_words, _separators), max_size=8).map(lambda p: "".join(w + s for w, s in p)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), _texts), min_size=1, max_size=8), st.integers(2, 5))
def test_vectorized_and_scalar_paths_agree(texts: list[str | None], n: int) -> None:
    scalar_tokens = [tf.tokenize(text or "") for text in texts]
    tokens = ta.tokenize_array(pa.array(texts, pa.string()))
    assert tokens.to_lists() == scalar_tokens
    assert ta.lowercase_tokens(tokens).to_lists() == [[tf.lowercase(t) for t in ts] for ts in scalar_tokens]
    stripped = ta.no_punct_array(tokens)
    assert stripped.to_lists() == [tf.no_punct(ts) for ts in scalar_tokens]
    assert ta.ngrams_array(stripped, n).to_lists() == [tf.ngrams(tf.no_punct(ts), n) for ts in scalar_tokens]
    assert ta.osb_array(tokens, n).to_lists() == [tf.osb(ts, n) for ts in scalar_tokens]
    reversed_tokens = ta.tokenize_array(pa.array(texts[::-1], pa.string()))
    assert ta.cartesian_array(tokens, reversed_tokens).to_lists() == [
        tf.cartesian(a, b) for a, b in zip(scalar_tokens, scalar_tokens[::-1], strict=True)
    ]
    categories = ta.category_no_punct_array(
        ta.lowercase_array(ta.category_array(pa.array(texts, pa.string())))
    )
    expected = []
    for text in texts:
        value = tf.category_value(text or "")
        expected.append(None if value is None else tf.category_no_punct(tf.lowercase(value)))
    assert categories.to_pylist() == expected


@pytest.mark.parametrize("n", [2, 10])
def test_ngrams_of_rows_shorter_than_n(n: int) -> None:
    tokens = ta.tokenize_array(pa.array(["", "one", "one two", None]))
    assert ta.ngrams_array(tokens, n).to_lists() == [[], ["one"], ["one", "two", "one two"], []]
    assert ta.osb_array(tokens, n).to_lists() == [[], [], ["one_two"], []]
