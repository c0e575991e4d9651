"""The batch featurizer: an Arrow batch of string columns into a sparse matrix, vectorized."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.features.layout import Layout, Parameters, attribute, is_top_bins, uses_vocabulary
from emrml.core.recipe import arrays as ta
from emrml.core.recipe import transforms as tf
from emrml.core.recipe.grammar import (
    Expression,
    Output,
    OutputKind,
    Transformation,
    ValueType,
    Variable,
)
from emrml.core.values import Parsed, parse_binary, parse_numeric
from emrml.errors import DataError

if TYPE_CHECKING:
    import scipy.sparse


@functools.cache
def binary_labels() -> pa.Array:
    """The tokens of a BINARY value inside cartesian (open question 12); built on first use."""
    return pa.array(["0", "1"], pa.string())


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


@dataclass(frozen=True)
class Numbers:
    """A NUMERIC or BINARY column parsed once per distinct string: row ``i`` has ``values[codes[i]]``,
    absent (missing or invalid, value NaN) where ``absent[codes[i]]``, unreadable as its type where
    ``invalid[codes[i]]``. The last entry stands for nulls."""

    codes: np.ndarray  # int64; -1 (a null) picks the last entry
    values: np.ndarray  # float64
    absent: np.ndarray  # bool
    invalid: np.ndarray  # bool

    def per_row(self) -> tuple[np.ndarray, np.ndarray]:
        return self.values[self.codes], self.absent[self.codes]


def parsed_numbers(column: pa.Array, parse: Callable[[pa.Array], Parsed]) -> Numbers:
    """``column`` parsed by ``parse`` (``parse_numeric`` or ``parse_binary``) once per distinct string."""
    encoded = pc.dictionary_encode(column)
    return _numbers(ta.codes_of(encoded), parse(encoded.dictionary))


def _numbers(codes: np.ndarray, distinct: Parsed) -> Numbers:
    return Numbers(
        codes,
        np.append(distinct.values, np.nan),
        np.append(distinct.missing | distinct.invalid, True),
        np.append(distinct.invalid, False),
    )


class BatchValues:
    """The values of a batch's expressions, each computed once."""

    def __init__(self, batch: pa.RecordBatch, parameters: Parameters) -> None:
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
        return ta.as_strings(self.batch.column(index))

    def numeric(self, name: str) -> Numbers:
        return self._cached(("numeric", name), lambda: parsed_numbers(self.column(name), parse_numeric))

    def parse_numeric_columns(self, names: Iterable[str]) -> None:
        """Parse the NUMERIC columns ``names`` (those the batch has) together, for ``numeric``: the
        distinct strings of all in one ``parse_numeric`` call, where one per column costs a dozen Arrow
        calls on a few hundred strings each, several times the parsing itself."""
        present = self.batch.schema.names
        todo = [
            name for name in dict.fromkeys(names) if name in present and ("numeric", name) not in self._cache
        ]
        if len(todo) < 2:
            return
        encoded = [pc.dictionary_encode(self.column(name)) for name in todo]
        parsed = parse_numeric(pa.concat_arrays([column.dictionary for column in encoded]))
        start = 0
        for name, column in zip(todo, encoded, strict=True):
            part = slice(start, start + len(column.dictionary))
            distinct = Parsed(parsed.values[part], parsed.missing[part], parsed.invalid[part])
            self._cache["numeric", name] = _numbers(ta.codes_of(column), distinct)
            start = part.stop

    def binary(self, name: str) -> Numbers:
        return self._cached(("binary", name), lambda: parsed_numbers(self.column(name), parse_binary))

    def bins(self, expression: Transformation) -> np.ndarray:
        """Bin index per row (int64), -1 where the value is missing or invalid."""

        def compute() -> np.ndarray:
            numbers = self.numeric(attribute(expression))
            edges = self.parameters.edges_of(expression)
            bins = tf.bin_indices(edges, np.where(numbers.absent, 0.0, numbers.values))
            return np.where(numbers.absent, -1, bins)[numbers.codes]

        return self._cached(("bins", expression.text), compute)

    def categories(self, expression: Expression) -> _Codes:
        """A CATEGORICAL expression per row."""

        def compute() -> _Codes:
            if isinstance(expression, Variable):
                encoded = pc.dictionary_encode(self.column(expression.name))
                return _Codes(ta.codes_of(encoded), ta.category_array(encoded.dictionary))
            if expression.function == "quantile_bin":
                count = len(self.parameters.edges_of(expression)) + 1
                return _Codes(self.bins(expression), pa.array([tf.bin_label(i) for i in range(count)]))
            inner = self.categories(expression.args[0])
            if expression.function == "lowercase":
                return _Codes(inner.codes, ta.lowercase_array(inner.labels))
            return _Codes(inner.codes, ta.category_no_punct_array(inner.labels))

        return self._cached(("categories", expression.text), compute)

    def tokens(self, expression: Expression) -> ta.TokenArray:
        """The token set of any non-NUMERIC expression per row."""

        def compute() -> ta.TokenArray:
            if expression.type == ValueType.CATEGORICAL:
                return ta.single_tokens(self.categories(expression).strings())
            if isinstance(expression, Variable):
                if expression.type == ValueType.BINARY:
                    values, absent = self.binary(expression.name).per_row()
                    index = pa.array(np.where(absent, 0, values).astype(np.int64), mask=absent)
                    return ta.single_tokens(binary_labels().take(index))
                return ta.tokenize_array(self.column(expression.name))
            function = expression.function
            if function == "cartesian":
                return ta.cartesian_array(*(self.tokens(arg) for arg in expression.args))
            inner = self.tokens(expression.args[0])
            if function == "lowercase":
                return ta.lowercase_tokens(inner)
            if function == "no_punct":
                return ta.no_punct_array(inner)
            assert expression.parameter is not None
            if function == "ngram":
                return ta.ngrams_array(inner, expression.parameter)
            return ta.osb_array(inner, expression.parameter)

        return self._cached(("tokens", expression.text), compute)

    def numbers(self, output: Output) -> tuple[np.ndarray, np.ndarray]:
        """A NUMERIC or BINARY output's values (float64, NaN where absent) and its absent mask."""
        expression = output.expression
        name = attribute(expression)
        numbers = self.binary(name) if output.kind == OutputKind.BINARY else self.numeric(name)
        values = numbers.values
        if isinstance(expression, Transformation):  # normalize
            mean, std = self.parameters.moments[name]
            values = (values - mean) / std
        return values[numbers.codes], numbers.absent[numbers.codes]


def label_ids(labels: pa.Array, lookup: Mapping[str, int]) -> np.ndarray:
    """``lookup[label]`` per label (int64), -1 for nulls and labels not in ``lookup``."""
    return np.fromiter(
        (-1 if label is None else lookup.get(label, -1) for label in labels.to_pylist()),
        dtype=np.int64,
        count=len(labels),
    )


#: Up to this many grid cells per (row, id) pair, ``distinct_per_row`` marks a grid instead of sorting.
_DENSE_CELLS_PER_PAIR = 16


def distinct_per_row(rows: np.ndarray, ids: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(row, id)`` pairs sorted by row then id; ``rows`` are non-negative, ``ids`` in
    ``[0, width)``. Both results are int64."""
    keys = rows.astype(np.int64) * width + ids
    return _distinct_keys(keys, int(rows.max()) + 1 if rows.size else 0, width)


def _distinct_keys(keys: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``distinct_per_row`` of the pairs' keys ``row * width + id`` (int64), every row below ``height``."""
    if not keys.size:
        return keys, keys
    cells = height * width
    if cells <= _DENSE_CELLS_PER_PAIR * keys.size:
        # A small vocabulary (a few dozen words): marking each pair in a rows × width grid and reading
        # the marks back in order costs one pass over the grid, against the sort's n log n (6-8× less
        # at 25,000 rows and 47 words). Memory: at most 16 bytes per pair.
        grid = np.zeros(cells, dtype=bool)
        grid[keys] = True
        keys = np.flatnonzero(grid)
        return np.divmod(keys, width)
    # np.sort plus a neighbour comparison: np.unique takes a path about 50 times slower on int64 keys.
    # Keys that fit 32 bits sort as such, in about 60 % of the time.
    keys = np.sort(keys.astype(np.int32)).astype(np.int64) if cells < 2**31 else np.sort(keys)
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return np.divmod(keys, width)


@dataclass(frozen=True)
class Single:
    """Features of an output with at most one feature per row: column per row (-1: none) and value (None:
    1.0 in every row, as for categories and bins)."""

    columns: np.ndarray
    values: np.ndarray | None = None


@dataclass(frozen=True)
class Coded:
    """Features of an output with at most one feature of value 1.0 per row, through the batch's codes of
    its values (a category, a bin): row ``i`` has the column ``table[codes[i]]`` (-1: none). Scoring reads a
    weight per code and then one per row, rather than a column per row and then its weight."""

    codes: np.ndarray
    table: np.ndarray

    def single(self) -> Single:
        return Single(self.table[self.codes])


@dataclass(frozen=True)
class Bag:
    """Features of a token output: ``(row, column)`` pairs sorted by row then column, each of value 1."""

    rows: np.ndarray
    columns: np.ndarray


#: Up to this many grid cells per (row, token) pair, a token output's features are a ``Marks`` grid.
_MARKED_CELLS_PER_PAIR = 8


@dataclass(frozen=True)
class Marks:
    """Features of a token output of a narrow vocabulary, each of value 1: ``grid[j, row]`` tells whether
    the row has the output's ``j``-th feature (column ``start + j``). Scoring adds a weight per feature to
    every row at once (``dot_parts``), where the ``(row, column)`` pairs of a ``Bag`` cost finding, sorting
    and a gather each."""

    grid: np.ndarray  # bool, (features, rows)
    start: int

    def bag(self) -> Bag:
        rows, places = np.nonzero(self.grid.T)  # row by row, each row's features in order
        return Bag(rows.astype(np.int64), self.start + places.astype(np.int64))


def numeric_part(layout: Layout, values: np.ndarray, absent: np.ndarray) -> Single:
    columns = np.where(absent, layout.start + 1 if layout.missing_indicator else -1, layout.start)
    columns[~absent & (values == 0)] = -1
    return Single(columns, np.where(absent, 1.0, values))


def bin_part(layout: Layout, expression: Transformation, values: BatchValues) -> Coded:
    """A ``quantile_bin`` output's features, worked out once per distinct value of the batch."""
    numbers = values.numeric(attribute(expression))
    edges = values.parameters.edges_of(expression)
    bins = tf.bin_indices(edges, np.where(numbers.absent, 0.0, numbers.values))
    # The missing indicator follows the bins.
    missing = layout.start + layout.size - 1 if layout.missing_indicator else -1
    return Coded(numbers.codes, np.where(numbers.absent, missing, layout.start + bins))


def feature_parts(
    layouts: Sequence[Layout], lookups: Sequence[Mapping[str, int]], values: BatchValues
) -> list[Single | Coded | Bag | Marks]:
    """The features of a batch, one part per output with features (``FeatureSpace``'s layouts and their
    string → feature lookups), in the layouts' order."""
    parts: list[Single | Coded | Bag | Marks] = []
    values.parse_numeric_columns(
        attribute(layout.output.expression)
        for layout in layouts
        if layout.size and (is_top_bins(layout.output) or layout.output.kind == OutputKind.NUMERIC)
    )
    for layout, lookup in zip(layouts, lookups, strict=True):
        if not layout.size:
            continue
        output = layout.output
        if uses_vocabulary(output):
            parts.append(_vocabulary_part(layout, lookup, values))
        elif is_top_bins(output):
            assert isinstance(output.expression, Transformation)
            parts.append(bin_part(layout, output.expression, values))
        else:
            parts.append(numeric_part(layout, *values.numbers(output)))
    return parts


def _vocabulary_part(layout: Layout, lookup: Mapping[str, int], values: BatchValues) -> Coded | Bag | Marks:
    if layout.output.kind == OutputKind.CATEGORICAL:
        categories = values.categories(layout.output.expression)
        mapping = np.append(label_ids(categories.labels, lookup), -1)  # code -1 → the appended -1
        return Coded(categories.codes, mapping)
    tokens = values.tokens(layout.output.expression)
    # Each token's key (row × size + its feature's place in the output) from a place per word and a key
    # base per row: no array of rows per token, and no filtering when every word of the batch is known.
    # Unknown words' places are negative.
    local = label_ids(tokens.words, lookup) - layout.start
    places = local[tokens.codes]
    keys = np.repeat(np.arange(tokens.num_rows, dtype=np.int64) * layout.size, tokens.lengths()) + places
    if (local < 0).any():
        keys = keys[places >= 0]
    rows_count = tokens.num_rows
    if keys.size and rows_count * layout.size <= _MARKED_CELLS_PER_PAIR * keys.size:
        # A few dozen words: each pair marked in a (features, rows) grid, the repeats of a word in a row
        # marking the same cell. Memory: at most 8 bytes per pair.
        rows, places = np.divmod(keys, layout.size)
        grid = np.zeros(layout.size * rows_count, dtype=bool)
        grid[places * rows_count + rows] = True
        return Marks(grid.reshape(layout.size, rows_count), layout.start)
    rows, columns = _distinct_keys(keys, tokens.num_rows, layout.size)
    return Bag(rows, layout.start + columns)


def _group_entries(
    parts: list[Single] | Bag, num_rows: int, index_type: type[np.integer]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(per_row, columns, values)`` of consecutive single-feature outputs, or of one token output: the
    entries in row order (columns increasing within a row) and how many each row has."""
    if isinstance(parts, Bag):
        return (
            np.bincount(parts.rows, minlength=num_rows),
            parts.columns.astype(index_type),
            np.ones(len(parts.columns)),
        )
    columns = np.empty((num_rows, len(parts)), dtype=index_type)
    values = np.empty((num_rows, len(parts)))
    for j, part in enumerate(parts):
        columns[:, j] = part.columns
        values[:, j] = 1.0 if part.values is None else part.values
    present = columns >= 0
    if present.all():  # the usual case: no missing value, no zero
        return np.full(num_rows, len(parts)), columns.ravel(), values.ravel()
    return present.sum(axis=1), columns[present], values[present]


def dot_parts(parts: list[Single | Coded | Bag | Marks], num_rows: int, weights: np.ndarray) -> np.ndarray:
    """``assemble(parts, num_rows, n) @ weights`` without building the matrix: ``weights`` is float64
    ``(n, k)``, the result ``(num_rows, k)``.

    Scoring needs only this product, and the matrix costs several times more to assemble than the
    product takes. Each row's terms are added in the matrix's column order, as the sparse product adds
    them (a token output's terms are summed first, then added).
    """
    # One output at a time, on contiguous vectors: gathers from a weight column and in-place adds cost a
    # fraction of the same work on (rows, k) blocks.
    out = np.zeros((weights.shape[1], num_rows))
    columns = np.ascontiguousarray(weights.T)
    # Huge raw NUMERIC values overflow to infinities, which the callers deal with: no warning per batch.
    with np.errstate(over="ignore", invalid="ignore"):
        for part in parts:
            if isinstance(part, Marks):
                if np.isfinite(columns[:, part.start : part.start + len(part.grid)]).all():
                    _add_marked(out, part, columns)
                    continue
                part = part.bag()  # 0 × an infinite weight would be NaN in every row without the feature
            if isinstance(part, Bag):
                if part.rows.size:
                    for k in range(len(columns)):
                        out[k] += np.bincount(
                            part.rows, weights=columns[k].take(part.columns), minlength=num_rows
                        )
                continue
            if isinstance(part, Coded):
                # A term per code, as ``_gather`` reads it for a row of that code, then one per row.
                present = part.table >= 0
                index = np.where(present, part.table, 0)
                for k in range(len(columns)):
                    per_code = columns[k].take(index)
                    if not present.all():
                        per_code[~present] *= 0.0
                    out[k] += per_code[part.codes]
                continue
            index, scale = _gather(part)
            for k in range(len(columns)):
                terms = columns[k].take(index)
                if scale is not None:  # None: every value is 1.0, which leaves the weights as they are
                    terms *= scale
                out[k] += terms
    return out.T


def _add_marked(out: np.ndarray, part: Marks, columns: np.ndarray) -> None:
    """Add a ``Marks`` part's terms to ``out`` (``dot_parts``): per row, its features' weights summed in
    column order from 0, as a ``Bag``'s ``bincount`` sums them (an unmarked feature adds ±0, which
    changes no sum), then added."""
    term = np.empty(out.shape[1])
    for k in range(len(columns)):
        total = np.zeros(out.shape[1])
        for place, marked in enumerate(part.grid):
            np.multiply(marked, columns[k, part.start + place], out=term)
            total += term
        out[k] += total


def _gather(part: Single) -> tuple[np.ndarray, np.ndarray | None]:
    """Where each row's weight is (``dot_parts``) and what multiplies it: rows without a feature read
    column 0 and multiply it by 0."""
    present = part.columns >= 0
    if present.all():
        return part.columns, part.values
    values = 1.0 if part.values is None else part.values
    return np.where(present, part.columns, 0), np.where(present, values, 0.0)


def assemble(
    parts: list[Single | Coded | Bag | Marks], num_rows: int, num_features: int
) -> scipy.sparse.csr_matrix:
    """One CSR matrix from per-output parts whose column ranges increase with the output order.

    Each group's entries are scattered straight into the CSR arrays: within a row, a group's entries
    follow those of the groups before it, so the columns come out sorted without any sparse arithmetic.
    """
    import scipy.sparse  # here: a server scoring single records never loads scipy

    index_type = np.int32 if num_features < 2**31 else np.int64
    groups: list[list[Single] | Bag] = []
    for part in parts:
        if isinstance(part, Coded):
            part = part.single()
        if isinstance(part, Marks):
            part = part.bag()
        if isinstance(part, Bag):
            groups.append(part)
        elif groups and isinstance(groups[-1], list):
            groups[-1].append(part)
        else:
            groups.append([part])
    entries = [_group_entries(group, num_rows, index_type) for group in groups]
    per_row = np.zeros(num_rows, dtype=np.int64)
    for counts, _, _ in entries:
        per_row += counts
    indptr = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    nnz = int(indptr[-1])
    if len(entries) == 1:
        _, indices, data = entries[0]
    else:
        indices = np.empty(nnz, dtype=index_type)
        data = np.empty(nnz)
        filled = indptr[:-1].copy()  # where each row's next entry goes
        for counts, columns, values in entries:
            # Entry i of the group, the r-th of its row, goes r places after the row's filled part.
            group_start = np.zeros(num_rows, dtype=np.int64)
            np.cumsum(counts[:-1], out=group_start[1:])
            row_of = np.repeat(np.arange(num_rows), counts)
            destinations = filled[row_of] + (np.arange(columns.size) - group_start[row_of])
            indices[destinations] = columns
            data[destinations] = values
            filled = filled + counts
    matrix = scipy.sparse.csr_matrix(
        (data, indices, indptr.astype(index_type)), shape=(num_rows, num_features)
    )
    matrix.has_sorted_indices = True
    return matrix
