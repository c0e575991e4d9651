"""The accumulator of a datasource's statistics: the deterministic row sample and the per-attribute
statistics, fed batch by batch and merged across partitions."""

from __future__ import annotations

import json
from collections import deque
from concurrent.futures import Executor, Future, wait
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.core.stats.columns import (
    BinaryStats,
    CategoricalStats,
    ColumnStats,
    NumericStats,
    TextStats,
    as_strings,
)
from emrml.core.stats.constants import FORMAT, SAMPLE_BYTES, U64
from emrml.core.stats.correlation import (
    attribute_codes,
    entropy,
    mutual_information,
    target_codes,
    word_correlations,
)
from emrml.core.stats.sketches import b64, splitmix64, unb64
from emrml.core.text import value_offsets

# ------------------------------------------------------------------------------------------ the sample


class _BottomKSample:
    """The rows with the smallest splitmix64(row key) hashes: at most ``size`` rows and ``max_bytes`` bytes
    of values, the longest prefix in hash order within both bounds (at least one row).

    The byte bound keeps the sample, and the correlations computed on it, within memory whatever the rows'
    width: 20,000 rows of 20 KB text would otherwise be 400 MB, held several times over while gathered and
    serialized. Rows of ordinary width never reach it, so their sample is the ``size`` smallest hashes.

    Candidate rows are kept as they arrive (a batch's candidates are one ``take``), with their hashes and
    byte sizes in arrays. Once the candidates exceed a bound, the hash of the last row of the prefix is the
    threshold: later rows hashing above it are skipped before any of their strings are touched, and it
    falls as rows come, from the hashes alone. A row above the threshold can never come back into the
    sample, since rows only ever join the prefix before it, so the sample does not depend on batch
    boundaries, order or partitioning. Candidates are gathered down to the sample only past ``spill``
    times a bound (about ``size * (1 + ln(rows / size))`` rows are ever candidates), so memory stays within
    ``spill + 1`` samples plus one batch and most datasources never gather before the end. Rows are kept in
    arrival order (gathering rows in position order is much faster than in hash order) and put in hash
    order only when read (and kept so).
    """

    def __init__(
        self, size: int, arrow_schema: pa.Schema, *, max_bytes: int = SAMPLE_BYTES, spill: int = 4
    ) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.spill = spill
        self.arrow_schema = arrow_schema
        self.hashes = np.zeros(0, dtype=U64)  # of the rows of self.tables, in order
        self.sizes = np.zeros(0, dtype=np.int64)  # their bytes of values, in the same order
        self.tables: list[pa.Table] = []
        self.threshold: np.uint64 | None = None  # the largest hash that may still be in the sample
        # What sorted() gave, until rows come or the threshold falls: a job reads its sample twice (the
        # correlations, then the sample kept for the recipe), and each reading gathers every row twice.
        self._read: tuple[np.ndarray, pa.Table] | None = None

    def offer(self, hashes: np.ndarray, batch: pa.RecordBatch) -> None:
        if self.threshold is not None:
            chosen = np.flatnonzero(hashes < self.threshold)
            if chosen.size == 0:
                return
            hashes = hashes[chosen]
            batch = batch.take(pa.array(chosen))
        self.add(hashes, _row_bytes(batch), pa.Table.from_batches([batch], schema=self.arrow_schema))

    def add(self, hashes: np.ndarray, sizes: np.ndarray, table: pa.Table) -> None:
        if not len(hashes):
            return
        self._read = None
        self.hashes = np.concatenate([self.hashes, hashes])
        self.sizes = np.concatenate([self.sizes, sizes])
        self.tables.append(table)
        self._update_threshold()
        if len(self.hashes) > self.spill * self.size or self._candidate_bytes() > self.spill * self.max_bytes:
            self.compact()

    def _candidate_bytes(self) -> int:
        return int(self.sizes.sum())

    def _update_threshold(self) -> None:
        """Lower the threshold to the last hash of the prefix within both bounds, once a bound is reached."""
        if self._candidate_bytes() > self.max_bytes:
            order = np.argsort(self.hashes)
            fitting = int(np.searchsorted(np.cumsum(self.sizes[order]), self.max_bytes, side="right"))
            threshold = self.hashes[order[max(1, min(fitting, self.size)) - 1]]
        elif len(self.hashes) >= self.size:
            # The size-th smallest hash so far: any row above it is out of the sample for good.
            threshold = np.partition(self.hashes, self.size - 1)[self.size - 1]
        else:
            return
        # Never up: after a merge, candidates above the other side's threshold are out already.
        self.threshold = threshold if self.threshold is None else min(self.threshold, threshold)

    def compact(self) -> None:
        """Gather the candidates into one table of the sample's rows (in arrival order)."""
        chosen = None if self.threshold is None else np.flatnonzero(self.hashes <= self.threshold)
        self._gather(chosen)

    def _gather(self, rows: np.ndarray | None) -> None:
        """Keep the candidates ``rows`` (positions, in the order given; None: all, as they are) in one
        table."""
        table = pa.concat_tables([self.arrow_schema.empty_table(), *self.tables])
        if rows is not None:
            self.hashes, self.sizes, table = self.hashes[rows], self.sizes[rows], table.take(pa.array(rows))
        self.tables = [table.combine_chunks()]

    def sorted(self) -> tuple[np.ndarray, pa.Table]:
        """Hashes and rows in hash order."""
        if self._read is None:
            # The rows of the sample, in hash order, gathered at once: one copy of them, not two.
            rows = np.argsort(self.hashes)
            if self.threshold is not None:
                rows = rows[: np.searchsorted(self.hashes[rows], self.threshold, side="right")]
            self._gather(rows)
            self._read = self.hashes, self.tables[0]
        return self._read

    def merge(self, other: _BottomKSample) -> None:
        self._read = None
        other.compact()
        if other.threshold is not None:
            # Rows of this side above the other's threshold are out of the merged sample too.
            mine = self.threshold
            self.threshold = other.threshold if mine is None else min(mine, other.threshold)
        self.add(other.hashes, other.sizes, other.tables[0])
        self.compact()

    def to_state(self) -> dict[str, str]:
        hashes, table = self.sorted()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.arrow_schema) as writer:
            writer.write_table(table)
        return {
            "hashes": b64(hashes.astype("<u8").tobytes()),
            "table": b64(sink.getvalue().to_pybytes()),
        }

    def load_state(self, state: dict[str, str]) -> None:
        hashes = np.frombuffer(unb64(state["hashes"]), dtype="<u8").astype(U64)
        with pa.ipc.open_stream(unb64(state["table"])) as reader:
            table = reader.read_all()
        if not table.schema.equals(self.arrow_schema) or table.num_rows != len(hashes):
            raise ValueError("statistics state: the row sample does not match the schema")
        self.add(hashes, _row_bytes(table), table)
        self.compact()


def _row_bytes(rows: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The bytes of each row's values (int64): what it costs in the sample."""
    total = np.zeros(rows.num_rows, dtype=np.int64)
    # The offsets of the columns without nulls, added up: their differences are the rows' bytes in those
    # columns (one numpy step a column rather than a difference, a conversion and a sum).
    ends = np.zeros(rows.num_rows + 1, dtype=np.int64)
    for column in rows.columns:
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        at = 0
        for chunk in chunks:
            # Read from the offsets (no Arrow kernel per column): a null's slot may hold bytes, so a
            # column with nulls takes the kernel, which counts them 0.
            if chunk.null_count:
                sizes = pc.fill_null(pc.binary_length(chunk), 0).to_numpy().astype(np.int64, copy=False)
                total[at : at + len(chunk)] += sizes
            elif len(chunk) == len(total):
                ends += value_offsets(chunk)  # a constant shift of them all changes no difference
            elif len(chunk):
                offsets = value_offsets(chunk)
                # Rows before the chunk unchanged; rows after it shifted alike.
                ends[at : at + len(chunk) + 1] += offsets - offsets[0]
                ends[at + len(chunk) + 1 :] += offsets[-1] - offsets[0]
            at += len(chunk)
    total += np.diff(ends)
    return total


# ------------------------------------------------------------------------------------ the accumulator


#: Batches whose TEXT statistics may still be running on the executor while the next batch starts.
TEXT_BACKLOG = 2


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
        self._columns: dict[str, ColumnStats] = {a.name: self._new_stats(a.type) for a in schema.attributes}
        sampled = {a.name for a in schema.input_attributes}
        if schema.target is not None:
            sampled.add(schema.target)
        self._sample_names = [name for name in schema.names if name in sampled]
        self._sample = _BottomKSample(
            sample_size, pa.schema([pa.field(name, pa.string()) for name in self._sample_names])
        )
        self._backlog: deque[list[Future[None]]] = deque()  # TEXT updates on the executor, per batch

    def _new_stats(self, attribute_type: AttributeType) -> ColumnStats:
        if attribute_type is AttributeType.NUMERIC:
            return NumericStats()
        if attribute_type is AttributeType.BINARY:
            return BinaryStats()
        if attribute_type is AttributeType.CATEGORICAL:
            return CategoricalStats(self.top_k)
        return TextStats(self.top_k)

    def update(
        self, batch: pa.RecordBatch, row_keys: np.ndarray, *, executor: Executor | None = None
    ) -> None:
        """Add a batch: one string column per schema attribute, named as in ``schema.names``.

        ``row_keys`` (uint64, one per row) must be stable and unique across the whole datasource; the
        engine passes ``(file_index << 40) | byte_offset``. With an ``executor`` (one thread, which runs
        tasks in the order given), the TEXT columns, the costliest, are summarized there while this thread
        does the others: Arrow and numpy release the GIL, so this uses a second core. The TEXT work may
        lag up to :data:`TEXT_BACKLOG` batches behind rather than hold this thread at every batch; each
        column is still fed its batches in order, so the statistics are the same. Call :meth:`settle`
        before the executor shuts down (reading the statistics settles too).
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
        columns = {name: as_strings(batch.column(name)) for name in self.schema.names}
        aside = {name for name, stats in self._columns.items() if isinstance(stats, TextStats)}
        if executor is not None and len(aside) < len(self._columns):
            self._backlog.append(
                [executor.submit(self._columns[name].update, columns[name]) for name in aside]
            )
        else:
            aside = set()
        try:
            for name, stats in self._columns.items():
                if name not in aside:
                    stats.update(columns[name])
            sampled = pa.RecordBatch.from_arrays(
                [columns[name] for name in self._sample_names], schema=self._sample.arrow_schema
            )
            self._sample.offer(splitmix64(keys.astype(U64, copy=False)), sampled)
        except BaseException:
            self.settle()  # never leave a column being updated behind, even on an error here
            raise
        self._settle(keep=TEXT_BACKLOG)

    def settle(self) -> None:
        """Wait for the TEXT work still running on the executor; raise the first error it met, if any."""
        self._settle(keep=0)

    def _settle(self, keep: int) -> None:
        """Wait until at most ``keep`` batches' TEXT work is pending; after an error, wait for all of it
        (no column is left being updated), then raise the error."""
        error: BaseException | None = None
        while len(self._backlog) > (0 if error else keep):
            futures = self._backlog.popleft()
            wait(futures)
            error = error or next((e for f in futures if (e := f.exception()) is not None), None)
        if error is not None:
            raise error

    def merge(self, other: StatisticsAccumulator) -> None:
        """Fold ``other`` (same schema, sample size and top_k) into this accumulator."""
        if other.schema != self.schema or (other.sample_size, other.top_k) != (self.sample_size, self.top_k):
            raise ValueError("cannot merge statistics of different schemas or settings")
        self.settle()
        other.settle()
        self.record_count += other.record_count
        for name, stats in self._columns.items():
            stats.merge(other._columns[name])  # type: ignore[arg-type]
        self._sample.merge(other._sample)

    def sample_table(self) -> pa.Table:
        """The sampled rows (target and input attributes, string columns, in schema order), by row hash."""
        self.settle()
        return self._sample.sorted()[1]

    def to_bytes(self) -> bytes:
        """The state as UTF-8 JSON (sketches and sample as base64 of their own serialized forms)."""
        self.settle()
        state = {
            "format": FORMAT,
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
            if state.get("format") != FORMAT or state.get("names") != schema.names:
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

    def _stats_from_state(self, attribute_type: AttributeType, state: dict[str, Any]) -> ColumnStats:
        if attribute_type is AttributeType.NUMERIC:
            return NumericStats.from_state(state)
        if attribute_type is AttributeType.BINARY:
            return BinaryStats.from_state(state)
        if attribute_type is AttributeType.CATEGORICAL:
            return CategoricalStats.from_state(state, self.top_k)
        return TextStats.from_state(state, self.top_k)

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

    def _correlations(
        self, executor: Executor | None = None
    ) -> tuple[dict[str, float | None], dict[str, dict[str, float]], float | None]:
        """Target correlation per input attribute, per candidate word of each TEXT input attribute, and the
        entropy of the target's classes on the sample (the most any correlation can reach).

        With an ``executor`` (one thread) the attributes are scored on both threads at once, each taking
        the next attribute left, the TEXT ones (the costliest) first: this runs after the last batch, when
        nothing else keeps the second core busy."""
        schema = self.schema
        inputs = schema.input_attributes
        target = schema.target
        if target is None or schema.attribute(target).type is AttributeType.TEXT:
            return {a.name: None for a in inputs}, {}, None
        sample = self.sample_table()
        y = target_codes(sample.column(target), schema.attribute(target).type)
        usable = y >= 0
        if not usable.any():
            return {a.name: None for a in inputs}, {}, None
        y = y[usable]
        rows = pa.array(usable)
        attribute_scores: dict[str, float | None] = {}
        word_scores: dict[str, dict[str, float]] = {}

        def score(attribute: Attribute) -> None:
            strings = as_strings(sample.column(attribute.name)).filter(rows)
            if attribute.type is AttributeType.TEXT:
                stats = self._columns[attribute.name]
                assert isinstance(stats, TextStats)
                words = word_correlations(strings, stats.candidate_words(), y)
                word_scores[attribute.name] = words
                attribute_scores[attribute.name] = max(words.values(), default=0.0)
            else:
                attribute_scores[attribute.name] = mutual_information(
                    attribute_codes(strings, attribute.type), y
                )

        # deque.popleft is atomic: each attribute is scored once, by whichever thread takes it.
        left = deque(sorted(inputs, key=lambda a: a.type is not AttributeType.TEXT))

        def drain() -> None:
            while left:
                try:
                    attribute = left.popleft()
                except IndexError:
                    return
                score(attribute)

        helper = executor.submit(drain) if executor is not None and len(left) > 1 else None
        try:
            drain()
        finally:
            if helper is not None:
                helper.result()
        # In the schema's order, as when scored one after another.
        attribute_scores = {a.name: attribute_scores[a.name] for a in inputs}
        word_scores = {a.name: word_scores[a.name] for a in inputs if a.name in word_scores}
        return attribute_scores, word_scores, entropy(y)

    def result(self, *, executor: Executor | None = None) -> dict[str, Any]:
        """The statistics as a JSON-serializable dict (structure in the module docstring); with an
        ``executor`` (the one of :meth:`update`) the target correlations use its thread too."""
        # Only this thread feeds the sample: it is put in order while the last TEXT work ends.
        self._sample.sorted()
        self.settle()
        attribute_scores, word_scores, target_entropy = self._correlations(executor)
        type_counts = {t.value: 0 for t in AttributeType}
        attributes = []
        for attribute in self.schema.attributes:
            type_counts[attribute.type.value] += 1
            stats = self._columns[attribute.name]
            role = self._role(attribute.name)
            entry: dict[str, Any] = {"name": attribute.name, "type": attribute.type.value, "role": role}
            if isinstance(stats, TextStats):
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
                "entropy": target_entropy,
            }
        return {
            "recordCount": self.record_count,
            "attributeTypeCounts": type_counts,
            "target": target,
            "attributes": attributes,
        }
