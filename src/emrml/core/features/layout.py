"""What a fitted feature space knows beside its outputs: constants, the layout of each output's
features and the learned parameters (vocabularies, bin edges, moments), and helpers over recipe
expressions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from emrml.core.recipe.grammar import (
    Expression,
    Output,
    OutputKind,
    Recipe,
    Transformation,
    Variable,
)
from emrml.core.schema import Schema
from emrml.errors import InvalidInputException

#: Version of the ``to_dict`` layout.
FORMAT_VERSION = 1
#: KLL sketch size for quantile bin edges: normalized rank error about 0.3 %.
KLL_K = 1000
#: Distinct values per numeric attribute counted exactly; beyond this the KLL sketch gives the edges.
EXACT_DISTINCT_LIMIT = 65_536
#: Bytes of counted strings (their UTF-8 bytes plus ``COUNTER_ENTRY_BYTES`` each) the vocabulary counters
#: of a fit hold together: about 1.5 million words of 8 letters, more than the default vocabulary.
COUNTER_BYTES = 32 * 1024 * 1024
#: Bytes of the batches' counts that wait before they are added up with the held ones.
COUNTER_PENDING_BYTES = 8 * 1024 * 1024
#: Batches' counts that wait in one counter at most: a few categories a batch would otherwise wait as
#: thousands of small tables (3 KB each) over a large datasource.
COUNTER_CHUNKS = 64
#: A counted string's cost beside its bytes: its offset (4) and count (8).
COUNTER_ENTRY_BYTES = 12

Record = Mapping[str, str]


def walk(expression: Expression) -> Iterator[Expression]:
    yield expression
    if isinstance(expression, Transformation):
        for arg in expression.args:
            yield from walk(arg)


def is_bins(expression: Expression) -> bool:
    return isinstance(expression, Transformation) and expression.function == "quantile_bin"


def is_top_bins(output: Output) -> bool:
    """Whether the output is a ``quantile_bin``, whose features are its bins rather than a vocabulary."""
    return is_bins(output.expression)


def uses_vocabulary(output: Output) -> bool:
    return output.kind in (OutputKind.CATEGORICAL, OutputKind.TOKENS) and not is_top_bins(output)


def attribute(expression: Expression) -> str:
    """The attribute of a NUMERIC/BINARY output or a ``quantile_bin``/``normalize`` node."""
    if isinstance(expression, Variable):
        return expression.name
    argument = expression.args[0]
    assert isinstance(argument, Variable)  # the grammar allows these on attributes only
    return argument.name


# --- Learned parameters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where one output's features sit. ``start`` is its first feature index."""

    output: Output
    start: int
    size: int
    missing_indicator: bool
    vocabulary: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parameters:
    """What fitting learned besides vocabularies."""

    edges: Mapping[str, tuple[float, ...]]  # quantile_bin node text → upper bin edges
    moments: Mapping[str, tuple[float, float]]  # attribute → (mean, std) for normalize

    def edges_of(self, expression: Transformation) -> tuple[float, ...]:
        return self.edges[expression.text]


def check_schema(recipe: Recipe, schema: Schema) -> None:
    """Refuse a recipe that uses an attribute as another type than ``schema`` declares."""
    for output in recipe.outputs:
        for node in walk(output.expression):
            if isinstance(node, Variable) and (
                node.name not in schema or schema.attribute(node.name).type.value != node.type.value
            ):
                raise InvalidInputException(
                    f"the recipe's output {output.text} uses {node.name!r} as {node.type}, "
                    "which this schema does not declare; parse the recipe with the training schema"
                )


def transformations(output: Output) -> Iterator[Transformation]:
    """The transformations of an output's expression, outermost first."""
    return (node for node in walk(output.expression) if isinstance(node, Transformation))


def output_layout(
    output: Output, start: int, parameters: Parameters, vocabulary: tuple[str, ...], indicator: bool
) -> Layout:
    """The layout of an output whose features start at ``start`` (``indicator``: with a missing one)."""
    if uses_vocabulary(output):
        return Layout(output, start, len(vocabulary), False, vocabulary)
    if is_top_bins(output):
        assert isinstance(output.expression, Transformation)
        bins = len(parameters.edges_of(output.expression)) + 1
        return Layout(output, start, bins + indicator, indicator)
    return Layout(output, start, 1 + indicator, indicator)
