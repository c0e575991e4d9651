"""Amazon ML recipes: parse the JSON, check it, and resolve it against a schema (spec 6.1–6.2).

``parse_recipe(text, schema)`` returns a :class:`Recipe` whose ``outputs`` are what the learner sees:
groups expanded, assignments substituted, transformations on groups applied member by member, so every
:class:`Output` is an expression tree over single attributes with a canonical text such as
``ngram(lowercase(review),2)``. ``docs/recipes.md`` states every rule.

Every error is an ``InvalidInputException`` naming the place: the section, the entry and, inside an
expression, the 1-based column, e.g. ``Recipe outputs[2] "ngram(lowercase(title), 2": column 26:
expected ')' but the expression ended``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from enum import StrEnum

from emrml.core.json_text import load_json
from emrml.core.recipe.syntax import (
    FUNCTIONS,
    GROUP_FUNCTIONS,
    MAX_NESTING,
    SPACE,
    Call,
    Located,
    Name,
    Node,
    Parser,
    quote_name,
    split_comment,
)
from emrml.core.schema import AttributeType, Schema, did_you_mean
from emrml.errors import InvalidInputException

#: Longest recipe, in characters (spec 11).
MAX_RECIPE_CHARS = 131_071
#: Default limit on output variables after expansion (spec 6.1).
DEFAULT_MAX_OUTPUTS = 10_000
#: Longest group or assignment name.
MAX_NAME_CHARS = 64

SECTIONS = ("groups", "assignments", "outputs")
# Real GetMLModel responses echo an empty "dependencies" section; it carries nothing.
_IGNORED_SECTION = "dependencies"
ALL_INPUTS = "ALL_INPUTS"
PREDEFINED_GROUPS = ("ALL_TEXT", "ALL_NUMERIC", "ALL_CATEGORICAL", "ALL_BINARY", ALL_INPUTS)
_GROUP_TYPES = {
    "ALL_TEXT": AttributeType.TEXT,
    "ALL_NUMERIC": AttributeType.NUMERIC,
    "ALL_CATEGORICAL": AttributeType.CATEGORICAL,
    "ALL_BINARY": AttributeType.BINARY,
}

# A bare name: a letter, then anything but , ' " tab CR LF ( ) \ (surrounding spaces trimmed).
# How much of an expression an error message quotes.


class ValueType(StrEnum):
    """What an expression yields. TOKENS is a token set (ngram, osb, cartesian)."""

    NUMERIC = "NUMERIC"
    BINARY = "BINARY"
    CATEGORICAL = "CATEGORICAL"
    TEXT = "TEXT"
    TOKENS = "TOKENS"


class OutputKind(StrEnum):
    """How an output becomes features: one real value, one 0/1 value, one-hot, or a bag of tokens."""

    NUMERIC = "NUMERIC"
    BINARY = "BINARY"
    CATEGORICAL = "CATEGORICAL"
    TOKENS = "TOKENS"


_KIND_OF_TYPE = {
    ValueType.NUMERIC: OutputKind.NUMERIC,
    ValueType.BINARY: OutputKind.BINARY,
    ValueType.CATEGORICAL: OutputKind.CATEGORICAL,
    ValueType.TEXT: OutputKind.TOKENS,
    ValueType.TOKENS: OutputKind.TOKENS,
}


@dataclass(frozen=True)
class Variable:
    """An attribute of the schema, used as is."""

    name: str
    type: ValueType

    @property
    def text(self) -> str:
        return quote_name(self.name)


@dataclass(frozen=True)
class Transformation:
    """``function(args…[, parameter])`` over single-attribute expressions."""

    function: str
    args: tuple[Expression, ...]
    parameter: int | None
    type: ValueType
    text: str
    #: Transformations nested here, this one included (at most ``MAX_NESTING``).
    depth: int = 1


Expression = Variable | Transformation


@dataclass(frozen=True)
class Output:
    """One output variable of the recipe."""

    expression: Expression
    kind: OutputKind

    @property
    def text(self) -> str:
        """Canonical text without spaces, e.g. ``quantile_bin(age,10)``."""
        return self.expression.text


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``text`` is the recipe as given, as normalized JSON with the three sections;
    ``outputs`` are expanded and de-duplicated, in order of first appearance."""

    text: str
    outputs: tuple[Output, ...]


# --- Resolution against the schema ------------------------------------------------------------------------


def _describe(expression: Expression) -> str:
    if isinstance(expression, Variable):
        return f"{expression.text} ({expression.type})"
    kind = "a token set" if expression.type == ValueType.TOKENS else expression.type
    return f"{expression.text} ({kind})"


def _transformation(function: str, args: tuple[Expression, ...], parameter: int | None) -> Transformation:
    arg_types = [arg.type for arg in args]
    described = ", ".join(_describe(arg) for arg in args)
    if function in ("lowercase", "no_punct"):
        if arg_types[0] not in (ValueType.TEXT, ValueType.CATEGORICAL):
            raise _TypeMismatch(f"{function} applies to TEXT or CATEGORICAL values, not {described}")
        result = arg_types[0]
    elif function in ("ngram", "osb"):
        if arg_types[0] != ValueType.TEXT:
            raise _TypeMismatch(f"{function} applies to TEXT values, not {described}")
        result = ValueType.TOKENS
    elif function in ("quantile_bin", "normalize"):
        if not isinstance(args[0], Variable) or arg_types[0] != ValueType.NUMERIC:
            raise _TypeMismatch(f"{function} applies to NUMERIC attributes, not {described}")
        result = ValueType.CATEGORICAL if function == "quantile_bin" else ValueType.NUMERIC
    else:  # cartesian
        for arg in args:
            if arg.type == ValueType.NUMERIC:
                raise _TypeMismatch(
                    f"cartesian combines TEXT, CATEGORICAL, BINARY or token values, not {_describe(arg)}; "
                    "bin a number first with quantile_bin(x, n)"
                )
        result = ValueType.TOKENS
    depth = 1 + max(arg.depth if isinstance(arg, Transformation) else 0 for arg in args)
    if depth > MAX_NESTING:  # through assignments: each is checked alone when parsed
        raise _TypeMismatch(
            f"{function} would nest transformations {depth} deep through the assignments it uses; "
            f"the limit is {MAX_NESTING}"
        )
    suffix = f",{parameter}" if parameter is not None else ""
    text = f"{function}({','.join(arg.text for arg in args)}{suffix})"
    return Transformation(function, args, parameter, result, text, depth)


class _TypeMismatch(Exception):
    pass


class _Resolver:
    def __init__(self, schema: Schema, max_outputs: int) -> None:
        self.max_outputs = max_outputs
        self.inputs = {a.name: Variable(a.name, ValueType(a.type.value)) for a in schema.input_attributes}
        self.roles: dict[str, str] = {}
        for name in schema.excluded:
            self.roles[name] = "excluded (excludedAttributeNames)"
        for role, name in (
            ("the rowWeight", schema.row_weight),
            ("the rowId", schema.row_id),
            ("the target attribute", schema.target),
        ):
            if name is not None:
                self.roles[name] = role
        self.attribute_names = set(schema.names)
        self.predefined: dict[str, list[Variable]] = {
            group: [v for v in self.inputs.values() if v.type == attribute_type]
            for group, attribute_type in _GROUP_TYPES.items()
        }
        self.predefined[ALL_INPUTS] = list(self.inputs.values())
        self.groups: dict[str, list[Variable]] = {}
        self.assignments: dict[str, list[Expression]] = {}
        self.declared: dict[str, str] = {}  # every group/assignment name → its section

    def declare(self, section: str, name: str) -> None:
        where = f"Recipe {section} {json.dumps(name, ensure_ascii=False)}"
        if not name or not (name[0].isascii() and name[0].isalpha()):
            raise InvalidInputException(f"{where}: a {section[:-1]} name must start with a letter")
        if len(name) > MAX_NAME_CHARS:
            raise InvalidInputException(
                f"{where}: the name is {len(name)} characters long; the limit is {MAX_NAME_CHARS}"
            )
        if "'" in name and '"' in name:
            raise InvalidInputException(
                f"{where}: a name cannot contain both ' and \" (it could not be quoted)"
            )
        if name in PREDEFINED_GROUPS:
            raise InvalidInputException(f"{where}: {name} is a predefined group and cannot be redefined")
        if name in self.attribute_names:
            raise InvalidInputException(f"{where}: the name clashes with the attribute {name!r}")
        earlier = self.declared.get(name)
        if earlier is not None:
            place = f"twice in {section}" if earlier == section else f"in {earlier} and in {section}"
            raise InvalidInputException(f"{where}: the name is defined {place}")
        self.declared[name] = section

    def lookup(self, node: Name, where: Located) -> list[Expression]:
        name = node.name
        if name in self.assignments:
            return list(self.assignments[name])
        if name in self.groups:
            return list(self.groups[name])
        if name in self.predefined:
            if name == ALL_INPUTS and where.section != "outputs":
                raise where.error(
                    node.column,
                    f"{ALL_INPUTS} may only be used in outputs (a custom group may not contain it)",
                )
            return list(self.predefined[name])
        if name in self.inputs:
            return [self.inputs[name]]
        if name in self.roles:
            raise where.error(node.column, f"{name!r} is {self.roles[name]}; it cannot be an input")
        if name in self.declared:
            raise where.error(
                node.column,
                f"{name!r} is used before its definition in {self.declared[name]}; "
                "groups and assignments may only use names defined before them",
            )
        candidates = [*self.inputs, *self.groups, *self.assignments, *PREDEFINED_GROUPS]
        raise where.error(node.column, f"unknown variable {name!r}{did_you_mean(name, candidates)}")

    def group(self, node: Node, where: Located) -> list[Variable]:
        """The members of a ``group(...)`` or ``group_remove(...)`` definition, in order, each once."""
        if not isinstance(node, Call) or node.function not in GROUP_FUNCTIONS:
            raise where.error(1, "a group is defined with group(...) or group_remove(...)")
        self._check_call(node, where)
        if node.function == "group":
            return list(dict.fromkeys(v for arg in node.args for v in self._members(arg, where)))
        first, *rest = node.args
        if isinstance(first, Name) and first.name not in self.groups and first.name not in self.predefined:
            self.lookup(first, where)  # unknown names and roles get their own message first
            raise where.error(
                first.column, f"group_remove's first argument must be a group, not {first.name!r}"
            )
        removed = {v for arg in rest for v in self._members(arg, where)}
        return [v for v in dict.fromkeys(self._members(first, where)) if v not in removed]

    def _members(self, node: Node, where: Located) -> list[Variable]:
        if not isinstance(node, Name):
            raise where.error(
                node.column, "a group lists names of attributes and groups, not transformations"
            )
        # Only attributes and groups are defined while groups are read, so every value is a Variable.
        return [v for v in self.lookup(node, where) if isinstance(v, Variable)]

    def value(self, node: Node, where: Located) -> list[Expression]:
        """Every single-attribute expression ``node`` stands for (a group yields one per member)."""
        if isinstance(node, Name):
            return self.lookup(node, where)
        if node.function in GROUP_FUNCTIONS:
            raise where.error(
                node.column, f"{node.function}(...) may only define a group in the groups section"
            )
        self._check_call(node, where)
        arg_values = [self.value(arg, where) for arg in node.args]
        combinations = 1
        for values in arg_values:
            combinations *= len(values)
        if combinations > self.max_outputs:
            raise where.error(
                node.column,
                f"{node.function} over these groups yields {combinations} variables; "
                f"the limit is {self.max_outputs}",
            )
        parameter = node.parameter.value if node.parameter is not None else None
        try:
            return [
                _transformation(node.function, combination, parameter)
                for combination in itertools.product(*arg_values)
            ]
        except _TypeMismatch as exc:
            raise where.error(node.column, str(exc)) from None

    def _check_call(self, node: Call, where: Located) -> None:
        spec = FUNCTIONS.get(node.function)
        if spec is None:
            hint = did_you_mean(node.function, FUNCTIONS)
            raise where.error(
                node.column, f"unknown transformation {node.function!r}{hint}; known: {', '.join(FUNCTIONS)}"
            )
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            expected = f"at least {spec.min_args}" if spec.max_args is None else f"exactly {spec.min_args}"
            plural = "s" if spec.min_args != 1 or spec.max_args is None else ""
            raise where.error(
                node.column,
                f"{node.function} takes {expected} argument{plural} ({spec.usage}), got {count}",
            )
        if spec.parameter is None:
            if node.parameter is not None:
                raise where.error(
                    node.parameter.column, f"{node.function} takes no integer parameter ({spec.usage})"
                )
            return
        name, low, high = spec.parameter
        if node.parameter is None:
            raise where.error(
                node.column,
                f"{node.function} needs an integer {name} from {low} to {high} "
                f"as its last argument ({spec.usage})",
            )
        if not low <= node.parameter.value <= high:
            raise where.error(
                node.parameter.column,
                f"{node.function}'s {name} must be from {low} to {high}, got {node.parameter.value}",
            )


# --- JSON structure ---------------------------------------------------------------------------------------


class _Object(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs, so key order and repeated keys stay visible."""


def _load(text: str) -> object:
    if not isinstance(text, str):
        raise InvalidInputException(f"Recipe must be a string of JSON, got {type(text).__name__}")
    if len(text) > MAX_RECIPE_CHARS:
        raise InvalidInputException(f"Recipe is {len(text)} characters long; the limit is {MAX_RECIPE_CHARS}")
    return load_json(text.removeprefix("\ufeff"), "Recipe", object_pairs_hook=_Object)


def _json_type(value: object) -> str:
    if isinstance(value, _Object):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _sections(document: object) -> dict[str, object]:
    if not isinstance(document, _Object):
        raise InvalidInputException(f"Recipe must be a JSON object, got {_json_type(document)}")
    found: dict[str, object] = {}
    for key, value in document:
        if key == _IGNORED_SECTION:
            if not (isinstance(value, _Object) and not value):
                raise InvalidInputException(
                    'Recipe dependencies must be an empty object ("dependencies": {})'
                )
            continue
        if key not in SECTIONS:
            hint = did_you_mean(key, SECTIONS)
            raise InvalidInputException(
                f"Recipe has an unknown section {key!r}{hint}; the sections are groups, assignments, outputs"
            )
        if key in found:
            raise InvalidInputException(f"Recipe has the section {key!r} twice")
        later = [s for s in found if SECTIONS.index(s) > SECTIONS.index(key)]
        if later:
            raise InvalidInputException(
                f"Recipe sections are out of order: {key!r} comes after {later[0]!r}; "
                "the order is groups, assignments, outputs"
            )
        found[key] = value
    if "outputs" not in found:
        raise InvalidInputException("Recipe has no outputs section: list the variables the model should use")
    return found


def _entries(found: dict[str, object], section: str) -> list[tuple[str, str]]:
    value = found.get(section, _Object())
    if not isinstance(value, _Object):
        raise InvalidInputException(f"Recipe {section} must be a JSON object, got {_json_type(value)}")
    entries = []
    for name, expression in value:
        if not isinstance(expression, str):
            raise InvalidInputException(
                f"Recipe {section} {json.dumps(name, ensure_ascii=False)} must be a string expression, "
                f"got {_json_type(expression)}"
            )
        entries.append((name, expression))
    return entries


def _output_strings(found: dict[str, object]) -> list[str]:
    outputs = found["outputs"]
    if not isinstance(outputs, list) or isinstance(outputs, _Object):
        raise InvalidInputException(
            f"Recipe outputs must be a JSON array of strings, got {_json_type(outputs)}"
        )
    if not outputs:
        raise InvalidInputException(
            "Recipe outputs is empty: list at least one variable the model should use"
        )
    for index, output in enumerate(outputs):
        if not isinstance(output, str):
            raise InvalidInputException(f"Recipe outputs[{index}] must be a string, got {_json_type(output)}")
    return outputs


def _parse_entry(section: str, entry: str, text: str) -> tuple[Node, Located]:
    """The syntax tree of one entry's expression, and its place for later messages."""
    where = Located(section, entry, text)
    end = split_comment(text)
    if end < len(text) and section != "outputs":
        raise where.error(end + 1, "comments ('//') are only allowed at the end of an output")
    if end < len(text) and not text[:end].strip(SPACE):
        raise where.error(end + 1, "malformed comment: an expression must come before '//'")
    return Parser(text, end, where).parse(), where


def _structure(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """A recipe's groups, assignments and outputs, each entry's expression still unparsed."""
    found = _sections(_load(text))
    return _entries(found, "groups"), _entries(found, "assignments"), _output_strings(found)


def check_recipe_syntax(text: str) -> None:
    """Check what of a recipe needs no schema: its JSON, its sections and the syntax of every expression;
    raise ``InvalidInputException``. The names it uses are resolved by ``parse_recipe``, with the schema."""
    groups, assignments, outputs = _structure(text)
    for section, entries in (("groups", groups), ("assignments", assignments)):
        for name, expression in entries:
            _parse_entry(section, f"{section} {json.dumps(name, ensure_ascii=False)}", expression)
    for index, expression in enumerate(outputs):
        _parse_entry("outputs", f"outputs[{index}]", expression)


def _unwritable_name(expression: Expression) -> tuple[str, str] | None:
    """The attribute ``expression`` uses that no recipe text can name, and why, if any."""
    if isinstance(expression, Variable):
        if "'" in expression.name and '"' in expression.name:
            return expression.name, "holds both ' and \": no recipe can write it"
        if expression.name in PREDEFINED_GROUPS:
            return expression.name, "is a predefined group's: a recipe naming it means the group"
        return None
    for argument in expression.args:
        found = _unwritable_name(argument)
        if found is not None:
            return found
    return None


def parse_recipe(text: str, schema: Schema, *, max_outputs: int = DEFAULT_MAX_OUTPUTS) -> Recipe:
    """Parse, check and resolve a recipe against ``schema``; raise ``InvalidInputException``.

    ``max_outputs`` bounds the output variables after expanding groups (spec 6.1: 10,000). Duplicate
    outputs collapse to the first.
    """
    groups, assignments, outputs = _structure(text)
    resolver = _Resolver(schema, max_outputs)
    for section, entries in (("groups", groups), ("assignments", assignments)):
        for name, _ in entries:
            resolver.declare(section, name)
    # Definitions resolve in order: a name is usable once its own entry has been resolved.
    for name, expression in groups:
        node, where = _parse_entry("groups", f"groups {json.dumps(name, ensure_ascii=False)}", expression)
        resolver.groups[name] = resolver.group(node, where)
    for name, expression in assignments:
        entry = f"assignments {json.dumps(name, ensure_ascii=False)}"
        node, where = _parse_entry("assignments", entry, expression)
        resolver.assignments[name] = resolver.value(node, where)
    resolved: dict[str, Output] = {}
    for index, expression in enumerate(outputs):
        node, where = _parse_entry("outputs", f"outputs[{index}]", expression)
        for value in resolver.value(node, where):
            unwritable = _unwritable_name(value)
            if unwritable is not None:
                # Reached through a group (ALL_TEXT): the model trained, then its feature space, kept as
                # canonical text, could not be read back, and every Predict and batch prediction failed.
                name, why = unwritable
                raise where.error(
                    None,
                    f"it takes the attribute {json.dumps(name, ensure_ascii=False)}, whose name {why}, so a "
                    "model could not name it in its features; rename the attribute, or list it in the "
                    "schema's excludedAttributeNames",
                )
            resolved.setdefault(value.text, Output(value, _KIND_OF_TYPE[value.type]))
        if len(resolved) > max_outputs:
            raise InvalidInputException(
                f"Recipe outputs yield more than {max_outputs} output variables (the limit) "
                f"by outputs[{index}]"
            )
    if not resolved:
        raise InvalidInputException(
            "Recipe outputs yield no variable: every group they name is empty for this schema"
        )
    normalized = {
        "groups": dict(groups),
        "assignments": dict(assignments),
        "outputs": list(outputs),
    }
    return Recipe(json.dumps(normalized, indent=2, ensure_ascii=False), tuple(resolved.values()))
