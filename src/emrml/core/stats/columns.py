"""Per-type statistics of one attribute (NUMERIC, BINARY, CATEGORICAL, TEXT), built on the sketches."""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.quantiles import QuantileSketch, add_counts
from emrml.core.stats.constants import (
    EXACT_NUMERIC_LIMIT,
    HISTOGRAM_BINS,
    KLL_K,
    MI_TOP_WORDS,
    QUANTILE_RANKS,
    TOKEN_PUNCTUATION,
)
from emrml.core.stats.sketches import Moments, ValueCounter, empty_mask, value_list
from emrml.core.stats.value_counts import MOST_REORDERED, ValueCounts
from emrml.core.text import (
    byte_lengths,
    is_plain_ascii,
    split_counted,
    split_encoded,
    value_bytes,
    value_offsets,
)
from emrml.core.values import Parsed, parse_binary, parse_numeric

# ---------------------------------------------------------------------------------- column statistics


def as_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    return column


def parse_numbers(strings: pa.Array) -> Parsed:
    """``parse_numeric`` with a fast path: a column that casts as it is needs no trimming or masks."""
    if strings.null_count == 0:
        try:
            values = pc.cast(strings, pa.float64()).to_numpy(zero_copy_only=False, writable=True)
        except pa.ArrowInvalid:
            return parse_numeric(strings)
        invalid = ~np.isfinite(values)
        values[invalid] = np.nan
        return Parsed(values, np.zeros(len(values), dtype=bool), invalid)
    return parse_numeric(strings)


def _trimmed(strings: pa.Array, counts: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Distinct values and their counts with surrounding whitespace removed, as training and prediction
    read a CATEGORICAL value (``" a"`` is ``"a"``, ``" "`` is missing); values that become equal are added
    up. Trims only the distinct values, so a column costs one pass whatever its length."""
    if _untrimmable(strings):
        return strings, counts
    trimmed = pc.utf8_trim_whitespace(strings)
    if pc.all(pc.equal(trimmed, strings)).as_py() is not False:
        return strings, counts
    summed = pa.table({"value": trimmed, "count": counts}).group_by("value").aggregate([("count", "sum")])
    return summed.column("value").combine_chunks(), summed.column("count_sum").to_numpy()


def _untrimmable(strings: pa.Array) -> bool:
    """Whether no value of ``strings`` (no nulls) starts or ends with whitespace: each non-empty value's
    first and last bytes are printable ASCII other than space. Any whitespace character starts with a byte
    below ``!`` (ASCII) or at or above 0x80 (UTF-8 of the others), and ends with one as well. Read from
    the offsets of a batch's distinct values with numpy: Arrow's trim and comparison are three calls
    (about 25 µs) per column and batch, for values that are almost always trimmed already."""
    if strings.null_count or not len(strings):
        return False
    offsets = value_offsets(strings)
    data = value_bytes(strings)
    starts = offsets[:-1] - offsets[0]
    filled = offsets[1:] != offsets[:-1]
    ends = (offsets[1:] - offsets[0] - 1)[filled]
    edges = np.concatenate((data[starts[filled]], data[ends]))
    return bool(np.all((edges > 0x20) & (edges < 0x7F)))


def _exact_quantiles(values: np.ndarray, counts: np.ndarray, ranks: Sequence[float]) -> list[float]:
    """Quantiles of the multiset {values[i] x counts[i]} (sorted values), numpy's linear interpolation."""
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])
    out = []
    for rank in ranks:
        position = rank * (total - 1)
        low = math.floor(position)
        below = values[np.searchsorted(cumulative, low, side="right")]
        above = values[np.searchsorted(cumulative, min(low + 1, total - 1), side="right")]
        out.append(float(below + (position - low) * (above - below)))
    return out


class NumericStats:
    """NUMERIC statistics.

    Exact mode: a value -> count map (sorted distinct values, int64 counts) from which moments, quantiles and
    the histogram are computed when asked. When the map would exceed :data:`EXACT_NUMERIC_LIMIT` values it is
    poured into a quantile sketch (``core.quantiles``), and from then on each batch updates the sketch and
    running moments.
    """

    def __init__(self) -> None:
        self.missing = 0
        self.invalid = 0
        self.values: np.ndarray | None = np.zeros(0, dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.sketch: QuantileSketch | None = None
        self.moments = Moments()  # sketch mode only
        self._value_counts = ValueCounts()  # the exact map is the same whatever the values' order

    def update(self, column: pa.Array) -> None:
        if self.sketch is not None:
            parsed = parse_numbers(column)
            self.missing += int(np.count_nonzero(parsed.missing))
            self.invalid += int(np.count_nonzero(parsed.invalid))
            bad = parsed.missing | parsed.invalid
            valid = parsed.values[~bad] if bad.any() else parsed.values
            self.moments.add(valid)
            self.sketch.update(valid)
            return
        # Exact mode parses each distinct string once.
        strings, counts = self._value_counts(column)
        parsed = parse_numbers(strings)
        bad = parsed.missing | parsed.invalid
        if bad.any():
            self.missing += int(counts[parsed.missing].sum())
            self.invalid += int(counts[parsed.invalid].sum())
            self._add_exact(parsed.values[~bad], counts[~bad])
        else:
            self._add_exact(parsed.values, counts)

    def _add_exact(self, values: np.ndarray, counts: np.ndarray) -> None:
        if self.values is None:
            assert self.sketch is not None
            self.moments.add(values, counts)
            self.sketch.update(values, counts)
            return
        merged, totals = add_counts(self.values, self.counts, values, counts)
        if merged.size > EXACT_NUMERIC_LIMIT:
            self._to_sketch(merged, totals)
        else:
            self.values, self.counts = merged, totals

    def _to_sketch(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.sketch = QuantileSketch(KLL_K)
        self.moments = Moments()
        self.values, self.counts = None, np.zeros(0, dtype=np.int64)
        self._add_exact(values, counts)

    def merge(self, other: NumericStats) -> None:
        self.missing += other.missing
        self.invalid += other.invalid
        if other.values is not None:
            self._add_exact(other.values, other.counts)
            return
        if self.values is not None:
            self._to_sketch(self.values, self.counts)
        assert self.sketch is not None and other.sketch is not None
        self.moments.merge(other.moments)
        self.sketch.merge(other.sketch)

    def _all_moments(self) -> Moments:
        if self.values is None:
            return self.moments
        moments = Moments()
        moments.add(self.values, self.counts)
        return moments

    def result(self) -> dict[str, Any]:
        moments = self._all_moments()
        out: dict[str, Any] = {
            "missingCount": self.missing,
            "invalidCount": self.invalid,
            "validCount": moments.count,
            "exact": self.values is not None,
        }
        if moments.count == 0:
            out.update(
                min=None,
                max=None,
                mean=None,
                median=None,
                stddev=None,
                quantiles={str(rank): None for rank in QUANTILE_RANKS},
                histogram={"edges": [], "counts": []},
            )
            return out
        if self.values is not None:
            quantiles = _exact_quantiles(self.values, self.counts, QUANTILE_RANKS)
            median = _exact_quantiles(self.values, self.counts, (0.5,))[0]
        else:
            assert self.sketch is not None
            quantiles = self.sketch.quantiles(QUANTILE_RANKS)
            (median,) = self.sketch.quantiles((0.5,))
        # Numbers near the float range (a value of 1e200 has a square of infinity) can overflow a mean, a
        # deviation or an interpolation: such a figure is None, as JSON has no infinity.
        out.update(
            min=moments.min,
            max=moments.max,
            mean=_real(moments.mean),
            median=_real(median),
            stddev=_real(math.sqrt(moments.m2 / moments.count)),
            quantiles={
                str(rank): _real(value) for rank, value in zip(QUANTILE_RANKS, quantiles, strict=True)
            },
            histogram=self._histogram(moments),
        )
        return out

    def _histogram(self, moments: Moments) -> dict[str, list[Any]]:
        low, high, total = moments.min, moments.max, moments.count
        if low == high:
            return {"edges": [low, high], "counts": [total]}
        with np.errstate(over="ignore", invalid="ignore"):
            edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        if not np.isfinite(edges).all():  # the range is wider than the largest float
            return {"edges": [], "counts": []}
        if self.values is not None:
            weighted, _ = np.histogram(self.values, bins=edges, weights=self.counts)
            counts = np.rint(weighted).astype(np.int64)
        else:
            assert self.sketch is not None
            cdf = np.asarray(self.sketch.cdf(edges[1:-1].tolist()), dtype=np.float64)
            cumulative = np.rint(np.concatenate([[0.0], cdf[:-1], [1.0]]) * total).astype(np.int64)
            counts = np.diff(cumulative)
        return {"edges": edges.tolist(), "counts": counts.tolist()}

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"missing": self.missing, "invalid": self.invalid}
        if self.values is not None:
            state["values"] = self.values.tolist()
            state["counts"] = self.counts.tolist()
        else:
            assert self.sketch is not None
            state["moments"] = self.moments.to_state()
            state["sketch"] = self.sketch.to_state()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NumericStats:
        stats = cls()
        stats.missing, stats.invalid = int(state["missing"]), int(state["invalid"])
        if "sketch" in state:
            stats.sketch = QuantileSketch.from_state(state["sketch"])
            stats.moments = Moments.from_state(state["moments"])
            stats.values = None
        else:
            values = np.asarray(state["values"], dtype=np.float64)
            counts = np.asarray(state["counts"], dtype=np.int64)
            if values.shape != counts.shape or values.ndim != 1 or np.any(np.diff(values) <= 0):
                raise ValueError("numeric value counts are malformed")
            stats.values, stats.counts = values, counts
        return stats


class BinaryStats:
    def __init__(self) -> None:
        self.zeros = 0
        self.ones = 0
        self.missing = 0
        self.invalid = 0
        self._value_counts = ValueCounts()  # sums: the values' order does not matter

    def update(self, column: pa.Array) -> None:
        strings, counts = self._value_counts(column)
        parsed = parse_binary(strings)
        self.zeros += int(counts[parsed.values == 0.0].sum())
        self.ones += int(counts[parsed.values == 1.0].sum())
        self.missing += int(counts[parsed.missing].sum())
        self.invalid += int(counts[parsed.invalid].sum())

    def merge(self, other: BinaryStats) -> None:
        self.zeros += other.zeros
        self.ones += other.ones
        self.missing += other.missing
        self.invalid += other.invalid

    def result(self) -> dict[str, Any]:
        valid = self.zeros + self.ones
        return {
            "missingCount": self.missing,
            "invalidCount": self.invalid,
            "counts": {"0": self.zeros, "1": self.ones},
            "percentTrue": 100.0 * self.ones / valid if valid else None,
        }

    def to_state(self) -> dict[str, Any]:
        return {"zeros": self.zeros, "ones": self.ones, "missing": self.missing, "invalid": self.invalid}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BinaryStats:
        stats = cls()
        stats.zeros, stats.ones = int(state["zeros"]), int(state["ones"])
        stats.missing, stats.invalid = int(state["missing"]), int(state["invalid"])
        return stats


class CategoricalStats:
    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.missing = 0
        self.present = 0
        self.counter = ValueCounter()
        self._value_counts = ValueCounts()

    def update(self, column: pa.Array) -> None:
        # What the frequent-values sketch keeps once it purges depends on the order of the values: they
        # come in Arrow's order unless no purge can follow.
        any_order = self.counter.order_free(MOST_REORDERED)
        strings, counts = _trimmed(*self._value_counts(column, any_order=any_order))
        empty = self.counter.add(strings, counts)
        self.missing += empty
        self.present += int(counts.sum()) - empty

    def merge(self, other: CategoricalStats) -> None:
        self.missing += other.missing
        self.present += other.present
        self.counter.merge(other.counter)

    def result(self) -> dict[str, Any]:
        items = self.counter.items()
        top = items[: self.top_k]
        exact = self.counter.exact
        return {
            "missingCount": self.missing,
            "distinctCount": self.counter.distinct_count(items),
            "distinctCountExact": exact,
            "topValues": value_list(top),
            "otherCount": max(0, self.present - sum(count for _, count in top)),
            "leastFrequent": value_list(sorted(items, key=lambda e: (e[1], e[0]))[: self.top_k])
            if exact
            else [],
        }

    def to_state(self) -> dict[str, Any]:
        return {"missing": self.missing, "present": self.present, "counter": self.counter.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any], top_k: int) -> CategoricalStats:
        stats = cls(top_k)
        stats.missing, stats.present = int(state["missing"]), int(state["present"])
        stats.counter = ValueCounter.from_state(state["counter"])
        return stats


def normalized_tokens(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The statistics tokenizer (spec 5.5) over a string column.

    Returns ``(tokens, rows)``: the non-empty normalized tokens (lower-cased, whitespace-split, leading and
    trailing :data:`TOKEN_PUNCTUATION` stripped) in order, and for each token the index (int64) of its row.
    """
    words, codes, rows = normalized_codes(column)
    return words.take(pa.array(codes)), rows


def normalized_codes(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """:func:`normalized_tokens` dictionary-encoded: ``(words, codes, rows)``, token ``j`` being
    ``words[codes[j]]`` (a word may appear twice in ``words``, and ``words`` may hold an empty string that
    no code points to), ``codes`` and ``rows`` int64. Callers that look words up do it once per distinct
    word rather than once per token."""
    words, codes, offsets = split_encoded(as_strings(column))
    normalized, _ = _normalized(words)
    keep = (byte_lengths(normalized) > 0)[codes]  # a token of punctuation alone is no word
    rows = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    return normalized, codes[keep], rows[keep]


def _normalized(tokens: pa.Array) -> tuple[pa.Array, bool]:
    """``(words, plain)``: each whitespace token lower-cased and trimmed of :data:`TOKEN_PUNCTUATION`
    (empty when it held only punctuation); ``plain`` says the tokens are plain ASCII (then a word's
    length in characters is its length in bytes). Lower-casing never makes or removes whitespace, so
    tokens normalized one by one are the tokens of the normalized text."""
    # Arrow's ASCII kernels are several times faster, and give the same answer on plain ASCII text.
    if is_plain_ascii(tokens):
        return pc.ascii_trim(pc.ascii_lower(tokens), characters=string.punctuation), True
    return pc.utf8_trim(pc.utf8_lower(tokens), characters=TOKEN_PUNCTUATION), False


class TextStats:
    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.rows = 0
        self.missing = 0
        self.total_words = 0
        self.words_per_row = [math.inf, -math.inf]
        self.word_length = [math.inf, -math.inf]
        self.counter = ValueCounter()

    def update(self, column: pa.Array) -> None:
        size = len(column)
        if size == 0:
            return
        self.rows += size
        strings = as_strings(column)
        # Without nulls the offsets tell the empty values (no kernel, no boolean array from Arrow).
        empty = empty_mask(strings) if strings.null_count else byte_lengths(strings) == 0
        self.missing += int(np.count_nonzero(empty))
        # Each distinct token is normalized once, not each occurrence: text repeats its words.
        tokens = split_counted(strings)
        words, plain = _normalized(tokens.words)
        lengths = byte_lengths(words) if plain else pc.utf8_length(words).to_numpy(zero_copy_only=False)
        kept = lengths > 0  # a token of punctuation alone is no word
        per_row = tokens.per_row(~kept)
        self.words_per_row = [
            min(self.words_per_row[0], int(per_row.min())),
            max(self.words_per_row[1], int(per_row.max())),
        ]
        if not kept.any():
            return
        occurrences = tokens.counts[kept]
        self.total_words += int(occurrences.sum())
        self.word_length = [
            min(self.word_length[0], int(lengths[kept].min())),
            max(self.word_length[1], int(lengths[kept].max())),
        ]
        # Tokens may normalize alike ("Rate," and "rate"): their counts add up. The words come in the order
        # of their first appearance, as value counts of the words themselves would list them.
        grouped = pc.dictionary_encode(words.filter(pa.array(kept)))
        counts = np.zeros(len(grouped.dictionary), dtype=np.int64)
        np.add.at(counts, grouped.indices.to_numpy(zero_copy_only=False), occurrences)
        self.counter.add(grouped.dictionary, counts)

    def merge(self, other: TextStats) -> None:
        self.rows += other.rows
        self.missing += other.missing
        self.total_words += other.total_words
        self.words_per_row = [
            min(self.words_per_row[0], other.words_per_row[0]),
            max(self.words_per_row[1], other.words_per_row[1]),
        ]
        self.word_length = [
            min(self.word_length[0], other.word_length[0]),
            max(self.word_length[1], other.word_length[1]),
        ]
        self.counter.merge(other.counter)

    def candidate_words(self) -> list[str]:
        """The :data:`MI_TOP_WORDS` most frequent words, candidates for the prominent words."""
        return [word for word, _ in self.counter.items()[:MI_TOP_WORDS]]

    def result(self, word_correlations: dict[str, float] | None) -> dict[str, Any]:
        items = self.counter.items()
        candidates = items[:MI_TOP_WORDS]
        if word_correlations is not None:
            candidates = sorted(candidates, key=lambda e: (-word_correlations.get(e[0], 0.0), -e[1], e[0]))
        prominent = [
            {
                "word": word,
                "count": count,
                "targetCorrelation": None if word_correlations is None else word_correlations.get(word),
            }
            for word, count in candidates[: self.top_k]
        ]
        return {
            "missingCount": self.missing,
            "totalWords": self.total_words,
            "uniqueWords": self.counter.distinct_count(items),
            "uniqueWordsExact": self.counter.exact,
            "wordsPerRow": {
                "min": _finite_or_none(self.words_per_row[0]),
                "max": _finite_or_none(self.words_per_row[1]),
                "mean": self.total_words / self.rows if self.rows else None,
            },
            "wordLength": {
                "min": _finite_or_none(self.word_length[0]),
                "max": _finite_or_none(self.word_length[1]),
            },
            "prominentWords": prominent,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing": self.missing,
            "totalWords": self.total_words,
            "wordsPerRow": [_finite_or_none(v) for v in self.words_per_row],
            "wordLength": [_finite_or_none(v) for v in self.word_length],
            "counter": self.counter.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], top_k: int) -> TextStats:
        stats = cls(top_k)
        stats.rows, stats.missing = int(state["rows"]), int(state["missing"])
        stats.total_words = int(state["totalWords"])
        stats.words_per_row = _range_from_state(state["wordsPerRow"])
        stats.word_length = _range_from_state(state["wordLength"])
        stats.counter = ValueCounter.from_state(state["counter"])
        return stats


def _real(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _finite_or_none(value: float) -> int | None:
    return int(value) if math.isfinite(value) else None


def _range_from_state(state: Sequence[int | None]) -> list[float]:
    low, high = state
    return [math.inf if low is None else low, -math.inf if high is None else high]


ColumnStats = NumericStats | BinaryStats | CategoricalStats | TextStats
