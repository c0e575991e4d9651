"""Datasource statistics ("data insights", spec 5.5) computed in one streaming pass with mergeable sketches.

A :class:`StatisticsAccumulator` is fed Arrow record batches of string columns (only the valid records of the
selected split) together with a stable unique key per row. Accumulators built over different partitions of
the data (worker processes, Spark tasks) merge into the accumulator of the whole data: counts, sums, minima,
maxima, means and standard deviations exactly; quantiles, distinct counts and frequent values within the
error of their sketches; the row sample exactly. ``to_bytes``/``from_bytes`` carry the state between
processes as JSON (sketches and the sample as base64 of their own binary forms; never pickle).

Per attribute type (missing and invalid values follow spec 5.3 and open questions 8-10):

* NUMERIC: missing (empty) and invalid counts; exact count/mean/standard deviation/min/max (Chan's parallel
  algorithm). Quantiles, median and histogram are *exact* (quantiles as numpy's default linear
  interpolation) while the attribute has at most 4,096 distinct values: an exact value -> count map, the
  usual case for integer-coded columns, and cheaper to maintain than a quantile sketch. Beyond that a KLL
  sketch (k=200, about 1.3 % rank error) takes over.
* BINARY: counts of 0 and 1, missing and invalid counts.
* CATEGORICAL: empty values count as missing (they are not errors). Frequent values come from a
  frequent-items sketch fed with each batch's aggregated value counts. Up to 1,536 distinct values
  everything is exact: counts, distinct count, least frequent values. Beyond that the distinct count is a
  HyperLogLog estimate (2^14 registers, about 0.8 % standard error), counts are the sketch's estimates,
  least frequent values are unknown, and a batch feeds the sketch only its 256 most frequent values (a
  value's count may then be underestimated by at most the 257th largest count of each batch).
* TEXT: statistics use *normalized* tokens (spec 5.5): lower-cased, split on whitespace, leading and
  trailing punctuation stripped, empty tokens dropped. Empty values count as missing. Unique words are
  counted like categorical values (exact up to 1,536 distinct words).

Correlation to the target is the Miller-Madow bias-corrected mutual information, in nats and clipped at 0,
between a simplified form of the attribute and the target, measured on a deterministic bottom-k row sample
(the ``sample_size`` rows with the smallest splitmix64 hash of their row key: independent of batch
boundaries, order and partitioning). The target becomes classes: BINARY 0/1, CATEGORICAL values, NUMERIC
10 quantile bins; sampled rows with a missing or invalid target are left out. Attributes become codes:
NUMERIC 10 quantile bins (values equal to a bin edge, such as a 999 sentinel, apart from the rest of their
bin) plus one code for missing/invalid, BINARY 0/1/missing-or-invalid, CATEGORICAL its
50 most frequent sample values plus "other". A TEXT attribute is scored per word, as the presence of each
of its 50 most frequent words, and its correlation is the highest of those word scores. A TEXT target has
no classes: then every correlation is null.

``result()`` returns (JSON-serializable; ``null`` where a value is undefined, e.g. the mean of an attribute
without valid values)::

    {
      "recordCount": int,                   # rows fed to update()
      "attributeTypeCounts": {"BINARY": int, "CATEGORICAL": int, "NUMERIC": int, "TEXT": int},
      "target": null | {"name": str, "type": str,
                        "distribution": {...}},   # the target's per-type fields listed below
      "attributes": [                        # one object per schema attribute, in column order
        {
          "name": str, "type": str,
          "role": "input" | "target" | "rowId" | "rowWeight" | "excluded",
          "missingCount": int,
          "targetCorrelation": float | null,    # input attributes only; null without a usable target
          # NUMERIC
          "invalidCount": int, "validCount": int,
          "min", "max", "mean", "median": float,
          "stddev": float,                      # population standard deviation (ddof=0)
          "quantiles": {"0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99": float | null},
          "histogram": {"edges": [21 floats], "counts": [20 ints]},   # equal width over [min, max];
                                                # one bin [v, v] for a constant, empty without values
          "exact": bool,                        # quantiles/histogram exact (else from the KLL sketch)
          # BINARY
          "invalidCount": int, "counts": {"0": int, "1": int},
          "percentTrue": float | null,          # 100 * ones / (zeros + ones)
          # CATEGORICAL
          "distinctCount": int, "distinctCountExact": bool,
          "topValues": [{"value": str, "count": int}],   # top_k, most frequent first (ties by value)
          "otherCount": int,                    # non-missing values outside topValues
          "leastFrequent": [{"value": str, "count": int}],   # top_k rarest first (ties by value);
                                                # [] unless distinctCountExact
          # TEXT
          "totalWords": int, "uniqueWords": int, "uniqueWordsExact": bool,
          "wordsPerRow": {"min": int, "max": int, "mean": float},   # over all rows, empty ones count 0
          "wordLength": {"min": int, "max": int},                   # in characters
          "prominentWords": [{"word": str, "count": int, "targetCorrelation": float | null}]
                                                # top_k words: by correlation with the target when there
                                                # is one, else by frequency
        }
      ]
    }
"""

from __future__ import annotations

import base64
import copy
import json
import math
import string
from collections.abc import Callable, Sequence
from typing import Any

import datasketches
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.schema import AttributeType, Schema
from emrml.core.values import Parsed, parse_binary, parse_numeric

QUANTILE_RANKS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
MI_BINS = 10
MI_TOP_CATEGORIES = 50
MI_TOP_WORDS = 50
#: Stripped from both ends of a token by the statistics tokenizer.
TOKEN_PUNCTUATION = string.punctuation + "“”‘’«»…–—¡¿"

_FORMAT = "emrml-statistics/1"
_EXACT_NUMERIC_LIMIT = 4096
_KLL_K = 200
_FREQUENT_LG_MAX_MAP = 11
_FREQUENT_CAPACITY = 3 << (_FREQUENT_LG_MAX_MAP - 2)  # the sketch purges beyond 3/4 of its map
_FREQUENT_PER_BATCH = 256
_HLL_LG_REGISTERS = 14
_FEED_CHUNK = 1 << 20

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)
_POLY_BASE = 0x100000001B3
_POLY_BASE_INVERSE = pow(_POLY_BASE, -1, 1 << 64)


# ---------------------------------------------------------------------------------------------- hashing


def splitmix64(keys: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer of each key: a bijection of uint64, so distinct keys get distinct hashes."""
    z = np.array(keys, dtype=_U64, copy=True)
    z += _GOLDEN
    z ^= z >> _U64(30)
    z *= _MIX1
    z ^= z >> _U64(27)
    z *= _MIX2
    z ^= z >> _U64(31)
    return z


def _powers(base: int, length: int) -> np.ndarray:
    """base**t mod 2**64 for t in [0, length)."""
    out = np.full(length, base, dtype=_U64)
    if length:
        out[0] = 1
        np.cumprod(out, out=out)
    return out


def hash_strings(strings: pa.Array) -> np.ndarray:
    """64-bit hashes of the (non-null) strings of an Arrow string array, vectorized.

    A polynomial hash of the UTF-8 bytes modulo 2**64 (from prefix sums, so no per-string Python), mixed by
    splitmix64. Adequate for counting distinct values of real data; not collision-resistant against crafted
    input.
    """
    if len(strings) == 0:
        return np.zeros(0, dtype=_U64)
    if pa.types.is_large_string(strings.type):
        offset_type: type[np.integer[Any]] = np.int64
    else:
        strings = strings.cast(pa.string())
        offset_type = np.int32
    size = len(strings)
    buffers = strings.buffers()
    itemsize = np.dtype(offset_type).itemsize
    offsets = np.frombuffer(buffers[1], dtype=offset_type, count=size + 1, offset=strings.offset * itemsize)
    offsets = offsets.astype(np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8, count=last - first, offset=first)
        if last > first
        else np.zeros(0, dtype=np.uint8)
    )
    # +1 so that a NUL byte still changes the hash.
    terms = (data.astype(_U64) + _U64(1)) * _powers(_POLY_BASE, last - first)
    prefix = np.zeros(last - first + 1, dtype=_U64)
    np.cumsum(terms, out=prefix[1:])
    starts, stops = offsets[:-1] - first, offsets[1:] - first
    hashes = (prefix[stops] - prefix[starts]) * _powers(_POLY_BASE_INVERSE, last - first + 1)[starts]
    return splitmix64(hashes)


# ------------------------------------------------------------------------------------------- sketches


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class _Moments:
    """Exact count, mean, sum of squared deviations (m2), min and max; merged by Chan's parallel algorithm."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add finite ``values`` (float64), each ``weights`` times (int64, same length) or once."""
        if values.size == 0:
            return
        part = _Moments()
        if weights is None:
            part.count = int(values.size)
            part.mean = float(values.mean())
            deviations = values - part.mean
            part.m2 = float(deviations @ deviations)
        else:
            part.count = int(weights.sum())
            part.mean = float(values @ weights) / part.count
            deviations = values - part.mean
            part.m2 = float((deviations * deviations) @ weights)
        part.min = float(values.min())
        part.max = float(values.max())
        self.merge(part)

    def merge(self, other: _Moments) -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            self.min, self.max = other.min, other.max
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def to_state(self) -> list[float | int | None]:
        if self.count == 0:
            return [0, 0.0, 0.0, None, None]
        return [self.count, self.mean, self.m2, self.min, self.max]

    @classmethod
    def from_state(cls, state: Sequence[Any]) -> _Moments:
        moments = cls()
        count, mean, m2, low, high = state
        if count:
            moments.count, moments.mean, moments.m2 = int(count), float(mean), float(m2)
            moments.min, moments.max = float(low), float(high)
        return moments


class _DistinctCounter:
    """HyperLogLog over 64-bit hashes (2**14 one-byte registers, about 0.8 % standard error)."""

    def __init__(self, registers: np.ndarray | None = None) -> None:
        size = 1 << _HLL_LG_REGISTERS
        self.registers = np.zeros(size, dtype=np.uint8) if registers is None else registers

    def add(self, hashes: np.ndarray) -> None:
        if hashes.size == 0:
            return
        index = (hashes >> _U64(64 - _HLL_LG_REGISTERS)).astype(np.intp)
        # The sentinel bit bounds the rank when every remaining bit is zero.
        rest = (hashes << _U64(_HLL_LG_REGISTERS)) | _U64(1 << (_HLL_LG_REGISTERS - 1))
        smeared = rest.copy()
        for shift in (1, 2, 4, 8, 16, 32):
            smeared |= smeared >> _U64(shift)
        rank = (65 - np.bitwise_count(smeared).astype(np.int64)).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def merge(self, other: _DistinctCounter) -> None:
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> int:
        """Ertl's improved raw estimator (arXiv:1702.01284), unbiased from tiny to huge cardinalities."""
        size = self.registers.size
        width = 64 - _HLL_LG_REGISTERS
        histogram = np.bincount(self.registers, minlength=width + 2).astype(np.float64)
        z = size * _ertl_tau(1.0 - histogram[width + 1] / size)
        for k in range(width, 0, -1):
            z = 0.5 * (z + histogram[k])
        z += size * _ertl_sigma(histogram[0] / size)
        if math.isinf(z):
            return 0
        return round(size * size / (2 * math.log(2)) / z)

    def to_state(self) -> str:
        return _b64(self.registers.tobytes())

    @classmethod
    def from_state(cls, state: str) -> _DistinctCounter:
        registers = np.frombuffer(_unb64(state), dtype=np.uint8).copy()
        if registers.size != 1 << _HLL_LG_REGISTERS:
            raise ValueError("statistics state: distinct-count sketch has the wrong size")
        return cls(registers)


def _ertl_sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _ertl_tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == previous:
            return z / 3


class _ValueCounter:
    """Frequent values and the distinct count of a stream of strings, fed per batch with aggregated counts.

    Frequent values live in an Apache DataSketches frequent-items sketch. While that sketch holds every value
    seen so far with its true count (it never had to purge, at most :data:`_FREQUENT_CAPACITY` values) the
    counter is *exact* and the distinct count is the number of retained values; the HyperLogLog starts
    (seeded with every value seen) only when exactness is lost, which keeps hashing off the hot path for the
    usual low-cardinality columns. Once estimating, a batch feeds the sketch only its
    :data:`_FREQUENT_PER_BATCH` most frequent values.
    """

    def __init__(self) -> None:
        self.sketch = datasketches.frequent_strings_sketch(_FREQUENT_LG_MAX_MAP)
        self.distinct: _DistinctCounter | None = None

    @property
    def exact(self) -> bool:
        return self.distinct is None

    def add(self, strings: pa.Array, counts: np.ndarray) -> int:
        """Add distinct ``strings`` seen ``counts`` times (int64, same length); return how many were empty.

        Empty and null strings are not values (they are counted as missing by the caller).
        """
        if len(strings) > _FREQUENT_PER_BATCH:
            return self._add_many(strings, counts)
        # Few values (the usual case): plain Python is cheaper than more Arrow calls.
        values = [(v, c) for v, c in zip(strings.to_pylist(), counts.tolist(), strict=True) if v]
        empty = int(counts.sum()) - sum(c for _, c in values)
        if self.distinct is None and self.sketch.num_active_items + len(values) <= _FREQUENT_CAPACITY:
            for value, count in values:
                self.sketch.update(value, count)
            return empty
        strings = pa.array([v for v, _ in values], type=pa.string())
        return empty + self._add_many(strings, np.array([c for _, c in values], dtype=np.int64))

    def _add_many(self, strings: pa.Array, counts: np.ndarray) -> int:
        blank = _empty_mask(strings)
        empty = int(counts[blank].sum())
        if blank.any():
            strings, counts = strings.filter(pa.array(~blank)), counts[~blank]
        before = None
        if self.distinct is None and self.sketch.num_active_items + len(strings) > _FREQUENT_CAPACITY:
            if len(strings) > _FREQUENT_CAPACITY:
                self._start_estimating()
            else:
                # Some of the values may be known already, so a purge is possible but not certain.
                before = copy.copy(self.sketch)
        if self.distinct is not None:
            self.distinct.add(hash_strings(strings))
            if len(strings) > _FREQUENT_PER_BATCH:
                keep = np.argpartition(counts, -_FREQUENT_PER_BATCH)[-_FREQUENT_PER_BATCH:]
                strings, counts = strings.take(pa.array(keep)), counts[keep]
        for value, count in zip(strings.to_pylist(), counts.tolist(), strict=True):
            self.sketch.update(value, count)
        if before is not None and self._purged():
            self.distinct = _distinct_of(before)
            self.distinct.add(hash_strings(strings))
        return empty

    def _purged(self) -> bool:
        # The upper bound of a value never added (empty strings never are) is the sketch's maximum error.
        return bool(self.sketch.get_upper_bound("") > 0)

    def _start_estimating(self) -> None:
        if self.distinct is None:
            self.distinct = _distinct_of(self.sketch)

    def merge(self, other: _ValueCounter) -> None:
        before = copy.copy(self.sketch) if self.exact and other.exact else None
        self.sketch.merge(other.sketch)
        if before is not None:
            if not self._purged():
                return
            self.distinct = _distinct_of(before)
        other_distinct = other.distinct if other.distinct is not None else _distinct_of(other.sketch)
        assert self.distinct is not None
        self.distinct.merge(other_distinct)

    def items(self) -> list[tuple[str, int]]:
        """(value, estimated count) of every retained value, most frequent first, ties by value."""
        return _sketch_items(self.sketch)

    def distinct_count(self, items: list[tuple[str, int]]) -> int:
        return len(items) if self.distinct is None else self.distinct.estimate()

    def to_state(self) -> dict[str, Any]:
        return {
            "sketch": _b64(self.sketch.serialize()),
            "distinct": None if self.distinct is None else self.distinct.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _ValueCounter:
        counter = cls()
        counter.sketch = datasketches.frequent_strings_sketch.deserialize(_unb64(state["sketch"]))
        if state["distinct"] is not None:
            counter.distinct = _DistinctCounter.from_state(state["distinct"])
        return counter


def _sketch_items(sketch: datasketches.frequent_strings_sketch) -> list[tuple[str, int]]:
    found = sketch.get_frequent_items(datasketches.frequent_items_error_type.NO_FALSE_NEGATIVES)
    return sorted(((item, int(estimate)) for item, estimate, _, _ in found), key=lambda e: (-e[1], e[0]))


def _distinct_of(sketch: datasketches.frequent_strings_sketch) -> _DistinctCounter:
    """A HyperLogLog of the values retained by a frequent-items sketch."""
    distinct = _DistinctCounter()
    distinct.add(hash_strings(pa.array([value for value, _ in _sketch_items(sketch)], type=pa.string())))
    return distinct


def _value_list(items: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"value": value, "count": count} for value, count in items]


# ---------------------------------------------------------------------------------- column statistics


def _as_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    return column


def _parse_numeric(strings: pa.Array) -> Parsed:
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


def _value_counts(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    counted = pc.value_counts(column)
    return counted.field("values"), counted.field("counts").to_numpy(zero_copy_only=False)


def _empty_mask(strings: pa.Array) -> np.ndarray:
    empty = pc.fill_null(pc.equal(strings, ""), True)
    return np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)


def _feed_kll(sketch: datasketches.kll_doubles_sketch, values: np.ndarray, counts: np.ndarray) -> None:
    # Repeat in bounded chunks: a value may stand for many millions of rows.
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        while count > 0:
            step = min(count, _FEED_CHUNK)
            sketch.update(np.full(step, value, dtype=np.float64))
            count -= step


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


class _NumericStats:
    """NUMERIC statistics.

    Exact mode: a value -> count map (sorted distinct values, int64 counts) from which moments, quantiles and
    the histogram are computed when asked. When the map would exceed :data:`_EXACT_NUMERIC_LIMIT` values it is
    poured into a KLL sketch, and from then on each batch updates the sketch and running moments.
    """

    def __init__(self) -> None:
        self.missing = 0
        self.invalid = 0
        self.values: np.ndarray | None = np.zeros(0, dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.kll: datasketches.kll_doubles_sketch | None = None
        self.moments = _Moments()  # sketch mode only

    def update(self, column: pa.Array) -> None:
        if self.kll is not None:
            parsed = _parse_numeric(column)
            self.missing += int(np.count_nonzero(parsed.missing))
            self.invalid += int(np.count_nonzero(parsed.invalid))
            bad = parsed.missing | parsed.invalid
            valid = parsed.values[~bad] if bad.any() else parsed.values
            self.moments.add(valid)
            self.kll.update(valid)
            return
        # Exact mode parses each distinct string once.
        strings, counts = _value_counts(column)
        parsed = _parse_numeric(strings)
        bad = parsed.missing | parsed.invalid
        if bad.any():
            self.missing += int(counts[parsed.missing].sum())
            self.invalid += int(counts[parsed.invalid].sum())
            self._add_exact(parsed.values[~bad], counts[~bad])
        else:
            self._add_exact(parsed.values, counts)

    def _add_exact(self, values: np.ndarray, counts: np.ndarray) -> None:
        if self.values is None:
            assert self.kll is not None
            self.moments.add(values, counts)
            _feed_kll(self.kll, values, counts)
            return
        known = self.values
        if known.size and values.size:
            at = np.minimum(np.searchsorted(known, values), known.size - 1)
            if np.array_equal(known[at], values):
                np.add.at(self.counts, at, counts)
                return
        merged, inverse = np.unique(np.concatenate([known, values]), return_inverse=True)
        totals = np.zeros(merged.size, dtype=np.int64)
        # add.at, unlike bincount with weights, keeps the counts integral; repeated indices are summed.
        np.add.at(totals, inverse, np.concatenate([self.counts, counts]))
        if merged.size > _EXACT_NUMERIC_LIMIT:
            self._to_sketch(merged, totals)
        else:
            self.values, self.counts = merged, totals

    def _to_sketch(self, values: np.ndarray, counts: np.ndarray) -> None:
        self.kll = datasketches.kll_doubles_sketch(_KLL_K)
        self.moments = _Moments()
        self.values, self.counts = None, np.zeros(0, dtype=np.int64)
        self._add_exact(values, counts)

    def merge(self, other: _NumericStats) -> None:
        self.missing += other.missing
        self.invalid += other.invalid
        if other.values is not None:
            self._add_exact(other.values, other.counts)
            return
        if self.values is not None:
            self._to_sketch(self.values, self.counts)
        assert self.kll is not None and other.kll is not None
        self.moments.merge(other.moments)
        self.kll.merge(other.kll)

    def _all_moments(self) -> _Moments:
        if self.values is None:
            return self.moments
        moments = _Moments()
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
            assert self.kll is not None
            quantiles = [float(v) for v in self.kll.get_quantiles(list(QUANTILE_RANKS))]
            median = float(self.kll.get_quantile(0.5))
        out.update(
            min=moments.min,
            max=moments.max,
            mean=moments.mean,
            median=median,
            stddev=math.sqrt(moments.m2 / moments.count),
            quantiles={str(rank): value for rank, value in zip(QUANTILE_RANKS, quantiles, strict=True)},
            histogram=self._histogram(moments),
        )
        return out

    def _histogram(self, moments: _Moments) -> dict[str, list[Any]]:
        low, high, total = moments.min, moments.max, moments.count
        if low == high:
            return {"edges": [low, high], "counts": [total]}
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        if self.values is not None:
            weighted, _ = np.histogram(self.values, bins=edges, weights=self.counts)
            counts = np.rint(weighted).astype(np.int64)
        else:
            assert self.kll is not None
            cdf = np.asarray(self.kll.get_cdf(edges[1:-1].tolist()), dtype=np.float64)
            cumulative = np.rint(np.concatenate([[0.0], cdf[:-1], [1.0]]) * total).astype(np.int64)
            counts = np.diff(cumulative)
        return {"edges": edges.tolist(), "counts": counts.tolist()}

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"missing": self.missing, "invalid": self.invalid}
        if self.values is not None:
            state["values"] = self.values.tolist()
            state["counts"] = self.counts.tolist()
        else:
            assert self.kll is not None
            state["moments"] = self.moments.to_state()
            state["kll"] = _b64(self.kll.serialize())
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _NumericStats:
        stats = cls()
        stats.missing, stats.invalid = int(state["missing"]), int(state["invalid"])
        if "kll" in state:
            stats.kll = datasketches.kll_doubles_sketch.deserialize(_unb64(state["kll"]))
            stats.moments = _Moments.from_state(state["moments"])
            stats.values = None
        else:
            values = np.asarray(state["values"], dtype=np.float64)
            counts = np.asarray(state["counts"], dtype=np.int64)
            if values.shape != counts.shape or values.ndim != 1 or np.any(np.diff(values) <= 0):
                raise ValueError("numeric value counts are malformed")
            stats.values, stats.counts = values, counts
        return stats


class _BinaryStats:
    def __init__(self) -> None:
        self.zeros = 0
        self.ones = 0
        self.missing = 0
        self.invalid = 0

    def update(self, column: pa.Array) -> None:
        strings, counts = _value_counts(column)
        parsed = parse_binary(strings)
        self.zeros += int(counts[parsed.values == 0.0].sum())
        self.ones += int(counts[parsed.values == 1.0].sum())
        self.missing += int(counts[parsed.missing].sum())
        self.invalid += int(counts[parsed.invalid].sum())

    def merge(self, other: _BinaryStats) -> None:
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
    def from_state(cls, state: dict[str, Any]) -> _BinaryStats:
        stats = cls()
        stats.zeros, stats.ones = int(state["zeros"]), int(state["ones"])
        stats.missing, stats.invalid = int(state["missing"]), int(state["invalid"])
        return stats


class _CategoricalStats:
    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.missing = 0
        self.present = 0
        self.counter = _ValueCounter()

    def update(self, column: pa.Array) -> None:
        strings, counts = _value_counts(column)
        empty = self.counter.add(strings, counts)
        self.missing += empty
        self.present += int(counts.sum()) - empty

    def merge(self, other: _CategoricalStats) -> None:
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
            "topValues": _value_list(top),
            "otherCount": max(0, self.present - sum(count for _, count in top)),
            "leastFrequent": _value_list(sorted(items, key=lambda e: (e[1], e[0]))[: self.top_k])
            if exact
            else [],
        }

    def to_state(self) -> dict[str, Any]:
        return {"missing": self.missing, "present": self.present, "counter": self.counter.to_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any], top_k: int) -> _CategoricalStats:
        stats = cls(top_k)
        stats.missing, stats.present = int(state["missing"]), int(state["present"])
        stats.counter = _ValueCounter.from_state(state["counter"])
        return stats


def normalized_tokens(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """The statistics tokenizer (spec 5.5) over a string column.

    Returns ``(tokens, rows)``: the non-empty normalized tokens (lower-cased, whitespace-split, leading and
    trailing :data:`TOKEN_PUNCTUATION` stripped) in order, and for each token the index (int64) of its row.
    """
    words = pc.utf8_split_whitespace(pc.utf8_lower(_as_strings(column)))
    rows = np.asarray(pc.list_parent_indices(words).to_numpy(zero_copy_only=False), dtype=np.int64)
    # pyarrow 26's utf8_split_whitespace can leave a trailing space on the last token of a non-ASCII
    # string, so whitespace is trimmed as well as punctuation.
    tokens = pc.utf8_trim(pc.utf8_trim_whitespace(pc.list_flatten(words)), characters=TOKEN_PUNCTUATION)
    keep = np.asarray(pc.not_equal(tokens, "").to_numpy(zero_copy_only=False), dtype=bool)
    if not keep.all():
        tokens, rows = tokens.filter(pa.array(keep)), rows[keep]
    return tokens, rows


class _TextStats:
    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.rows = 0
        self.missing = 0
        self.total_words = 0
        self.words_per_row = [math.inf, -math.inf]
        self.word_length = [math.inf, -math.inf]
        self.counter = _ValueCounter()

    def update(self, column: pa.Array) -> None:
        size = len(column)
        if size == 0:
            return
        self.rows += size
        self.missing += int(np.count_nonzero(_empty_mask(column)))
        tokens, rows = normalized_tokens(column)
        per_row = np.bincount(rows, minlength=size)
        self.words_per_row = [
            min(self.words_per_row[0], int(per_row.min())),
            max(self.words_per_row[1], int(per_row.max())),
        ]
        if len(tokens) == 0:
            return
        self.total_words += len(tokens)
        lengths = pc.min_max(pc.utf8_length(tokens))
        self.word_length = [
            min(self.word_length[0], lengths["min"].as_py()),
            max(self.word_length[1], lengths["max"].as_py()),
        ]
        words, counts = _value_counts(tokens)
        self.counter.add(words, counts)

    def merge(self, other: _TextStats) -> None:
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
    def from_state(cls, state: dict[str, Any], top_k: int) -> _TextStats:
        stats = cls(top_k)
        stats.rows, stats.missing = int(state["rows"]), int(state["missing"])
        stats.total_words = int(state["totalWords"])
        stats.words_per_row = _range_from_state(state["wordsPerRow"])
        stats.word_length = _range_from_state(state["wordLength"])
        stats.counter = _ValueCounter.from_state(state["counter"])
        return stats


def _finite_or_none(value: float) -> int | None:
    return int(value) if math.isfinite(value) else None


def _range_from_state(state: Sequence[int | None]) -> list[float]:
    low, high = state
    return [math.inf if low is None else low, -math.inf if high is None else high]


_ColumnStats = _NumericStats | _BinaryStats | _CategoricalStats | _TextStats


# --------------------------------------------------------------------------------- mutual information


def mutual_information(x: np.ndarray, y: np.ndarray, *, miller_madow: bool = True) -> float:
    """Mutual information in nats between two equally long arrays of integer codes (any integer values).

    With ``miller_madow`` the plug-in estimate is bias-corrected (Miller-Madow on each entropy term) and
    clipped at 0, so that an attribute independent of the target scores about 0 whatever its number of
    codes.
    """
    size = len(x)
    if size == 0:
        return 0.0
    _, x_codes = np.unique(x, return_inverse=True)
    y_values, y_codes = np.unique(y, return_inverse=True)
    joint = np.bincount(x_codes * len(y_values) + y_codes).astype(np.float64)
    x_counts = np.bincount(x_codes).astype(np.float64)
    y_counts = np.bincount(y_codes).astype(np.float64)

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / size
        return float(-(p * np.log(p)).sum())

    information = entropy(x_counts) + entropy(y_counts) - entropy(joint)
    if miller_madow:
        cells = np.count_nonzero(joint) - np.count_nonzero(x_counts) - np.count_nonzero(y_counts) + 1
        information -= float(cells) / (2 * size)
    return max(information, 0.0)


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
    strings = _as_strings(column)
    if attribute_type is AttributeType.BINARY:
        return _binary_codes(strings)
    if attribute_type is AttributeType.CATEGORICAL:
        codes = _dictionary_codes(strings)
        codes[_empty_mask(strings)] = -1
        return codes
    if attribute_type is AttributeType.NUMERIC:
        return _numeric_codes(strings, lambda values: quantile_codes(values, MI_BINS))
    raise ValueError(f"a {attribute_type} attribute cannot be a target")


def _binary_codes(strings: pa.Array) -> np.ndarray:
    parsed = parse_binary(strings)
    return np.where(parsed.missing | parsed.invalid, -1, np.nan_to_num(parsed.values)).astype(np.int64)


def _numeric_codes(strings: pa.Array, binning: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``binning`` of the valid values; -1 where missing or invalid."""
    parsed = _parse_numeric(strings)
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


def _attribute_codes(strings: pa.Array, attribute_type: AttributeType) -> np.ndarray:
    """Simplified codes of a non-TEXT input attribute for mutual information with the target."""
    if attribute_type is AttributeType.NUMERIC:
        return _numeric_codes(strings, _mass_point_codes)
    if attribute_type is AttributeType.BINARY:
        return _binary_codes(strings)
    codes = _dictionary_codes(strings)
    counts = np.bincount(codes[codes >= 0])
    if counts.size > MI_TOP_CATEGORIES:
        kept = np.zeros(counts.size, dtype=bool)
        kept[np.argsort(-counts, kind="stable")[:MI_TOP_CATEGORIES]] = True
        codes = np.where((codes >= 0) & ~kept[np.maximum(codes, 0)], -1, codes)
    return codes


def _word_correlations(strings: pa.Array, words: Sequence[str], y: np.ndarray) -> dict[str, float]:
    """Mutual information between the presence of each word in a row and the target codes ``y``."""
    if not words:
        return {}
    tokens, rows = normalized_tokens(strings)
    index = pc.index_in(tokens, value_set=pa.array(list(words), type=pa.string()))
    codes = np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    hit = codes >= 0
    presence = np.zeros((len(strings), len(words)), dtype=np.int64)
    presence[rows[hit], codes[hit]] = 1
    return {word: mutual_information(presence[:, j], y) for j, word in enumerate(words)}


# ------------------------------------------------------------------------------------------ the sample


class _BottomKSample:
    """The rows with the ``size`` smallest splitmix64(row key) hashes.

    Candidates are buffered and compacted when the buffer reaches ``size`` rows, so memory stays within
    about twice the sample plus one batch. Once full, rows hashing above the current largest kept hash are
    skipped before any of their strings are touched. Rows are kept in arrival order (gathering rows in
    position order is much faster than in hash order) and put in hash order only when read.
    """

    def __init__(self, size: int, arrow_schema: pa.Schema) -> None:
        self.size = size
        self.arrow_schema = arrow_schema
        self.hashes = np.zeros(0, dtype=_U64)
        self.table = arrow_schema.empty_table()
        self.pending: list[tuple[np.ndarray, pa.Table]] = []
        self.pending_rows = 0
        self.threshold: np.uint64 | None = None

    def offer(self, hashes: np.ndarray, batch: pa.RecordBatch) -> None:
        if self.threshold is not None:
            chosen = np.flatnonzero(hashes < self.threshold)
            if chosen.size == 0:
                return
            hashes = hashes[chosen]
            batch = batch.take(pa.array(chosen))
        self.add(hashes, pa.Table.from_batches([batch], schema=self.arrow_schema))

    def add(self, hashes: np.ndarray, table: pa.Table) -> None:
        self.pending.append((hashes, table))
        self.pending_rows += len(hashes)
        if self.pending_rows >= self.size:
            self.compact()

    def compact(self) -> None:
        if not self.pending:
            return
        hashes = np.concatenate([self.hashes, *(h for h, _ in self.pending)])
        table = pa.concat_tables([self.table, *(t for _, t in self.pending)])
        self.pending, self.pending_rows = [], 0
        if len(hashes) > self.size:
            chosen = np.sort(np.argpartition(hashes, self.size - 1)[: self.size])
            hashes, table = hashes[chosen], table.take(pa.array(chosen))
        if len(hashes) == self.size:
            self.threshold = hashes.max()
        self.hashes, self.table = hashes, table.combine_chunks()

    def sorted(self) -> tuple[np.ndarray, pa.Table]:
        """Hashes and rows in hash order."""
        self.compact()
        order = np.argsort(self.hashes)
        return self.hashes[order], self.table.take(pa.array(order))

    def merge(self, other: _BottomKSample) -> None:
        other.compact()
        self.add(other.hashes, other.table)
        self.compact()

    def to_state(self) -> dict[str, str]:
        hashes, table = self.sorted()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.arrow_schema) as writer:
            writer.write_table(table)
        return {
            "hashes": _b64(hashes.astype("<u8").tobytes()),
            "table": _b64(sink.getvalue().to_pybytes()),
        }

    def load_state(self, state: dict[str, str]) -> None:
        hashes = np.frombuffer(_unb64(state["hashes"]), dtype="<u8").astype(_U64)
        with pa.ipc.open_stream(_unb64(state["table"])) as reader:
            table = reader.read_all()
        if not table.schema.equals(self.arrow_schema) or table.num_rows != len(hashes):
            raise ValueError("statistics state: the row sample does not match the schema")
        self.add(hashes, table)
        self.compact()


# ------------------------------------------------------------------------------------ the accumulator


class StatisticsAccumulator:
    """Mergeable one-pass statistics of a datasource. Feed it Arrow batches of string columns.

    ``sample_size`` rows (default 20,000) are kept for target correlations; ``top_k`` (default 10) bounds
    the lists of top/least frequent values and prominent words. See the module docstring for ``result()``.
    """

    def __init__(self, schema: Schema, *, sample_size: int = 20_000, top_k: int = 10) -> None:
        if sample_size < 1 or top_k < 1:
            raise ValueError("sample_size and top_k must be positive")
        self.schema = schema
        self.sample_size = sample_size
        self.top_k = top_k
        self.record_count = 0
        self._columns: dict[str, _ColumnStats] = {a.name: self._new_stats(a.type) for a in schema.attributes}
        sampled = {a.name for a in schema.input_attributes}
        if schema.target is not None:
            sampled.add(schema.target)
        self._sample_names = [name for name in schema.names if name in sampled]
        self._sample = _BottomKSample(
            sample_size, pa.schema([pa.field(name, pa.string()) for name in self._sample_names])
        )

    def _new_stats(self, attribute_type: AttributeType) -> _ColumnStats:
        if attribute_type is AttributeType.NUMERIC:
            return _NumericStats()
        if attribute_type is AttributeType.BINARY:
            return _BinaryStats()
        if attribute_type is AttributeType.CATEGORICAL:
            return _CategoricalStats(self.top_k)
        return _TextStats(self.top_k)

    def update(self, batch: pa.RecordBatch, row_keys: np.ndarray) -> None:
        """Add a batch: one string column per schema attribute, named as in ``schema.names``.

        ``row_keys`` (uint64, one per row) must be stable and unique across the whole datasource; the
        engine passes ``(file_index << 40) | byte_offset``.
        """
        keys = np.asarray(row_keys)
        if keys.shape != (batch.num_rows,) or not np.issubdtype(keys.dtype, np.integer):
            raise ValueError(
                f"row_keys must be {batch.num_rows} integers (one per row), got shape {keys.shape} "
                f"of {keys.dtype}"
            )
        missing = [name for name in self.schema.names if batch.schema.get_field_index(name) < 0]
        if missing:
            raise ValueError(f"batch has no column for attribute(s) {', '.join(missing)}")
        if batch.num_rows == 0:
            return
        self.record_count += batch.num_rows
        columns = {name: _as_strings(batch.column(name)) for name in self.schema.names}
        for name, stats in self._columns.items():
            stats.update(columns[name])
        sampled = pa.RecordBatch.from_arrays(
            [columns[name] for name in self._sample_names], schema=self._sample.arrow_schema
        )
        self._sample.offer(splitmix64(keys.astype(_U64, copy=False)), sampled)

    def merge(self, other: StatisticsAccumulator) -> None:
        """Fold ``other`` (same schema, sample size and top_k) into this accumulator."""
        if other.schema != self.schema or (other.sample_size, other.top_k) != (self.sample_size, self.top_k):
            raise ValueError("cannot merge statistics of different schemas or settings")
        self.record_count += other.record_count
        for name, stats in self._columns.items():
            stats.merge(other._columns[name])  # type: ignore[arg-type]
        self._sample.merge(other._sample)

    def sample_table(self) -> pa.Table:
        """The sampled rows (target and input attributes, string columns, in schema order), by row hash."""
        return self._sample.sorted()[1]

    def to_bytes(self) -> bytes:
        """The state as UTF-8 JSON (sketches and sample as base64 of their own serialized forms)."""
        state = {
            "format": _FORMAT,
            "names": self.schema.names,
            "sampleSize": self.sample_size,
            "topK": self.top_k,
            "recordCount": self.record_count,
            "columns": {name: stats.to_state() for name, stats in self._columns.items()},
            "sample": self._sample.to_state(),
        }
        return json.dumps(state, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_bytes(cls, schema: Schema, data: bytes) -> StatisticsAccumulator:
        """Rebuild an accumulator from :meth:`to_bytes` output for the same ``schema``."""
        try:
            state = json.loads(data.decode("utf-8"))
            if state.get("format") != _FORMAT or state.get("names") != schema.names:
                raise ValueError("not statistics of this schema")
            accumulator = cls(schema, sample_size=int(state["sampleSize"]), top_k=int(state["topK"]))
            accumulator.record_count = int(state["recordCount"])
            for attribute in schema.attributes:
                accumulator._columns[attribute.name] = accumulator._stats_from_state(
                    attribute.type, state["columns"][attribute.name]
                )
            accumulator._sample.load_state(state["sample"])
        except (KeyError, TypeError, ValueError, pa.ArrowException) as error:
            raise ValueError(f"invalid statistics state: {error}") from error
        return accumulator

    def _stats_from_state(self, attribute_type: AttributeType, state: dict[str, Any]) -> _ColumnStats:
        if attribute_type is AttributeType.NUMERIC:
            return _NumericStats.from_state(state)
        if attribute_type is AttributeType.BINARY:
            return _BinaryStats.from_state(state)
        if attribute_type is AttributeType.CATEGORICAL:
            return _CategoricalStats.from_state(state, self.top_k)
        return _TextStats.from_state(state, self.top_k)

    def _role(self, name: str) -> str:
        schema = self.schema
        if name == schema.target:
            return "target"
        if name == schema.row_id:
            return "rowId"
        if name == schema.row_weight:
            return "rowWeight"
        if name in schema.excluded:
            return "excluded"
        return "input"

    def _correlations(self) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
        """Target correlation per input attribute, and per candidate word of each TEXT input attribute."""
        schema = self.schema
        inputs = schema.input_attributes
        target = schema.target
        if target is None or schema.attribute(target).type is AttributeType.TEXT:
            return {a.name: None for a in inputs}, {}
        sample = self.sample_table()
        y = target_codes(sample.column(target), schema.attribute(target).type)
        usable = y >= 0
        if not usable.any():
            return {a.name: None for a in inputs}, {}
        y = y[usable]
        rows = pa.array(usable)
        attribute_scores: dict[str, float | None] = {}
        word_scores: dict[str, dict[str, float]] = {}
        for attribute in inputs:
            strings = _as_strings(sample.column(attribute.name)).filter(rows)
            if attribute.type is AttributeType.TEXT:
                stats = self._columns[attribute.name]
                assert isinstance(stats, _TextStats)
                word_scores[attribute.name] = _word_correlations(strings, stats.candidate_words(), y)
                attribute_scores[attribute.name] = max(word_scores[attribute.name].values(), default=0.0)
            else:
                attribute_scores[attribute.name] = mutual_information(
                    _attribute_codes(strings, attribute.type), y
                )
        return attribute_scores, word_scores

    def result(self) -> dict[str, Any]:
        """The statistics as a JSON-serializable dict (structure in the module docstring)."""
        attribute_scores, word_scores = self._correlations()
        type_counts = {t.value: 0 for t in AttributeType}
        attributes = []
        for attribute in self.schema.attributes:
            type_counts[attribute.type.value] += 1
            stats = self._columns[attribute.name]
            role = self._role(attribute.name)
            entry: dict[str, Any] = {"name": attribute.name, "type": attribute.type.value, "role": role}
            if isinstance(stats, _TextStats):
                entry.update(stats.result(word_scores.get(attribute.name) if role == "input" else None))
            else:
                entry.update(stats.result())
            if role == "input":
                entry["targetCorrelation"] = attribute_scores[attribute.name]
            attributes.append(entry)
        target = None
        if self.schema.target is not None:
            position = self.schema.position(self.schema.target)
            distribution = {
                k: v for k, v in attributes[position].items() if k not in ("name", "type", "role")
            }
            target = {
                "name": self.schema.target,
                "type": attributes[position]["type"],
                "distribution": distribution,
            }
        return {
            "recordCount": self.record_count,
            "attributeTypeCounts": type_counts,
            "target": target,
            "attributes": attributes,
        }
