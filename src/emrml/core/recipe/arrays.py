"""The recipe transformations vectorized over Arrow arrays: ``core.recipe.transforms``' scalar functions
over whole batches, giving exactly their tokens in their order (spec 6.2, ``docs/recipes.md``).

A token column (:class:`TokenArray`) is CSR-like and dictionary-encoded: one flat array of codes into its
words, row ``i`` holding the tokens ``offsets[i]`` to ``offsets[i + 1]``. Transformations map the words,
once per distinct token, not every occurrence; tokens made of others (n-grams, pairs, cartesian products)
are joined once per distinct combination of codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.recipe.transforms import WHITESPACE, punctuation_string
from emrml.core.text import byte_lengths, kept_offsets, split_encoded


@dataclass(frozen=True)
class TokenArray:
    """Tokens of many rows, dictionary-encoded: token ``j`` is ``words[codes[j]]``, and row ``i`` holds the
    tokens ``offsets[i]`` to ``offsets[i + 1]``.

    ``words`` is a ``pa.string()`` array without nulls; every word a code points to is non-empty, and a
    word may appear twice (a transformation maps the words, so "Rate," and "rate" may both become "rate").
    ``codes`` and ``offsets`` are int64; ``offsets`` is one longer than the row count and starts at 0.

    Transformations work on the words, once per distinct token, and combine tokens through their codes;
    joined strings (n-grams, pairs) are built once per distinct combination.
    """

    words: pa.Array
    codes: np.ndarray
    offsets: np.ndarray

    @property
    def num_rows(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row_ids(self) -> np.ndarray:
        """The row of each token (int64, ascending)."""
        return np.repeat(np.arange(self.num_rows, dtype=np.int64), self.lengths())

    def tokens(self) -> pa.Array:
        """The tokens as one string array, row after row."""
        return self.words.take(pa.array(self.codes))

    def distinct_words(self) -> tuple[pa.Array, np.ndarray]:
        """``(words, codes)`` with each word once: the same tokens, codes into distinct words."""
        encoded = pc.dictionary_encode(self.words)
        return encoded.dictionary, codes_of(encoded)[self.codes]

    def to_lists(self) -> list[list[str]]:
        """Per-row token lists (for tests and debugging)."""
        flat = self.tokens().to_pylist()
        return [flat[self.offsets[i] : self.offsets[i + 1]] for i in range(self.num_rows)]


def codes_of(encoded: pa.DictionaryArray) -> np.ndarray:
    """The indices of a dictionary array as int64, -1 for a null."""
    indices = encoded.indices
    codes = indices.to_numpy(zero_copy_only=False)
    if indices.null_count:
        valid = np.asarray(pc.is_valid(indices).to_numpy(zero_copy_only=False), dtype=bool)
        return np.where(valid, np.nan_to_num(codes, nan=-1), -1).astype(np.int64)
    return codes.astype(np.int64)


def _encoded(tokens: pa.Array, offsets: np.ndarray) -> TokenArray:
    encoded = pc.dictionary_encode(tokens)
    return TokenArray(encoded.dictionary, codes_of(encoded), offsets)


def as_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as one ``pa.string()`` array (nulls kept)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type != pa.string():
        column = pc.cast(column, pa.string())
    return column


def tokenize_array(strings: pa.Array | pa.ChunkedArray) -> TokenArray:
    """:func:`tokenize` of every string; a null is an empty string (no tokens)."""
    return TokenArray(*split_encoded(as_strings(strings)))


def lowercase_array(strings: pa.Array) -> pa.Array:
    """:func:`lowercase` of every string (nulls stay null)."""
    lowered = pc.utf8_lower(strings)
    non_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(strings), True))
    if not pc.any(non_ascii).as_py():
        return lowered
    # Arrow maps some characters differently from str.lower (İ, final sigma, newer Unicode letters).
    exceptions = strings.filter(non_ascii).to_pylist()
    return pc.replace_with_mask(lowered, non_ascii, pa.array([s.lower() for s in exceptions], pa.string()))


def lowercase_tokens(tokens: TokenArray) -> TokenArray:
    # Lower-casing never empties a token.
    return TokenArray(lowercase_array(tokens.words), tokens.codes, tokens.offsets)


def no_punct_array(tokens: TokenArray) -> TokenArray:
    """:func:`no_punct` of every row."""
    words = pc.utf8_trim(tokens.words, characters=punctuation_string())
    emptied = byte_lengths(words) == 0
    if not emptied[tokens.codes].any():
        return TokenArray(words, tokens.codes, tokens.offsets)
    keep = ~emptied[tokens.codes]
    return TokenArray(words, tokens.codes[keep], kept_offsets(keep, tokens.offsets))


def category_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`category_value` of every value; empty values and nulls become null."""
    trimmed = pc.utf8_trim_whitespace(as_strings(values))
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def category_no_punct_array(values: pa.Array) -> pa.Array:
    """:func:`category_no_punct` of every value (nulls stay null)."""
    stripped = pc.utf8_trim(values, characters=punctuation_string() + WHITESPACE)
    return pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)


def single_tokens(values: pa.Array) -> TokenArray:
    """One token per non-null value, none for a null: a CATEGORICAL value as a token set."""
    present = np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)
    offsets = np.concatenate(([0], np.cumsum(present, dtype=np.int64)))
    return _encoded(values.drop_null(), offsets)


def _joined(
    left: pa.Array, left_codes: np.ndarray, right: pa.Array, right_codes: np.ndarray, separator: str
) -> tuple[pa.Array, np.ndarray]:
    """``left[left_codes[j]] + separator + right[right_codes[j]]`` for every ``j``, as ``(words, codes)``:
    each distinct pair of codes is joined once."""
    if not len(left_codes):
        return pa.array([], pa.string()), np.zeros(0, dtype=np.int64)
    keys = left_codes * len(right) + right_codes  # < 2**62: both vocabularies are below 2**31
    encoded = pc.dictionary_encode(pa.array(keys, pa.int64()))
    distinct = np.asarray(encoded.dictionary.to_numpy(), dtype=np.int64)
    words = pc.binary_join_element_wise(
        left.take(pa.array(distinct // len(right))), right.take(pa.array(distinct % len(right))), separator
    )
    return words, codes_of(encoded)


def _interleaved(
    blocks: list[tuple[pa.Array, np.ndarray, np.ndarray]], counts: list[np.ndarray]
) -> TokenArray:
    """Interleave per-size blocks into row order.

    ``blocks[b]`` is ``(words, codes, row_ids)`` with ``row_ids`` ascending; ``counts[b]`` is that block's
    count per row. Within a row, block 0's tokens come first, then block 1's, …
    """
    per_row = np.sum(counts, axis=0)
    offsets = np.concatenate(([0], np.cumsum(per_row, dtype=np.int64)))
    if not blocks:
        return TokenArray(pa.array([], pa.string()), np.zeros(0, dtype=np.int64), offsets)
    position = offsets[:-1].copy()
    codes = np.empty(int(offsets[-1]), dtype=np.int64)
    base = 0
    for (words, block_codes, rows), count in zip(blocks, counts, strict=True):
        first_in_block = np.concatenate(([0], np.cumsum(count, dtype=np.int64)))[:-1]
        rank = np.arange(len(rows), dtype=np.int64) - first_in_block[rows]
        codes[position[rows] + rank] = block_codes + base
        position += count
        base += len(words)
    return TokenArray(pa.concat_arrays([words for words, _, _ in blocks]), codes, offsets)


def _pairs(tokens: TokenArray, distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Global positions ``p`` with ``p + distance`` in the same row, and their rows."""
    rows = tokens.row_ids()
    positions = np.arange(len(rows), dtype=np.int64)
    starts = positions[positions + distance < tokens.offsets[1:][rows]]
    return starts, rows[starts]


def ngrams_array(tokens: TokenArray, n: int) -> TokenArray:
    """:func:`ngrams` of every row, in the same order."""
    lengths = tokens.lengths()
    blocks = [(tokens.words, tokens.codes, tokens.row_ids())]
    counts = [lengths]
    # An n-gram is the (n-1)-gram at its start joined to its last token, once per distinct such pair:
    # ``words`` are the previous size's grams, ``at`` their codes by starting position.
    words, at = tokens.words, tokens.codes
    for size in range(2, n + 1):
        starts, rows = _pairs(tokens, size - 1)
        words, codes = _joined(words, at[starts], tokens.words, tokens.codes[starts + size - 1], " ")
        blocks.append((words, codes, rows))
        counts.append(np.maximum(lengths - size + 1, 0))
        at = np.zeros(len(tokens.codes), dtype=np.int64)
        at[starts] = codes  # the next size's starts are among these
    return _interleaved(blocks, counts)


def osb_array(tokens: TokenArray, n: int) -> TokenArray:
    """:func:`osb` of every row, in the same order."""
    lengths = tokens.lengths()
    blocks = []
    counts = []
    for distance in range(1, n):
        starts, rows = _pairs(tokens, distance)
        first, second = tokens.codes[starts], tokens.codes[starts + distance]
        words, codes = _joined(tokens.words, first, tokens.words, second, "_" * distance)
        blocks.append((words, codes, rows))
        counts.append(np.maximum(lengths - distance, 0))
    return _interleaved(blocks, counts)


def _cartesian_pair(left: TokenArray, right: TokenArray) -> TokenArray:
    left_lengths, right_lengths = left.lengths(), right.lengths()
    per_row = left_lengths * right_lengths
    offsets = np.concatenate(([0], np.cumsum(per_row, dtype=np.int64)))
    rows = np.repeat(np.arange(len(per_row), dtype=np.int64), per_row)
    local = np.arange(offsets[-1], dtype=np.int64) - offsets[rows]
    width = right_lengths[rows]
    left_index = left.offsets[rows] + local // np.maximum(width, 1)
    right_index = right.offsets[rows] + local % np.maximum(width, 1)
    words, codes = _joined(left.words, left.codes[left_index], right.words, right.codes[right_index], "_")
    return TokenArray(words, codes, offsets)


def cartesian_array(*token_arrays: TokenArray) -> TokenArray:
    """:func:`cartesian` of every row, in the same order."""
    result = token_arrays[0]
    for other in token_arrays[1:]:
        result = _cartesian_pair(result, other)
    return result
