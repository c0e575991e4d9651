"""``FeatureSpace``: a recipe fitted to training data, with both ways to featurize.

The batch methods import the vectorized featurizer (``batch``, with Arrow) and ``fit`` the fitting code
when first called: a process that only scores single records (a server answering Predict) loads neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from emrml.core.features.layout import (
    FORMAT_VERSION,
    Layout,
    Parameters,
    Record,
    is_top_bins,
    output_layout,
    transformations,
    uses_vocabulary,
)
from emrml.core.features.record import RecordCompiler, scored_attribute
from emrml.core.recipe import transforms as tf
from emrml.core.recipe.grammar import (
    Output,
    Recipe,
    parse_recipe,
)
from emrml.core.schema import Schema
from emrml.errors import InvalidInputException

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import scipy.sparse

    from emrml.core.features.batch import BatchValues

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
        if any(node.function == "no_punct" for layout in layouts for node in transformations(layout.output)):
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
        order, then string); strings in fewer than ``min_count`` rows are dropped. The counts are exact
        while the distinct strings fit the counters' budget (``layout.COUNTER_BYTES``); beyond it, rare
        strings are forgotten and every string frequent enough to matter is still kept (``fitting``).
        """
        from emrml.core.features.fitting import Fitting

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
        from emrml.core.features import batch as vectorized

        parts = vectorized.feature_parts(self._layouts, self._lookups, self.values(batch))
        return vectorized.assemble(parts, batch.num_rows, self.n_features)

    def values(self, batch: pa.RecordBatch) -> BatchValues:
        """The batch's expressions, each evaluated once, for :meth:`product` (and the batch's parsed
        numbers and flags, for their checks)."""
        from emrml.core.features.batch import BatchValues

        return BatchValues(batch, self._parameters)

    def product(self, values: BatchValues, weights: np.ndarray) -> np.ndarray:
        """``transform(batch) @ weights`` (float64 ``(n_features, k)`` → ``(rows, k)``) without building
        the matrix: what scoring a batch needs."""
        from emrml.core.features import batch as vectorized

        parts = vectorized.feature_parts(self._layouts, self._lookups, values)
        return vectorized.dot_parts(parts, values.rows, weights)

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
        score = RecordCompiler(self._parameters).score(self._layouts, self._lookups, weights)
        checked = frozenset(
            name for layout in self._layouts if layout.size and (name := scored_attribute(layout))
        )
        return score, checked

    def compacted(self, weights: np.ndarray) -> tuple[FeatureSpace, np.ndarray]:
        """This space without the vocabulary strings whose rows of ``weights`` (``(n_features, k)``) are all
        zero, and the indices of the rows it keeps. A string outside the vocabulary adds no feature, so the
        scores stay the same; the model file, which holds every string of the vocabularies, gets smaller
        (pruning to ``sgd.maxMLModelSizeInBytes`` zeroes rows, which alone leaves the file as large)."""
        import numpy as np

        zero = ~weights.any(axis=1)
        keep = np.ones(self.n_features, dtype=bool)
        layouts = []
        start = 0
        for layout in self._layouts:
            if uses_vocabulary(layout.output):
                rows = slice(layout.start, layout.start + layout.size)
                keep[rows] = ~zero[rows]
                vocabulary = tuple(
                    token for token, kept in zip(layout.vocabulary, keep[rows], strict=True) if kept
                )
                layout = replace(layout, size=len(vocabulary), vocabulary=vocabulary)
            layouts.append(replace(layout, start=start))
            start += layout.size
        return FeatureSpace(layouts, self._parameters), np.flatnonzero(keep)

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
                indicator = bool(entry["missing_indicator"])
                layout = output_layout(output, start, parameters, vocabulary, indicator)
                layouts.append(layout)
                start += layout.size
            return cls(layouts, parameters)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputException(f"feature space description is malformed: {exc!r}") from None


def _feature_names(layout: Layout) -> list[str]:
    text = layout.output.text
    if uses_vocabulary(layout.output):
        return [f"{text}={token}" for token in layout.vocabulary]
    if is_top_bins(layout.output):
        names = [f"{text}={tf.bin_label(i)}" for i in range(layout.size - layout.missing_indicator)]
    else:
        names = [text]
    return names + ([f"{text}:missing"] if layout.missing_indicator else [])
