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

Memory stays a bounded multiple of the block size whatever the records: a block holds at most one record
per ``RECORD_BYTES`` of it (``storage.boundaries``); invalid records are arrays and a table of distinct
reasons (``storage.invalid``), not an object each; quote positions are found a segment at a time, never
kept for a whole block (``storage.quoting``: a block may hold nearly a quote per byte); a record that
outgrows ``max_record_bytes`` before its end is scanned to its end without being kept (empty lines held
back as possibly trailing cost a bit each, a run of alike line breaks a few bytes whatever its length).
``read_chunks`` finds the records of the next block on a background thread while pyarrow parses the
current one, so the stream is read up to two blocks ahead of the chunk being consumed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from emrml.core.text import value_offsets
from emrml.storage.boundaries import BOM, Block, split_blocks
from emrml.storage.invalid import InvalidRecords, Reasons, not_utf8, spanning, utf8_errors
from emrml.storage.quoting import field_counts, stray_records


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
    invalid: InvalidRecords
    bytes_consumed: int  # decompressed bytes read from this file so far (progress)


#: Empty records per chunk when a run of them is released: bounds the invalid records a chunk holds.
BLANKS_PER_CHUNK = 16_384
_NO_ROWS = np.zeros(0, dtype=np.int64)


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
    for block in split_blocks(stream, has_header, block_bytes, max_record_bytes):
        total += len(block.indices) + (block.oversize is not None)
        if block.blanks is not None:
            total += block.blanks.count
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
    for block in _prefetched(split_blocks(stream, has_header, block_bytes, max_record_bytes)):
        yield from parser.chunks(block)


def _prefetched(blocks: Iterator[Block]) -> Iterator[Block]:
    """Run ``blocks`` one step ahead on a thread, so finding the records of the next block overlaps
    parsing this one (numpy and pyarrow release the GIL). At most two blocks wait, so memory stays
    bounded; an exception in the scan is raised here; stopping early stops the thread."""
    handoff: queue.Queue[Block | BaseException | None] = queue.Queue(maxsize=1)
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


def _lines(block: Block, position: int) -> int:
    """The physical lines record ``position`` of ``block`` spans (line breaks in quoted fields join them)."""
    if not block.multiline:
        return 1
    start, end = int(block.starts[position]), int(block.ends[position])
    # A record left open at the end of the file keeps the file's final line break.
    end -= block.buf[end - 1 : end] == b"\n"
    return block.buf.count(b"\n", start, end) + 1


def _spans(block: Block, positions: np.ndarray) -> np.ndarray:
    """``_lines`` of the records at ``positions`` (sorted, int64): a record followed by another in the
    block spans the lines between their starts."""
    if not block.multiline:
        return np.ones(len(positions), dtype=np.int64)
    inner = positions[positions < len(block.starts) - 1]
    spans = block.lines[inner + 1] - block.lines[inner]
    if len(inner) < len(positions):
        spans = np.append(spans, _lines(block, len(block.starts) - 1))
    return spans


def _utf8_failure(why: str) -> bool:
    """Whether pyarrow's error is the conversion of a field that is not UTF-8 (its parse errors start
    "CSV parse error" and quote the row, which may say anything)."""
    return why.startswith("In CSV column #") and why.endswith(
        "CSV conversion error to string: invalid UTF8 data"
    )


def _lone_returns(buf: bytes) -> bool:
    """Whether ``buf`` holds a CR that is not followed by a LF."""
    return b"\r" in buf and buf.count(b"\r") != buf.count(b"\r\n")


def _columns(table: pa.Table) -> list[pa.Array]:
    """The columns of a parsed block: one chunk each when parsed in one piece, taken as it is
    (``combine_chunks`` copies it)."""
    return [c.chunk(0) if c.num_chunks == 1 else c.combine_chunks() for c in table.columns]


class _BlockParser:
    """Turns blocks of records into chunks: classifies records, parses the valid ones with pyarrow."""

    def __init__(self, names: list[str], file: str, max_record_bytes: int) -> None:
        self.names = names
        self.file = file
        self.max_record_bytes = max_record_bytes
        # Positional column names keep pyarrow away from duplicate or odd header names.
        self._keys = keys = [f"f{i}" for i in range(len(names))]
        # Keyed by (multiline, quoted). A block without a '"' is parsed with quote handling off: the same
        # fields, for about 6 % less of the parser's CPU (a line break in a value needs quotes).
        self._parse_options = {
            (multiline, quoted): pacsv.ParseOptions(
                newlines_in_values=multiline,
                ignore_empty_lines=False,
                quote_char='"' if quoted else False,
                double_quote=quoted,
            )
            for multiline in (False, True)
            for quoted in (False, True)
        }
        # Arrow's UTF-8 check costs about 1 ms per MB of text, ``bytes.isascii`` 0.1: a block that is all
        # ASCII (valid UTF-8 by construction) is parsed without the check, any other block with it.
        self._convert_options = {
            non_ascii: pacsv.ConvertOptions(
                column_types={key: pa.string() for key in keys},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=non_ascii,
            )
            for non_ascii in (False, True)
        }
        # pyarrow drops a BOM at the start of its input; a record starting with one gets this in front.
        self._shield = b"," * (len(names) - 1) + b"\n"

    def chunks(self, block: Block) -> Iterator[Chunk]:
        """The chunk of ``block`` (none when it holds no record); in a single-column file, preceded by a
        chunk of the empty records released in front of the block."""
        if block.blanks is not None:
            # In chunks of their own, a bounded number at a time: a run may be billions long.
            for offsets, lines, indices in block.blanks.pieces(BLANKS_PER_CHUNK):
                yield self._blank_chunk(offsets, lines, indices, block.consumed)
        batch, kept, reasons = self._parse_block(block)
        invalid = self._invalid(block, reasons)
        if batch.num_rows or len(invalid):
            yield Chunk(
                file=self.file,
                batch=batch,
                offsets=block.base + block.starts[kept],
                indices=block.indices[kept],
                lines=block.lines[kept],
                invalid=invalid,
                bytes_consumed=block.consumed,
            )

    def _invalid(self, block: Block, reasons: Reasons) -> InvalidRecords:
        """The records of ``block`` given a reason, after the oversize record scanned in front of it."""
        positions = reasons.marked()
        lines, indices = block.lines[positions], block.indices[positions]
        offsets, codes = block.starts[positions], reasons.codes[positions]
        offsets += block.base
        if block.oversize is not None:
            skipped = block.oversize
            code = reasons.code(self._oversize(skipped.size) + spanning(skipped.lines, skipped.unterminated))
            lines = np.concatenate((np.array([skipped.line], dtype=np.int64), lines))
            offsets = np.concatenate((np.array([skipped.offset], dtype=np.int64), offsets))
            indices = np.concatenate((np.array([skipped.index], dtype=np.int64), indices))
            codes = np.concatenate((np.array([code], dtype=np.int32), codes))
        return InvalidRecords(self.file, lines, offsets, indices, codes, reasons.texts)

    def _oversize(self, size: int) -> str:
        return f"record is {size:,} bytes (limit {self.max_record_bytes:,})"

    def _blank_chunk(
        self, offsets: np.ndarray, lines: np.ndarray, indices: np.ndarray, consumed: int
    ) -> Chunk:
        """Empty records: valid rows of one empty value in a single-column file, invalid records otherwise."""
        if len(self.names) > 1:
            reason = f"expected {len(self.names)} fields, found 1"
            return Chunk(
                file=self.file,
                # Arrow is called here, not at import: an Arrow call settles pyarrow's pandas probe, which
                # imports pandas unless the process has settled it first (``core.arrow``).
                batch=pa.RecordBatch.from_arrays(
                    [pa.array([], pa.string())] * len(self.names), names=self.names
                ),
                offsets=_NO_ROWS,
                indices=_NO_ROWS,
                lines=_NO_ROWS,
                invalid=InvalidRecords(
                    self.file, lines, offsets, indices, np.zeros(len(offsets), dtype=np.int32), (reason,)
                ),
                bytes_consumed=consumed,
            )
        count = len(offsets)
        empty = pa.StringArray.from_buffers(
            count, pa.py_buffer(np.zeros(count + 1, dtype=np.int32)), pa.py_buffer(b"")
        )
        return Chunk(
            file=self.file,
            batch=pa.RecordBatch.from_arrays([empty], names=self.names),
            offsets=offsets,
            indices=indices,
            lines=lines,
            invalid=InvalidRecords.none(self.file),
            bytes_consumed=consumed,
        )

    def _parse_block(self, block: Block) -> tuple[pa.RecordBatch, np.ndarray, Reasons]:
        """The batch of valid records, their positions in the block, and reasons for the others."""
        if block.plain and block.positions is None:
            parsed = self._parse_plain(block)
            if parsed is not None:
                return parsed
        columns = len(self.names)
        sizes = block.ends - block.starts
        reasons = Reasons(len(sizes))
        bad = sizes > self.max_record_bytes
        for position in np.flatnonzero(bad).tolist():
            reasons[position] = self._oversize(int(sizes[position])) + spanning(
                _lines(block, position), block.unterminated and position == len(bad) - 1
            )
        if block.unterminated and not bad[-1]:
            bad[-1] = True
            reasons[len(bad) - 1] = "unterminated quoted field at end of file" + spanning(
                _lines(block, len(bad) - 1), False
            )
        # When every quote sits where RFC 4180 allows it, pyarrow splits records and fields exactly as
        # the quote parity does, so its own column-count check is exact and fields are counted only
        # after a failed parse.
        strays = stray_records(block)
        careful = len(strays) > 0
        if careful:
            self._check_fields(block, bad, reasons)
            self._check_joined_lines(block, strays, bad, reasons)
        elif columns > 1:
            self._mark(bad, reasons, (sizes == 0) & ~bad, f"expected {columns} fields, found 1")
        valid = np.flatnonzero(~bad)
        parsed = self._parse(block, valid)
        table = parsed if isinstance(parsed, pa.Table) else None
        if table is None:
            # pyarrow parses all the text before converting any of it: failing on UTF-8, it found every
            # row's fields, and its rows are the records unless a lone CR (a line end to it) cut one.
            counted = _utf8_failure(parsed) and not _lone_returns(block.buf)
            if not careful and not counted:
                self._check_fields(block, bad, reasons)
            self._check_utf8(block, bad, reasons)
            valid = np.flatnonzero(~bad)
            table = self._try_parse(block, valid)
            if table is None:
                valid, table = self._bisect(block, valid, reasons)
        return pa.RecordBatch.from_arrays(_columns(table), names=self.names), valid, reasons

    def _parse_plain(self, block: Block) -> tuple[pa.RecordBatch, np.ndarray, Reasons] | None:
        """A block of plain lines (``Block.plain``) parsed whole, as the general way parses it when all of its
        records are valid; None when they are not all valid (or not all parsed one to a line), the block's
        positions then found by the general way.

        A plain line is its fields joined by commas and ended by ``\\n``, each field read as its bytes (no
        quotes to remove, no ``\\r`` to drop): where each record ends is the length of its fields and
        separators added up, read from the parsed columns' offsets, and the last one must end at the
        block's end."""
        records = len(block.indices)
        try:
            table = self._read(pa.py_buffer(block.buf).slice(0, block.limit), block)
        except pa.ArrowInvalid:
            return None
        if table.num_rows != records:
            return None
        arrays = _columns(table)
        width = len(arrays)
        # Added up in the offsets' own type (string columns: int32) while the block fits it: the sums grow
        # to the block's length at most, and a mixed int32 + int64 step costs four times as much.
        stops = np.arange(
            width, width * (records + 1), width, dtype=np.int32 if block.limit < 2**31 else np.int64
        )
        for array in arrays:
            offsets = value_offsets(array)
            stops += offsets[1:] - offsets[0] if offsets[0] else offsets[1:]
        if not records or int(stops[-1]) != block.limit:
            return None
        block.place(stops.astype(np.int64))
        sizes = block.ends - block.starts
        if int(sizes.max()) > self.max_record_bytes or (len(arrays) > 1 and not sizes.all()):
            return None
        return pa.RecordBatch.from_arrays(arrays, names=self.names), np.arange(records), Reasons(records)

    @staticmethod
    def _mark(bad: np.ndarray, reasons: Reasons, which: np.ndarray, reason: str) -> None:
        reasons.set_all(np.flatnonzero(which), reason)
        bad |= which

    def _check_fields(self, block: Block, bad: np.ndarray, reasons: Reasons) -> None:
        """Mark records whose field count (commas outside quotes, plus one) is wrong."""
        columns = len(self.names)
        counts = field_counts(block)
        wrong = counts != columns
        wrong &= ~bad
        positions = np.flatnonzero(wrong)
        found = counts[positions]
        del counts
        if block.multiline:
            # One key per (fields found, lines spanned): both are below ``scale``.
            scale = len(block.buf) + 2
            reasons.set_keyed(
                positions,
                found * scale + _spans(block, positions),
                lambda key: f"expected {columns} fields, found {key // scale}{spanning(key % scale, False)}",
            )
        else:
            reasons.set_keyed(positions, found, lambda key: f"expected {columns} fields, found {key}")
        bad |= wrong

    def _check_joined_lines(
        self, block: Block, strays: np.ndarray, bad: np.ndarray, reasons: Reasons
    ) -> None:
        """Mark records that hold line breaks and a quote out of place: a quote left open in one line ran
        on to a quote some lines later (``2,"open`` … ``4,z" w``), which a CSV parser reads as one long
        field, and the records of the lines between would vanish without a trace."""
        if not block.multiline:
            return
        spans = _spans(block, strays)
        joined = (spans > 1) & ~bad[strays]
        strays, spans = strays[joined], spans[joined]
        bad[strays] = True
        reasons.set_keyed(
            strays,
            spans,
            lambda lines: (
                f"a quote out of place in a record of {lines:,} lines: a quoted field opened on its first "
                "line closes lines later, joining them into one value (an unbalanced '\"'?)"
            ),
        )

    def _check_utf8(self, block: Block, bad: np.ndarray, reasons: Reasons) -> None:
        """Mark records holding bytes that are not UTF-8 (after a failed parse)."""
        if not len(block.starts):
            return
        first, limit = int(block.starts[0]), int(block.stops[-1])
        # Vectorized: one Python call per bad sequence cost seconds for a block of short records each
        # holding a bad byte. A line break always decodes, so each record decodes as it would alone.
        found = first + utf8_errors(np.frombuffer(block.buf, dtype=np.uint8)[first:limit])
        records = np.searchsorted(block.stops, found, side="right")
        # The first bad byte of each record.
        leading = np.ones(len(records), dtype=bool)
        leading[1:] = records[1:] != records[:-1]
        found, records = found[leading], records[leading]
        fresh = ~bad[records]
        found, records = found[fresh], records[fresh]
        bad[records] = True
        # One key per (byte of the record, its value).
        keys = (found - block.starts[records]) * 256 + np.frombuffer(block.buf, dtype=np.uint8)[found]
        reasons.set_keyed(
            records,
            keys,
            lambda key: f"invalid UTF-8 at byte {key >> 8} of the record {not_utf8(key & 255)}",
        )

    def _bisect(self, block: Block, valid: np.ndarray, reasons: Reasons) -> tuple[np.ndarray, pa.Table]:
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

    def _try_parse(self, block: Block, records: np.ndarray) -> pa.Table | None:
        """pyarrow's parse of ``records`` (sorted positions), or None unless it is one row per record."""
        parsed = self._parse(block, records)
        return parsed if isinstance(parsed, pa.Table) else None

    def _parse(self, block: Block, records: np.ndarray) -> pa.Table | str:
        """``_try_parse``, or why not: pyarrow's error, or "" when its rows are not one per record."""
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
        shielded = block.buf.startswith(BOM, int(starts[0]))
        if shielded:
            data = pa.py_buffer(self._shield + data.to_pybytes())
        try:
            table = self._read(data, block)
        except pa.ArrowInvalid as error:
            return str(error)
        if shielded:
            table = table.slice(1)
        return table if table.num_rows == len(records) else ""

    def _read(self, data: pa.Buffer, block: Block) -> pa.Table:
        """pyarrow's parse of ``data``, records of ``block``; raises ``pa.ArrowInvalid``."""
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=self._read_options(data.size),
            parse_options=self._parse_options[block.multiline, block.quoted],
            convert_options=self._convert_options[not block.buf.isascii()],
        )

    def _read_options(self, size: int) -> pacsv.ReadOptions:
        # The whole block in one piece, on this thread: its columns come out in one chunk each (no copy to
        # join them), and the callers already keep both cores busy. Pieces parsed on Arrow's threads cost
        # a fifth more CPU.
        return pacsv.ReadOptions(
            column_names=self._keys,
            autogenerate_column_names=False,
            use_threads=False,
            block_size=max(size + 1, 2 * self.max_record_bytes),
        )

    def _empty_table(self) -> pa.Table:
        return pa.table({key: pa.array([], pa.string()) for key in self._keys})
