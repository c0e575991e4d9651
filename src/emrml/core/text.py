"""Whitespace tokens of Arrow string arrays: the one tokenizer under the recipe transformations
(``core.recipe.arrays``) and the statistics (``core.stats``).

:func:`split_encoded` gives every string's tokens exactly as Python's ``str.split()`` does (whitespace is
what ``str.isspace`` accepts, ``core.recipe.transforms.WHITESPACE``), dictionary-encoded, as both callers
need them. It finds the whitespace bytes itself with numpy (ASCII through a table, the wider characters by
their UTF-8 sequences) and reads each token where it lies, with the whitespace after it, as a string array
over the text's own buffer. Arrow's split kernels copy every token into a list array first, which costs
more than the encoding itself; besides, their ASCII whitespace lacks ``\\x1c``-``\\x1f``, and pyarrow 26's
``utf8_split_whitespace`` sometimes leaves a separator on the last token of non-ASCII text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.recipe.transforms import WHITESPACE


def value_offsets(strings: pa.Array) -> np.ndarray:
    """The value offsets of a string or large-string array (a zero-copy view, one longer than it)."""
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    buffer = strings.buffers()[1]
    return np.frombuffer(
        buffer, dtype=width, count=len(strings) + 1, offset=np.dtype(width).itemsize * strings.offset
    )


def byte_lengths(strings: pa.Array) -> np.ndarray:
    """The UTF-8 length in bytes of every value of a string array without nulls (int64), read from its
    offsets: no kernel, no new array of lengths from Arrow."""
    if len(strings) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.diff(value_offsets(strings)).astype(np.int64, copy=False)


def value_bytes(strings: pa.Array) -> np.ndarray:
    """The UTF-8 bytes of all values of a string or large-string array, concatenated (a zero-copy view)."""
    if len(strings) == 0:
        return np.zeros(0, dtype=np.uint8)
    data = strings.buffers()[2]
    offsets = value_offsets(strings)
    if data is None or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def is_plain_ascii(strings: pa.Array) -> bool:
    """Whether every value is ASCII without ``\\x1c``-``\\x1f``: what Arrow's ASCII kernels read as
    Python does. The statistics ask it of a batch's distinct words, a few kilobytes."""
    data = value_bytes(strings)
    # uint8 arithmetic wraps, so only 0x1c..0x1f land under 4.
    return data.size == 0 or (int(data.max()) < 0x80 and int((data - np.uint8(0x1C)).min()) >= 4)


#: The ASCII bytes ``str.isspace`` accepts (tab to carriage return, the four separators, space).
_IS_ASCII_WHITESPACE = np.zeros(256, dtype=bool)
_IS_ASCII_WHITESPACE[[ord(c) for c in WHITESPACE if c.isascii()]] = True
#: The other whitespace characters in UTF-8 (two or three bytes each), by their first byte.
_WIDE_WHITESPACE = [c.encode() for c in WHITESPACE if not c.isascii()]
_IS_WIDE_LEAD = np.zeros(256, dtype=bool)
_IS_WIDE_LEAD[[sequence[0] for sequence in _WIDE_WHITESPACE]] = True
_WIDE_CODES = {
    width: np.array([int.from_bytes(s, "big") for s in _WIDE_WHITESPACE if len(s) == width], dtype=np.int64)
    for width in (2, 3)
}


def _blank_bytes(data: np.ndarray) -> np.ndarray:
    """Whether each byte of UTF-8 text belongs to a whitespace character (``str.isspace``)."""
    # Without tabs, line breaks or control characters (the usual text), space is the only ASCII whitespace.
    blank = data == 0x20 if int(data.min()) >= 0x20 else _IS_ASCII_WHITESPACE[data]
    if int(data.max()) < 0x80:
        return blank
    leads = np.flatnonzero(_IS_WIDE_LEAD[data])
    last = data.size - 1
    code = data[leads].astype(np.int64)
    for width in (2, 3):
        end = leads + width - 1
        code = (code << 8) | data[np.minimum(end, last)]
        found = leads[np.isin(code, _WIDE_CODES[width]) & (end <= last)]
        for byte in range(width):
            blank[found + byte] = True
    return blank


def split_encoded(strings: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """``(words, codes, offsets)``: the whitespace tokens of every string, dictionary-encoded: token ``j``
    is ``words[codes[j]]``, and row ``i`` owns tokens ``offsets[i]`` to ``offsets[i + 1]`` (``codes`` and
    ``offsets`` int64). A null has no tokens. A word may appear twice in ``words``; none is empty.

    The text is split without copying a byte: each token is read together with the whitespace that
    follows it, up to the next token, as a string array over the text's own data buffer (only the token
    offsets are new). Those pieces are dictionary-encoded, and only the distinct pieces are trimmed.
    """
    pieces, offsets = _pieces(strings)
    if pieces is None:
        return pa.array([], pa.string()), np.zeros(0, dtype=np.int64), offsets
    encoded = pc.dictionary_encode(pieces)
    words = pc.utf8_rtrim(encoded.dictionary, characters=WHITESPACE)
    return words, encoded.indices.to_numpy().astype(np.int64), offsets


@dataclass(frozen=True)
class CountedTokens:
    """The whitespace tokens of a string array counted by word, for callers that need no token's position
    (:func:`split_counted`)."""

    #: Each distinct token, as :func:`split_encoded`'s ``words`` list them (in order of first appearance).
    words: pa.Array
    #: How often each of ``words`` occurs (int64).
    counts: np.ndarray
    #: Row ``i`` owns tokens ``offsets[i]`` to ``offsets[i + 1]`` (int64).
    offsets: np.ndarray
    #: Every token as read, with the whitespace after it, and the distinct ones (``words`` untrimmed).
    pieces: pa.Array | None
    distinct_pieces: pa.Array | None

    def per_row(self, dropped: np.ndarray) -> np.ndarray:
        """The tokens of each row (int64), leaving out those of the words where ``dropped`` is true."""
        per_row = np.diff(self.offsets)
        if self.pieces is None or not dropped.any():
            return per_row
        assert self.distinct_pieces is not None
        hit = pc.is_in(self.pieces, value_set=self.distinct_pieces.filter(pa.array(dropped)))
        rows = np.repeat(np.arange(len(per_row), dtype=np.int64), per_row)
        return per_row - np.bincount(rows[hit.to_numpy(zero_copy_only=False)], minlength=len(per_row))


def split_counted(strings: pa.Array) -> CountedTokens:
    """:func:`split_encoded`'s words with how often each occurs, rather than a code per token: counting
    the pieces costs less than encoding them (no array of 7 million codes per million rows of text)."""
    pieces, offsets = _pieces(strings)
    if pieces is None:
        return CountedTokens(pa.array([], pa.string()), np.zeros(0, dtype=np.int64), offsets, None, None)
    counted = pc.value_counts(pieces)
    distinct = counted.field("values")
    return CountedTokens(
        pc.utf8_rtrim(distinct, characters=WHITESPACE),
        counted.field("counts").to_numpy().astype(np.int64, copy=False),
        offsets,
        pieces,
        distinct,
    )


def _pieces(strings: pa.Array) -> tuple[pa.Array | None, np.ndarray]:
    """``(pieces, offsets)``: every token with the whitespace after it, as a string array over the text's
    own data buffer (None when there is no text), and the row offsets into them (int64)."""
    if strings.null_count:
        strings = pc.fill_null(strings, "")
    data = value_bytes(strings)
    if data.size == 0:
        return None, np.zeros(len(strings) + 1, np.int64)
    blank = _blank_bytes(data)
    rows = value_offsets(strings)
    base = int(rows[0])
    rows = rows - base
    # A token starts at a non-blank byte that follows a blank one or begins a row.
    starts = ~blank
    starts[1:] &= blank[:-1]
    row_starts = rows[:-1][rows[:-1] < rows[1:]]
    starts[row_starts] = ~blank[row_starts]
    positions = np.flatnonzero(starts)
    piece_offsets = np.empty(len(positions) + 1, dtype=rows.dtype)
    piece_offsets[:-1] = positions
    piece_offsets[-1] = data.size
    piece_offsets += base
    pieces = pa.Array.from_buffers(
        strings.type, len(positions), [None, pa.py_buffer(piece_offsets), strings.buffers()[2]]
    )
    return pieces, np.searchsorted(positions, rows).astype(np.int64, copy=False)


def kept_offsets(keep: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Row offsets into a flat token array once the tokens where ``keep`` is false are dropped."""
    return np.concatenate(([0], np.cumsum(keep, dtype=np.int64)))[offsets]
