"""Value counts of a column's batches: each distinct value of a batch and how often it occurs.

Arrow's ``value_counts`` hashes every value (11-16 ns a value), whatever the column holds. Two kinds of
column, common among targets and flags, are counted for less, with the same counts:

* values all one byte long (a 0/1 target, a digit): the bytes themselves are counted (``np.bincount``);
* at most :data:`COMPARED_VALUES` distinct values in the previous batch (``yes``/``no``/``unknown``): the
  batch is compared with each of them (a pass each, cheaper than hashing for so few); when the matches do
  not add up to the batch, a value is new and the batch is hashed after all.

Those counts list the values in another order than Arrow's (order of first appearance): callers whose
results depend on that order ask for Arrow's (``any_order=False``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.text import value_bytes, value_offsets

#: The most distinct values a column is counted for by comparing it with each (a comparison pass costs
#: 4-6 ns a value against Arrow's 11-16 ns hashing; past three values the passes cost more).
COMPARED_VALUES = 3
#: The most distinct values a batch counted in another order than Arrow's can have (one-byte values are
#: ASCII characters).
MOST_REORDERED = 0x80


def value_counts(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The distinct values of ``column`` (in order of first appearance, a null among them when it holds
    one) and how often each occurs (int64)."""
    counted = pc.value_counts(column)
    return counted.field("values"), counted.field("counts").to_numpy(zero_copy_only=False)


class ValueCounts:
    """:func:`value_counts` of one column's batches in turn, its values listed in any order."""

    def __init__(self) -> None:
        #: The distinct values of the previous batch when few (no null among them), else None.
        self.previous: pa.Array | None = None
        self._scalars: list[pa.Scalar] = []

    def __call__(self, column: pa.Array, *, any_order: bool = True) -> tuple[pa.Array, np.ndarray]:
        if any_order and len(column) and not column.null_count:
            single = _single_bytes(column)
            if single is not None:
                return single
            if self.previous is not None:
                counts = np.array([pc.equal(column, value).true_count for value in self._scalars], np.int64)
                # The previous values are distinct, so a value matches one at most: all of them matched
                # one exactly when the matches add up to the batch.
                if int(counts.sum()) == len(column):
                    seen = counts > 0
                    values = self.previous if seen.all() else self.previous.filter(pa.array(seen))
                    return values, counts[seen]
        strings, counts = value_counts(column)
        few = len(strings) <= COMPARED_VALUES and not strings.null_count
        self.previous = strings if few else None
        self._scalars = [strings[i] for i in range(len(strings))] if few else []
        return strings, counts


def _single_bytes(column: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """The value counts of a column (no nulls) whose values are each one byte long, or None."""
    offsets = value_offsets(column)
    # As many bytes as values, none empty: one byte each. The first test settles most columns at once.
    if int(offsets[-1] - offsets[0]) != len(column) or not np.all(offsets[1:] != offsets[:-1]):
        return None
    counts = np.bincount(value_bytes(column))
    present = np.flatnonzero(counts)
    if present.size and present[-1] >= 0x80:  # not a character on its own (UTF-8 never holds one such)
        return None
    return pa.array([chr(byte) for byte in present.tolist()], column.type), counts[present]
