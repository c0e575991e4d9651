"""Datasource statistics: the check that lets a batch's CATEGORICAL values skip Arrow's trim, and the
dictionary-encoded normalized tokens the word correlations look up once per distinct word."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from emrml.core.recipe.transforms import WHITESPACE
from emrml.core.stats import normalized_tokens
from emrml.core.stats.columns import _trimmed, _untrimmable, normalized_codes

# Printable ASCII, whitespace of every kind (ASCII and the wider characters of str.isspace), other
# control and non-ASCII characters.
_characters = st.sampled_from([*"ab-_.9 ", *WHITESPACE, "\x00", "\x7f", "é", "中", "\u200b"])
_values = st.lists(st.text(_characters, max_size=4), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_untrimmable_values_are_those_arrow_leaves_as_they_are(values: list[str]) -> None:
    strings = pa.array(values, pa.string())
    unchanged = pc.all(pc.equal(pc.utf8_trim_whitespace(strings), strings)).as_py() is not False
    # Never wrong when it says so; and it says so for all values that start and end with printable ASCII.
    printable = all(not v or ("!" <= v[0] <= "~" and "!" <= v[-1] <= "~") for v in values)
    assert _untrimmable(strings) == printable
    assert unchanged or not printable


@settings(max_examples=200, deadline=None)
@given(_values)
def test_trimmed_counts_equal_trimming_each_value(values: list[str]) -> None:
    distinct = list(dict.fromkeys(values))
    counts = np.array([values.count(v) for v in distinct], dtype=np.int64)
    strings, summed = _trimmed(pa.array(distinct, pa.string()), counts)
    expected: dict[str, int] = {}
    for value in values:
        key = pc.utf8_trim_whitespace(pa.scalar(value)).as_py()
        expected[key] = expected.get(key, 0) + 1
    assert dict(zip(strings.to_pylist(), summed.tolist(), strict=True)) == expected


def test_untrimmable_reads_sliced_arrays_and_empty_values() -> None:
    strings = pa.array([" a", "b", "", "c ", "d"], pa.string())
    assert _untrimmable(strings.slice(1, 3)) is False  # "b", "", "c "
    assert _untrimmable(strings.slice(1, 2)) is True  # "b", ""
    assert _untrimmable(strings.slice(4)) is True
    assert _untrimmable(pa.array(["a", None], pa.string())) is False  # nulls: Arrow decides


_texts = st.lists(st.sampled_from(["Rate,", "rate", "FEE!", "!!", "naïve", "", "a\u3000b", None]), max_size=8)


@settings(max_examples=200, deadline=None)
@given(_texts)
def test_normalized_codes_spell_the_normalized_tokens(texts: list[str | None]) -> None:
    strings = pa.array(texts, pa.string())
    words, codes, rows = normalized_codes(strings)
    tokens, token_rows = normalized_tokens(strings)
    assert words.take(pa.array(codes, pa.int64())).to_pylist() == tokens.to_pylist()
    assert rows.tolist() == token_rows.tolist()
    assert codes.dtype == np.int64 and rows.dtype == np.int64
