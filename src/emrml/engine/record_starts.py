"""Record starts in a plain CSV file, for cutting it into byte ranges (``engine.units``): the quotes before
a position, counted; the first record start after a cut; and a range read with the quotes it holds
counted, which tells whether a start guessed without counting was one (``units.misplaced``).

A line break ends a record when an even number of ``"`` precedes it in the file: exactly the rule the CSV
reader uses (``storage.boundaries``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from emrml.storage.locations import DATA_LOCATION, open_binary

_BOM = b"\xef\xbb\xbf"
_LF, _CR, _QUOTE = 10, 13, 34
#: Bytes read at a time when looking for a record start after a cut.
_SYNC_WINDOW = 1 << 20
#: Bytes read at a time when counting quotes.
_COUNT_BLOCK = 1 << 20


class RangeReader(io.RawIOBase):
    """At most ``length`` bytes of ``raw``, from its current position; counts the ``"`` it hands out
    (``quotes``), which tells whether a guessed start after it was a record start (``units.misplaced``)."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        self.raw = raw
        self.remaining = length
        self.quotes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        # The reader asks for blocks by ``read``: the raw file's bytes as they come (``RawIOBase.read`` would
        # copy them through a buffer), searched for a quote at memchr's speed and counted only if they hold
        # one (numpy's comparison: ``bytes.count`` tests a byte at a time).
        wanted = self.remaining if size is None or size < 0 else min(size, self.remaining)
        if wanted <= 0:
            return b""
        data = self.raw.read(wanted) or b""
        self.remaining -= len(data)
        if b'"' in data:
            self.quotes += int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _QUOTE))
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def quotes_read(stream: BinaryIO) -> int:
    """The ``"`` bytes a unit's records stream (``_open_unit``) handed out: counted for a byte range only."""
    return stream.quotes if isinstance(stream, RangeReader) else 0


def count_quotes(uri: str, start: int, stop: int, report: Callable[[int], None] | None = None) -> int:
    """The number of ``"`` bytes in [start, stop) of a plain file."""
    return count_byte(uri, start, stop, b'"', report)


def count_byte(
    uri: str, start: int, stop: int, byte: bytes, report: Callable[[int], None] | None = None
) -> int:
    """The number of ``byte`` in [start, stop) of a plain file, read in blocks."""
    count = 0
    # Into one buffer, reused: a new bytes object per block costs fresh memory pages, which took as long
    # again as the count itself. numpy's comparison counts a megabyte in about a sixth of the time of
    # ``bytes.count``, which tests a byte at a time.
    buffer = bytearray(_COUNT_BLOCK)
    view = memoryview(buffer)
    octets = np.frombuffer(buffer, dtype=np.uint8)
    wanted = byte[0]
    with open_binary(uri, what=DATA_LOCATION, start=start) as raw:
        remaining = stop - start
        while remaining > 0:
            size = raw.readinto(view[: min(_COUNT_BLOCK, remaining)])
            if not size:
                break
            count += int(np.count_nonzero(octets[:size] == wanted))
            remaining -= size
            if report is not None:
                report(size)
    return count


def record_start(uri: str, position: int, odd: bool) -> int | None:
    """The first record start after ``position`` that may begin a range; None when there is none.

    ``odd``: whether an odd number of ``"`` precedes ``position`` in the file. The start follows a line break
    outside quotes (an even number of quotes before it, the reader's rule) that ends a non-empty record, is
    not the end of the file, and is not followed by a byte order mark (the reader would drop it there).
    """
    behind = min(position, 2)  # look-behind, to see whether the record before a line break is empty
    with open_binary(uri, what=DATA_LOCATION, start=position - behind) as raw:
        base = position - behind  # file offset of buf[0]
        buf = raw.read(behind + _SYNC_WINDOW)
        parity = (int(odd) + buf[:behind].count(b'"')) & 1  # of the quotes before buf[0]
        start = behind  # line breaks before this index of buf are not candidates (or were seen)
        while True:
            more = raw.read(_SYNC_WINDOW)
            # A line break needs the bytes after it (a byte order mark?) unless the file ends there.
            decided = len(buf) if not more else len(buf) - len(_BOM)
            arr = np.frombuffer(buf, dtype=np.uint8)
            newlines = np.flatnonzero(arr[:decided] == _LF)
            newlines = newlines[newlines >= start]
            quotes_before = np.searchsorted(np.flatnonzero(arr == _QUOTE), newlines)
            for i in newlines[((parity + quotes_before) & 1) == 0].tolist():
                last = i - 1 - int(arr[i - 1] == _CR)
                if last >= 0 and arr[last] != _LF and i + 1 < len(buf) and not buf.startswith(_BOM, i + 1):
                    return base + i + 1
            if not more:
                return None
            dropped = len(buf) - len(_BOM) - 2
            parity = (parity + buf[:dropped].count(b'"')) & 1
            base += dropped
            start = decided - dropped
            buf = buf[dropped:] + more


def guessed_start(uri: str, position: int) -> tuple[bool, int | None]:
    """Whether the ``_SYNC_WINDOW`` bytes from ``position`` of a plain file hold a ``"``, and the record
    start ``record_start`` finds after ``position`` when an even number of quotes precedes it."""
    behind = min(position, 2)  # ``record_start``'s look-behind
    with open_binary(uri, what=DATA_LOCATION, start=position - behind) as raw:
        buf = raw.read(behind + _SYNC_WINDOW)
    quoted = buf.find(b'"', behind) >= 0
    # Without a quote in the window every line break in it ends a record (the quotes before it even): the
    # first one that may begin a range is found in the bytes read, where ``record_start`` read the window
    # twice more (a megabyte each, 3-4 ms a cut before the pool starts).
    start = None if quoted or behind < 2 else _first_start(buf, behind)
    return quoted, position - behind + start if start is not None else record_start(uri, position, odd=False)


def _first_start(buf: bytes, begin: int) -> int | None:
    """The index in ``buf`` of the first record start after a line break at or after ``begin`` (``buf`` free
    of quotes from ``begin`` on, and ``begin`` >= 2), as ``record_start`` finds it: after a line break that
    ends a non-empty record and is not followed by a byte order mark. Only line breaks with the bytes of a
    byte order mark after them in ``buf`` are decided; None when none of them is a start."""
    decided = len(buf) - len(_BOM)
    i = buf.find(b"\n", begin, decided)
    while i >= 0:
        last = i - 1 - (buf[i - 1] == _CR)
        if buf[last] != _LF and not buf.startswith(_BOM, i + 1):
            return i + 1
        i = buf.find(b"\n", i + 1, decided)
    return None
