"""Fitting a feature space: the statistics a recipe's outputs learn from training batches."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.features.batch import BatchValues, Numbers, distinct_per_row
from emrml.core.features.layout import COUNTER_HEADROOM, COUNTER_PENDING, EXACT_DISTINCT_LIMIT, KLL_K
from emrml.core.quantiles import QuantileSketch, add_counts
from emrml.core.recipe import transforms as tf
from emrml.core.recipe.grammar import (
    Output,
    OutputKind,
)

# --- Fitting --------------------------------------------------------------------------------------------


class NumericStats:
    """One NUMERIC attribute over the training data: absent values seen, moments, quantiles."""

    def __init__(self) -> None:
        self.absent_seen = False
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.sketch: QuantileSketch | None = None
        self.distinct: np.ndarray | None = None
        self.distinct_counts = np.empty(0, dtype=np.int64)

    def track_quantiles(self) -> None:
        """Count the values from now on, for quantile bins: exactly while there are at most
        ``EXACT_DISTINCT_LIMIT`` distinct ones, then in a sketch that starts from those counts."""
        if self.distinct is None and self.sketch is None:
            self.distinct = np.empty(0)

    def update(self, numbers: Numbers) -> None:
        values, absent = numbers.per_row()
        self.absent_seen = self.absent_seen or bool(absent.any())
        values = values[~absent]
        if not len(values):
            return
        # Chan et al.'s pairwise update: batch moments merged into the running ones.
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        total = self.count + len(values)
        delta = batch_mean - self.mean
        self.mean += delta * len(values) / total
        self.m2 += batch_m2 + delta * delta * self.count * len(values) / total
        self.count = total
        if self.sketch is None and self.distinct is None:
            return
        # Counted per distinct string of the batch (``numbers`` is dictionary-encoded), not per row; a code
        # of -1 (a null) is absent.
        codes = numbers.codes
        if codes.min() < 0:
            codes = codes[codes >= 0]
        counts = np.bincount(codes, minlength=len(numbers.values))
        present = (counts > 0) & ~numbers.absent
        if self.sketch is not None:
            self.sketch.update(numbers.values[present], counts[present])
        else:
            self._add_distinct(numbers.values[present], counts[present])

    def _add_distinct(self, values: np.ndarray, counts: np.ndarray) -> None:
        assert self.distinct is not None
        self.distinct, self.distinct_counts = add_counts(self.distinct, self.distinct_counts, values, counts)
        if len(self.distinct) > EXACT_DISTINCT_LIMIT:
            self._to_sketch()

    def _to_sketch(self) -> None:
        """Pour the exact counts into a sketch (with their exact weights), which takes over from here."""
        assert self.distinct is not None
        self.sketch = QuantileSketch(KLL_K)
        self.sketch.update(self.distinct, self.distinct_counts)
        self.distinct, self.distinct_counts = None, np.empty(0, dtype=np.int64)

    def merge(self, other: NumericStats) -> None:
        """Add the statistics of other values (Chan et al.'s pairwise merge of the moments)."""
        self.absent_seen = self.absent_seen or other.absent_seen
        if other.count:
            total = self.count + other.count
            delta = other.mean - self.mean
            self.mean += delta * other.count / total
            self.m2 += other.m2 + delta * delta * self.count * other.count / total
            self.count = total
        tracking = self.sketch is not None or self.distinct is not None
        if not tracking or (other.sketch is None and other.distinct is None):
            return
        if other.sketch is not None:
            if self.sketch is None:
                self._to_sketch()
            assert self.sketch is not None
            self.sketch.merge(other.sketch)
            return
        assert other.distinct is not None
        if self.sketch is not None:
            self.sketch.update(other.distinct, other.distinct_counts)
        else:
            self._add_distinct(other.distinct, other.distinct_counts)

    def edges(self, n: int) -> tuple[float, ...]:
        if self.distinct is not None:
            return tuple(tf.quantile_edges(self.distinct, self.distinct_counts, n))
        assert self.sketch is not None
        if self.sketch.is_empty():
            return ()
        edges = np.unique(self.sketch.quantiles([k / n for k in range(1, n)]))
        return tuple(float(edge) for edge in edges[edges < self.sketch.max])

    def moments(self) -> tuple[float, float]:
        std = math.sqrt(self.m2 / self.count) if self.count else 0.0
        # A constant attribute normalizes to 0 everywhere; dividing by 1 keeps that finite.
        return self.mean, std if std > 0 else 1.0


class Counter:
    """Document frequencies of one vocabulary output's strings, merged across batches."""

    def __init__(self, max_vocabulary: int) -> None:
        self.keep = COUNTER_HEADROOM * max_vocabulary
        self.chunks: list[pa.Table] = []
        self.pending = 0

    def update(self, strings: pa.Array, counts: np.ndarray) -> None:
        self.chunks.append(pa.table({"value": strings, "count": pa.array(counts, pa.int64())}))
        self.pending += len(strings)
        if self.pending > COUNTER_PENDING:
            self._merge()

    def merge(self, other: Counter) -> None:
        """Add the counts of ``other`` (of other rows)."""
        self.chunks.extend(other.chunks)
        self.pending += other.pending
        if self.pending > COUNTER_PENDING:
            self._merge()

    def _merge(self) -> None:
        if not self.chunks:
            self.chunks = [pa.table({"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())})]
        table = pa.concat_tables(self.chunks)
        table = table.group_by("value").aggregate([("count", "sum")]).rename_columns(["value", "count"])
        table = table.sort_by([("count", "descending"), ("value", "ascending")])
        if len(table) > self.keep:
            table = table.slice(0, self.keep)
        self.chunks = [table]
        self.pending = len(table)

    def result(self, min_count: int) -> tuple[pa.Array, np.ndarray]:
        """Strings by descending count, ties by string, with counts >= ``min_count``."""
        self._merge()
        table = self.chunks[0]
        counts = table.column("count").to_numpy()
        kept = int(np.searchsorted(-counts, -min_count, side="right"))
        return table.column("value").combine_chunks().slice(0, kept), counts[:kept]


def count_into(counter: Counter, values: BatchValues, output: Output) -> None:
    if output.kind == OutputKind.CATEGORICAL:
        categories = values.categories(output.expression)
        counts = np.bincount(categories.codes[categories.codes >= 0], minlength=len(categories.labels))
        # Labels may repeat (" a" and "a" both trim to "a"): the counter adds them up.
        keep = np.asarray(pc.is_valid(categories.labels).to_numpy(zero_copy_only=False), dtype=bool) & (
            counts > 0
        )
        counter.update(categories.labels.filter(pa.array(keep)), counts[keep])
        return
    tokens = values.tokens(output.expression)
    if not len(tokens.codes):
        return
    # Document frequencies: each distinct word once per row (words repeat after some transformations).
    words, codes = tokens.distinct_words()
    _, ids = distinct_per_row(tokens.row_ids(), codes, len(words))
    counts = np.bincount(ids, minlength=len(words))
    seen = counts > 0  # words no token of this batch points to any more (emptied by no_punct) are not counted
    counter.update(words.filter(pa.array(seen)), counts[seen])


def select_vocabularies(
    results: list[tuple[pa.Array, np.ndarray]], max_vocabulary: int
) -> list[tuple[str, ...]]:
    """Each output's vocabulary: the most frequent strings over all outputs, at most ``max_vocabulary``.

    Ties are broken by output order, then by the string.
    """
    sizes = [len(strings) for strings, _ in results]
    if sum(sizes) > max_vocabulary:
        counts = np.concatenate([c for _, c in results]) if results else np.empty(0, dtype=np.int64)
        owners = np.repeat(np.arange(len(results)), sizes)
        ranks = (
            np.concatenate([np.arange(size) for size in sizes]) if results else np.empty(0, dtype=np.int64)
        )
        chosen = np.lexsort((ranks, owners, -counts))[:max_vocabulary]
        sizes = list(np.bincount(owners[chosen], minlength=len(results)))
    return [
        tuple(strings.slice(0, int(size)).to_pylist())
        for (strings, _), size in zip(results, sizes, strict=True)
    ]
