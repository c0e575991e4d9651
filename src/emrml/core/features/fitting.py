"""Fitting a feature space: the statistics a recipe's outputs learn from training batches, in parts that
merge (``Fitting``)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.features.batch import BatchValues, Numbers, distinct_per_row
from emrml.core.features.layout import (
    COUNTER_BYTES,
    COUNTER_CHUNKS,
    COUNTER_ENTRY_BYTES,
    COUNTER_PENDING_BYTES,
    EXACT_DISTINCT_LIMIT,
    KLL_K,
    Parameters,
    attribute,
    check_schema,
    is_bins,
    is_top_bins,
    output_layout,
    transformations,
    uses_vocabulary,
    walk,
)
from emrml.core.features.space import FeatureSpace
from emrml.core.quantiles import QuantileSketch, add_counts
from emrml.core.recipe import transforms as tf
from emrml.core.recipe.grammar import Output, OutputKind, Recipe
from emrml.core.schema import Schema
from emrml.errors import DataError

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
        with np.errstate(over="ignore", invalid="ignore"):  # refused by normalize() (end_first_pass)
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
    """Document frequencies of one vocabulary output's strings: each batch's counts wait in ``chunks``
    until ``consolidate`` adds them up into one table of (value, count)."""

    def __init__(self) -> None:
        self.chunks: list[pa.Table] = []
        self.pending_bytes = 0
        self.held_bytes = 0

    def update(self, strings: pa.Array, counts: np.ndarray) -> None:
        chunk = pa.table({"value": strings, "count": pa.array(counts, pa.int64())})
        self.chunks.append(chunk)
        self.pending_bytes += chunk.nbytes

    def merge(self, other: Counter) -> None:
        """Add the counts of ``other`` (of other rows)."""
        self.chunks.extend(other.chunks)
        self.pending_bytes += other.pending_bytes + other.held_bytes

    def consolidate(self) -> None:
        """Add up the waiting counts with the held ones.

        By sorting rather than Arrow's hash ``group_by``: its hash table costs about 135 bytes a string,
        five times the sort's copies, and takes as long on millions of distinct words.
        """
        if len(self.chunks) == 1 and not self.pending_bytes:
            return
        if not self.chunks:
            self.chunks = [pa.table({"value": pa.array([], pa.string()), "count": pa.array([], pa.int64())})]
        table = pa.concat_tables(self.chunks)
        self.chunks = []
        order = pc.sort_indices(table.column("value"))
        strings = table.column("value").take(order).combine_chunks()
        counts = np.asarray(table.column("count").to_numpy(), dtype=np.int64)[order.to_numpy()]
        del table, order
        first = np.ones(len(strings), dtype=bool)  # the first of each run of equal strings
        if len(strings) > 1:
            same = pc.equal(strings.slice(1), strings.slice(0, len(strings) - 1))
            first[1:] = ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
        starts = np.flatnonzero(first)
        sums = np.add.reduceat(counts, starts) if len(starts) else counts
        self.chunks = [pa.table({"value": strings.filter(pa.array(first)), "count": pa.array(sums)})]
        self.pending_bytes = 0
        self.held_bytes = int(self.entry_bytes().sum())

    def entry_bytes(self) -> np.ndarray:
        """What each held string costs (``COUNTER_BYTES``'s measure), once consolidated."""
        (table,) = self.chunks
        lengths = pc.binary_length(table.column("value")).to_numpy(zero_copy_only=False)
        return np.asarray(lengths, dtype=np.int64) + COUNTER_ENTRY_BYTES

    def counts(self) -> np.ndarray:
        (table,) = self.chunks
        return np.asarray(table.column("count").to_numpy(), dtype=np.int64)

    def subtract(self, threshold: int) -> None:
        """Take ``threshold`` off every held count, dropping the strings left with none."""
        (table,) = self.chunks
        count = table.column("count")
        table = table.filter(pc.greater(count, threshold))
        table = table.set_column(1, "count", pc.subtract(table.column("count"), threshold))
        self.chunks = [table.combine_chunks()]
        self.held_bytes = int(self.entry_bytes().sum())

    def result(self, min_count: int) -> tuple[pa.Array, np.ndarray]:
        """Strings by descending count, ties by string, with counts >= ``min_count``."""
        self.consolidate()
        (table,) = self.chunks
        table = table.sort_by([("count", "descending"), ("value", "ascending")])
        counts = table.column("count").to_numpy()
        kept = int(np.searchsorted(-counts, -min_count, side="right"))
        return table.column("value").combine_chunks().slice(0, kept), counts[:kept]


def bound_counters(counters: list[Counter], budget: int) -> None:
    """Keep what ``counters`` hold within ``budget`` bytes.

    The Misra-Gries summary, merged as Agarwal et al.'s mergeable summaries do: when the held strings cost
    more than ``budget``, the smallest count ``t`` such that the strings counted more than ``t`` fit is
    taken off every count (of every output, so the outputs' vocabularies stay comparable) and the strings
    left with none are dropped. Counts are then at most the total taken off below the true ones, and a
    string whose true count exceeds that total is always kept: the frequent strings a vocabulary is made of
    are kept whatever the number of rare ones, and data whose strings fit is counted exactly.
    """
    pending = sum(counter.pending_bytes for counter in counters) > COUNTER_PENDING_BYTES
    for counter in counters:
        if pending or len(counter.chunks) > COUNTER_CHUNKS:
            counter.consolidate()
    if sum(counter.held_bytes for counter in counters) <= budget:
        return
    for counter in counters:
        counter.consolidate()
    counts = np.concatenate([counter.counts() for counter in counters])
    sizes = np.concatenate([counter.entry_bytes() for counter in counters])
    values, inverse = np.unique(counts, return_inverse=True)
    per_value = np.bincount(inverse, weights=sizes, minlength=len(values))
    # above[i]: bytes of the strings counted more than values[i]; the last is 0, so one always fits.
    above = per_value.sum() - np.cumsum(per_value)
    threshold = int(values[int(np.argmax(above <= budget))])
    for counter in counters:
        counter.subtract(threshold)


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


class Fitting:
    """What ``FeatureSpace.fit`` learns from the batches it reads, kept so that the fittings of parts of
    the data merge (the Spark engine fits each part of the data in a task and merges them on the driver).

    Read every batch with ``update``; when ``second_pass`` is true, call ``end_first_pass`` (on the merged
    fitting, whose bin edges the second pass must share) and ``update`` with every batch again, merging the
    second-pass fittings into it; then ``space``. Merged counts and moments equal one reading's; quantile
    edges beyond ``EXACT_DISTINCT_LIMIT`` distinct values come from merged KLL sketches (within their rank
    error), and strings beyond the counters' ``COUNTER_BYTES`` are counted by a mergeable Misra-Gries
    summary (``bound_counters``), which keeps every string more frequent than its error.
    """

    def __init__(self, recipe: Recipe, schema: Schema, max_vocabulary: int = 1_000_000) -> None:
        check_schema(recipe, schema)
        self.max_vocabulary = max_vocabulary
        self.outputs = list(recipe.outputs)
        self.numeric: dict[str, NumericStats] = {}
        self.binary_absent: dict[str, bool] = {}
        for output in self.outputs:
            if output.kind == OutputKind.BINARY:
                self.binary_absent[attribute(output.expression)] = False
            elif output.kind == OutputKind.NUMERIC or is_top_bins(output):
                self.numeric.setdefault(attribute(output.expression), NumericStats())
            for node in transformations(output):
                if node.function in ("quantile_bin", "normalize"):
                    stats = self.numeric.setdefault(attribute(node), NumericStats())
                    if node.function == "quantile_bin":
                        stats.track_quantiles()
        self.counters = {i: Counter() for i, output in enumerate(self.outputs) if uses_vocabulary(output)}
        #: Outputs whose strings depend on bin edges: counted in a second pass, once the edges are known.
        self.second_pass = {
            i for i in self.counters if any(is_bins(node) for node in walk(self.outputs[i].expression))
        }
        #: The edges and moments of the first pass, once it has ended (``end_first_pass``).
        self.parameters: Parameters | None = None

    def update(self, batch: pa.RecordBatch) -> None:
        """Learn from a batch of string columns (of the first pass, or of the second once it has begun)."""
        if self.parameters is not None:
            values = BatchValues(batch, self.parameters)
            for i in self.second_pass:
                count_into(self.counters[i], values, self.outputs[i])
            self._bound()
            return
        values = BatchValues(batch, Parameters({}, {}))
        for name, stats in self.numeric.items():
            stats.update(values.numeric(name))
        for name in self.binary_absent:
            numbers = values.binary(name)
            self.binary_absent[name] = self.binary_absent[name] or bool(numbers.absent[numbers.codes].any())
        for i, counter in self.counters.items():
            if i not in self.second_pass:
                count_into(counter, values, self.outputs[i])
        self._bound()

    def merge(self, other: Fitting) -> None:
        """Add what ``other`` learned from other data (the same recipe, in the same pass)."""
        if other.parameters is not None:  # a part of the second pass: its counters only
            for i, counter in other.counters.items():
                self.counters[i].merge(counter)
            self._bound()
            return
        for name, stats in self.numeric.items():
            stats.merge(other.numeric[name])
        for name, absent in other.binary_absent.items():
            self.binary_absent[name] = self.binary_absent[name] or absent
        for i, counter in self.counters.items():
            counter.merge(other.counters[i])
        self._bound()

    def _bound(self) -> None:
        bound_counters(list(self.counters.values()), COUNTER_BYTES)

    def end_first_pass(self) -> Parameters:
        """Fix the bin edges and moments (on the merged first pass); later ``update`` calls count the
        second pass's strings with them."""
        edges: dict[str, tuple[float, ...]] = {}
        moments: dict[str, tuple[float, float]] = {}
        for output in self.outputs:
            for node in transformations(output):
                if node.function == "quantile_bin":
                    assert node.parameter is not None
                    edges[node.text] = self.numeric[attribute(node)].edges(node.parameter)
                elif node.function == "normalize":
                    name = attribute(node)
                    stats = self.numeric[name]
                    if not (math.isfinite(stats.mean) and math.isfinite(stats.m2)):
                        # Values near 1e300 overflowed the variance to NaN, which moments() took for a
                        # constant's: normalize() divided by 1, and the model trained on values near 1e300.
                        raise DataError(
                            f"NUMERIC attribute {name!r} has values too large for normalize(): their mean or "
                            "variance overflows the range of floating-point numbers; quantile_bin it in the "
                            "recipe instead"
                        )
                    moments[name] = stats.moments()
        self.parameters = Parameters(edges, moments)
        return self.parameters

    def second_pass_part(self) -> Fitting:
        """An empty fitting for a part of the second pass: the same edges, its own counters."""
        part = copy.copy(self)
        part.counters = {i: Counter() for i in self.second_pass}
        return part

    def space(self, min_count: int = 1) -> FeatureSpace:
        """The fitted feature space."""
        parameters = self.parameters or self.end_first_pass()
        order = sorted(self.counters)
        selected = select_vocabularies(
            [self.counters[i].result(min_count) for i in order], self.max_vocabulary
        )
        vocabularies = dict(zip(order, selected, strict=True))
        absent_seen = {name: stats.absent_seen for name, stats in self.numeric.items()} | self.binary_absent
        layouts = []
        start = 0
        for i, output in enumerate(self.outputs):
            indicator = not uses_vocabulary(output) and absent_seen[attribute(output.expression)]
            layout = output_layout(output, start, parameters, vocabularies.get(i, ()), indicator)
            layouts.append(layout)
            start += layout.size
        return FeatureSpace(layouts, parameters)
