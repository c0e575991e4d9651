"""The whitespace splitter under both tokenizers: exactly ``str.split()``, for any text."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from emrml.core.recipe.transforms import WHITESPACE
from emrml.core.stats import normalized_tokens
from emrml.core.stats.constants import TOKEN_PUNCTUATION
from emrml.core.text import _blank_bytes, is_plain_ascii, split_counted, split_encoded


def _rows(tokens: pa.Array, offsets: object) -> list[list[str]]:
    flat = tokens.to_pylist()
    bounds = list(offsets)  # type: ignore[call-overload]
    return [flat[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]


_ascii_separators = [c for c in WHITESPACE if c.isascii()]
_ascii_pieces = st.sampled_from(["a", "Bc", "x,", "..", *_ascii_separators])
_ascii_texts = st.lists(_ascii_pieces, max_size=15).map("".join)
_words = st.sampled_from(["a", "The", "ΟΔΟΣ", "İ", "«y»", "😀", "naïve", "ß", "“Quoted”", "—"])
_unicode_texts = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=25),
    st.lists(st.tuples(_words, st.sampled_from(list(WHITESPACE))), max_size=8).map(
        lambda pairs: "".join(w + s for w, s in pairs)
    ),
)


def _encoded_rows(words: pa.Array, codes: object, offsets: object) -> list[list[str]]:
    return _rows(words.take(pa.array(codes)), offsets)


_ascii_rows = st.lists(st.one_of(st.none(), _ascii_texts), min_size=1, max_size=10)
_any_rows = st.lists(st.one_of(st.none(), _ascii_texts, _unicode_texts), min_size=1, max_size=10)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_ascii_rows, _any_rows), st.data())
def test_split_encoded_is_str_split(texts: list[str | None], data: st.DataObject) -> None:
    # Text is split over its own buffer (tokens read with their trailing whitespace, then trimmed once
    # per distinct piece): str.split(), with any whitespace Python knows.
    expected = [(text or "").split() for text in texts]
    words, codes, offsets = split_encoded(pa.array(texts, pa.string()))
    assert _encoded_rows(words, codes, offsets) == expected
    assert "" not in words.to_pylist()
    assert codes.dtype == offsets.dtype == "int64"
    start = data.draw(st.integers(0, len(texts) - 1))
    sliced = pa.array(["  pad  ", *texts, "tail  x"], pa.string()).slice(1 + start, len(texts) - start)
    assert _encoded_rows(*split_encoded(sliced)) == expected[start:]
    assert _encoded_rows(*split_encoded(pa.array(texts, pa.large_string()))) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(_ascii_rows, _any_rows), st.data())
def test_split_counted_counts_what_split_encoded_encodes(
    texts: list[str | None], data: st.DataObject
) -> None:
    strings = pa.array(texts, pa.string())
    words, codes, offsets = split_encoded(strings)
    counted = split_counted(strings)
    assert counted.words.to_pylist() == words.to_pylist()
    assert counted.counts.tolist() == np.bincount(codes, minlength=len(words)).tolist()
    assert counted.offsets.tolist() == offsets.tolist()
    # Leaving words out of the per-row counts (the statistics drop tokens of punctuation alone).
    dropped = np.array(data.draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words))), bool)
    kept_per_row = [sum(not dropped[c] for c in row) for row in _rows(pa.array(codes), offsets)]
    assert counted.per_row(dropped).tolist() == kept_per_row


def test_split_encoded_tokens_end_at_row_ends() -> None:
    # The rows' bytes are contiguous: "ab" then "cd" must not read as the token "abcd".
    words, codes, offsets = split_encoded(pa.array(["ab", "cd ", "", None, " \x1c", "cd\tab"]))
    assert _encoded_rows(words, codes, offsets) == [["ab"], ["cd"], [], [], [], ["cd", "ab"]]
    # Whitespace of two and three UTF-8 bytes splits; a zero-width space (not whitespace) does not.
    texts = ["a\u3000b", "\xa0c\u2029", "ΟΔΟΣ\x85d\u200bx", "\u205f"]
    assert _encoded_rows(*split_encoded(pa.array(texts))) == [text.split() for text in texts]


def test_whitespace_bytes_of_a_cut_sequence() -> None:
    # The first two bytes of U+2000 at the very end (bytes cut from a longer text) are no whitespace,
    # and looking for the third must not read or mark past the end.
    assert not _blank_bytes(np.frombuffer(b"ab\xe2\x80", dtype=np.uint8)).any()
    assert _blank_bytes(np.frombuffer("a\u2000b".encode(), dtype=np.uint8)).tolist() == [0, 1, 1, 1, 0]


def test_plain_ascii_excludes_what_arrow_ascii_kernels_misread() -> None:
    assert is_plain_ascii(pa.array(["a b\tc\n", None, ""]))
    assert not is_plain_ascii(pa.array(["a\x1cb"]))  # a separator to Python, not to Arrow's ASCII split
    assert not is_plain_ascii(pa.array(["a", "naïve"]))
    assert is_plain_ascii(pa.array(["naïve", "plain"]).slice(1))  # only the slice's bytes count
    assert _encoded_rows(*split_encoded(pa.array(["a\x1cb\x1fc d"]))) == [["a", "b", "c", "d"]]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _ascii_texts, _unicode_texts), min_size=1, max_size=10))
def test_statistics_tokens_on_both_paths(texts: list[str | None]) -> None:
    # The statistics lower-case with Arrow's mapping; the rest is Python's split and strip.
    lowered = pc.utf8_lower(pa.array(texts, pa.string())).to_pylist()
    expected = [
        (row, word)
        for row, text in enumerate(lowered)
        for token in (text or "").split()
        if (word := token.strip(TOKEN_PUNCTUATION))
    ]
    tokens, rows = normalized_tokens(pa.array(texts, pa.string()))
    assert list(zip(rows.tolist(), tokens.to_pylist(), strict=True)) == expected
