"""Numbers typed into the console's forms and queries, read as the API reads numbers: ASCII digits only.

``int()`` and ``float()`` accept more than a number: ``1_0``, other scripts' digits (``٣``), ``inf`` and
``nan``. A form field that took those would send the API a value its user never typed, so a field's text
is a number only in the plain spellings (``core.values.NUMBER_PATTERN`` for decimals, as data values are
read), else the field says it is not one. Whitespace around the number is left out (``str.strip``), as the
API strips its ``sgd.*`` parameters and data values: a space pasted with a number is not a different number.
"""

from __future__ import annotations

import math
import re

from emrml.core.values import NUMBER_PATTERN

_WHOLE = re.compile(r"[0-9]+")
#: Longer digit strings are no number a field takes (and ``int`` refuses past 4300 digits).
_WHOLE_DIGITS = 100
_DECIMAL = re.compile(NUMBER_PATTERN)


def whole(text: str) -> int | None:
    """``text`` as a whole number (ASCII digits, nothing else but surrounding whitespace), or None."""
    digits = text.strip()
    return int(digits) if len(digits) <= _WHOLE_DIGITS and _WHOLE.fullmatch(digits) else None


def decimal(text: str) -> float | None:
    """``text`` as a finite number (``2``, ``-0.5``, ``.5``, ``1e-3``; surrounding whitespace left out), or
    None."""
    number = text.strip()
    if not _DECIMAL.fullmatch(number):
        return None
    value = float(number)
    return value if math.isfinite(value) else None
