"""Record boundaries in a CSV byte stream: blocks of whole records, found with numpy (``storage.records``
parses them).

A ``\\n`` ends a record when the number of ``"`` before it in the record is even (RFC 4180).
``split_blocks`` cuts a stream into blocks of complete records with their byte offsets, start lines and record
indices, the header and trailing empty lines removed; a record longer than the limit is scanned to its end
without being kept (a ``Skipped``), and empty records that might be trailing lines are held back and
released (``Blanks``) in front of the next block that has a non-empty record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

BOM = b"\xef\xbb\xbf"
LF, CR, QUOTE, COMMA = 10, 13, 34, 44
_NO_POSITIONS = np.zeros(0, dtype=np.int64)


@dataclass
class Blanks:
    """A run of empty records held back because they might be trailing lines, released in front of a block.

    Kept as where the run starts and one bit per record (its terminator is ``\\r\\n`` rather than ``\\n``),
    as a decompression bomb of empty lines may hold billions of them: an eighth of a byte each while held,
    and ``pieces`` spells them out a bounded number at a time."""

    offset: int  # stream offset of the first record
    line: int  # its line number
    index: int  # its record index
    count: int
    crlf: list[tuple[np.ndarray, int]] = field(default_factory=list)  # packed bits and their count, in order

    def pieces(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(offsets, lines, indices) of the records, at most ``size`` at a time, in order."""
        offset, done = self.offset, 0
        for packed, count in self.crlf:
            steps = 1 + np.unpackbits(packed, count=count).astype(np.int64)
            offsets = offset + np.concatenate(([0], np.cumsum(steps[:-1])))
            offset = int(offsets[-1] + steps[-1])
            for start in range(0, count, size):
                part = offsets[start : start + size]
                positions = done + start + np.arange(len(part), dtype=np.int64)
                yield part, self.line + positions, self.index + positions
            done += count


@dataclass
class Skipped:
    """An oversize record found by scanning past it; it comes before the records of its block."""

    offset: int
    line: int
    index: int
    size: int
    lines: int = 1  # physical lines the record spans
    unterminated: bool = False  # it ends inside a quoted field, at the end of the file


@dataclass
class Block:
    """Complete records of ``buf`` (positions relative to ``buf``), in file order after ``blanks`` or
    ``oversize`` (at most one of which is set)."""

    buf: bytes
    base: int  # stream offset of buf[0]
    starts: np.ndarray  # first byte of each record
    ends: np.ndarray  # end of its content (terminator excluded)
    stops: np.ndarray  # end of its terminator: where the next record starts
    lines: np.ndarray
    indices: np.ndarray
    quotes: np.ndarray | None  # positions of every '"' in buf; None when it has none
    multiline: bool  # some quoted field holds a line break
    unterminated: bool  # the last record ends inside a quoted field (end of file)
    blanks: Blanks | None
    oversize: Skipped | None
    consumed: int


@dataclass
class _Skip:
    """Scanning state of a record that outgrew the limit before its end was seen."""

    offset: int
    line: int
    index: int | None  # None: the record is the header
    size: int  # bytes seen so far
    parity: int  # quotes seen so far, mod 2
    newlines: int  # quoted line breaks seen so far
    last: int  # last byte seen
    unterminated: bool = False  # the file ended inside one of its quoted fields

    def feed(self, data: bytes, eof: bool) -> int | None:
        """Scan the next bytes; the position just past the record's terminator, or None if it goes on."""
        arr = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(arr == LF)
        quotes = np.flatnonzero(arr == QUOTE) if b'"' in data else _NO_POSITIONS
        closing = newlines[((self.parity + np.searchsorted(quotes, newlines)) & 1) == 0]
        if len(closing):
            end = int(closing[0])
            before = data[end - 1] if end > 0 else self.last
            self.size += end - (before == CR)
            self.newlines += int(np.searchsorted(newlines, end))
            return end + 1
        self.size += len(data)
        self.parity = (self.parity + len(quotes)) & 1
        self.newlines += len(newlines)
        if data:
            self.last = data[-1]
        if eof:
            self.size -= self.last == CR
            self.unterminated = self.parity == 1
            return len(data)
        return None


@dataclass
class _Deferred:
    """A run of empty records not yet known to be followed by a non-empty one. They follow each other, one
    line each, so where the first starts and the length of each one's terminator tell where each is."""

    parts: list[tuple[np.ndarray, int]] = field(default_factory=list)
    first_offset: int = 0
    first_line: int = 0
    count: int = 0

    def add(self, offset: int, terminators: np.ndarray, first_line: int) -> None:
        if not self.parts:
            self.first_offset, self.first_line = offset, first_line
        self.parts.append((np.packbits(terminators == 2), len(terminators)))
        self.count += len(terminators)

    def release(self, first_index: int) -> Blanks | None:
        if not self.parts:
            return None
        blanks = Blanks(self.first_offset, self.first_line, first_index, self.count, self.parts)
        self.parts, self.count = [], 0
        return blanks


def read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Exactly ``size`` bytes, fewer only at end of stream (streams may return short reads)."""
    data = stream.read(size)
    if len(data) >= size or not data:
        return bytes(data)
    parts = [bytes(data)]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(bytes(more))
        got += len(more)
    return b"".join(parts)


def split_blocks(
    stream: BinaryIO, has_header: bool, block_bytes: int, max_record_bytes: int
) -> Iterator[Block]:
    """Cut the stream into blocks of complete records (the header and trailing empty lines removed)."""
    if block_bytes < 1:
        raise ValueError("block_bytes must be positive")
    first_read = max(block_bytes, len(BOM))
    data = read_up_to(stream, first_read)
    eof = len(data) < first_read
    consumed = len(data)
    if data.startswith(BOM):
        data = data[len(BOM) :]
    pending = b""  # the incomplete record at the end of the previous block
    line, index = 1, 0
    header = has_header
    deferred = _Deferred()
    skip: _Skip | None = None
    while True:
        data_offset = consumed - len(data)
        oversize = None
        if skip is not None:
            end = skip.feed(data, eof)
            if end is None:
                data = read_up_to(stream, block_bytes)
                eof = len(data) < block_bytes
                consumed += len(data)
                continue
            if skip.index is None:
                header = False
            else:
                unterminated = skip.unterminated
                oversize = Skipped(
                    skip.offset,
                    skip.line,
                    skip.index,
                    skip.size,
                    # The file's final line break ends its last line rather than starting one.
                    lines=skip.newlines + 1 - int(unterminated and skip.last == LF),
                    unterminated=unterminated,
                )
            line = skip.line + skip.newlines + 1
            data = data[end:]
            data_offset += end
            skip = None
        buf = pending + data if pending else data
        base = data_offset - len(pending)
        scan = _scan(buf, eof)
        first = 0
        if header and len(scan.starts):
            first, header = 1, False
        records = len(scan.starts)
        blank = scan.ends[first:] == scan.starts[first:]
        pending = buf[scan.tail :] if not eof else b""
        if not eof and len(pending) > max_record_bytes + 1:
            quotes = _NO_POSITIONS if scan.quotes is None else scan.quotes
            tail_quotes = len(quotes) - int(np.searchsorted(quotes, scan.tail))
            skip = _Skip(
                offset=base + scan.tail,
                line=line + scan.tail_newlines,
                index=None if header else -1,
                size=len(pending),
                parity=tail_quotes & 1,
                newlines=scan.newlines - scan.tail_newlines,
                last=pending[-1],
            )
            pending = b""
        followed = skip is not None or pending not in (b"", b"\r")
        nonblank = np.flatnonzero(~blank)
        keep = records if followed else first + (int(nonblank[-1]) + 1 if len(nonblank) else 0)
        blanks = deferred.release(index) if followed or keep > first else None
        if blanks is not None:
            index += blanks.count
        if keep < records:
            terminators = scan.stops[keep:] - scan.ends[keep:]
            deferred.add(base + int(scan.starts[keep]), terminators, line + int(scan.line_deltas[keep]))
        kept = slice(first, keep)
        indices = index + np.arange(keep - first, dtype=np.int64)
        index += keep - first
        if skip is not None and skip.index is not None:
            skip.index = index
            index += 1
        yield Block(
            buf=buf,
            base=base,
            starts=scan.starts[kept],
            ends=scan.ends[kept],
            stops=scan.stops[kept],
            lines=line + scan.line_deltas[kept],
            indices=indices,
            quotes=scan.quotes,
            multiline=scan.multiline,
            unterminated=scan.unterminated and keep == records and keep > first,
            blanks=blanks,
            oversize=oversize,
            consumed=consumed,
        )
        if eof:
            return
        line += scan.tail_newlines
        data = read_up_to(stream, block_bytes)
        eof = len(data) < block_bytes
        consumed += len(data)


@dataclass
class _Scan:
    starts: np.ndarray
    ends: np.ndarray
    stops: np.ndarray
    line_deltas: np.ndarray  # line breaks before each record start
    tail: int  # start of the incomplete last record (len(buf) at end of file)
    tail_newlines: int  # line breaks before ``tail``
    newlines: int  # line breaks in buf
    quotes: np.ndarray | None
    multiline: bool
    unterminated: bool


def _scan(buf: bytes, eof: bool) -> _Scan:
    """Find the records of ``buf``, which starts at a record start; at end of file the rest is one."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == LF)
    if b'"' in buf:
        quotes = np.flatnonzero(arr == QUOTE)
        closing = np.flatnonzero((np.searchsorted(quotes, newlines) & 1) == 0)
        multiline = len(closing) < len(newlines)
        if not multiline and b"\r" in buf:
            returns = np.flatnonzero(arr == CR)
            multiline = bool(np.any(np.searchsorted(quotes, returns) & 1))
        stops = newlines[closing] + 1
        breaks_before_stop = closing + 1
    else:
        quotes = None
        multiline = False
        stops = newlines + 1
        breaks_before_stop = np.arange(1, len(newlines) + 1, dtype=np.int64)
    tail = int(stops[-1]) if len(stops) else 0
    tail_newlines = int(breaks_before_stop[-1]) if len(stops) else 0
    terminated = len(stops)
    unterminated = False
    if eof and tail < len(buf):
        stops = np.append(stops, len(buf))
        breaks_before_stop = np.append(breaks_before_stop, len(newlines))
        if quotes is not None:
            unterminated = bool((len(quotes) - np.searchsorted(quotes, tail)) & 1)
        tail, tail_newlines = len(buf), len(newlines)
    stops = stops.astype(np.int64, copy=False)
    starts = np.empty_like(stops)
    line_deltas = np.empty_like(stops)
    if len(stops):
        starts[0] = 0
        starts[1:] = stops[:-1]
        line_deltas[0] = 0
        line_deltas[1:] = breaks_before_stop[:-1]
    ends = stops.copy()
    ends[:terminated] -= 1
    carriage = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == CR)
    ends -= carriage
    return _Scan(
        starts=starts,
        ends=ends,
        stops=stops,
        line_deltas=line_deltas,
        tail=tail,
        tail_newlines=tail_newlines,
        newlines=len(newlines),
        quotes=quotes,
        multiline=multiline,
        unterminated=unterminated,
    )


def stray_quotes(block: Block) -> np.ndarray:
    """Positions in ``block.buf`` of the quotes of the block's records that are not where RFC 4180 puts one.

    Quotes alternate opening and closing (the buffer starts outside quotes); a closing quote directly
    followed by an opening one is an escaped ``""``. Other opening quotes must start a field, other
    closing quotes must end one.
    """
    if block.quotes is None or not len(block.stops):
        return _NO_POSITIONS
    quotes = block.quotes[: np.searchsorted(block.quotes, block.stops[-1])]
    if not len(quotes):
        return _NO_POSITIONS
    arr = np.frombuffer(block.buf, dtype=np.uint8)
    closing = (np.arange(len(quotes)) & 1).astype(bool)
    escaped = np.zeros(len(quotes) + 1, dtype=bool)
    escaped[:-1] = closing & (np.append(quotes[1:], -1) == quotes + 1)
    opening = ~closing & ~escaped[np.arange(len(quotes)) - 1]
    before = arr[np.maximum(quotes - 1, 0)]
    field_start = (quotes == 0) | (before == COMMA) | (before == LF)
    last = len(arr) - 1
    after = arr[np.minimum(quotes + 1, last)]
    after_next = arr[np.minimum(quotes + 2, last)]
    field_end = (
        (quotes == last)
        | (after == COMMA)
        | (after == LF)
        | ((after == CR) & ((quotes + 1 == last) | (after_next == LF)))
    )
    return quotes[(opening & ~field_start) | (closing & ~escaped[:-1] & ~field_end)]


# --- parsing -----------------------------------------------------------------------------------------
