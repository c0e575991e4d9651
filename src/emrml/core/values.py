"""Parsing of NUMERIC and BINARY values, vectorized over Arrow string arrays and for one string.

Rules (spec 5.2, 5.3, open question 9): surrounding whitespace is ignored; an empty field is *missing*;
NUMERIC accepts decimal and scientific notation (``1.3E4``, ``-2``, ``.5``) and nothing else (``NaN``,
``Inf`` and thousands separators are *invalid*); BINARY accepts ``0 n no f false`` / ``1 y yes t true`` in
any case. Both paths share these rules so batch and single-record parsing agree.

The vectorized functions import NumPy and pyarrow when called: a server's single-record path loads neither.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

NUMBER_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NUMBER_RE = re.compile(NUMBER_PATTERN)
BINARY_FALSE = ("0", "n", "no", "f", "false")
BINARY_TRUE = ("1", "y", "yes", "t", "true")


@functools.cache
def binary_spellings() -> tuple[pa.Array, pa.Array]:
    """The (false, true) spellings as Arrow arrays, built on first use: no Arrow call at import."""
    import pyarrow as pa

    return pa.array(BINARY_FALSE, pa.string()), pa.array(BINARY_TRUE, pa.string())


@dataclass(frozen=True)
class Parsed:
    """A parsed column. ``values`` has NaN wherever ``missing`` or ``invalid`` is true.

    All three arrays have the length of the input column.
    """

    values: np.ndarray  # float64
    missing: np.ndarray  # bool
    invalid: np.ndarray  # bool


def _as_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def _missing_mask(trimmed: pa.Array) -> np.ndarray:
    import numpy as np
    import pyarrow.compute as pc

    empty = pc.or_kleene(pc.is_null(trimmed), pc.equal(trimmed, ""))
    return np.asarray(pc.fill_null(empty, True).to_numpy(zero_copy_only=False), dtype=bool)


def parse_numeric(column: pa.Array | pa.ChunkedArray) -> Parsed:
    """Parse a string column as NUMERIC."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(_as_array(column))
    missing = _missing_mask(trimmed)
    present = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), trimmed)
    try:
        values = pc.cast(present, pa.float64())
        invalid = np.zeros(len(missing), dtype=bool)
    except pa.ArrowInvalid:
        # Slow path only for batches holding something that is not a number.
        well_formed = pc.fill_null(pc.match_substring_regex(present, NUMBER_PATTERN), True)
        invalid = ~np.asarray(well_formed.to_numpy(zero_copy_only=False), dtype=bool)
        values = pc.cast(pc.if_else(well_formed, present, pa.scalar(None, pa.string())), pa.float64())
    out = np.array(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    # The Arrow cast accepts "nan" and "inf"; the spec calls them invalid.
    invalid |= ~missing & ~np.isfinite(out)
    out[invalid] = np.nan
    return Parsed(out, missing, invalid)


def parse_binary(column: pa.Array | pa.ChunkedArray) -> Parsed:
    """Parse a string column as BINARY: 0.0 / 1.0, NaN where missing or invalid."""
    import numpy as np
    import pyarrow.compute as pc

    normalized = pc.utf8_lower(pc.utf8_trim_whitespace(_as_array(column)))
    missing = _missing_mask(normalized)
    false_set, true_set = binary_spellings()
    is_true = np.asarray(pc.is_in(normalized, value_set=true_set).to_numpy(zero_copy_only=False))
    is_false = np.asarray(pc.is_in(normalized, value_set=false_set).to_numpy(zero_copy_only=False))
    invalid = ~missing & ~is_true & ~is_false
    out = np.where(is_true, 1.0, np.where(is_false, 0.0, np.nan))
    return Parsed(out, missing, invalid)


class InvalidValue(ValueError):
    """A value that is neither missing nor valid for its attribute type."""


def numeric_value(text: str) -> float | None:
    """One NUMERIC value: a float, ``None`` when missing; raises :class:`InvalidValue`."""
    stripped = text.strip()
    if not stripped:
        return None
    if not _NUMBER_RE.match(stripped):
        raise InvalidValue(f"{text!r} is not a number")
    value = float(stripped)
    if not math.isfinite(value):
        raise InvalidValue(f"{text!r} is out of range")
    return value


def binary_value(text: str) -> float | None:
    """One BINARY value: 0.0 or 1.0, ``None`` when missing; raises :class:`InvalidValue`."""
    normalized = text.strip().lower()
    if not normalized:
        return None
    if normalized in BINARY_TRUE:
        return 1.0
    if normalized in BINARY_FALSE:
        return 0.0
    raise InvalidValue(f"{text!r} is not a binary value (expected one of 0 1 n y no yes f t false true)")
