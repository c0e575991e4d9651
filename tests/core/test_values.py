"""NUMERIC and BINARY parsing: the vectorized and the one-value paths follow the same rules."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrml.core.values import InvalidValue, binary_value, numeric_value, parse_binary, parse_numeric


def test_numeric_rules() -> None:
    parsed = parse_numeric(pa.array([" 1.5", "", "nan", "abc", "1e3", ".5", None, "-2", "1,000", "Inf"]))
    assert np.array_equal(parsed.missing, [0, 1, 0, 0, 0, 0, 1, 0, 0, 0])
    assert np.array_equal(parsed.invalid, [0, 0, 1, 1, 0, 0, 0, 0, 1, 1])
    assert parsed.values[[0, 4, 5, 7]].tolist() == [1.5, 1000.0, 0.5, -2.0]
    assert np.isnan(parsed.values[[1, 2, 3, 6, 8, 9]]).all()


def test_clean_numeric_column_is_writable_and_exact() -> None:
    parsed = parse_numeric(pa.chunked_array([["1", "2"], ["3.25"]]))
    assert parsed.values.tolist() == [1.0, 2.0, 3.25]
    assert not parsed.missing.any() and not parsed.invalid.any()


def test_binary_rules() -> None:
    parsed = parse_binary(pa.array([" FaLSe ", "yes", "x", "", None, "T", "0", "n"]))
    assert parsed.values[[0, 1, 5, 6, 7]].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    assert np.array_equal(parsed.invalid, [0, 0, 1, 0, 0, 0, 0, 0])
    assert np.array_equal(parsed.missing, [0, 0, 0, 1, 1, 0, 0, 0])


def test_scalar_errors() -> None:
    with pytest.raises(InvalidValue, match="not a number"):
        numeric_value("12a")
    with pytest.raises(InvalidValue, match="not a binary value"):
        binary_value("spam")
    assert numeric_value("  ") is None and binary_value("") is None


@given(
    st.lists(
        st.one_of(st.text(max_size=8), st.from_regex(r"\A ?[+-]?[0-9]{0,3}\.?[0-9]{0,3}(e[+-]?[0-9])? ?\Z"))
    )
)
def test_vectorized_and_scalar_numeric_agree(texts: list[str]) -> None:
    parsed = parse_numeric(pa.array(texts, pa.string()))
    for i, text in enumerate(texts):
        try:
            value = numeric_value(text)
        except InvalidValue:
            assert parsed.invalid[i], text
            continue
        if value is None:
            assert parsed.missing[i], text
        else:
            assert parsed.values[i] == value, text


@given(st.lists(st.sampled_from(["0", "1", " yes", "NO", "t", "F", "maybe", "", "2", "True "])))
def test_vectorized_and_scalar_binary_agree(texts: list[str]) -> None:
    parsed = parse_binary(pa.array(texts, pa.string()))
    for i, text in enumerate(texts):
        try:
            value = binary_value(text)
        except InvalidValue:
            assert parsed.invalid[i]
            continue
        assert parsed.missing[i] if value is None else parsed.values[i] == value
