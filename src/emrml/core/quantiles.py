"""A mergeable quantile sketch that gives the same answer on every run: KLL with a hashed coin.

Numbers with too many distinct values to count exactly (datasource statistics beyond 4,096, quantile bins
beyond 65,536) are summarized by a KLL sketch (Karnin, Lang and Liberty, 2016): levels of items, an item of
level ``h`` standing for ``2**h`` values. A level over its capacity is sorted and halved: every other item,
from an offset chosen by a coin, moves up a level. Apache DataSketches draws that coin from a generator
seeded by the clock, which its Python package cannot seed, so the same data gave other quantile bins, and
so another model, on every run. Here the coin is a hash of the level and of how many times it was compacted
before: as even as a random coin for data not built against it, and the same on every run. Written here
because no well-kept Python library offers a seedable KLL.

The sketch holds at most about ``3 k`` numbers; quantiles are within about ``1.7 / k`` of the exact
normalized rank (DataSketches' figure for its KLL, which this one matches; ``tests/core/test_quantiles.py``
checks it). Its state is plain numbers (``to_state``), safe to store or send.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The smallest level capacity and the ratio between one level's capacity and the next one's (KLL's m, c).
_MIN_CAPACITY = 8
_DECAY = 2 / 3


def add_counts(
    values: np.ndarray, counts: np.ndarray, more: np.ndarray, more_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An exact value -> count map (sorted distinct float64 ``values``, int64 ``counts``) with each of
    ``more`` added ``more_counts`` times (``more`` may repeat a value): the new map. What statistics and
    quantile bins keep while a column has few enough distinct numbers, before a sketch takes over."""
    if values.size and more.size:
        at = np.minimum(np.searchsorted(values, more), values.size - 1)
        if np.array_equal(values[at], more):  # the usual batch: no number that is not known already
            totals = counts.copy()
            np.add.at(totals, at, more_counts)
            return values, totals
    merged, inverse = np.unique(np.concatenate([values, more]), return_inverse=True)
    totals = np.zeros(merged.size, dtype=np.int64)
    # add.at, unlike bincount with weights, keeps the counts integral; repeated indices are summed.
    np.add.at(totals, inverse, np.concatenate([counts, more_counts]))
    return merged, totals


def _coin(level: int, compactions: int) -> int:
    """0 or 1: where the compaction number ``compactions`` of ``level`` starts taking every other item."""
    return hashlib.blake2b(b"%d:%d" % (level, compactions), digest_size=1).digest()[0] & 1


class QuantileSketch:
    """Approximate quantiles of a stream of finite float64 numbers, with exact count, minimum and maximum.

    ``k`` (default 200) sets the accuracy: rank error about ``1.7 / k``, memory about ``3 k`` numbers.
    """

    def __init__(self, k: int = 200) -> None:
        if k < _MIN_CAPACITY:
            raise ValueError(f"k must be at least {_MIN_CAPACITY}, got {k}")
        self.k = k
        self.n = 0
        self.min = math.inf
        self.max = -math.inf
        self.levels: list[np.ndarray] = [np.empty(0)]
        self.compactions: list[int] = [0]

    def update(self, values: np.ndarray, counts: np.ndarray | None = None) -> None:
        """Add ``values`` (float64, shape (n,)), each ``counts[i]`` times (int64 ≥ 1, default once)."""
        values = np.asarray(values, dtype=np.float64)
        if not values.size:
            return
        if not np.isfinite(values).all():
            raise ValueError("a quantile sketch takes finite numbers only")
        if counts is None:
            self._append(0, values)
            self.n += values.size
        else:
            counts = np.asarray(counts, dtype=np.int64)
            # A value counted c times is one item on each level whose bit is set in c: exact weights.
            for level in range(int(counts.max()).bit_length()):
                self._append(level, values[(counts >> level) & 1 == 1])
            self.n += int(counts.sum())
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        self._compress()

    def merge(self, other: QuantileSketch) -> None:
        """Add the numbers ``other`` summarizes."""
        for level, items in enumerate(other.levels):
            self._append(level, items)
            self.compactions[level] += other.compactions[level]
        self.n += other.n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self._compress()

    def is_empty(self) -> bool:
        return self.n == 0

    def quantiles(self, ranks: Sequence[float]) -> list[float]:
        """For each normalized rank r in [0, 1], the smallest retained number whose share of the numbers at
        or below it is at least r (rank 0: the minimum, rank 1: the maximum)."""
        if self.n == 0:
            raise ValueError("the sketch is empty")
        values, cumulative = self._sorted()
        targets = np.asarray(ranks, dtype=np.float64) * self.n
        picked = values[np.minimum(np.searchsorted(cumulative, targets, side="left"), values.size - 1)]
        out = np.clip(picked, self.min, self.max)
        out[targets <= 0] = self.min
        out[targets >= self.n] = self.max
        return [float(value) for value in out]

    def cdf(self, points: Sequence[float]) -> list[float]:
        """For each point (increasing), the share of the numbers at or below it; then 1.0."""
        if self.n == 0:
            raise ValueError("the sketch is empty")
        values, cumulative = self._sorted()
        at = np.searchsorted(values, np.asarray(points, dtype=np.float64), side="right")
        below = np.where(at > 0, cumulative[np.maximum(at - 1, 0)], 0)
        return [*(below / self.n).tolist(), 1.0]

    def to_state(self) -> dict[str, Any]:
        """The sketch as JSON-safe numbers (``from_state`` reads them back)."""
        return {
            "k": self.k,
            "n": self.n,
            "min": self.min if self.n else None,
            "max": self.max if self.n else None,
            "levels": [items.tolist() for items in self.levels],
            "compactions": list(self.compactions),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QuantileSketch:
        sketch = cls(int(state["k"]))
        levels = [np.asarray(items, dtype=np.float64) for items in state["levels"]]
        compactions = [int(count) for count in state["compactions"]]
        n = int(state["n"])
        weight = sum(items.size << level for level, items in enumerate(levels))
        if not levels or len(compactions) != len(levels) or weight != n or any(c < 0 for c in compactions):
            raise ValueError("the quantile sketch state is malformed")
        sketch.levels, sketch.compactions, sketch.n = levels, compactions, n
        if n:
            sketch.min, sketch.max = float(state["min"]), float(state["max"])
        return sketch

    # ---------------------------------------------------------------------------------------------- inside

    def _append(self, level: int, items: np.ndarray) -> None:
        while len(self.levels) <= level:
            self.levels.append(np.empty(0))
            self.compactions.append(0)
        if items.size:
            self.levels[level] = np.concatenate((self.levels[level], items))

    def _capacity(self, level: int) -> int:
        depth = len(self.levels) - 1 - level
        return max(_MIN_CAPACITY, math.ceil(self.k * _DECAY**depth))

    def _compress(self) -> None:
        """Halve full levels, lowest first, until the sketch holds no more than its capacity."""
        while sum(items.size for items in self.levels) > sum(map(self._capacity, range(len(self.levels)))):
            level = next(h for h, items in enumerate(self.levels) if items.size >= self._capacity(h))
            # Above level 0 a level holds runs of sorted items, which a stable sort merges.
            items = np.sort(self.levels[level], kind="stable" if level else "quicksort")
            kept = items.size % 2  # an odd item out stays where it is
            self._append(level + 1, items[kept + _coin(level, self.compactions[level]) :: 2])
            self.levels[level] = items[:kept]
            self.compactions[level] += 1

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Retained numbers in increasing order and the cumulative weight up to each."""
        values = np.concatenate(self.levels)
        weights = np.concatenate([np.full(items.size, 1 << level) for level, items in enumerate(self.levels)])
        order = np.argsort(values, kind="stable")
        return values[order], np.cumsum(weights[order])
