"""Numbers as people read them in a message or a table: counts with thousands separators (``16,219``), other
numbers with a few significant digits. The one format of the CLI's views, the notebook's tables and the
alert texts, so a count reads the same wherever it is shown."""

from __future__ import annotations

import math
from typing import Any

#: Floats from this size on are written in scientific notation.
_SCIENTIFIC_FROM = 1e15


def format_number(value: Any, digits: int = 4) -> str:
    """Counts with thousands separators, other numbers with ``digits`` significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value) and abs(value) >= _SCIENTIFIC_FROM:
        return f"{value:.{digits}g}"  # 1e+308, not 309 digits that no column can hold
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    return str(value)
