"""``FeatureSpace``: a recipe fitted to training data, with both ways to featurize."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from emrml.core.features.batch import (
    Bag,
    BatchValues,
    Single,
    assemble,
    bin_part,
    distinct_per_row,
    dot_parts,
    label_ids,
    numeric_part,
    token_ids,
)
from emrml.core.features.fitting import Counter, NumericStats, count_into, select_vocabularies
from emrml.core.features.layout import (
    FORMAT_VERSION,
    Layout,
    Parameters,
    Record,
    attribute,
    is_bins,
    is_top_bins,
    uses_vocabulary,
    walk,
)
from emrml.core.features.record import RecordCompiler, scored_attribute
from emrml.core.recipe import transforms as tf
from emrml.core.recipe.grammar import (
    Output,
    OutputKind,
    Recipe,
    Transformation,
    Variable,
    parse_recipe,
)
from emrml.core.schema import Schema
from emrml.errors import InvalidInputException

if TYPE_CHECKING:
    import scipy.sparse

# --- The feature space ----------------------------------------------------------------------------------


class FeatureSpace:
    """A fitted recipe. Build it with :meth:`fit` or :meth:`from_dict`; immutable, safe to share between
    threads."""

    def __init__(self, layouts: list[Layout], parameters: Parameters) -> None:
        self._layouts = layouts
        self._parameters = parameters
        self.n_features: int = sum(layout.size for layout in layouts)
        self.feature_names: list[str] = [name for layout in layouts for name in _feature_names(layout)]
        # One lookup per vocabulary output, shared by both paths: string → feature index.
        self._lookups = [
            {token: layout.start + i for i, token in enumerate(layout.vocabulary)} for layout in layouts
        ]
        compiler = RecordCompiler(parameters)
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
        fitting = Fitting(recipe, schema, max_vocabulary)
        if fitting.second_pass and iter(batches) is batches:
            raise TypeError(
                "FeatureSpace.fit needs two passes over the data for a quantile_bin inside another "
                "transformation; pass a re-iterable collection of batches, not an iterator"
            )
        for batch in batches:
            fitting.update(batch)
        if fitting.second_pass:
            fitting.end_first_pass()
            for batch in batches:
                fitting.update(batch)
        return fitting.space(min_count)

    def transform(self, batch: pa.RecordBatch) -> scipy.sparse.csr_matrix:
        """Features of every row of ``batch`` (string columns named as the schema's attributes): a CSR
        matrix of shape ``(batch.num_rows, n_features)``, float64, indices sorted within each row."""
        return assemble(self._parts(self.values(batch)), batch.num_rows, self.n_features)

    def values(self, batch: pa.RecordBatch) -> BatchValues:
        """The batch's expressions, each evaluated once, for :meth:`product` (and the batch's parsed
        numbers and flags, for their checks)."""
        return BatchValues(batch, self._parameters)

    def product(self, values: BatchValues, weights: np.ndarray) -> np.ndarray:
        """``transform(batch) @ weights`` (float64 ``(n_features, k)`` → ``(rows, k)``) without building
        the matrix: what scoring a batch needs."""
        return dot_parts(self._parts(values), values.rows, weights)

    def _parts(self, values: BatchValues) -> list[Single | Bag]:
        parts: list[Single | Bag] = []
        for layout, lookup in zip(self._layouts, self._lookups, strict=True):
            if not layout.size:
                continue
            output = layout.output
            if uses_vocabulary(output):
                parts.append(_vocabulary_part(layout, lookup, values))
            elif is_top_bins(output):
                assert isinstance(output.expression, Transformation)
                parts.append(bin_part(layout, values.bins(output.expression)))
            else:
                parts.append(numeric_part(layout, *values.numbers(output)))
        return parts

    def transform_record(self, record: Record) -> tuple[list[int], list[float]]:
        """Features of one record (attribute → string; a missing key is a missing value): sorted unique
        indices and their values, equal to the record's row of :meth:`transform`."""
        indices: list[int] = []
        values: list[float] = []
        for emit in self._emitters:
            emit(record, indices, values)
        return indices, values

    def record_scorer(
        self, weights: Sequence[float]
    ) -> tuple[Callable[[Record, list[str]], float], frozenset[str]]:
        """``record → Σ value × weights[index]`` over the record's features (``weights``: one per feature):
        :meth:`transform_record` and a dot product in one pass, for a one-output linear model. The function
        also adds to its list argument the attributes (among those of the returned set) whose value in the
        record could not be read as a number or flag."""
        compiler = RecordCompiler(self._parameters)
        parts = tuple(
            compiler.scorer(layout, lookup, weights)
            for layout, lookup in zip(self._layouts, self._lookups, strict=True)
            if layout.size
        )
        checked = frozenset(
            name for layout in self._layouts if layout.size and (name := scored_attribute(layout))
        )

        def score(record: Record, unparsed: list[str]) -> float:
            total = 0.0
            for part in parts:
                total += part(record, unparsed)
            return total

        return score, checked

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description; :meth:`from_dict` rebuilds an identical feature space from it."""
        return {
            "version": FORMAT_VERSION,
            "outputs": [
                {
                    "expression": layout.output.text,
                    "kind": layout.output.kind.value,
                    "missing_indicator": layout.missing_indicator,
                    **({"vocabulary": list(layout.vocabulary)} if uses_vocabulary(layout.output) else {}),
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
            parameters = Parameters(
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
        for node in walk(output.expression):
            if isinstance(node, Variable) and (
                node.name not in schema or schema.attribute(node.name).type.value != node.type.value
            ):
                raise InvalidInputException(
                    f"the recipe's output {output.text} uses {node.name!r} as {node.type}, "
                    "which this schema does not declare; parse the recipe with the training schema"
                )


def _vocabulary_part(layout: Layout, lookup: Mapping[str, int], values: BatchValues) -> Single | Bag:
    if layout.output.kind == OutputKind.CATEGORICAL:
        categories = values.categories(layout.output.expression)
        mapping = np.append(label_ids(categories.labels, lookup), -1)  # code -1 → the appended -1
        return Single(mapping[categories.codes])
    tokens = values.tokens(layout.output.expression)
    ids = token_ids(tokens, lookup)
    known = ids >= 0
    rows, local = distinct_per_row(tokens.row_ids()[known], ids[known] - layout.start, layout.size)
    return Bag(rows, layout.start + local)


def _transformations(output: Output) -> Iterator[Transformation]:
    return (node for node in walk(output.expression) if isinstance(node, Transformation))


def _layout(
    output: Output, start: int, parameters: Parameters, vocabulary: tuple[str, ...], indicator: bool
) -> Layout:
    if uses_vocabulary(output):
        return Layout(output, start, len(vocabulary), False, vocabulary)
    if is_top_bins(output):
        assert isinstance(output.expression, Transformation)
        bins = len(parameters.edges_of(output.expression)) + 1
        return Layout(output, start, bins + indicator, indicator)
    return Layout(output, start, 1 + indicator, indicator)


def _feature_names(layout: Layout) -> list[str]:
    text = layout.output.text
    if uses_vocabulary(layout.output):
        return [f"{text}={token}" for token in layout.vocabulary]
    if is_top_bins(layout.output):
        names = [f"{text}={tf.bin_label(i)}" for i in range(layout.size - layout.missing_indicator)]
    else:
        names = [text]
    return names + ([f"{text}:missing"] if layout.missing_indicator else [])


# --- Fitting, in parts that merge --------------------------------------------------------------------------


class Fitting:
    """What ``FeatureSpace.fit`` learns from the batches it reads, kept so that the fittings of parts of
    the data merge (the Spark engine fits each part of the data in a task and merges them on the driver).

    Read every batch with ``update``; when ``second_pass`` is true, call ``end_first_pass`` (on the merged
    fitting, whose bin edges the second pass must share) and ``update`` with every batch again, merging the
    second-pass fittings into it; then ``space``. Merged counts and moments equal one reading's; quantile
    edges beyond ``EXACT_DISTINCT_LIMIT`` distinct values come from merged KLL sketches (within their rank
    error), and vocabularies beyond the counters' headroom keep the most frequent strings of each part.
    """

    def __init__(self, recipe: Recipe, schema: Schema, max_vocabulary: int = 1_000_000) -> None:
        _check_schema(recipe, schema)
        self.max_vocabulary = max_vocabulary
        self.outputs = list(recipe.outputs)
        self.numeric: dict[str, NumericStats] = {}
        self.binary_absent: dict[str, bool] = {}
        for output in self.outputs:
            if output.kind == OutputKind.BINARY:
                self.binary_absent[attribute(output.expression)] = False
            elif output.kind == OutputKind.NUMERIC or is_top_bins(output):
                self.numeric.setdefault(attribute(output.expression), NumericStats())
            for node in _transformations(output):
                if node.function in ("quantile_bin", "normalize"):
                    stats = self.numeric.setdefault(attribute(node), NumericStats())
                    if node.function == "quantile_bin":
                        stats.track_quantiles()
        self.counters = {
            i: Counter(max_vocabulary) for i, output in enumerate(self.outputs) if uses_vocabulary(output)
        }
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

    def merge(self, other: Fitting) -> None:
        """Add what ``other`` learned from other data (the same recipe, in the same pass)."""
        if other.parameters is not None:  # a part of the second pass: its counters only
            for i, counter in other.counters.items():
                self.counters[i].merge(counter)
            return
        for name, stats in self.numeric.items():
            stats.merge(other.numeric[name])
        for name, absent in other.binary_absent.items():
            self.binary_absent[name] = self.binary_absent[name] or absent
        for i, counter in self.counters.items():
            counter.merge(other.counters[i])

    def end_first_pass(self) -> Parameters:
        """Fix the bin edges and moments (on the merged first pass); later ``update`` calls count the
        second pass's strings with them."""
        edges: dict[str, tuple[float, ...]] = {}
        moments: dict[str, tuple[float, float]] = {}
        for output in self.outputs:
            for node in _transformations(output):
                if node.function == "quantile_bin":
                    assert node.parameter is not None
                    edges[node.text] = self.numeric[attribute(node)].edges(node.parameter)
                elif node.function == "normalize":
                    moments[attribute(node)] = self.numeric[attribute(node)].moments()
        self.parameters = Parameters(edges, moments)
        return self.parameters

    def second_pass_part(self) -> Fitting:
        """An empty fitting for a part of the second pass: the same edges, its own counters."""
        part = copy.copy(self)
        part.counters = {i: Counter(self.max_vocabulary) for i in self.second_pass}
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
            layout = _layout(output, start, parameters, vocabularies.get(i, ()), indicator)
            layouts.append(layout)
            start += layout.size
        return FeatureSpace(layouts, parameters)
