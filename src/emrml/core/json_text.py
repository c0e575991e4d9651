"""JSON text a caller wrote (a request member, a file, a form field), parsed with an error they can act on.

Python's parser recurses into arrays and objects: nested a few thousand deep, a document raises
``RecursionError``, which every caller would otherwise have to remember to turn into a 400.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

from emrml.core.surrogates import is_text
from emrml.errors import InvalidInputException

# The escapes of UTF-16 surrogates: only they make a JSON reader produce a string that is not valid Unicode
# (a lone surrogate), which no text may be stored, compared or answered as.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_ESCAPE_BYTES = re.compile(_SURROGATE_ESCAPE.pattern.encode())


def load_json(
    text: str | bytes,
    what: str,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    parse_number: Callable[[str], Any] | None = None,
    repeated: Callable[[str], str] | None = None,
) -> Any:
    """``text`` parsed, or ``InvalidInputException`` naming ``what`` (e.g. ``DataRearrangement``) and
    where the text stops being JSON: ``... is not valid JSON: Expecting value at line 1 column 9``.
    ``parse_number`` (e.g. ``str``) reads every number, integer or not, in place of ``int`` and ``float``.
    ``repeated``: an object naming a key twice is refused with the message it gives for the key, where
    Python's parser would keep the last value without a word (a document saying two things)."""
    if repeated is not None:
        object_pairs_hook = _unique_keys(repeated)
    try:
        document = json.loads(
            text,
            object_pairs_hook=object_pairs_hook,
            parse_int=parse_number or _integer(what),
            parse_float=parse_number,
        )
    except json.JSONDecodeError as exc:
        # Some of the parser's messages end where it puts the position: "Unterminated string starting at".
        problem = exc.msg.removesuffix(" at")
        raise InvalidInputException(
            f"{what} is not valid JSON: {problem} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInputException(f"{what} is not valid JSON: it is nested too deeply") from None
    # Only a \u escape can put a lone surrogate in a string: look closer only then.
    escaped = (_SURROGATE_ESCAPE if isinstance(text, str) else _SURROGATE_ESCAPE_BYTES).search(text)
    if escaped and _has_lone_surrogate(document):
        raise InvalidInputException(
            f"{what} has a \\u escape of an unpaired UTF-16 surrogate, which is no character"
        )
    return document


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (a parsed JSON document: keys too) holds an unpaired UTF-16
    surrogate, which UTF-8 cannot encode: the metastore could not store it, nor an answer quote it."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):  # an object_pairs_hook may keep an object as its pairs
            pending.extend(item)
        elif isinstance(item, str) and not is_text(item):
            return True
    return False


def _integer(what: str) -> Callable[[str], int]:
    """``int``, refusing what Python refuses to read (more than ``sys.get_int_max_str_digits()`` digits,
    4,300 by default, which would otherwise escape as a bare ``ValueError``)."""

    def read(digits: str) -> int:
        try:
            return int(digits)
        except ValueError:
            raise InvalidInputException(
                f"{what} has an integer of {len(digits.lstrip('-')):,} digits ({digits[:12]}...), over "
                f"the {sys.get_int_max_str_digits():,} digits a number may have"
            ) from None

    return read


def _unique_keys(repeated: Callable[[str], str]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise InvalidInputException(repeated(key))
            found[key] = value
        return found

    return members
