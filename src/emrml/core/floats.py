"""Numbers written the way Amazon ML's batch prediction files write them (spec 9): Java-style scientific
notation with at most 7 significant digits, e.g. ``1.237027E-1``, ``1.02535E-2``, ``-1.526385E1``,
vectorized over numpy arrays.

The text is laid out in fixed-width character cells (``Cells``), a few whole-array passes per character
position: a result line of numbers and flags is the cells of its columns one after another
(``join_cells``), with no string built per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

#: Significant digits of ``java_float_cells`` (the real result files have at most 7: ``1.237027E-1``).
SIGNIFICANT_DIGITS = 7
_MANTISSA_LOW = 10.0 ** (SIGNIFICANT_DIGITS - 1)
_MANTISSA_HIGH = 10.0**SIGNIFICANT_DIGITS
# Largest power of ten applied in one multiplication: 10**300 is finite, so scaling a subnormal number up
# to its 7-digit mantissa takes two steps instead of overflowing.
_SCALE_STEP = 300
_POWERS = np.power(10.0, np.arange(-_SCALE_STEP, _SCALE_STEP + 1, dtype=np.float64))
_ZERO = ord("0")


@dataclass(frozen=True)
class Cells:
    """A column of short texts in fixed-width cells, stored a character position per row so that each
    position is written in one contiguous pass: text ``i`` is ``chars[:, i][keep[:, i]]`` (both
    ``(width, n)``; ``chars`` uint8, ``keep`` bool)."""

    chars: np.ndarray
    keep: np.ndarray

    def strings(self) -> pa.Array:
        """The texts as an Arrow string array: the kept cells, read text by text, are its data buffer."""
        n = self.chars.shape[1]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(self.keep.sum(axis=0, dtype=np.int32), out=offsets[1:])
        data = np.compress(self.keep.T.reshape(-1), self.chars.T.reshape(-1))
        return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def join_cells(columns: Sequence[Cells], separator: str = ",", end: str | None = "\n") -> Cells:
    """The columns side by side, ``separator`` between them and ``end`` (if any) after the last."""
    n = columns[0].chars.shape[1]
    chars: list[np.ndarray] = []
    keep: list[np.ndarray] = []
    for i, column in enumerate(columns):
        chars.append(column.chars)
        keep.append(column.keep)
        mark = end if i == len(columns) - 1 else separator
        if mark is not None:
            chars.append(np.full((1, n), ord(mark), dtype=np.uint8))
            keep.append(np.ones((1, n), dtype=bool))
    return Cells(np.concatenate(chars), np.concatenate(keep))


def flag_cells(flags: np.ndarray, present: np.ndarray | None = None) -> Cells:
    """``1`` where ``flags`` is true, else ``0``; empty where ``present`` is false."""
    chars = np.where(flags, ord("1"), _ZERO).astype(np.uint8).reshape(1, -1)
    keep = np.ones_like(chars, dtype=bool) if present is None else present.reshape(1, -1)
    return Cells(chars, keep)


def java_float_cells(values: np.ndarray) -> Cells:
    """Numbers as Java-style scientific notation, vectorized: ``(n,)`` float → cells of width 14.

    The value is rounded to 7 significant digits and written as ``d.dddddd`` + ``E`` + exponent, trailing
    zeros of the fraction dropped but one digit kept: ``0.1237027`` → ``1.237027E-1``, ``0.0102535`` →
    ``1.02535E-2``, ``-15.26385`` → ``-1.526385E1``, ``100`` → ``1.0E2``; zero is ``0.0E0``; NaN and
    infinities are Java's ``NaN``, ``Infinity``, ``-Infinity``. ``float(text)`` gives the value back to 7
    significant digits.
    """
    v = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(v)
    zero = v == 0
    magnitude = np.where(finite & ~zero, np.abs(v), 1.0)
    exponent = np.floor(np.log10(magnitude)).astype(np.int64)
    mantissa = _scaled(magnitude, exponent)
    # log10 may land one off next to a power of ten, and rounding may carry to 10**7: fix both.
    off = (mantissa >= _MANTISSA_HIGH - 0.5).astype(np.int64) - (mantissa < _MANTISSA_LOW - 0.5)
    if off.any():
        exponent += off
        mantissa = _scaled(magnitude, exponent)
        carried = mantissa >= _MANTISSA_HIGH
        exponent += carried
        mantissa[carried] = _MANTISSA_LOW
    cells = _layout(mantissa.astype(np.int32), exponent, v < 0)
    if zero.any() or not finite.all():
        specials = {b"0.0E0": zero, b"NaN": np.isnan(v), b"Infinity": v == np.inf, b"-Infinity": v == -np.inf}
        for text, rows in specials.items():
            cells.chars[: len(text), rows] = np.frombuffer(text, dtype=np.uint8)[:, None]
            cells.keep[:, rows] = (np.arange(_WIDTH) < len(text))[:, None]
    return cells


def _scaled(magnitude: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``round(magnitude * 10**(6 - exponent))``, in two steps where one power of ten would overflow."""
    shift = SIGNIFICANT_DIGITS - 1 - exponent
    first = np.clip(shift, -_SCALE_STEP, _SCALE_STEP)
    scaled = magnitude * _POWERS[first + _SCALE_STEP]
    rest = shift - first
    if rest.any():
        scaled *= _POWERS[rest + _SCALE_STEP]
    return np.rint(scaled)


# The cells of one number: sign, first digit, ".", six fraction digits, "E", exponent sign, three exponent
# digits; each text keeps the ones it needs.
_WIDTH = 14


def _layout(mantissa: np.ndarray, exponent: np.ndarray, negative: np.ndarray) -> Cells:
    """Cells of ``mantissa`` (7-digit integers) × 10**(exponent - 6), negated where ``negative``."""
    n = len(mantissa)
    chars = np.empty((_WIDTH, n), dtype=np.uint8)
    keep = np.ones((_WIDTH, n), dtype=bool)
    chars[0] = ord("-")
    keep[0] = negative
    chars[1] = mantissa // 1_000_000 + _ZERO
    chars[2] = ord(".")
    fraction = mantissa % 1_000_000
    # Trailing zeros of the six fraction digits, counting at most five: one digit is always kept.
    trailing_zeros = np.zeros(n, dtype=np.int32)
    for place in range(6):
        chars[3 + place] = fraction // 10 ** (5 - place) % 10 + _ZERO
        if place < 5:
            trailing_zeros += fraction % 10 ** (place + 1) == 0
    # Fraction digits up to the last non-zero one, at least one ("1.0E2").
    kept = 6 - trailing_zeros
    for place in range(1, 6):
        keep[3 + place] = kept > place
    chars[9] = ord("E")
    chars[10] = ord("-")
    keep[10] = exponent < 0
    power = np.abs(exponent).astype(np.int32)
    chars[11] = power // 100 + _ZERO
    chars[12] = power // 10 % 10 + _ZERO
    chars[13] = power % 10 + _ZERO
    keep[11] = power >= 100
    keep[12] = power >= 10
    return Cells(chars, keep)
