"""The single-record compiler: plain-Python functions that featurize one record exactly as the batch
featurizer does its row (real-time predictions).

``emitter`` gives the features of one output as (indices, values); ``score`` gives their dot product with
a one-output linear model's weights directly — what Predict needs for BINARY and REGRESSION models. The
scorer is specialised when it is built: weights are folded into per-token and per-bin tables and the
branches that depend only on the model (scaling, a missing indicator) are decided then, so scoring a
record builds no lists and reads each value once; the tables also remember (within a bound) the terms of
the values read before, so a value met again is one lookup.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from emrml.core.features.layout import (
    Layout,
    Parameters,
    Record,
    attribute,
    is_top_bins,
    uses_vocabulary,
)
from emrml.core.recipe import transforms as tf
from emrml.core.recipe.grammar import (
    Expression,
    OutputKind,
    Transformation,
    ValueType,
    Variable,
)
from emrml.core.values import InvalidValue, binary_value, numeric_value

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
#: Adds an output's contribution to a linear model's score for one record to the running total (the float)
#: and returns the new total; the list collects the names of the attributes whose values could not be read.
Score = Callable[[Record, list[str], float], float]


class RecordCompiler:
    """Plain-Python functions of one record for each expression, mirroring :class:`BatchValues`."""

    def __init__(self, parameters: Parameters) -> None:
        self.parameters = parameters

    def category(self, expression: Expression) -> Callable[[Record], str | None]:
        if isinstance(expression, Variable):
            name = expression.name
            return lambda record: tf.category_value(record.get(name) or "")
        if expression.function == "quantile_bin":
            name, edges = attribute(expression), self.parameters.edges_of(expression)
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

    def emitter(self, layout: Layout, lookup: Mapping[str, int]) -> _Emit:
        """The function adding ``layout``'s features of a record; ``lookup`` maps a vocabulary string to its
        feature index."""
        output = layout.output
        expression = output.expression
        start, indicator = layout.start, layout.missing_indicator
        if uses_vocabulary(output):
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
        name = attribute(expression)
        missing = start + layout.size - 1
        if is_top_bins(output):
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

    def score(
        self, layouts: Sequence[Layout], lookups: Sequence[Mapping[str, int]], weights: Sequence[float]
    ) -> Callable[[Record, list[str]], float]:
        """The function giving a record's features for ``layouts`` dotted with ``weights`` (one weight per
        feature index): the sum, over the pairs the emitters would add, of value × weight, each output's
        terms added in the outputs' order as the batch product adds them. It also adds to its list argument
        the attributes whose value in the record cannot be read as a number or flag (``scored_attribute``
        names them).

        Consecutive raw one-hot, binned and number outputs are scored by one loop (:func:`_looked_up`)
        that finds each value's term in a table: a call per output (and a ``strip()`` per category) cost
        a fifth of the scorer's instructions on the tutorial's model, whose 20 outputs are raw categories
        and bins, and parsing a number and finding its bin cost ten times a lookup."""
        share = min(SEEN_VALUES, SEEN_TOTAL // max(1, len(layouts)))
        parts = [
            self._part(layout, lookup, weights, share)
            for layout, lookup in zip(layouts, lookups, strict=True)
        ]
        scorers: list[Score] = []
        for loop, run in itertools.groupby((part for part in parts if part is not None), key=itemgetter(0)):
            specs = tuple(spec for _, spec in run)
            scorers.extend(specs if loop is None else [loop(specs)])
        fixed = tuple(scorers)

        def score(record: Record, unparsed: list[str]) -> float:
            total = 0.0
            for part in fixed:
                total = part(record, unparsed, total)
            return total

        return score

    def _part(
        self, layout: Layout, lookup: Mapping[str, int], weights: Sequence[float], share: int
    ) -> tuple[Callable[[tuple[Any, ...]], Score] | None, Any] | None:
        """``(loop, spec)`` for an output scored in a shared loop (:func:`_looked_up` and the spec it
        takes; its table remembers up to ``share`` values), ``(None, its Score)`` for any other, None for
        an output without features."""
        if not layout.size:
            return None
        output = layout.output
        expression = output.expression
        start, indicator = layout.start, layout.missing_indicator
        if uses_vocabulary(output):
            weight_of = {token: weights[index] for token, index in lookup.items()}
            if output.kind == OutputKind.CATEGORICAL and isinstance(expression, Variable):
                return _looked_up, _category_table(expression.name, weight_of, share)
            if output.kind == OutputKind.CATEGORICAL:
                category = self.category(expression)

                def one_hot(record: Record, unparsed: list[str], total: float) -> float:
                    value = category(record)
                    return total if value is None else total + weight_of.get(value, 0.0)

                return None, one_hot
            tokens = self.tokens(expression)

            def bag(record: Record, unparsed: list[str], total: float) -> float:
                # In feature order, as the emitter's list: the sum does not depend on set order. The
                # output's terms are summed first, then added, as the batch product does.
                terms = 0.0
                for index in sorted({lookup[t] for t in tokens(record) if t in lookup}):
                    terms += weights[index]
                return total + terms

            return None, bag
        name = attribute(expression)
        missing_weight = weights[start + layout.size - 1] if indicator else 0.0
        if is_top_bins(output):
            assert isinstance(expression, Transformation)
            edges = self.parameters.edges_of(expression)
            bin_weights = [weights[start + i] for i in range(len(edges) + 1)]
            return _looked_up, _number_table(
                name, record_number, lambda v: bin_weights[bisect_left(edges, v)], missing_weight, share
            )
        parse = record_flag if output.kind == OutputKind.BINARY else record_number
        weight = weights[start]
        mean, std = self.parameters.moments.get(name, (0.0, 1.0))
        scaled = isinstance(expression, Transformation)
        if scaled:
            return _looked_up, _number_table(
                name, parse, lambda v: (v - mean) / std * weight, missing_weight, share
            )
        return _looked_up, _number_table(name, parse, lambda v: v * weight, missing_weight, share)


#: How many values a table remembers the term of beyond those it starts with, at most (SEEN_TOTAL shared
#: by the outputs of a model with more than 32), and the longest value it remembers: real records repeat a
#: few values of most attributes (ages, counts, rates, a padded or unknown category), and the bound holds a
#: table to a few dozen kilobytes and a model's scorer to about two megabytes, whatever the records.
SEEN_VALUES = 512
SEEN_TOTAL = 16_384
SEEN_LENGTH = 32

#: An output scored by :func:`_looked_up`: its attribute, the term (value × weight) of each value found so
#: far (an empty value's among them), and the function giving the term of any other value (None: the record
#: lacks the attribute). The tables hold strings only: a dict of str keys alone is searched by CPython's
#: string comparison rather than the generic one, a fifth of a lookup less for each of a record's values.
Table = tuple[str, dict[str, float], Callable[[str | None, list[str]], float]]


def _looked_up(specs: tuple[Table, ...]) -> Score:
    """Outputs whose term depends on their attribute's value alone (raw categories, top bins, numbers and
    flags): a lookup each for the values met before."""

    def looked_up(record: Record, unparsed: list[str], total: float) -> float:
        get = record.get
        for name, table, weight_of in specs:
            text = get(name)
            weight = table.get(text)
            total += weight if weight is not None else weight_of(text, unparsed)
        return total

    return looked_up


def _remembering(table: dict[str, float], share: int) -> Callable[[str, float], None]:
    """Adds a value's term to ``table`` while the table is within ``share`` of its starting size."""
    limit = len(table) + share

    def remember(text: str, weight: float) -> None:
        if len(table) < limit and len(text) <= SEEN_LENGTH:
            table[text] = weight

    return remember


def _category_table(name: str, weight_of: Mapping[str, float], share: int) -> Table:
    """A raw one-hot output: a known category's weight, 0 for a missing or unknown one (adding 0.0 leaves the
    total as it is)."""
    table: dict[str, float] = {**weight_of, "": 0.0}
    remember = _remembering(table, share)

    def weight(text: str | None, unparsed: list[str]) -> float:
        if text is None:
            return 0.0
        # tf.category_value inlined: categories are stripped, so a value not found as it is may be padded.
        found = weight_of.get(text.strip(), 0.0)
        remember(text, found)
        return found

    return name, table, weight


def _number_table(
    name: str,
    parse: Callable[[str], float | None],
    term_of: Callable[[float], float],
    missing: float,
    share: int,
) -> Table:
    """An output of a number or flag (``parse`` reads it): ``term_of`` its value (its bin's weight, or the
    value scaled and weighted), or the missing indicator's weight (0 without one) for a missing or unreadable
    value; an unreadable one is also reported, so never remembered. Only a value not met before is parsed,
    so this needs no fast path of its own."""
    table: dict[str, float] = {"": missing}
    remember = _remembering(table, share)

    def term(text: str | None, unparsed: list[str]) -> float:
        if text is None:
            return missing
        value = parse(text)
        if value is None:
            if text.strip():
                unparsed.append(name)
                return missing
            found = missing
        else:
            found = term_of(value)
        remember(text, found)
        return found

    return name, table, term


def scored_attribute(layout: Layout) -> str | None:
    """The attribute whose unreadable values ``RecordCompiler.score`` reports for ``layout`` (its number or
    flag outputs), None for category and token outputs."""
    return None if uses_vocabulary(layout.output) else attribute(layout.output.expression)
