"""Correlation to the target: mutual information between coded attributes and the target classes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.schema import AttributeType
from emrml.core.stats.columns import as_strings, empty_mask, normalized_codes, parse_numbers
from emrml.core.stats.constants import MI_BINS, MI_TOP_CATEGORIES
from emrml.core.values import parse_binary

# --------------------------------------------------------------------------------- mutual information


def mutual_information(x: np.ndarray, y: np.ndarray, *, miller_madow: bool = True) -> float:
    """Mutual information in nats between two equally long arrays of integer codes (any integer values).

    With ``miller_madow`` the plug-in estimate is bias-corrected (Miller-Madow on each entropy term) and
    clipped at 0, so that an attribute independent of the target scores about 0 whatever its number of
    codes.
    """
    if len(x) == 0:
        return 0.0
    x_codes, x_size = _dense_codes(x)
    y_codes, y_size = _dense_codes(y)
    joint = np.bincount(x_codes * y_size + y_codes, minlength=x_size * y_size)
    return _information(joint.reshape(x_size, y_size), miller_madow=miller_madow)


def entropy(codes: np.ndarray) -> float:
    """Entropy in nats of integer codes, Miller-Madow corrected as in :func:`mutual_information`: the
    mutual information of these codes with an attribute that determines them, and the most any reaches."""
    if len(codes) == 0:
        return 0.0
    dense, size = _dense_codes(codes)
    counts = np.bincount(dense, minlength=size)
    p = counts[counts > 0] / len(codes)
    return float(-(p * np.log(p)).sum()) + (p.size - 1) / (2 * len(codes))


def _information(joint: np.ndarray, *, miller_madow: bool = True) -> float:
    """:func:`mutual_information` from the contingency table ``joint`` (int64 counts, shape (x, y))."""
    size = int(joint.sum())

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / size
        return float(-(p * np.log(p)).sum())

    x_counts, y_counts = joint.sum(axis=1), joint.sum(axis=0)
    information = entropy(x_counts) + entropy(y_counts) - entropy(joint.ravel())
    if miller_madow:
        cells = np.count_nonzero(joint) - np.count_nonzero(x_counts) - np.count_nonzero(y_counts) + 1
        information -= float(cells) / (2 * size)
    return max(information, 0.0)


def _dense_codes(a: np.ndarray) -> tuple[np.ndarray, int]:
    """``(codes, size)``: codes in ``[0, size)`` with the order of ``a``'s values.

    Codes of attributes and targets are small integers, so shifting them by their minimum is enough; the
    unused codes count zero and drop out of every sum. Wider ranges take ``np.unique``.
    """
    low, high = int(a.min()), int(a.max())
    if high - low <= 4 * a.size + 1024:
        return (a - low).astype(np.int64, copy=False), high - low + 1
    values, codes = np.unique(a, return_inverse=True)
    return codes, len(values)


def quantile_codes(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantile-bin codes (int64) of finite ``values``: edges at the k/n quantiles, duplicates merged, a value
    going to the first bin whose upper edge is >= it (open question 14)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins))
    return np.searchsorted(edges, values, side="left").astype(np.int64)


def target_codes(column: pa.Array | pa.ChunkedArray, attribute_type: AttributeType) -> np.ndarray:
    """Class codes (int64) of a target column for mutual information; -1 where missing or invalid.

    BINARY: 0/1; CATEGORICAL: one code per value (empty -> -1); NUMERIC: :data:`MI_BINS` quantile bins
    (:func:`quantile_codes`). A TEXT target has no classes (``ValueError``).
    """
    strings = as_strings(column)
    if attribute_type is AttributeType.BINARY:
        return _binary_codes(strings)
    if attribute_type is AttributeType.CATEGORICAL:
        trimmed = pc.utf8_trim_whitespace(strings)
        codes = _dictionary_codes(trimmed)
        codes[empty_mask(trimmed)] = -1
        return codes
    if attribute_type is AttributeType.NUMERIC:
        return _numeric_codes(strings, lambda values: quantile_codes(values, MI_BINS))
    raise ValueError(f"a {attribute_type} attribute cannot be a target")


def _binary_codes(strings: pa.Array) -> np.ndarray:
    parsed = parse_binary(strings)
    return np.where(parsed.missing | parsed.invalid, -1, np.nan_to_num(parsed.values)).astype(np.int64)


def _numeric_codes(strings: pa.Array, binning: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``binning`` of the valid values; -1 where missing or invalid."""
    parsed = parse_numbers(strings)
    valid = ~(parsed.missing | parsed.invalid)
    codes = np.full(len(strings), -1, dtype=np.int64)
    codes[valid] = binning(parsed.values[valid])
    return codes


def _mass_point_codes(values: np.ndarray) -> np.ndarray:
    """:data:`MI_BINS` quantile bins, with values equal to a bin edge in codes of their own.

    Heavily repeated values (a 999 "never contacted" sentinel, zeros) make quantile edges coincide; keeping
    such a mass point apart from the rest of its bin preserves what it says about the target.
    """
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.unique(np.quantile(values, np.arange(1, MI_BINS) / MI_BINS))
    bins = np.searchsorted(edges, values, side="left")
    on_edge = edges[np.minimum(bins, edges.size - 1)] == values
    return (2 * bins + on_edge).astype(np.int64)


def _dictionary_codes(strings: pa.Array) -> np.ndarray:
    """One code per distinct value (nulls get -2)."""
    encoded = pc.dictionary_encode(strings)
    return np.asarray(pc.fill_null(encoded.indices, -2).to_numpy(zero_copy_only=False), dtype=np.int64)


def attribute_codes(strings: pa.Array, attribute_type: AttributeType) -> np.ndarray:
    """Simplified codes of a non-TEXT input attribute for mutual information with the target."""
    if attribute_type is AttributeType.NUMERIC:
        return _numeric_codes(strings, _mass_point_codes)
    if attribute_type is AttributeType.BINARY:
        return _binary_codes(strings)
    # Values as training reads them: " a" is "a", and " " is missing like "".
    codes = _dictionary_codes(pc.utf8_trim_whitespace(strings))
    counts = np.bincount(codes[codes >= 0])
    if counts.size > MI_TOP_CATEGORIES:
        kept = np.zeros(counts.size, dtype=bool)
        kept[np.argsort(-counts, kind="stable")[:MI_TOP_CATEGORIES]] = True
        codes = np.where((codes >= 0) & ~kept[np.maximum(codes, 0)], -1, codes)
    return codes


def word_correlations(strings: pa.Array, words: Sequence[str], y: np.ndarray) -> dict[str, float]:
    """Mutual information between the presence of each word in a row and the target codes ``y``."""
    if not words or len(y) == 0:
        return dict.fromkeys(words, 0.0)
    distinct, tokens, rows = normalized_codes(strings)
    # Each distinct word looked up once, its place then read for every token: text repeats its words (the
    # 20,000 sampled rows of the bank file hold 150,000 tokens of 94 words).
    index = pc.index_in(distinct, value_set=pa.array(list(words), type=pa.string()))
    codes = np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)[tokens]
    hit = codes >= 0
    # Which (row, word) pairs occur, as flat positions row * words + word (a flat scatter and a flat scan
    # cost half as much as a two-dimensional index and np.nonzero), in row order as np.nonzero gives them.
    width = len(words)
    presence = np.zeros(len(strings) * width, dtype=bool)
    presence[rows[hit] * width + codes[hit]] = True
    present_rows, present_words = np.divmod(np.flatnonzero(presence), width)
    # The tables of all words at once: per word, the target's counts in the rows holding it (row 1)
    # and in the others (row 0).
    y_codes, y_size = _dense_codes(y)
    present = np.bincount(present_words * y_size + y_codes[present_rows], minlength=len(words) * y_size)
    present = present.reshape(len(words), y_size)
    absent = np.bincount(y_codes, minlength=y_size) - present
    return {word: _information(np.stack([absent[j], present[j]])) for j, word in enumerate(words)}
