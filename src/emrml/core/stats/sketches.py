"""Mergeable sketches for datasource statistics: moments, distinct counts, value counts, and the
hashing they share. Each has a ``merge`` and a JSON-safe state (never pickle)."""

from __future__ import annotations

import base64
import copy
import math
from collections.abc import Sequence
from typing import Any

import datasketches
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.stats.constants import (
    FREQUENT_CAPACITY,
    FREQUENT_LG_MAX_MAP,
    FREQUENT_PER_BATCH,
    GOLDEN,
    HLL_LG_REGISTERS,
    MIX1,
    MIX2,
    POLY_BASE,
    POLY_BASE_INVERSE,
    U64,
)

# ---------------------------------------------------------------------------------------------- hashing


def splitmix64(keys: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer of each key: a bijection of uint64, so distinct keys get distinct hashes."""
    z = np.array(keys, dtype=U64, copy=True)
    z += GOLDEN
    z ^= z >> U64(30)
    z *= MIX1
    z ^= z >> U64(27)
    z *= MIX2
    z ^= z >> U64(31)
    return z


def _powers(base: int, length: int) -> np.ndarray:
    """base**t mod 2**64 for t in [0, length)."""
    out = np.full(length, base, dtype=U64)
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
        return np.zeros(0, dtype=U64)
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
    terms = (data.astype(U64) + U64(1)) * _powers(POLY_BASE, last - first)
    prefix = np.zeros(last - first + 1, dtype=U64)
    np.cumsum(terms, out=prefix[1:])
    starts, stops = offsets[:-1] - first, offsets[1:] - first
    hashes = (prefix[stops] - prefix[starts]) * _powers(POLY_BASE_INVERSE, last - first + 1)[starts]
    return splitmix64(hashes)


# ------------------------------------------------------------------------------------------- sketches


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def empty_mask(strings: pa.Array) -> np.ndarray:
    empty = pc.fill_null(pc.equal(strings, ""), True)
    return np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)


class Moments:
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
        part = Moments()
        # Values near the float range overflow the sums to infinities, which the statistics report as
        # unknown (stats.columns): no warning.
        with np.errstate(over="ignore", invalid="ignore"):
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

    def merge(self, other: Moments) -> None:
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
    def from_state(cls, state: Sequence[Any]) -> Moments:
        moments = cls()
        count, mean, m2, low, high = state
        if count:
            moments.count, moments.mean, moments.m2 = int(count), float(mean), float(m2)
            moments.min, moments.max = float(low), float(high)
        return moments


class _DistinctCounter:
    """HyperLogLog over 64-bit hashes (2**14 one-byte registers, about 0.8 % standard error)."""

    def __init__(self, registers: np.ndarray | None = None) -> None:
        size = 1 << HLL_LG_REGISTERS
        self.registers = np.zeros(size, dtype=np.uint8) if registers is None else registers

    def add(self, hashes: np.ndarray) -> None:
        if hashes.size == 0:
            return
        index = (hashes >> U64(64 - HLL_LG_REGISTERS)).astype(np.intp)
        # The sentinel bit bounds the rank when every remaining bit is zero.
        rest = (hashes << U64(HLL_LG_REGISTERS)) | U64(1 << (HLL_LG_REGISTERS - 1))
        smeared = rest.copy()
        for shift in (1, 2, 4, 8, 16, 32):
            smeared |= smeared >> U64(shift)
        rank = (65 - np.bitwise_count(smeared).astype(np.int64)).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def merge(self, other: _DistinctCounter) -> None:
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> int:
        """Ertl's improved raw estimator (arXiv:1702.01284), unbiased from tiny to huge cardinalities."""
        size = self.registers.size
        width = 64 - HLL_LG_REGISTERS
        histogram = np.bincount(self.registers, minlength=width + 2).astype(np.float64)
        z = size * _ertl_tau(1.0 - histogram[width + 1] / size)
        for k in range(width, 0, -1):
            z = 0.5 * (z + histogram[k])
        z += size * _ertl_sigma(histogram[0] / size)
        if math.isinf(z):
            return 0
        return round(size * size / (2 * math.log(2)) / z)

    def to_state(self) -> str:
        return b64(self.registers.tobytes())

    @classmethod
    def from_state(cls, state: str) -> _DistinctCounter:
        registers = np.frombuffer(unb64(state), dtype=np.uint8).copy()
        if registers.size != 1 << HLL_LG_REGISTERS:
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


class ValueCounter:
    """Frequent values and the distinct count of a stream of strings, fed per batch with aggregated counts.

    Frequent values live in an Apache DataSketches frequent-items sketch. While that sketch holds every value
    seen so far with its true count (it never had to purge, at most :data:`FREQUENT_CAPACITY` values) the
    counter is *exact* and the distinct count is the number of retained values; the HyperLogLog starts
    (seeded with every value seen) only when exactness is lost, which keeps hashing off the hot path for the
    usual low-cardinality columns. Once estimating, a batch feeds the sketch only its
    :data:`FREQUENT_PER_BATCH` most frequent values.
    """

    def __init__(self) -> None:
        self.sketch = datasketches.frequent_strings_sketch(FREQUENT_LG_MAX_MAP)
        self.distinct: _DistinctCounter | None = None

    @property
    def exact(self) -> bool:
        return self.distinct is None

    def order_free(self, values: int) -> bool:
        """Whether adding ``values`` distinct values keeps every count exact whatever their order: the
        sketch has never purged and has room for them all (a purge depends on the order of the values)."""
        return self.distinct is None and self.sketch.num_active_items + values <= FREQUENT_CAPACITY

    def add(self, strings: pa.Array, counts: np.ndarray) -> int:
        """Add distinct ``strings`` seen ``counts`` times (int64, same length); return how many were empty.

        Empty and null strings are not values (they are counted as missing by the caller).
        """
        if len(strings) > FREQUENT_PER_BATCH:
            return self._add_many(strings, counts)
        # Few values (the usual case): plain Python is cheaper than more Arrow calls.
        values = [(v, c) for v, c in zip(strings.to_pylist(), counts.tolist(), strict=True) if v]
        empty = int(counts.sum()) - sum(c for _, c in values)
        if self.distinct is None and self.sketch.num_active_items + len(values) <= FREQUENT_CAPACITY:
            for value, count in values:
                self.sketch.update(value, count)
            return empty
        strings = pa.array([v for v, _ in values], type=pa.string())
        return empty + self._add_many(strings, np.array([c for _, c in values], dtype=np.int64))

    def _add_many(self, strings: pa.Array, counts: np.ndarray) -> int:
        blank = empty_mask(strings)
        empty = int(counts[blank].sum())
        if blank.any():
            strings, counts = strings.filter(pa.array(~blank)), counts[~blank]
        before = None
        if self.distinct is None and self.sketch.num_active_items + len(strings) > FREQUENT_CAPACITY:
            if len(strings) > FREQUENT_CAPACITY:
                self._start_estimating()
            else:
                # Some of the values may be known already, so a purge is possible but not certain.
                before = copy.copy(self.sketch)
        if self.distinct is not None:
            self.distinct.add(hash_strings(strings))
            if len(strings) > FREQUENT_PER_BATCH:
                keep = np.argpartition(counts, -FREQUENT_PER_BATCH)[-FREQUENT_PER_BATCH:]
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

    def merge(self, other: ValueCounter) -> None:
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
            "sketch": b64(self.sketch.serialize()),
            "distinct": None if self.distinct is None else self.distinct.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ValueCounter:
        counter = cls()
        counter.sketch = datasketches.frequent_strings_sketch.deserialize(unb64(state["sketch"]))
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


def value_list(items: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"value": value, "count": count} for value, count in items]
