"""Record boundaries in a CSV byte stream: blocks of whole records, found with numpy (``storage.records``
parses them).

A ``\\n`` ends a record when the number of ``"`` before it in the record is even (RFC 4180).
``split_blocks`` cuts a stream into blocks of complete records with their byte offsets, start lines and record
indices, the header and trailing empty lines removed; a record longer than the limit is scanned to its end
without being kept (a ``Skipped``), and empty records that might be trailing lines are held back and
released (``Blanks``) in front of the next block that has a non-empty record. The bytes read at a time are
scanned once; when they hold more than ``block_bytes // RECORD_BYTES`` records they are cut into several
blocks of that many records each. Bytes of plain lines (no ``"``, no ``\\r``) are not scanned: their line
breaks are counted, and the parser derives where the records end (``Block.plain``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

BOM = b"\xef\xbb\xbf"
LF, CR, QUOTE, COMMA = 10, 13, 34, 44
_NO_POSITIONS = np.zeros(0, dtype=np.int64)
#: Bytes looked at in one numpy step: the masks and positions a scan makes stay this size, whatever the
#: block's size and however many line breaks or quotes it holds.
SEGMENT = 1 << 18
#: A block holds at most one record per this many bytes of ``block_bytes``: a record's bookkeeping (where it
#: starts and ends, its line, index and reason, some 100 bytes while its block is parsed) stays a bounded
#: multiple of the block size even when the records are a byte or two long.
RECORD_BYTES = 32


@dataclass
class Blanks:
    """A run of empty records held back because they might be trailing lines, released in front of a block.

    Kept as where the run starts and, for each part of it, the length of every record's terminator: one
    number when they are all alike (``\\n``, or ``\\r\\n``), else one bit per record (``\\r\\n`` rather
    than ``\\n``), as a decompression bomb of empty lines may hold billions of them. Alike, consecutive
    parts are one: a bomb's run is held in a few bytes (a bit a record held 1.25 GB for 10 GB of line breaks,
    a few hundred kilobytes compressed), and ``pieces`` spells it out a bounded number at a time."""

    offset: int  # stream offset of the first record
    line: int  # its line number
    index: int  # its record index
    count: int
    #: (terminator length of each record, or their packed bits; how many records), in order.
    crlf: list[tuple[int | np.ndarray, int]] = field(default_factory=list)

    def pieces(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(offsets, lines, indices) of the records, at most ``size`` at a time, in order."""
        offset, done = self.offset, 0
        for packed, count in self.crlf:
            if isinstance(packed, int):  # every record's terminator is this long
                step, offsets, end = packed, None, offset + packed * count
            else:
                steps = 1 + np.unpackbits(packed, count=count).astype(np.int64)
                step, offsets = 0, offset + np.concatenate(([0], np.cumsum(steps[:-1])))
                end = int(offsets[-1] + steps[-1])
            for start in range(0, count, size):
                numbers = start + np.arange(min(size, count - start), dtype=np.int64)
                part = offset + step * numbers if offsets is None else offsets[start : start + size]
                yield part, self.line + done + numbers, self.index + done + numbers
            offset, done = end, done + count


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
    ``oversize`` (at most one of which is set).

    A block of plain lines (``plain``: no ``"``, no ``\\r``, every record ending with a ``\\n``, from
    ``buf[0]`` to ``buf[limit]``) comes without the positions of its records: the parser derives them from
    the lengths of the fields it read (``place``), and they are found from the line breaks only when asked
    for before that (a parse that failed, ``storage.header``)."""

    buf: bytes
    base: int  # stream offset of buf[0]
    #: (starts, ends, stops): the first byte of each record, the end of its content (terminator excluded)
    #: and the end of its terminator (where the next record starts); None until asked for when ``plain``.
    positions: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    lines: np.ndarray
    indices: np.ndarray
    quoted: bool  # buf holds a '"' (``storage.quoting`` finds where, a segment at a time)
    multiline: bool  # some quoted field holds a line break
    unterminated: bool  # the last record ends inside a quoted field (end of file)
    blanks: Blanks | None
    oversize: Skipped | None
    consumed: int
    plain: bool = False
    limit: int = 0  # end of the records in ``buf`` when ``plain``

    @property
    def starts(self) -> np.ndarray:
        return self._found()[0]

    @property
    def ends(self) -> np.ndarray:
        return self._found()[1]

    @property
    def stops(self) -> np.ndarray:
        return self._found()[2]

    def place(self, stops: np.ndarray) -> None:
        """Set the positions of a plain block's records from where each one's line break ends (int64)."""
        starts = np.empty_like(stops)
        if len(stops):
            starts[0] = 0
            starts[1:] = stops[:-1]
        self.positions = starts, stops - 1, stops

    def _found(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.positions is None:
            arr = np.frombuffer(self.buf, dtype=np.uint8, count=self.limit)
            # A segment at a time, as ``_scan``: the masks stay a segment's size whatever the block's.
            breaks = [
                np.flatnonzero(arr[at : at + SEGMENT] == LF) + (at + 1)
                for at in range(0, self.limit, SEGMENT)
            ]
            self.place(np.concatenate(breaks).astype(np.int64, copy=False))
        assert self.positions is not None
        return self.positions


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
        quoted = b'"' in data
        for start in range(0, len(data), SEGMENT):
            segment = arr[start : start + SEGMENT]
            newlines = np.flatnonzero(segment == LF)
            quotes = np.flatnonzero(segment == QUOTE) if quoted else _NO_POSITIONS
            closing = newlines[((self.parity + np.searchsorted(quotes, newlines)) & 1) == 0]
            if len(closing):
                end = start + int(closing[0])
                before = data[end - 1] if end > 0 else self.last
                self.size += end - start - (before == CR)
                self.newlines += int(np.searchsorted(newlines, closing[0]))
                return end + 1
            self.size += len(segment)
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

    parts: list[tuple[int | np.ndarray, int]] = field(default_factory=list)
    first_offset: int = 0
    first_line: int = 0
    count: int = 0

    def add(self, offset: int, terminators: np.ndarray, first_line: int) -> None:
        if not self.parts:
            self.first_offset, self.first_line = offset, first_line
        count = len(terminators)
        self.count += count
        crlf = terminators == 2
        if not (crlf == crlf[0]).all():
            self.parts.append((np.packbits(crlf), count))
            return
        step = 2 if crlf[0] else 1
        last = self.parts[-1] if self.parts else None
        if last is not None and isinstance(last[0], int) and last[0] == step:
            self.parts[-1] = (step, last[1] + count)  # a run of one terminator is its length and count
        else:
            self.parts.append((step, count))

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
    most = max(1, block_bytes // RECORD_BYTES)
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
        data = b""  # the bytes read are held in ``buf`` alone from here
        plain = (
            None
            if header or eof or oversize is not None or deferred.parts
            else _plain_lines(buf, max_record_bytes, most)
        )
        if plain is not None:
            tail, records = plain
            pending = buf[tail:]
            yield _plain_block(buf, base, tail, records, line, index, consumed)
            line += records
            index += records
            del buf  # before the next read, as below
            data = read_up_to(stream, block_bytes)
            eof = len(data) < block_bytes
            consumed += len(data)
            continue
        scan = _scan(buf, eof)
        records = len(scan.stops)
        first = 0
        if header and records:
            first, header = 1, False
        pending = buf[scan.tail :] if not eof else b""
        if not eof and len(pending) > max_record_bytes + 1:
            skip = _Skip(
                offset=base + scan.tail,
                line=line + scan.tail_newlines,
                index=None if header else -1,
                size=len(pending),
                parity=scan.parity,
                newlines=scan.newlines - scan.tail_newlines,
                last=pending[-1],
            )
            pending = b""
        followed = skip is not None or pending not in (b"", b"\r")
        keep = records if followed else _last_nonblank(scan, first, records, most)
        blanks = deferred.release(index) if followed or keep > first else None
        if blanks is not None:
            index += blanks.count
        for low in range(keep, records, most):
            starts, ends, stops = scan.bounds(low, min(low + most, records))
            deferred.add(base + int(starts[0]), stops - ends, line + int(scan.line_delta(low, low + 1)[0]))
        first_index = index
        index += keep - first
        if skip is not None and skip.index is not None:
            skip.index = index
            index += 1
        for low in range(first, max(keep, first + 1), most):
            high = min(low + most, keep)
            yield _block(
                scan,
                buf,
                base,
                low,
                high,
                line,
                first_index + low - first,
                whole=low == first and high == keep,
                unterminated=scan.unterminated and high == records and keep > first,
                blanks=blanks if low == first else None,
                oversize=oversize if low == first else None,
                consumed=consumed,
            )
        if eof:
            return
        line += scan.tail_newlines
        del buf, scan  # before the next read: a block's bytes and records are held once at a time
        data = read_up_to(stream, block_bytes)
        eof = len(data) < block_bytes
        consumed += len(data)


def _plain_lines(buf: bytes, max_record_bytes: int, most: int) -> tuple[int, int] | None:
    """(end of the last complete record, records before it) when ``buf`` is plain lines followed by an
    incomplete record of at most ``max_record_bytes + 1`` bytes, at most ``most`` of them; else None.

    Plain lines (no ``"``, no ``\\r``) end where their ``\\n`` are, so the records need no scan here: only
    how many there are, for their lines and indices (a count of the line breaks, a fraction of the cost of
    their positions). A ``\\r`` may make a record's terminator two bytes, or a lone one is invalid; a
    record starting with a BOM is parsed behind a shield; a block ending at a line break may end with
    empty lines held back: all of these take the general way."""
    if b'"' in buf or b"\r" in buf or buf.startswith(BOM):
        return None
    tail = buf.rfind(b"\n") + 1
    if not 0 < tail < len(buf) or len(buf) - tail > max_record_bytes + 1:
        return None
    arr = np.frombuffer(buf, dtype=np.uint8, count=tail)
    records = sum(int(np.count_nonzero(arr[at : at + SEGMENT] == LF)) for at in range(0, tail, SEGMENT))
    return (tail, records) if records <= most else None


def _plain_block(
    buf: bytes, base: int, tail: int, records: int, line: int, index: int, consumed: int
) -> Block:
    """The block of the plain lines of ``buf`` up to ``tail``: a line each, their positions left to find."""
    return Block(
        buf=buf,
        base=base,
        positions=None,
        lines=line + np.arange(records, dtype=np.int64),
        indices=index + np.arange(records, dtype=np.int64),
        quoted=False,
        multiline=False,
        unterminated=False,
        blanks=None,
        oversize=None,
        consumed=consumed,
        plain=True,
        limit=tail,
    )


def _last_nonblank(scan: _Scan, first: int, records: int, step: int) -> int:
    """Just past the last record from ``first`` on that is not empty (``first`` when all are), looked for
    ``step`` records at a time from the end: a block of empty lines has a record per byte or two."""
    high = records
    while high > first:
        low = max(first, high - step)
        starts, ends, _ = scan.bounds(low, high)
        filled = np.flatnonzero(ends != starts)
        if len(filled):
            return low + int(filled[-1]) + 1
        high = low
    return first


def _block(
    scan: _Scan,
    buf: bytes,
    base: int,
    low: int,
    high: int,
    line: int,
    index: int,
    *,
    whole: bool,
    unterminated: bool,
    blanks: Blanks | None,
    oversize: Skipped | None,
    consumed: int,
) -> Block:
    """The block of records ``low`` to ``high`` of ``buf``: in ``buf`` itself when it holds all the kept
    records, else in a copy of their bytes (the block and its parsing then cost what they would alone)."""
    starts, ends, stops = scan.bounds(low, high)
    lines = line + scan.line_delta(low, high)
    quoted = scan.quoted
    if not whole and len(stops):
        cut, until = int(starts[0]), int(stops[-1])
        buf = buf[cut:until]
        base += cut
        starts -= cut
        ends -= cut
        stops -= cut
        quoted = quoted and b'"' in buf
    return Block(
        buf=buf,
        base=base,
        positions=(starts, ends, stops),
        lines=lines,
        indices=index + np.arange(high - low, dtype=np.int64),
        quoted=quoted,
        multiline=scan.multiline,
        unterminated=unterminated,
        blanks=blanks,
        oversize=oversize,
        consumed=consumed,
    )


@dataclass
class _Scan:
    """Where the records of a buffer end, kept compact (relative positions of the smallest integer type that
    holds them): a block of one-byte records has as many of them as bytes."""

    arr: np.ndarray  # the buffer's bytes
    stops: np.ndarray  # end of each record's terminator: where the next record starts
    terminated: int  # records ending with a line break (all but one at end of file)
    line_deltas: np.ndarray | None  # line breaks before each record start; None: a line per record
    tail: int  # start of the incomplete last record (len(buf) at end of file)
    tail_newlines: int  # line breaks before ``tail``
    newlines: int  # line breaks in buf
    quoted: bool  # buf holds a '"'
    # Quotes after ``tail``, mod 2 (those before it are even: a record ends where they are).
    parity: int
    multiline: bool
    unterminated: bool

    def bounds(self, low: int, high: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(starts, ends, stops) of records ``low`` to ``high`` (int64): where each starts, where its
        content ends (terminator excluded) and where its terminator ends."""
        stops = self.stops[low:high].astype(np.int64)
        starts = np.empty_like(stops)
        if len(stops):
            starts[0] = self.stops[low - 1] if low else 0
            starts[1:] = stops[:-1]
        ends = stops.copy()
        ends[: max(0, self.terminated - low)] -= 1
        ends -= (ends > starts) & (self.arr[np.maximum(ends - 1, 0)] == CR)
        return starts, ends, stops

    def line_delta(self, low: int, high: int) -> np.ndarray:
        """Line breaks before the starts of records ``low`` to ``high`` (int64)."""
        if self.line_deltas is None:
            return np.arange(low, high, dtype=np.int64)
        return self.line_deltas[low:high].astype(np.int64)


def _shifted(positions: np.ndarray, shift: int, dtype: type) -> np.ndarray:
    """``positions + shift`` as ``dtype``, without an int64 copy."""
    out = positions.astype(dtype)
    out += shift
    return out


def _scan(buf: bytes, eof: bool) -> _Scan:
    """Find the records of ``buf``, which starts at a record start; at end of file the rest is one.

    A segment at a time, the quote parity carried over: the masks and positions numpy makes stay the size of
    a segment, and only the compact positions of record ends are kept (not those of quotes, which may be
    nearly as many as bytes)."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    dtype = np.int32 if len(buf) < 2**30 else np.int64  # with room for the arithmetic on positions
    quoted = b'"' in buf
    returns = quoted and b"\r" in buf
    ends: list[np.ndarray] = []
    # Line breaks before each record's end, kept from the first line break in a quoted field on (the
    # records before it have a line each).
    before: list[np.ndarray] = []
    parity = newlines = records = 0  # quotes (mod 2), line breaks and records before the segment
    multiline = False
    for start in range(0, len(buf), SEGMENT):
        segment = arr[start : start + SEGMENT]
        breaks = np.flatnonzero(segment == LF)
        found = len(breaks)
        if quoted:
            quotes = np.flatnonzero(segment == QUOTE)
            closing = np.flatnonzero(((parity + np.searchsorted(quotes, breaks)) & 1) == 0)
            multiline = multiline or len(closing) < found
            if returns and not multiline:
                carriage = np.flatnonzero(segment == CR)
                multiline = bool(np.any((parity + np.searchsorted(quotes, carriage)) & 1))
            parity = (parity + len(quotes)) & 1
            # Before the next segment's are found: a segment of quotes has 8 bytes of positions per byte.
            del quotes
            if len(closing) < found and not before:
                before.append(np.arange(1, records + 1, dtype=dtype))
            if before:
                before.append(_shifted(closing, newlines + 1, dtype))
            breaks = breaks[closing]
        ends.append(_shifted(breaks, start + 1, dtype))
        newlines += found
        records += len(breaks)
    stops = np.concatenate(ends) if ends else np.zeros(0, dtype=dtype)
    line_deltas = None
    if before:
        # Record i starts after the line breaks before record i - 1's end.
        line_deltas = np.concatenate([np.zeros(1, dtype=dtype), *before])
    del ends, before
    terminated = records
    tail = int(stops[-1]) if records else 0
    tail_newlines = int(line_deltas[records]) if line_deltas is not None else records
    unterminated = False
    if eof and tail < len(buf):
        stops = np.append(stops, np.array([len(buf)], dtype=dtype))
        records += 1
        unterminated = bool(parity)
        tail, tail_newlines = len(buf), newlines
    return _Scan(
        arr=arr,
        stops=stops,
        terminated=terminated,
        line_deltas=None if line_deltas is None else line_deltas[:records],
        tail=tail,
        tail_newlines=tail_newlines,
        newlines=newlines,
        quoted=quoted,
        parity=parity,
        multiline=multiline,
        unterminated=unterminated,
    )
