"""The featurizer: a recipe fitted to training data, turning records into sparse feature vectors.

``FeatureSpace.fit(recipe, schema, batches)`` learns what the recipe's outputs need from the training data
— the vocabulary of every categorical and token output, the quantile bin edges of every ``quantile_bin``,
the mean and standard deviation of every ``normalize`` — and then maps data to features two ways that agree
exactly (DESIGN idea 1):

* ``transform(batch)``: an Arrow ``RecordBatch`` of string columns → ``scipy.sparse.csr_matrix``
  (rows × ``n_features``, float64, column indices sorted within each row), vectorized;
* ``transform_record(record)``: one ``{attribute: string}`` record → ``(indices, values)``, plain Python.

Features per output (names as in spec 6.3; ``docs/recipes.md`` has the full rules):

* NUMERIC (``age``, ``normalize(age)``): the value (raw, or standardised with the training mean and
  population standard deviation), and ``age:missing`` = 1 when the value is missing or invalid, then
  treated as 0 (open question 10). The indicator exists only if training saw a missing or invalid value.
* BINARY (``smoker``): 0/1, and ``smoker:missing`` likewise.
* ``quantile_bin(age,10)``: one-hot over ``quantile_bin(age,10)=bin_0`` … plus ``:missing`` likewise.
* CATEGORICAL (``job``): one-hot ``job=admin.`` over the training vocabulary.
* token sets (TEXT, ``ngram``, ``osb``, ``cartesian``): a binary bag ``ngram(lowercase(review),2)=great
  movie`` — a token repeated in a row counts once.

Unknown categories and tokens are dropped. Zero values are not stored (so a present value of 0 and an
absent feature look the same, as in any sparse vector).
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import datasketches
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse

from emrml.core.recipe import transforms as tf
from emrml.core.recipe.grammar import (
    Expression,
    Output,
    OutputKind,
    Recipe,
    Transformation,
    ValueType,
    Variable,
    parse_recipe,
)
from emrml.core.schema import Schema
from emrml.core.values import InvalidValue, Parsed, binary_value, numeric_value, parse_binary, parse_numeric
from emrml.errors import DataError, InvalidInputException

#: Version of the ``to_dict`` layout.
FORMAT_VERSION = 1
#: KLL sketch size for quantile bin edges: normalized rank error about 0.3 %.
KLL_K = 1000
#: Distinct values per numeric attribute counted exactly; beyond this the KLL sketch gives the edges.
EXACT_DISTINCT_LIMIT = 65_536
# A vocabulary counter keeps at most this many times max_vocabulary distinct entries (the most frequent).
_COUNTER_HEADROOM = 4
# Counted entries held before merging them.
_COUNTER_PENDING = 2_000_000

Record = Mapping[str, str]
# The tokens of a BINARY value inside cartesian (open question 12).
_BINARY_LABELS = pa.array(["0", "1"])


def _walk(expression: Expression) -> Iterator[Expression]:
    yield expression
    if isinstance(expression, Transformation):
        for arg in expression.args:
            yield from _walk(arg)


def _is_bins(expression: Expression) -> bool:
    return isinstance(expression, Transformation) and expression.function == "quantile_bin"


def _is_top_bins(output: Output) -> bool:
    """Whether the output is a ``quantile_bin``, whose features are its bins rather than a vocabulary."""
    return _is_bins(output.expression)


def _uses_vocabulary(output: Output) -> bool:
    return output.kind in (OutputKind.CATEGORICAL, OutputKind.TOKENS) and not _is_top_bins(output)


def _attribute(expression: Expression) -> str:
    """The attribute of a NUMERIC/BINARY output or a ``quantile_bin``/``normalize`` node."""
    if isinstance(expression, Variable):
        return expression.name
    argument = expression.args[0]
    assert isinstance(argument, Variable)  # the grammar allows these on attributes only
    return argument.name


# --- Learned parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where one output's features sit. ``start`` is its first feature index."""

    output: Output
    start: int
    size: int
    missing_indicator: bool
    vocabulary: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Parameters:
    """What fitting learned besides vocabularies."""

    edges: Mapping[str, tuple[float, ...]]  # quantile_bin node text → upper bin edges
    moments: Mapping[str, tuple[float, float]]  # attribute → (mean, std) for normalize

    def edges_of(self, expression: Transformation) -> tuple[float, ...]:
        return self.edges[expression.text]


# --- Vectorized evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Codes:
    """A CATEGORICAL expression over a batch, dictionary-encoded so per-value work runs once per distinct
    value: row ``i`` has the category ``labels[codes[i]]``, none where ``codes[i]`` is -1 or the label is
    null."""

    codes: np.ndarray  # int64
    labels: pa.Array  # strings, nulls allowed

    def strings(self) -> pa.Array:
        """One string per row, null where there is no category."""
        return self.labels.take(pa.array(self.codes, mask=self.codes < 0))


def _codes_of(encoded: pa.DictionaryArray) -> np.ndarray:
    indices = encoded.indices
    codes = indices.to_numpy(zero_copy_only=False)
    if indices.null_count:
        valid = np.asarray(pc.is_valid(indices).to_numpy(zero_copy_only=False), dtype=bool)
        return np.where(valid, np.nan_to_num(codes, nan=-1), -1).astype(np.int64)
    return codes.astype(np.int64)


@dataclass(frozen=True)
class _Numbers:
    """A NUMERIC or BINARY column parsed once per distinct string: row ``i`` has ``values[codes[i]]``,
    absent (missing or invalid, value NaN) where ``absent[codes[i]]``. The last entry stands for nulls."""

    codes: np.ndarray  # int64; -1 (a null) picks the last entry
    values: np.ndarray  # float64
    absent: np.ndarray  # bool

    def per_row(self) -> tuple[np.ndarray, np.ndarray]:
        return self.values[self.codes], self.absent[self.codes]


def _numbers(column: pa.Array, parse: Callable[[pa.Array], Parsed]) -> _Numbers:
    encoded = pc.dictionary_encode(column)
    distinct = parse(encoded.dictionary)
    return _Numbers(
        _codes_of(encoded),
        np.append(distinct.values, np.nan),
        np.append(distinct.missing | distinct.invalid, True),
    )


class _BatchValues:
    """The values of a batch's expressions, each computed once."""

    def __init__(self, batch: pa.RecordBatch, parameters: _Parameters) -> None:
        self.batch = batch
        self.parameters = parameters
        self.rows = batch.num_rows
        self._cache: dict[tuple[str, str], Any] = {}

    def _cached(self, key: tuple[str, str], compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def column(self, name: str) -> pa.Array:
        index = self.batch.schema.get_field_index(name)
        if index < 0:
            raise DataError(
                f"the data has no column {name!r} (columns: {', '.join(self.batch.schema.names)})"
            )
        return tf.as_strings(self.batch.column(index))

    def numeric(self, name: str) -> _Numbers:
        return self._cached(("numeric", name), lambda: _numbers(self.column(name), parse_numeric))

    def binary(self, name: str) -> _Numbers:
        return self._cached(("binary", name), lambda: _numbers(self.column(name), parse_binary))

    def bins(self, expression: Transformation) -> np.ndarray:
        """Bin index per row (int64), -1 where the value is missing or invalid."""

        def compute() -> np.ndarray:
            numbers = self.numeric(_attribute(expression))
            edges = self.parameters.edges_of(expression)
            bins = tf.bin_indices(edges, np.where(numbers.absent, 0.0, numbers.values))
            return np.where(numbers.absent, -1, bins)[numbers.codes]

        return self._cached(("bins", expression.text), compute)

    def categories(self, expression: Expression) -> _Codes:
        """A CATEGORICAL expression per row."""

        def compute() -> _Codes:
            if isinstance(expression, Variable):
                encoded = pc.dictionary_encode(self.column(expression.name))
                return _Codes(_codes_of(encoded), tf.category_array(encoded.dictionary))
            if expression.function == "quantile_bin":
                count = len(self.parameters.edges_of(expression)) + 1
                return _Codes(self.bins(expression), pa.array([tf.bin_label(i) for i in range(count)]))
            inner = self.categories(expression.args[0])
            if expression.function == "lowercase":
                return _Codes(inner.codes, tf.lowercase_array(inner.labels))
            return _Codes(inner.codes, tf.category_no_punct_array(inner.labels))

        return self._cached(("categories", expression.text), compute)

    def tokens(self, expression: Expression) -> tf.TokenArray:
        """The token set of any non-NUMERIC expression per row."""

        def compute() -> tf.TokenArray:
            if expression.type == ValueType.CATEGORICAL:
                return tf.single_tokens(self.categories(expression).strings())
            if isinstance(expression, Variable):
                if expression.type == ValueType.BINARY:
                    values, absent = self.binary(expression.name).per_row()
                    index = pa.array(np.where(absent, 0, values).astype(np.int64), mask=absent)
                    return tf.single_tokens(_BINARY_LABELS.take(index))
                return tf.tokenize_array(self.column(expression.name))
            function = expression.function
            if function == "cartesian":
                return tf.cartesian_array(*(self.tokens(arg) for arg in expression.args))
            inner = self.tokens(expression.args[0])
            if function == "lowercase":
                return tf.lowercase_tokens(inner)
            if function == "no_punct":
                return tf.no_punct_array(inner)
            assert expression.parameter is not None
            if function == "ngram":
                return tf.ngrams_array(inner, expression.parameter)
            return tf.osb_array(inner, expression.parameter)

        return self._cached(("tokens", expression.text), compute)

    def numbers(self, output: Output) -> tuple[np.ndarray, np.ndarray]:
        """A NUMERIC or BINARY output's values (float64, NaN where absent) and its absent mask."""
        expression = output.expression
        name = _attribute(expression)
        numbers = self.binary(name) if output.kind == OutputKind.BINARY else self.numeric(name)
        values = numbers.values
        if isinstance(expression, Transformation):  # normalize
            mean, std = self.parameters.moments[name]
            values = (values - mean) / std
        return values[numbers.codes], numbers.absent[numbers.codes]


def _label_ids(labels: pa.Array, lookup: Mapping[str, int]) -> np.ndarray:
    """``lookup[label]`` per label (int64), -1 for nulls and labels not in ``lookup``."""
    return np.fromiter(
        (-1 if label is None else lookup.get(label, -1) for label in labels.to_pylist()),
        dtype=np.int64,
        count=len(labels),
    )


def _token_ids(tokens: pa.Array, lookup: Mapping[str, int]) -> np.ndarray:
    """``lookup[token]`` per token (int64), -1 for tokens not in ``lookup``."""
    encoded = pc.dictionary_encode(tokens)
    return _label_ids(encoded.dictionary, lookup)[_codes_of(encoded)]


def _distinct_per_row(rows: np.ndarray, ids: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(row, id)`` pairs sorted by row then id; ``ids`` are in ``[0, width)``."""
    # np.sort plus a neighbour comparison: np.unique takes a path about 50 times slower on int64 keys.
    keys = np.sort(rows.astype(np.int64) * width + ids)
    if keys.size:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return keys // width, keys % width


@dataclass(frozen=True)
class _Single:
    """Features of an output with at most one feature per row: column per row (-1: none) and value."""

    columns: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class _Bag:
    """Features of a token output: ``(row, column)`` pairs sorted by row then column, each of value 1."""

    rows: np.ndarray
    columns: np.ndarray


def _numeric_part(layout: _Layout, values: np.ndarray, absent: np.ndarray) -> _Single:
    columns = np.where(absent, layout.start + 1 if layout.missing_indicator else -1, layout.start)
    columns[~absent & (values == 0)] = -1
    return _Single(columns, np.where(absent, 1.0, values))


def _bin_part(layout: _Layout, bins: np.ndarray) -> _Single:
    # The missing indicator follows the bins.
    missing = layout.start + layout.size - 1 if layout.missing_indicator else -1
    return _Single(np.where(bins < 0, missing, layout.start + bins), np.ones(len(bins)))


def _block(
    parts: list[_Single] | _Bag, num_rows: int, num_features: int, index_type: type[np.integer]
) -> scipy.sparse.csr_matrix:
    """The CSR matrix of consecutive single-feature outputs, or of one token output."""
    if isinstance(parts, _Bag):
        per_row = np.bincount(parts.rows, minlength=num_rows)
        indices, data = parts.columns.astype(index_type), np.ones(len(parts.columns))
    else:
        indices = np.empty((num_rows, len(parts)), dtype=index_type)
        data = np.empty((num_rows, len(parts)))
        for j, part in enumerate(parts):
            indices[:, j] = part.columns
            data[:, j] = part.values
        present = indices >= 0
        if present.all():  # the usual case: no missing value, no zero
            per_row = np.full(num_rows, len(parts))
            indices, data = indices.ravel(), data.ravel()
        else:
            per_row = present.sum(axis=1)
            indices, data = indices[present], data[present]
    indptr = np.concatenate(([0], np.cumsum(per_row, dtype=np.int64))).astype(index_type)
    matrix = scipy.sparse.csr_matrix((data, indices, indptr), shape=(num_rows, num_features))
    matrix.has_sorted_indices = True
    return matrix


def _assemble(parts: list[_Single | _Bag], num_rows: int, num_features: int) -> scipy.sparse.csr_matrix:
    """One CSR matrix from per-output parts whose column ranges increase with the output order."""
    index_type = np.int32 if num_features < 2**31 else np.int64
    groups: list[list[_Single] | _Bag] = []
    for part in parts:
        if isinstance(part, _Bag):
            groups.append(part)
        elif groups and isinstance(groups[-1], list):
            groups[-1].append(part)
        else:
            groups.append([part])
    if not groups:
        return scipy.sparse.csr_matrix((num_rows, num_features), dtype=np.float64)
    matrices = [_block(group, num_rows, num_features, index_type) for group in groups]
    # The blocks cover disjoint columns, so their sum merges them row by row (compiled, sorted result).
    total = matrices[0]
    for matrix in matrices[1:]:
        total = total + matrix
    return total


# --- Record evaluation ----------------------------------------------------------------------------------


def record_number(text: str | None) -> float | None:
    """``numeric_value(text)``, or None when the value is missing or invalid."""
    if text is None:
        return None
    stripped = text.strip()
    if not stripped:
        return None
    # For ASCII without "_", float() accepts exactly the NUMERIC grammar plus the inf/nan spellings, which
    # are invalid anyway: a fast path for the common case (a test holds it to numeric_value).
    if stripped.isascii() and "_" not in stripped:
        try:
            value = float(stripped)
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    try:
        return numeric_value(stripped)
    except InvalidValue:
        return None


def record_flag(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return binary_value(text)
    except InvalidValue:
        return None


_Emit = Callable[[Record, list[int], list[float]], None]


class _RecordCompiler:
    """Plain-Python functions of one record for each expression, mirroring :class:`_BatchValues`."""

    def __init__(self, parameters: _Parameters) -> None:
        self.parameters = parameters

    def category(self, expression: Expression) -> Callable[[Record], str | None]:
        if isinstance(expression, Variable):
            name = expression.name
            return lambda record: tf.category_value(record.get(name) or "")
        if expression.function == "quantile_bin":
            name, edges = _attribute(expression), self.parameters.edges_of(expression)
            labels = [tf.bin_label(i) for i in range(len(edges) + 1)]

            def binned(record: Record) -> str | None:
                value = record_number(record.get(name))
                return None if value is None else labels[bisect_left(edges, value)]

            return binned
        inner = self.category(expression.args[0])
        if expression.function == "lowercase":

            def lowered(record: Record) -> str | None:
                value = inner(record)
                return None if value is None else value.lower()

            return lowered

        def stripped(record: Record) -> str | None:
            value = inner(record)
            return None if value is None else tf.category_no_punct(value)

        return stripped

    def tokens(self, expression: Expression) -> Callable[[Record], list[str]]:
        if expression.type == ValueType.CATEGORICAL:
            category = self.category(expression)

            def single(record: Record) -> list[str]:
                value = category(record)
                return [] if value is None else [value]

            return single
        if isinstance(expression, Variable):
            name = expression.name
            if expression.type == ValueType.BINARY:

                def flag(record: Record) -> list[str]:
                    value = record_flag(record.get(name))
                    return [] if value is None else ["1" if value else "0"]

                return flag
            return lambda record: (record.get(name) or "").split()
        function = expression.function
        if function == "cartesian":
            parts = [self.tokens(arg) for arg in expression.args]
            return lambda record: tf.cartesian(*(part(record) for part in parts))
        inner = self.tokens(expression.args[0])
        if function == "lowercase":
            return lambda record: [token.lower() for token in inner(record)]
        if function == "no_punct":
            return lambda record: tf.no_punct(inner(record))
        n = expression.parameter
        assert n is not None
        if function == "ngram":
            return lambda record: tf.ngrams(inner(record), n)
        return lambda record: tf.osb(inner(record), n)

    def emitter(self, layout: _Layout, lookup: Mapping[str, int]) -> _Emit:
        """The function adding ``layout``'s features of a record; ``lookup`` maps a vocabulary string to its
        feature index."""
        output = layout.output
        expression = output.expression
        start, indicator = layout.start, layout.missing_indicator
        if _uses_vocabulary(output):
            if output.kind == OutputKind.CATEGORICAL and isinstance(expression, Variable):
                name = expression.name

                def raw_one_hot(record: Record, indices: list[int], values: list[float]) -> None:
                    # tf.category_value inlined: this is the commonest output on the hot path.
                    text = record.get(name)
                    index = lookup.get(text.strip()) if text else None
                    if index is not None:
                        indices.append(index)
                        values.append(1.0)

                return raw_one_hot
            if output.kind == OutputKind.CATEGORICAL:
                category = self.category(expression)

                def one_hot(record: Record, indices: list[int], values: list[float]) -> None:
                    value = category(record)
                    index = None if value is None else lookup.get(value)
                    if index is not None:
                        indices.append(index)
                        values.append(1.0)

                return one_hot
            tokens = self.tokens(expression)

            def bag(record: Record, indices: list[int], values: list[float]) -> None:
                found = sorted({lookup[t] for t in tokens(record) if t in lookup})
                indices.extend(found)
                values.extend([1.0] * len(found))

            return bag
        name = _attribute(expression)
        missing = start + layout.size - 1
        if _is_top_bins(output):
            assert isinstance(expression, Transformation)
            edges = self.parameters.edges_of(expression)

            def binned(record: Record, indices: list[int], values: list[float]) -> None:
                value = record_number(record.get(name))
                if value is not None:
                    indices.append(start + bisect_left(edges, value))
                    values.append(1.0)
                elif indicator:
                    indices.append(missing)
                    values.append(1.0)

            return binned
        parse = record_flag if output.kind == OutputKind.BINARY else record_number
        mean, std = self.parameters.moments.get(name, (0.0, 1.0))
        scaled = isinstance(expression, Transformation)

        def number(record: Record, indices: list[int], values: list[float]) -> None:
            value = parse(record.get(name))
            if value is None:
                if indicator:
                    indices.append(missing)
                    values.append(1.0)
                return
            if scaled:
                value = (value - mean) / std
            if value != 0:
                indices.append(start)
                values.append(value)

        return number


# --- Fitting --------------------------------------------------------------------------------------------


class _NumericStats:
    """One NUMERIC attribute over the training data: absent values seen, moments, quantiles."""

    def __init__(self) -> None:
        self.absent_seen = False
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.sketch: datasketches.kll_doubles_sketch | None = None
        self.distinct: np.ndarray | None = None
        self.distinct_counts = np.empty(0, dtype=np.int64)

    def track_quantiles(self) -> None:
        if self.sketch is None:
            self.sketch = datasketches.kll_doubles_sketch(KLL_K)
            self.distinct = np.empty(0)

    def update(self, numbers: _Numbers) -> None:
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
        if self.sketch is None:
            return
        self.sketch.update(values)
        if self.distinct is not None:
            merged, inverse = np.unique(np.concatenate((self.distinct, values)), return_inverse=True)
            weights = np.concatenate((self.distinct_counts, np.ones(len(values), dtype=np.int64)))
            if len(merged) > EXACT_DISTINCT_LIMIT:
                self.distinct = None
            else:
                self.distinct = merged
                self.distinct_counts = np.bincount(inverse, weights=weights, minlength=len(merged)).astype(
                    np.int64
                )

    def edges(self, n: int) -> tuple[float, ...]:
        if self.distinct is not None:
            return tuple(tf.quantile_edges(self.distinct, self.distinct_counts, n))
        assert self.sketch is not None
        if self.sketch.is_empty():
            return ()
        quantiles = np.asarray(self.sketch.get_quantiles([k / n for k in range(1, n)], True))
        edges = np.unique(quantiles)
        return tuple(float(edge) for edge in edges[edges < self.sketch.get_max_value()])

    def moments(self) -> tuple[float, float]:
        std = math.sqrt(self.m2 / self.count) if self.count else 0.0
        # A constant attribute normalizes to 0 everywhere; dividing by 1 keeps that finite.
        return self.mean, std if std > 0 else 1.0


class _Counter:
    """Document frequencies of one vocabulary output's strings, merged across batches."""

    def __init__(self, max_vocabulary: int) -> None:
        self.keep = _COUNTER_HEADROOM * max_vocabulary
        self.chunks: list[pa.Table] = []
        self.pending = 0

    def update(self, strings: pa.Array, counts: np.ndarray) -> None:
        self.chunks.append(pa.table({"value": strings, "count": pa.array(counts, pa.int64())}))
        self.pending += len(strings)
        if self.pending > _COUNTER_PENDING:
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


def _count_into(counter: _Counter, values: _BatchValues, output: Output) -> None:
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
    if not len(tokens.tokens):
        return
    encoded = pc.dictionary_encode(tokens.tokens)
    width = len(encoded.dictionary)
    _, ids = _distinct_per_row(tokens.row_ids(), _codes_of(encoded), width)
    counter.update(encoded.dictionary, np.bincount(ids, minlength=width))


def _select_vocabularies(
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


# --- The feature space ----------------------------------------------------------------------------------


class FeatureSpace:
    """A fitted recipe. Build it with :meth:`fit` or :meth:`from_dict`; immutable, safe to share between
    threads."""

    def __init__(self, layouts: list[_Layout], parameters: _Parameters) -> None:
        self._layouts = layouts
        self._parameters = parameters
        self.n_features: int = sum(layout.size for layout in layouts)
        self.feature_names: list[str] = [name for layout in layouts for name in _feature_names(layout)]
        # One lookup per vocabulary output, shared by both paths: string → feature index.
        self._lookups = [
            {token: layout.start + i for i, token in enumerate(layout.vocabulary)} for layout in layouts
        ]
        compiler = _RecordCompiler(parameters)
        self._emitters = [
            compiler.emitter(layout, lookup)
            for layout, lookup in zip(layouts, self._lookups, strict=True)
            if layout.size
        ]
        if any(node.function == "no_punct" for layout in layouts for node in _transformations(layout.output)):
            tf.punctuation_characters()  # built now rather than during the first prediction

    @property
    def outputs(self) -> tuple[Output, ...]:
        return tuple(layout.output for layout in self._layouts)

    @classmethod
    def fit(
        cls,
        recipe: Recipe,
        schema: Schema,
        batches: Iterable[pa.RecordBatch],
        *,
        max_vocabulary: int = 1_000_000,
        min_count: int = 1,
    ) -> FeatureSpace:
        """Learn vocabularies, bin edges and moments from training batches of string columns.

        ``recipe`` must have been parsed against ``schema``. Reads ``batches`` once — twice when a
        ``quantile_bin`` is used inside another transformation (its edges must be known before the combined
        tokens can be counted); ``batches`` must then be re-iterable, e.g. a list or an object whose
        ``__iter__`` reopens the data. At most ``max_vocabulary`` category/token features are kept over all
        outputs, the most frequent first (frequency = number of rows holding the string; ties by output
        order, then string); strings in fewer than ``min_count`` rows are dropped.
        """
        _check_schema(recipe, schema)
        outputs = list(recipe.outputs)
        numeric: dict[str, _NumericStats] = {}
        binary_absent: dict[str, bool] = {}
        for output in outputs:
            if output.kind == OutputKind.BINARY:
                binary_absent[_attribute(output.expression)] = False
            elif output.kind == OutputKind.NUMERIC or _is_top_bins(output):
                numeric.setdefault(_attribute(output.expression), _NumericStats())
            for node in _transformations(output):
                if node.function in ("quantile_bin", "normalize"):
                    stats = numeric.setdefault(_attribute(node), _NumericStats())
                    if node.function == "quantile_bin":
                        stats.track_quantiles()
        counters = {
            i: _Counter(max_vocabulary) for i, output in enumerate(outputs) if _uses_vocabulary(output)
        }
        second_pass = {i for i in counters if any(_is_bins(node) for node in _walk(outputs[i].expression))}
        if second_pass and iter(batches) is batches:
            raise TypeError(
                "FeatureSpace.fit needs two passes over the data for a quantile_bin inside another "
                "transformation; pass a re-iterable collection of batches, not an iterator"
            )
        no_parameters = _Parameters({}, {})
        for batch in batches:
            values = _BatchValues(batch, no_parameters)
            for name, stats in numeric.items():
                stats.update(values.numeric(name))
            for name in binary_absent:
                numbers = values.binary(name)
                binary_absent[name] = binary_absent[name] or bool(numbers.absent[numbers.codes].any())
            for i, counter in counters.items():
                if i not in second_pass:
                    _count_into(counter, values, outputs[i])
        edges: dict[str, tuple[float, ...]] = {}
        moments: dict[str, tuple[float, float]] = {}
        for output in outputs:
            for node in _transformations(output):
                if node.function == "quantile_bin":
                    assert node.parameter is not None
                    edges[node.text] = numeric[_attribute(node)].edges(node.parameter)
                elif node.function == "normalize":
                    moments[_attribute(node)] = numeric[_attribute(node)].moments()
        parameters = _Parameters(edges, moments)
        if second_pass:
            for batch in batches:
                values = _BatchValues(batch, parameters)
                for i in second_pass:
                    _count_into(counters[i], values, outputs[i])
        order = sorted(counters)
        selected = _select_vocabularies([counters[i].result(min_count) for i in order], max_vocabulary)
        vocabularies = dict(zip(order, selected, strict=True))
        absent_seen = {name: stats.absent_seen for name, stats in numeric.items()} | binary_absent
        layouts = []
        start = 0
        for i, output in enumerate(outputs):
            indicator = not _uses_vocabulary(output) and absent_seen[_attribute(output.expression)]
            layout = _layout(output, start, parameters, vocabularies.get(i, ()), indicator)
            layouts.append(layout)
            start += layout.size
        return cls(layouts, parameters)

    def transform(self, batch: pa.RecordBatch) -> scipy.sparse.csr_matrix:
        """Features of every row of ``batch`` (string columns named as the schema's attributes): a CSR
        matrix of shape ``(batch.num_rows, n_features)``, float64, indices sorted within each row."""
        values = _BatchValues(batch, self._parameters)
        parts: list[_Single | _Bag] = []
        for layout, lookup in zip(self._layouts, self._lookups, strict=True):
            if not layout.size:
                continue
            output = layout.output
            if _uses_vocabulary(output):
                parts.append(_vocabulary_part(layout, lookup, values))
            elif _is_top_bins(output):
                assert isinstance(output.expression, Transformation)
                parts.append(_bin_part(layout, values.bins(output.expression)))
            else:
                parts.append(_numeric_part(layout, *values.numbers(output)))
        return _assemble(parts, batch.num_rows, self.n_features)

    def transform_record(self, record: Record) -> tuple[list[int], list[float]]:
        """Features of one record (attribute → string; a missing key is a missing value): sorted unique
        indices and their values, equal to the record's row of :meth:`transform`."""
        indices: list[int] = []
        values: list[float] = []
        for emit in self._emitters:
            emit(record, indices, values)
        return indices, values

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description; :meth:`from_dict` rebuilds an identical feature space from it."""
        return {
            "version": FORMAT_VERSION,
            "outputs": [
                {
                    "expression": layout.output.text,
                    "kind": layout.output.kind.value,
                    "missing_indicator": layout.missing_indicator,
                    **({"vocabulary": list(layout.vocabulary)} if _uses_vocabulary(layout.output) else {}),
                }
                for layout in self._layouts
            ],
            "quantile_edges": {text: list(edges) for text, edges in self._parameters.edges.items()},
            "moments": {name: {"mean": m, "std": s} for name, (m, s) in self._parameters.moments.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], schema: Schema) -> FeatureSpace:
        """Rebuild a feature space from :meth:`to_dict`'s output and the training ``schema``.

        Raises ``InvalidInputException`` when ``data`` is not such a description or names attributes the
        schema lacks.
        """
        try:
            if data["version"] != FORMAT_VERSION:
                raise InvalidInputException(
                    f"feature space version {data['version']!r} is not supported (expected {FORMAT_VERSION})"
                )
            entries = data["outputs"]
            texts = [entry["expression"] for entry in entries]
            recipe = parse_recipe(json.dumps({"outputs": texts}), schema, max_outputs=max(len(texts), 1))
            if [output.text for output in recipe.outputs] != texts:
                raise InvalidInputException(
                    "feature space outputs do not resolve to themselves with this schema"
                )
            parameters = _Parameters(
                {
                    text: tuple(float(edge) for edge in edges)
                    for text, edges in data["quantile_edges"].items()
                },
                {name: (float(m["mean"]), float(m["std"])) for name, m in data["moments"].items()},
            )
            layouts = []
            start = 0
            for output, entry in zip(recipe.outputs, entries, strict=True):
                vocabulary = tuple(entry.get("vocabulary", ()))
                layout = _layout(output, start, parameters, vocabulary, bool(entry["missing_indicator"]))
                layouts.append(layout)
                start += layout.size
            return cls(layouts, parameters)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputException(f"feature space description is malformed: {exc!r}") from None


def _check_schema(recipe: Recipe, schema: Schema) -> None:
    for output in recipe.outputs:
        for node in _walk(output.expression):
            if isinstance(node, Variable) and (
                node.name not in schema or schema.attribute(node.name).type.value != node.type.value
            ):
                raise InvalidInputException(
                    f"the recipe's output {output.text} uses {node.name!r} as {node.type}, "
                    "which this schema does not declare; parse the recipe with the training schema"
                )


def _vocabulary_part(layout: _Layout, lookup: Mapping[str, int], values: _BatchValues) -> _Single | _Bag:
    if layout.output.kind == OutputKind.CATEGORICAL:
        categories = values.categories(layout.output.expression)
        mapping = np.append(_label_ids(categories.labels, lookup), -1)  # code -1 → the appended -1
        return _Single(mapping[categories.codes], np.ones(values.rows))
    tokens = values.tokens(layout.output.expression)
    ids = _token_ids(tokens.tokens, lookup)
    known = ids >= 0
    rows, local = _distinct_per_row(tokens.row_ids()[known], ids[known] - layout.start, layout.size)
    return _Bag(rows, layout.start + local)


def _transformations(output: Output) -> Iterator[Transformation]:
    return (node for node in _walk(output.expression) if isinstance(node, Transformation))


def _layout(
    output: Output, start: int, parameters: _Parameters, vocabulary: tuple[str, ...], indicator: bool
) -> _Layout:
    if _uses_vocabulary(output):
        return _Layout(output, start, len(vocabulary), False, vocabulary)
    if _is_top_bins(output):
        assert isinstance(output.expression, Transformation)
        bins = len(parameters.edges_of(output.expression)) + 1
        return _Layout(output, start, bins + indicator, indicator)
    return _Layout(output, start, 1 + indicator, indicator)


def _feature_names(layout: _Layout) -> list[str]:
    text = layout.output.text
    if _uses_vocabulary(layout.output):
        return [f"{text}={token}" for token in layout.vocabulary]
    if _is_top_bins(layout.output):
        names = [f"{text}={tf.bin_label(i)}" for i in range(layout.size - layout.missing_indicator)]
    else:
        names = [text]
    return names + ([f"{text}:missing"] if layout.missing_indicator else [])
