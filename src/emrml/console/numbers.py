"""Numbers typed into the console's forms and queries, read as the API reads numbers: ASCII digits only.

``int()`` and ``float()`` accept more than a number: ``1_0``, surrounding spaces, other scripts' digits
(``٣``), ``inf`` and ``nan``. A form field that took those would send the API a value its user never
typed, so a field's text is a number only in the plain spellings (``core.values.NUMBER_PATTERN`` for
decimals, as data values are read), else the field says it is not one.
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
    """``text`` as a whole number (ASCII digits, nothing else), or None."""
    return int(text) if len(text) <= _WHOLE_DIGITS and _WHOLE.fullmatch(text) else None


def decimal(text: str) -> float | None:
    """``text`` as a finite number (``2``, ``-0.5``, ``.5``, ``1e-3``), or None."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None
