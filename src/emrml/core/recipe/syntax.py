"""The recipe expression syntax: ``name | function(expr, ..., [integer])``, parsed to a small tree.

The grammar module resolves these trees against a schema; this one only reads text, and reports errors
with the 1-based column through :class:`Located`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from emrml.errors import InvalidInputException

_BARE_NAME = re.compile(r"[A-Za-z][^,'\"\t\r\n()\\]*")
SPACE = " \t\r\n"
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_SHOWN_CHARS = 120


def quote_name(name: str) -> str:
    """``name`` as written in a canonical expression: bare when it parses back unchanged, else quoted."""
    if _BARE_NAME.fullmatch(name) and name == name.strip(SPACE) and "//" not in name:
        return name
    return f'"{name}"' if "'" in name else f"'{name}'"


@dataclass(frozen=True)
class Function:
    min_args: int
    max_args: int | None  # None: no upper bound
    parameter: tuple[str, int, int] | None  # (name, lowest, highest)
    usage: str


FUNCTIONS = {
    "group": Function(1, None, None, "group(a, b, ...)"),
    "group_remove": Function(2, None, None, "group_remove(GROUP, a, ...)"),
    "lowercase": Function(1, 1, None, "lowercase(x)"),
    "no_punct": Function(1, 1, None, "no_punct(x)"),
    "ngram": Function(1, 1, ("n", 2, 10), "ngram(x, n)"),
    "osb": Function(1, 1, ("n", 2, 10), "osb(x, n)"),
    "quantile_bin": Function(1, 1, ("n", 5, 1000), "quantile_bin(x, n)"),
    "normalize": Function(1, 1, None, "normalize(x)"),
    "cartesian": Function(2, None, None, "cartesian(a, b, ...)"),
}
GROUP_FUNCTIONS = ("group", "group_remove")


@dataclass(frozen=True)
class Name:
    name: str
    column: int


@dataclass(frozen=True)
class Number:
    value: int
    column: int


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Name | Call, ...]
    parameter: Number | None
    column: int


Node = Name | Call


#: Digits of an integer parameter at most: every range ends in four or fewer, and read into an int, a longer
#: one is only out of range (Python reads at most 4,300).
MAX_PARAMETER_DIGITS = 20
#: Transformations nested in one output, assignments substituted: far more than any useful recipe (three
#: or four), few enough that neither the recursive parser nor the featurizer runs out of stack.
MAX_NESTING = 32


class Located:
    """Where an expression sits in the recipe, for error messages."""

    def __init__(self, section: str, entry: str, text: str) -> None:
        self.section = section
        self.entry = entry
        self.text = text

    def error(self, column: int | None, message: str) -> InvalidInputException:
        shown = self.text if len(self.text) <= _SHOWN_CHARS else self.text[:_SHOWN_CHARS] + "…"
        at = f": column {column}" if column is not None else ""
        return InvalidInputException(
            f"Recipe {self.entry} {json.dumps(shown, ensure_ascii=False)}{at}: {message}"
        )


class Parser:
    """Recursive descent over ``expr := name | fname "(" expr ("," expr)* ("," INT)? ")"``, transformations
    nested at most ``MAX_NESTING`` deep."""

    def __init__(self, text: str, end: int, where: Located) -> None:
        self.text = text
        self.end = end  # the expression stops here (a comment may follow)
        self.pos = 0
        self.where = where
        self.depth = 0

    def parse(self) -> Node:
        self._skip_space()
        if self.pos >= self.end:
            raise self.where.error(None, "the expression is empty")
        node = self._expression()
        self._skip_space()
        if self.pos < self.end:
            char = self.text[self.pos]
            if char == ")":
                raise self._error("unexpected ')': the parentheses are unbalanced (no '(' to close)")
            raise self._error(f"unexpected {char!r} after the end of the expression")
        return node

    def _error(self, message: str, column: int | None = None) -> InvalidInputException:
        return self.where.error(column if column is not None else self.pos + 1, message)

    def _skip_space(self) -> None:
        while self.pos < self.end and self.text[self.pos] in SPACE:
            self.pos += 1

    def _expression(self) -> Node:
        self._skip_space()
        if self.pos >= self.end:
            raise self._error("expected a name or a transformation but the expression ended")
        char = self.text[self.pos]
        if char in "'\"":
            return self._quoted()
        if char.isascii() and char.isalpha():
            start = self.pos
            match = _BARE_NAME.match(self.text, self.pos, self.end)
            assert match is not None  # the first character is a letter
            self.pos = match.end()
            name = match.group().rstrip(" ")
            self._skip_space()
            if self.pos < self.end and self.text[self.pos] == "(":
                return self._call(name, start)
            return Name(name, start + 1)
        if char in "0123456789+-.":
            word = self._word()
            raise self._error(
                f"{word!r} is not a name: names that do not start with a letter must be quoted ('{word}')",
                self.pos - len(word) + 1,
            )
        if char in ",)":
            raise self._error(f"expected a name or a transformation but found {char!r}")
        if char == "(":
            raise self._error("unexpected '(': only a transformation name may precede '('")
        raise self._error(f"unexpected {char!r}: quote names that contain it")

    def _word(self) -> str:
        start = self.pos
        while self.pos < self.end and self.text[self.pos] not in ",()" + SPACE:
            self.pos += 1
        return self.text[start : self.pos]

    def _quoted(self) -> Name:
        quote = self.text[self.pos]
        start = self.pos
        close = self.text.find(quote, start + 1, self.end)
        if close < 0:
            raise self._error(f"unterminated quote: the name starting with {quote} has no closing {quote}")
        name = self.text[start + 1 : close]
        if not name:
            raise self._error("empty quoted name")
        self.pos = close + 1
        self._skip_space()
        if self.pos < self.end and self.text[self.pos] == "(":
            raise self._error("unexpected '(': a quoted name is not a transformation")
        return Name(name, start + 1)

    def _call(self, function: str, start: int) -> Call:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self._error(f"transformations are nested more than {MAX_NESTING} deep", start + 1)
        call = self._arguments(function, start)
        self.depth -= 1
        return call

    def _arguments(self, function: str, start: int) -> Call:
        self.pos += 1  # the "("
        args: list[Node] = []
        while True:
            self._skip_space()
            if self.pos < self.end and self.text[self.pos] in "0123456789+-.":
                parameter = self._parameter(function)
                self._skip_space()
                if self.pos >= self.end:
                    raise self._error("expected ')' but the expression ended")
                if self.text[self.pos] == ",":
                    raise self._error(
                        f"the integer parameter {parameter.value} must be the last argument", parameter.column
                    )
                if self.text[self.pos] != ")":
                    raise self._error(f"expected ')' but found {self.text[self.pos]!r}")
                self.pos += 1
                return Call(function, tuple(args), parameter, start + 1)
            args.append(self._expression())
            self._skip_space()
            if self.pos >= self.end:
                raise self._error("expected ',' or ')' but the expression ended")
            char = self.text[self.pos]
            self.pos += 1
            if char == ")":
                return Call(function, tuple(args), None, start + 1)
            if char != ",":
                raise self._error(f"expected ',' or ')' but found {char!r}", self.pos)

    def _parameter(self, function: str) -> Number:
        column = self.pos + 1
        word = self._word()
        spec = FUNCTIONS.get(function)
        wanted = "a parameter must be an integer"
        if spec is not None and spec.parameter is not None:
            name, low, high = spec.parameter
            wanted = f"{function}'s {name} must be an integer from {low} to {high}"
        if _INTEGER.fullmatch(word):
            digits = len(word.lstrip("+-"))
            if digits > MAX_PARAMETER_DIGITS:  # int() refuses one past 4,300 digits with a ValueError
                raise self._error(f"{wanted}, got an integer of {digits:,} digits", column)
            return Number(int(word), column)
        if _DECIMAL.fullmatch(word):
            raise self._error(f"{wanted}, got {word!r}", column)
        raise self._error(
            f"{word!r} is neither an integer nor a name "
            "(names that do not start with a letter must be quoted)",
            column,
        )


def split_comment(text: str) -> int:
    """Index where a ``//`` comment outside quotes starts, or ``len(text)``."""
    quote = None
    for index, char in enumerate(text):
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "/" and text.startswith("//", index):
            return index
    return len(text)
