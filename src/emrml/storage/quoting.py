"""What the quotes of a block's records say, found a segment of bytes at a time: the records holding a
quote out of place, and each record's field count (commas outside quotes).

Quote positions are found again for each segment rather than kept for the block: a block of ``""`` runs
has nearly a quote per byte, and its positions alone (and the numpy steps over them) cost many times the
block's size. The masks and positions a segment makes stay the size of a segment, whatever the quotes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from emrml.storage.boundaries import COMMA, CR, LF, QUOTE, Block

#: Bytes looked at in one numpy step: a segment's positions and masks cost a few tens of bytes per byte.
QUOTE_SEGMENT = 1 << 16
_NO_POSITIONS = np.zeros(0, dtype=np.int64)


def _segments(block: Block) -> Iterator[tuple[int, np.ndarray, np.ndarray, int]]:
    """(start, bytes, quote positions in them, quotes before them mod 2) for each segment of the block's
    records (from the first record's start, which is outside quotes, to the last one's end)."""
    arr = np.frombuffer(block.buf, dtype=np.uint8)
    parity = 0
    first, limit = int(block.starts[0]), int(block.stops[-1])
    for start in range(first, limit, QUOTE_SEGMENT):
        segment = arr[start : min(start + QUOTE_SEGMENT, limit)]
        quotes = np.flatnonzero(segment == QUOTE) if block.quoted else _NO_POSITIONS
        yield start, segment, quotes, parity
        parity = (parity + len(quotes)) & 1


def stray_records(block: Block) -> np.ndarray:
    """Positions (sorted) of the block's records holding a quote that is not where RFC 4180 puts one.

    Quotes alternate opening and closing (the records start outside quotes); a closing quote directly
    followed by an opening one is an escaped ``""``. Other opening quotes must start a field, other
    closing quotes must end one.
    """
    if not block.quoted or not len(block.stops):
        return _NO_POSITIONS
    arr = np.frombuffer(block.buf, dtype=np.uint8)
    holding = np.zeros(len(block.stops), dtype=bool)
    for start, segment, quotes, parity in _segments(block):
        if not len(quotes):
            continue
        # The byte before each quote is ``window[quotes]``, the quote ``window[quotes + 1]``, the two after
        # it ``window[quotes + 2]`` and ``window[quotes + 3]``: shifted views instead of shifted positions,
        # whose int64 arrays cost 8 bytes a quote each. Past the buffer's ends, line breaks (which start
        # and end fields, as the ends of the buffer do).
        size = len(segment)
        window = np.full(size + 3, LF, dtype=np.uint8)
        window[1 : size + 1] = segment
        if start:
            window[0] = arr[start - 1]
        following = arr[start + size : start + size + 2]
        window[size + 1 : size + 1 + len(following)] = following
        before, after, after_next = window[quotes], window[2:][quotes], window[3:][quotes]
        closing = np.zeros(len(quotes), dtype=bool)
        closing[1 - parity :: 2] = True
        # The quote after a closing one opens: directly after, the pair is an escaped ``""``. Likewise the
        # quote before an opening one closes, escaped when directly before (a record's first byte follows
        # a line break, so a quote there is never taken for one that follows a quote).
        escaped = closing & (after == QUOTE)
        opening = ~closing & (before != QUOTE)
        field_start = (before == COMMA) | (before == LF)
        field_end = (after == COMMA) | (after == LF) | ((after == CR) & (after_next == LF))
        strays = quotes[(opening & ~field_start) | (closing & ~escaped & ~field_end)]
        strays += start
        holding[np.searchsorted(block.stops, strays, side="right")] = True
    return np.flatnonzero(holding)


def field_counts(block: Block) -> np.ndarray:
    """The number of fields (commas outside quotes, plus one) of each record of the block (int64)."""
    counts = np.ones(len(block.stops), dtype=np.int64)
    if not len(block.stops):
        return counts
    for start, segment, quotes, parity in _segments(block):
        commas = np.flatnonzero(segment == COMMA)
        if len(quotes) or parity:
            commas = commas[((parity + np.searchsorted(quotes, commas)) & 1) == 0]
        if not len(commas):
            continue
        commas += start
        # Commas never sit in a terminator, so the record a comma is in is the first one ending after it.
        records = np.searchsorted(block.stops, commas, side="right")
        low = int(records[0])
        records -= low
        found = np.bincount(records)
        counts[low : low + len(found)] += found
    return counts
