"""Streaming CSV records → Arrow record batches, with exact byte offsets and invalid-record accounting.

The reader finds record boundaries itself, vectorized with numpy: a ``\\n`` ends a record when the
number of ``"`` before it in the record is even (RFC 4180: quoted fields may hold commas, line breaks and
``""`` escapes). So every row knows its byte offset in the (decompressed) stream, its 1-based start line
and its record index, and structurally bad records are found before parsing. pyarrow then parses the
valid records of each block in one call.

Rules (spec 5.1, 5.3):

* A UTF-8 byte order mark at the start of the file is skipped; offsets still count it, so the first
  record of such a file starts at offset 3.
* ``\\r\\n`` and ``\\n`` end a record; the last record may lack a terminator.
* A record is invalid when it is longer than ``max_record_bytes`` (terminator excluded), has a field
  count other than the number of expected columns, holds bytes that are not UTF-8, ends inside a quoted
  field at end of file, or cannot be parsed as one CSV row (e.g. a lone ``\\r`` outside quotes).
* An empty line is a record with one empty field: invalid for several columns, a valid empty value
  for one column. Empty lines at the end of a file are ignored.
* A quote in the middle of an unquoted field is kept as text when the quotes of the record balance;
  an unbalanced one makes the record run on to the next quote (that is RFC 4180 parity), which usually
  ends as one oversize invalid record.
* Record indices count valid and invalid records and exclude the header; line numbers and offsets
  count the header.

Memory stays bounded by the block size: a record that outgrows ``max_record_bytes`` before its end is
scanned to its end without being kept (empty lines held back as possibly trailing cost 8 bytes each).
``read_chunks`` finds the records of the next block on a background thread while pyarrow parses the
current one, so the stream is read up to two blocks ahead of the chunk being consumed.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from emrml.errors import DataError

_BOM = b"\xef\xbb\xbf"
_LF, _CR, _QUOTE, _COMMA = 10, 13, 34, 44
#: Size of the pieces pyarrow parses in parallel within one block.
_PARSE_PIECE_BYTES = 512 << 10
_NO_POSITIONS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class InvalidRecord:
    """A record left out of the data, with where it is and why."""

    file: str  # the file's uri as given
    line: int  # 1-based physical line number where the record starts
    offset: int  # byte offset of the record's first byte in the decompressed stream
    index: int  # record index within the file (0-based, header excluded, valid and invalid records)
    reason: str


@dataclass
class Chunk:
    """The valid rows of one block of a file, and the invalid records found in that block.

    ``batch`` has one ``pa.string()`` column per expected name; ``offsets``, ``indices`` and ``lines``
    (int64) have one entry per row of ``batch``. ``invalid`` is in record order.
    """

    file: str
    batch: pa.RecordBatch
    offsets: np.ndarray
    indices: np.ndarray
    lines: np.ndarray
    invalid: list[InvalidRecord]
    bytes_consumed: int  # decompressed bytes read from this file so far (progress)


def read_header(stream: BinaryIO, file: str, *, max_record_bytes: int = 102_400) -> list[str]:
    """The fields of the first record of ``stream`` (BOM stripped); ``[]`` for an empty file.

    Consumes the stream. Raises ``DataError`` naming ``file`` when that record is too long or not UTF-8.
    """
    for block in _split(stream, False, 64 << 10, max_record_bytes):
        if block.blanks is not None:
            return [""]
        if block.oversize is not None:
            raise DataError(
                f"{file}: the header line is {block.oversize.size:,} bytes (limit {max_record_bytes:,})"
            )
        if len(block.starts):
            start, end = int(block.starts[0]), int(block.ends[0])
            if end - start > max_record_bytes:
                raise DataError(
                    f"{file}: the header line is {end - start:,} bytes (limit {max_record_bytes:,})"
                )
            try:
                text = block.buf[start:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{file}: the header line is not valid UTF-8 (byte {exc.start})") from None
            return next(csv.reader(io.StringIO(text, newline="")), [""])
    return []


def count_records(
    stream: BinaryIO,
    has_header: bool,
    *,
    block_bytes: int = 4 << 20,
    max_record_bytes: int = 102_400,
) -> int:
    """The number of records (valid and invalid, header excluded) ``read_chunks`` would report.

    Only finds record boundaries: no field counting, decoding or parsing.
    """
    total = 0
    for block in _split(stream, has_header, block_bytes, max_record_bytes):
        total += len(block.starts) + (block.oversize is not None)
        if block.blanks is not None:
            total += len(block.blanks.offsets)
    return total


def read_chunks(
    stream: BinaryIO,
    file: str,
    names: Sequence[str],
    has_header: bool,
    *,
    block_bytes: int = 4 << 20,
    max_record_bytes: int = 102_400,
) -> Iterator[Chunk]:
    """Read ``stream`` (decompressed CSV bytes) as chunks of about ``block_bytes`` of text each.

    ``file`` only labels the output. Chunks come in record order; a chunk may have no rows when all
    records of its block are invalid. Blocks without any record yield nothing.
    """
    if not names:
        raise ValueError("names must hold at least one column name")
    parser = _BlockParser(list(names), file, max_record_bytes)
    for block in _prefetched(_split(stream, has_header, block_bytes, max_record_bytes)):
        yield from parser.chunks(block)


def _prefetched(blocks: Iterator[_Block]) -> Iterator[_Block]:
    """Run ``blocks`` one step ahead on a thread, so finding the records of the next block overlaps
    parsing this one (numpy and pyarrow release the GIL). At most two blocks wait, so memory stays
    bounded; an exception in the scan is raised here; stopping early stops the thread."""
    handoff: queue.Queue[_Block | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for block in blocks:
                if stop.is_set():
                    return
                handoff.put(block)
            handoff.put(None)
        except BaseException as exc:
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="emrml-csv-scan", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            # Take what the producer may be waiting to hand over so that it can see ``stop``.
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.01)
        thread.join()


# --- record boundaries -------------------------------------------------------------------------------


@dataclass
class _Blanks:
    """Empty records held back because they might be trailing lines, released in front of a block."""

    offsets: np.ndarray
    lines: np.ndarray
    indices: np.ndarray


@dataclass
class _Skipped:
    """An oversize record found by scanning past it; it comes before the records of its block."""

    offset: int
    line: int
    index: int
    size: int


@dataclass
class _Block:
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
    blanks: _Blanks | None
    oversize: _Skipped | None
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

    def feed(self, data: bytes, eof: bool) -> int | None:
        """Scan the next bytes; the position just past the record's terminator, or None if it goes on."""
        arr = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(arr == _LF)
        quotes = np.flatnonzero(arr == _QUOTE) if b'"' in data else _NO_POSITIONS
        closing = newlines[((self.parity + np.searchsorted(quotes, newlines)) & 1) == 0]
        if len(closing):
            end = int(closing[0])
            before = data[end - 1] if end > 0 else self.last
            self.size += end - (before == _CR)
            self.newlines += int(np.searchsorted(newlines, end))
            return end + 1
        self.size += len(data)
        self.parity = (self.parity + len(quotes)) & 1
        self.newlines += len(newlines)
        if data:
            self.last = data[-1]
        if eof:
            self.size -= self.last == _CR
            return len(data)
        return None


@dataclass
class _Deferred:
    """Offsets of a run of empty records not yet known to be followed by a non-empty one."""

    parts: list[np.ndarray] = field(default_factory=list)
    first_line: int = 0

    def add(self, offsets: np.ndarray, first_line: int) -> None:
        if not self.parts:
            self.first_line = first_line
        self.parts.append(offsets)

    def release(self, first_index: int) -> _Blanks | None:
        if not self.parts:
            return None
        offsets = np.concatenate(self.parts)
        self.parts = []
        steps = np.arange(len(offsets), dtype=np.int64)
        # Empty records are one line each, so a run covers consecutive lines.
        return _Blanks(offsets, self.first_line + steps, first_index + steps)


def _read(stream: BinaryIO, size: int) -> bytes:
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


def _split(stream: BinaryIO, has_header: bool, block_bytes: int, max_record_bytes: int) -> Iterator[_Block]:
    """Cut the stream into blocks of complete records (the header and trailing empty lines removed)."""
    if block_bytes < 1:
        raise ValueError("block_bytes must be positive")
    first_read = max(block_bytes, len(_BOM))
    data = _read(stream, first_read)
    eof = len(data) < first_read
    consumed = len(data)
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
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
                data = _read(stream, block_bytes)
                eof = len(data) < block_bytes
                consumed += len(data)
                continue
            if skip.index is None:
                header = False
            else:
                oversize = _Skipped(skip.offset, skip.line, skip.index, skip.size)
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
            index += len(blanks.offsets)
        if keep < records:
            deferred.add(base + scan.starts[keep:], line + int(scan.line_deltas[keep]))
        kept = slice(first, keep)
        indices = index + np.arange(keep - first, dtype=np.int64)
        index += keep - first
        if skip is not None and skip.index is not None:
            skip.index = index
            index += 1
        yield _Block(
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
        data = _read(stream, block_bytes)
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
    newlines = np.flatnonzero(arr == _LF)
    if b'"' in buf:
        quotes = np.flatnonzero(arr == _QUOTE)
        closing = np.flatnonzero((np.searchsorted(quotes, newlines) & 1) == 0)
        multiline = len(closing) < len(newlines)
        if not multiline and b"\r" in buf:
            returns = np.flatnonzero(arr == _CR)
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
    carriage = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == _CR)
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


def _has_stray_quotes(block: _Block) -> bool:
    """Whether a quote of the block's records is not where RFC 4180 puts one.

    Quotes alternate opening and closing (the buffer starts outside quotes); a closing quote directly
    followed by an opening one is an escaped ``""``. Other opening quotes must start a field, other
    closing quotes must end one.
    """
    if block.quotes is None or not len(block.stops):
        return False
    quotes = block.quotes[: np.searchsorted(block.quotes, block.stops[-1])]
    if not len(quotes):
        return False
    arr = np.frombuffer(block.buf, dtype=np.uint8)
    closing = (np.arange(len(quotes)) & 1).astype(bool)
    escaped = np.zeros(len(quotes) + 1, dtype=bool)
    escaped[:-1] = closing & (np.append(quotes[1:], -1) == quotes + 1)
    opening = ~closing & ~escaped[np.arange(len(quotes)) - 1]
    before = arr[np.maximum(quotes - 1, 0)]
    field_start = (quotes == 0) | (before == _COMMA) | (before == _LF)
    if np.any(opening & ~field_start):
        return True
    last = len(arr) - 1
    after = arr[np.minimum(quotes + 1, last)]
    after_next = arr[np.minimum(quotes + 2, last)]
    field_end = (
        (quotes == last)
        | (after == _COMMA)
        | (after == _LF)
        | ((after == _CR) & ((quotes + 1 == last) | (after_next == _LF)))
    )
    return bool(np.any(closing & ~escaped[:-1] & ~field_end))


# --- parsing -----------------------------------------------------------------------------------------


class _BlockParser:
    """Turns blocks of records into chunks: classifies records, parses the valid ones with pyarrow."""

    def __init__(self, names: list[str], file: str, max_record_bytes: int) -> None:
        self.names = names
        self.file = file
        self.max_record_bytes = max_record_bytes
        # Positional column names keep pyarrow away from duplicate or odd header names.
        keys = [f"f{i}" for i in range(len(names))]
        self._read_options = pacsv.ReadOptions(
            column_names=keys,
            autogenerate_column_names=False,
            use_threads=True,
            block_size=max(_PARSE_PIECE_BYTES, 2 * max_record_bytes),
        )
        self._parse_options = {
            multiline: pacsv.ParseOptions(newlines_in_values=multiline, ignore_empty_lines=False)
            for multiline in (False, True)
        }
        self._convert_options = pacsv.ConvertOptions(
            column_types={key: pa.string() for key in keys},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=True,
        )
        # pyarrow drops a BOM at the start of its input; a record starting with one gets this in front.
        self._shield = b"," * (len(names) - 1) + b"\n"

    def chunks(self, block: _Block) -> Iterator[Chunk]:
        """The chunk of ``block`` (none when it holds no record); in a single-column file, preceded by a
        chunk of the empty records released in front of the block."""
        invalid: list[InvalidRecord] = []
        if block.oversize is not None:
            skipped = block.oversize
            invalid.append(
                InvalidRecord(
                    self.file, skipped.line, skipped.offset, skipped.index, self._oversize(skipped.size)
                )
            )
        if block.blanks is not None:
            blanks = block.blanks
            if len(self.names) == 1:
                yield self._blank_chunk(blanks, block.consumed)
            else:
                reason = f"expected {len(self.names)} fields, found 1"
                invalid.extend(
                    InvalidRecord(self.file, line, offset, index, reason)
                    for line, offset, index in zip(
                        blanks.lines.tolist(), blanks.offsets.tolist(), blanks.indices.tolist(), strict=True
                    )
                )
        batch, kept, reasons = self._parse_block(block)
        for position, reason in sorted(reasons.items()):
            invalid.append(
                InvalidRecord(
                    self.file,
                    int(block.lines[position]),
                    block.base + int(block.starts[position]),
                    int(block.indices[position]),
                    reason,
                )
            )
        if batch.num_rows or invalid:
            yield Chunk(
                file=self.file,
                batch=batch,
                offsets=block.base + block.starts[kept],
                indices=block.indices[kept],
                lines=block.lines[kept],
                invalid=invalid,
                bytes_consumed=block.consumed,
            )

    def _oversize(self, size: int) -> str:
        return f"record is {size:,} bytes (limit {self.max_record_bytes:,})"

    def _blank_chunk(self, blanks: _Blanks, consumed: int) -> Chunk:
        count = len(blanks.offsets)
        empty = pa.StringArray.from_buffers(
            count, pa.py_buffer(np.zeros(count + 1, dtype=np.int32)), pa.py_buffer(b"")
        )
        return Chunk(
            file=self.file,
            batch=pa.RecordBatch.from_arrays([empty], names=self.names),
            offsets=blanks.offsets,
            indices=blanks.indices,
            lines=blanks.lines,
            invalid=[],
            bytes_consumed=consumed,
        )

    def _parse_block(self, block: _Block) -> tuple[pa.RecordBatch, np.ndarray, dict[int, str]]:
        """The batch of valid records, their positions in the block, and reasons for the others."""
        columns = len(self.names)
        sizes = block.ends - block.starts
        reasons: dict[int, str] = {}
        bad = sizes > self.max_record_bytes
        for position in np.flatnonzero(bad).tolist():
            reasons[position] = self._oversize(int(sizes[position]))
        if block.unterminated and not bad[-1]:
            bad[-1] = True
            reasons[len(bad) - 1] = "unterminated quoted field at end of file"
        # When every quote sits where RFC 4180 allows it, pyarrow splits records and fields exactly as
        # the quote parity does, so its own column-count check is exact and fields are counted only
        # after a failed parse.
        careful = block.quotes is not None and _has_stray_quotes(block)
        if careful:
            self._check_fields(block, bad, reasons)
        elif columns > 1:
            self._mark(bad, reasons, (sizes == 0) & ~bad, f"expected {columns} fields, found 1")
        valid = np.flatnonzero(~bad)
        table = self._try_parse(block, valid)
        if table is None:
            if not careful:
                self._check_fields(block, bad, reasons)
            self._check_utf8(block, bad, reasons)
            valid = np.flatnonzero(~bad)
            table = self._try_parse(block, valid)
            if table is None:
                valid, table = self._bisect(block, valid, reasons)
        arrays = [column.combine_chunks() for column in table.columns]
        return pa.RecordBatch.from_arrays(arrays, names=self.names), valid, reasons

    @staticmethod
    def _mark(bad: np.ndarray, reasons: dict[int, str], which: np.ndarray, reason: str) -> None:
        for position in np.flatnonzero(which).tolist():
            reasons[position] = reason
        bad |= which

    def _check_fields(self, block: _Block, bad: np.ndarray, reasons: dict[int, str]) -> None:
        """Mark records whose field count (commas outside quotes, plus one) is wrong."""
        columns = len(self.names)
        arr = np.frombuffer(block.buf, dtype=np.uint8)
        commas = np.flatnonzero(arr == _COMMA)
        if block.quotes is not None:
            commas = commas[(np.searchsorted(block.quotes, commas) & 1) == 0]
        counts = np.searchsorted(commas, block.ends) - np.searchsorted(commas, block.starts) + 1
        wrong = (counts != columns) & ~bad
        for position in np.flatnonzero(wrong).tolist():
            reasons[position] = f"expected {columns} fields, found {int(counts[position])}"
        bad |= wrong

    def _check_utf8(self, block: _Block, bad: np.ndarray, reasons: dict[int, str]) -> None:
        """Mark records holding bytes that are not UTF-8 (slow path, after a failed parse)."""
        if not len(block.starts):
            return
        view = memoryview(block.buf)
        position, limit = int(block.starts[0]), int(block.stops[-1])
        while position < limit:
            try:
                codecs.utf_8_decode(view[position:limit], "strict", True)
                return
            except UnicodeDecodeError as exc:
                at = position + exc.start
                record = int(np.searchsorted(block.stops, at, side="right"))
                if not bad[record]:
                    bad[record] = True
                    start = int(block.starts[record])
                    reasons[record] = f"invalid UTF-8 at byte {at - start} of the record"
                position = int(block.stops[record])

    def _bisect(
        self, block: _Block, valid: np.ndarray, reasons: dict[int, str]
    ) -> tuple[np.ndarray, pa.Table]:
        """Parse halves until every record that pyarrow does not read as exactly one row is isolated."""
        if len(valid) == 1:
            reasons[int(valid[0])] = "unparsable CSV record"
            return valid[:0], self._empty_table()
        middle = len(valid) // 2
        parts = []
        for half in (valid[:middle], valid[middle:]):
            table = self._try_parse(block, half)
            parts.append((half, table) if table is not None else self._bisect(block, half, reasons))
        return np.concatenate([part[0] for part in parts]), pa.concat_tables([part[1] for part in parts])

    def _try_parse(self, block: _Block, records: np.ndarray) -> pa.Table | None:
        """pyarrow's parse of ``records`` (sorted positions), or None unless it is one row per record."""
        if not len(records):
            return self._empty_table()
        starts, stops = block.starts[records], block.stops[records]
        # Consecutive records are one contiguous byte range; the buffer is a zero-copy slice when
        # all records are valid.
        run_breaks = np.flatnonzero(np.diff(records) != 1)
        first = np.concatenate(([0], run_breaks + 1))
        last = np.concatenate((run_breaks, [len(records) - 1]))
        if len(first) == 1:
            data = pa.py_buffer(block.buf).slice(int(starts[0]), int(stops[-1] - starts[0]))
        else:
            view = memoryview(block.buf)
            data = pa.py_buffer(
                b"".join(view[a:b] for a, b in zip(starts[first].tolist(), stops[last].tolist(), strict=True))
            )
        shielded = block.buf.startswith(_BOM, int(starts[0]))
        if shielded:
            data = pa.py_buffer(self._shield + data.to_pybytes())
        try:
            table = pacsv.read_csv(
                pa.BufferReader(data),
                read_options=self._read_options,
                parse_options=self._parse_options[block.multiline],
                convert_options=self._convert_options,
            )
        except pa.ArrowInvalid:
            return None
        if shielded:
            table = table.slice(1)
        return table if table.num_rows == len(records) else None

    def _empty_table(self) -> pa.Table:
        return pa.table({f"f{i}": pa.array([], pa.string()) for i in range(len(self.names))})
