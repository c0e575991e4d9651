"""A record (or training parameters) as a caller writes it, made what the API takes: a map of strings.

Amazon ML's ``Record`` maps attribute names to strings whatever their type; a caller writes numbers and
booleans (JSON on the command line, Python in a notebook). One conversion serves the CLI's ``predict``, the
library's ``Model.predict``, ``Predictor.predict`` and ``train`` parameters, and ``emrml.score``'s lists
of records, so a value reads the same through each. In core, as ``Predictor`` uses it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from emrml.core.json_text import load_json
from emrml.core.schema import did_you_mean
from emrml.errors import InvalidInputException


def value_text(value: Any, what: str, key: object) -> str:
    """A record's (or a parameter's) value as the string the API takes: a number as Python writes it
    (``42`` → ``"42"``, ``0.5`` → ``"0.5"``), a boolean as JSON does (``"true"``, ``"false"``), None (JSON
    null) and NaN (pandas' missing value) as ``""``, a missing value. ``InvalidInputException`` naming
    ``what`` and ``key`` for anything else (a list, an object, an infinity): no string says what it meant."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if math.isnan(value):
            return ""
        if math.isfinite(value):
            return str(value)
        kind = f"{value} (not a finite number)"
    elif isinstance(value, Mapping):
        kind = "an object"
    elif isinstance(value, list | tuple):
        kind = "a list"
    else:
        name = type(value).__name__
        kind = f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"
    raise InvalidInputException(
        f"{what}: the value of {key!r} is {kind}; a value is a string, a number, true, false or null (a "
        "missing value)"
    )


def string_values(values: Mapping[str, Any], what: str) -> dict[str, str]:
    """``values`` with every value a string (:func:`value_text`), as a ``Record`` or ``Parameters`` map
    needs."""
    if not isinstance(values, Mapping):
        raise InvalidInputException(f"{what} must map names to values, not {type(values).__name__}")
    for key in values:
        if not isinstance(key, str):
            raise InvalidInputException(f"{what}: names are strings, not {type(key).__name__} ({key!r})")
    return {key: value_text(value, what, key) for key, value in values.items()}


def json_record(text: str, what: str) -> dict[str, str]:
    """A record the user wrote as a JSON object (``--record``, the console's pasted record), each value as
    the API takes it (:func:`string_values`). A number keeps its text as written: ``2.50`` is ``"2.50"``
    and ``1e400`` is ``"1e400"``, not a float's rewriting of them (``"2.5"``, an infinity refused). A name
    given twice is refused, naming it: JSON parsers keep one of the two values without a word."""
    values = load_json(
        text,
        what,
        parse_number=str,
        repeated=lambda key: f"{what} names {key!r} twice; give each attribute once",
    )
    if not isinstance(values, dict):
        raise InvalidInputException(f"{what} must be a JSON object of attribute names to values")
    return string_values(values, what)


def unknown_attribute_warnings(record: dict[str, Any], names: list[str]) -> list[str]:
    """The record's names that are none of the model's attributes, one sentence each: Predict ignores them
    without a word, so a misspelt name ('Age', 'mesage') scores as a missing value."""
    if not names:
        return []
    found = []
    for key in record:
        if key not in names:
            hint = did_you_mean(key, names)
            found.append(f"{key!r} is not an attribute of the model{hint}; it was ignored")
    return found
