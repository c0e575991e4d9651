"""Streaming CSV records: invalid-record accounting, streaming behaviour, and any block size reading like
the csv module."""

from __future__ import annotations

import csv
import io
import math
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from records_helpers import bad, read

from emrml.storage import boundaries, records
from emrml.storage.invalid import InvalidRecord
from emrml.storage.quoting import field_counts
from emrml.storage.records import count_records, read_chunks

# --- invalid records ---------------------------------------------------------------------------------


def test_ragged_records_are_reported_with_their_position() -> None:
    data = b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n"
    result = read(data, ["a", "b", "c"], True)
    assert result.rows == [("1", "2", "3"), ("10", "11", "12")]
    assert result.indices == [0, 3]
    assert result.lines == [2, 5]
    assert result.invalid == [
        bad(3, 12, 1, "expected 3 fields, found 2"),
        bad(4, 16, 2, "expected 3 fields, found 4"),
    ]


def test_ragged_record_in_a_quoted_file_counts_only_commas_outside_quotes() -> None:
    data = b'1,"a,b",3\n"x,y",2\n"p\nq",r,s\n'
    result = read(data, ["a", "b", "c"])
    assert result.rows == [("1", "a,b", "3"), ("p\nq", "r", "s")]
    assert result.invalid == [bad(2, 10, 1, "expected 3 fields, found 2")]
    assert result.lines == [1, 3]


@pytest.mark.parametrize("block_bytes", [997, 50_000, 4 << 20])
def test_oversize_records_are_invalid_without_being_buffered(block_bytes: int) -> None:
    big = b"1," + b"x" * 120_329
    data = b"a,b\n1,2\n" + big + b"\r\n3,4\n"
    result = read(data, ["a", "b"], True, block_bytes=block_bytes)
    assert result.rows == [("1", "2"), ("3", "4")]
    assert result.offsets == [4, 8 + len(big) + 2]
    assert result.lines == [2, 4]
    assert result.invalid == [bad(3, 8, 1, "record is 120,331 bytes (limit 102,400)")]


@pytest.mark.parametrize("block_bytes", [1, 4, 16, 4 << 20])
def test_oversize_record_with_quoted_newlines_keeps_line_numbers(block_bytes: int) -> None:
    big = b'"' + b"line\n" * 20 + b'",x'
    data = b"1,2\n" + big + b"\n3,4\n" + big
    result = read(data, ["a", "b"], block_bytes=block_bytes, max_record_bytes=50)
    assert result.rows == [("1", "2"), ("3", "4")]
    assert result.lines == [1, 23]
    reason = (
        f"record is {len(big)} bytes (limit 50) (the record spans 21 lines: a quoted field holds their "
        "line breaks; an unbalanced '\"'?)"
    )
    assert result.invalid == [bad(2, 4, 1, reason), bad(23 + 1, 4 + len(big) + 5, 3, reason)]
    assert count_records(io.BytesIO(data), False, block_bytes=block_bytes, max_record_bytes=50) == 4


def test_oversize_header_is_skipped() -> None:
    data = b"h" * 500 + b"\n1,2\n"
    result = read(data, ["a", "b"], True, block_bytes=8, max_record_bytes=100)
    assert result.rows == [("1", "2")]
    assert result.indices == [0]
    assert result.lines == [2]
    assert not result.invalid


@pytest.mark.parametrize("block_bytes", [3, 4 << 20])
def test_invalid_utf8_invalidates_only_its_record(block_bytes: int) -> None:
    data = b"a,b\n1,\xc3\xa9\n2,x\xff\n3,\xe2\x82\xac\n4,\xe2\x82\n5,ok"
    result = read(data, ["a", "b"], True, block_bytes=block_bytes)
    assert result.rows == [("1", "é"), ("3", "€"), ("5", "ok")]
    assert result.indices == [0, 2, 4]
    hint = ": a file in Latin-1 or Windows-1252 must be converted, e.g. iconv -f WINDOWS-1252 -t UTF-8)"
    assert result.invalid == [
        bad(3, 9, 1, f"invalid UTF-8 at byte 3 of the record (0xff{hint}"),
        bad(5, 20, 3, f"invalid UTF-8 at byte 2 of the record (0xe2{hint}"),
    ]


def test_a_block_failing_only_on_utf8_has_its_fields_counted_by_pyarrow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pyarrow parses a block's text before converting it: failing on a field that is not UTF-8, it has
    found every row with its fields, and the block's fields were counted again for nothing (a fifth of
    the time of reading such a block). Unless a lone CR, a line end to pyarrow, split a record in rows."""
    counted = []
    monkeypatch.setattr(records, "field_counts", lambda block: counted.append(block) or field_counts(block))
    hint = ": a file in Latin-1 or Windows-1252 must be converted, e.g. iconv -f WINDOWS-1252 -t UTF-8)"
    result = read(b"a,b,c\n1,\xff,3\n4,5,6\n", ["a", "b", "c"], True)
    assert result.rows == [("4", "5", "6")]
    assert result.invalid == [bad(2, 6, 0, f"invalid UTF-8 at byte 2 of the record (0xff{hint}")]
    assert not counted
    # Read as two rows of three fields, the record of a lone CR has five: counted, as before.
    result = read(b"a,b,c\n1,\xff,3\n1,2,3\r4,5,6\n7,8,9\n", ["a", "b", "c"], True)
    assert result.rows == [("7", "8", "9")]
    assert result.invalid == [
        bad(2, 6, 0, f"invalid UTF-8 at byte 2 of the record (0xff{hint}"),
        bad(3, 12, 1, "expected 3 fields, found 5"),
    ]
    assert len(counted) == 1


def test_unterminated_quote_at_end_of_file() -> None:
    result = read(b'1,2\n3,"open\n4,5\n', ["a", "b"])
    assert result.rows == [("1", "2")]
    assert result.invalid == [
        bad(
            2,
            4,
            1,
            "unterminated quoted field at end of file (the record spans 2 lines: a quoted field "
            "holds their line breaks; an unbalanced '\"'?)",
        )
    ]


@pytest.mark.parametrize("block_bytes", [7, 64, 4 << 20])
def test_a_quote_left_open_says_how_many_lines_it_swallowed(block_bytes: int) -> None:
    """An opening quote that never closes makes every following line part of its field (RFC 4180): the
    records of the rest of the file are lost in one invalid record, whose reason must say so."""
    rest = b"".join(b'%d,"text %d"\n' % (i, i) for i in range(3, 40))
    data = b'a,b\n1,x\n2,"open\n' + rest
    result = read(data, ["a", "b"], True, block_bytes=block_bytes, max_record_bytes=100)
    assert result.rows == [("1", "x")]
    [invalid] = result.invalid
    assert (invalid.line, invalid.offset, invalid.index) == (3, 8, 1)
    assert invalid.reason == (
        f"record is {len(data) - 8:,} bytes (limit 100); a quoted field opened in it never closes, so "
        "all 38 lines from there to the end of the file were read as this one record (an unbalanced '\"'?)"
    )
    # Short of the size limit, the record is unterminated at the end of the file.
    short = read(b'a,b\n1,x\n2,"open\n3,y\n4,z\n', ["a", "b"], True, block_bytes=block_bytes)
    assert short.invalid == [
        bad(
            3,
            8,
            1,
            "unterminated quoted field at end of file (the record spans 3 lines: a quoted field "
            "holds their line breaks; an unbalanced '\"'?)",
        )
    ]
    # A quote closed lines later and followed by text: one record of the right width, whose value would
    # hold the lines between (their records lost without a trace); it is invalid, and says why.
    joined = read(b'a,b\n1,x\n2,"open\n3,y\n4,z" w\n5,v\n', ["a", "b"], True, block_bytes=block_bytes)
    assert joined.rows == [("1", "x"), ("5", "v")]
    assert joined.invalid == [
        bad(
            3,
            8,
            1,
            "a quote out of place in a record of 3 lines: a quoted field opened on its first line closes "
            "lines later, joining them into one value (an unbalanced '\"'?)",
        )
    ]
    # A stray quote closed by a later one: the lines between are one record of the wrong width.
    stray = read(b'a,b\n1,x\n2,"open\n3,y\n4,z",w\n5,v\n', ["a", "b"], True, block_bytes=block_bytes)
    assert stray.rows == [("1", "x"), ("5", "v")]
    assert stray.invalid == [
        bad(
            3,
            8,
            1,
            "expected 2 fields, found 3 (the record spans 3 lines: a quoted field holds their "
            "line breaks; an unbalanced '\"'?)",
        )
    ]


def test_quotes_inside_unquoted_fields_are_text() -> None:
    result = read(b'1,a "quoted" word,2\n3,x,4\n', ["a", "b", "c"])
    assert result.rows == [("1", 'a "quoted" word', "2"), ("3", "x", "4")]
    assert not result.invalid


def test_quotes_inside_a_header_name_leave_the_first_record_alone() -> None:
    """A header name holding quotes (``a"b"c``) was taken for a quote out of place in the first record,
    which, when a quoted field of it held a line break, was rejected as lines joined by a stray quote."""
    data = b'a"b"c,d\n1,"x\ny"\n2,z\n'
    result = read(data, ["a", "b"], True)
    assert result.rows == [("1", "x\ny"), ("2", "z")]
    assert not result.invalid


def test_records_pyarrow_cannot_read_as_one_row_are_invalid() -> None:
    # A lone carriage return outside quotes, and a comma between stray quotes, which the quote parity
    # and a CSV parser read differently.
    data = b'1,2,3\n4,a\rb,5\n6,x "y,z" w,7\n8,9,10\n'
    result = read(data, ["a", "b", "c"])
    assert result.rows == [("1", "2", "3"), ("8", "9", "10")]
    assert result.invalid == [
        bad(2, 6, 1, "unparsable CSV record"),
        bad(3, 14, 2, "unparsable CSV record"),
    ]


def test_all_invalid_block_still_yields_a_chunk_in_order() -> None:
    data = b"1,2\n" + b"x\n" * 10 + b"3,4\n"
    chunks = list(read_chunks(io.BytesIO(data), "f", ["a", "b"], False, block_bytes=8))
    assert [c.batch.num_rows for c in chunks if c.batch.num_rows] == [1, 1]
    indices = [r.index for c in chunks for r in c.invalid]
    assert indices == list(range(1, 11))
    assert any(c.batch.num_rows == 0 and c.invalid for c in chunks)


# --- streaming behaviour -----------------------------------------------------------------------------


class _Trickle(io.RawIOBase):
    """A stream that returns at most a few bytes per read, like some decompressors."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 3) if size >= 0 else 3)


def test_short_reads_give_the_same_result() -> None:
    data = b'a,b\r\n1,"x\r\ny"\r\n2,3\r\n'
    expected = read(data, ["a", "b"], True)
    chunks = list(read_chunks(_Trickle(data), "mem://data.csv", ["a", "b"], True, block_bytes=64))  # type: ignore[arg-type]
    assert [row for c in chunks for row in c.batch.to_pylist()] == [
        {"a": "1", "b": "x\r\ny"},
        {"a": "2", "b": "3"},
    ]
    assert np.concatenate([c.offsets for c in chunks]).tolist() == expected.offsets


def test_chunks_are_block_sized() -> None:
    # Records of RECORD_BYTES or more: shorter ones make chunks of fewer bytes (the memory tests below).
    data = b"".join(b"%012d,%026d\n" % (i, i * i) for i in range(100_000))
    chunks = list(read_chunks(io.BytesIO(data), "f", ["a", "b"], False, block_bytes=64 << 10))
    assert len(chunks) == math.ceil(len(data) / (64 << 10))
    assert max(c.batch.nbytes for c in chunks) < 2 * (64 << 10)
    assert chunks[-1].bytes_consumed == len(data)
    assert [c.bytes_consumed for c in chunks] == sorted(c.bytes_consumed for c in chunks)
    assert sum(c.batch.num_rows for c in chunks) == 100_000


def _scan_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "emrml-csv-scan"]


def test_stopping_early_stops_the_scan_thread() -> None:
    data = b"1,2\n" * 200_000
    stream = io.BytesIO(data)
    chunks = read_chunks(stream, "f", ["a", "b"], False, block_bytes=1024)
    next(chunks)
    chunks.close()
    assert not _scan_threads()
    assert stream.tell() < len(data)


def test_stream_errors_reach_the_caller() -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"1,2\n" * 10

    with pytest.raises(OSError, match="connection reset"):
        list(read_chunks(Broken(), "f", ["a", "b"], False, block_bytes=40))  # type: ignore[arg-type]
    assert not _scan_threads()


# --- property: any block size reads like the csv module ----------------------------------------------

_FIELD = st.text(alphabet=st.sampled_from([*"ab ,\"\n\r'\t", "é", "€", "😀", "\ufeff"]), max_size=8)


@st.composite
def _csv_files(draw: st.DrawFn) -> tuple[bytes, list[str], bool, list[bytes], int]:
    columns = draw(st.integers(1, 4))
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    # Mostly rows of the right width, some ragged ones.
    row = st.one_of(
        st.lists(_FIELD, min_size=columns, max_size=columns), st.lists(_FIELD, min_size=1, max_size=5)
    )
    rows = draw(
        st.lists(
            # The csv writer only quotes the characters of its own line terminator.
            row.map(lambda fields: [f.replace("\r", "\n") for f in fields] if terminator == "\n" else fields),
            max_size=12,
        )
    )
    has_header = draw(st.booleans())
    names = [f"c{i}" for i in range(columns)]
    lines = ([names] if has_header else []) + rows
    if lines and lines[0][0].startswith("\ufeff"):
        # A file starting with a BOM means a BOM, not a value starting with U+FEFF.
        lines[0][0] = "x" + lines[0][0]
    encoded = []
    for row in lines:
        text = io.StringIO()
        csv.writer(text, lineterminator=terminator).writerow(row)
        encoded.append(text.getvalue().encode())
    bom = draw(st.sampled_from([b"", b"\xef\xbb\xbf"]))
    data = bom + b"".join(encoded)
    if encoded and draw(st.booleans()):
        data = data[: -len(terminator)]
        encoded[-1] = encoded[-1][: -len(terminator)]
    max_record_bytes = draw(st.sampled_from([10, 40, 102_400]))
    return data, names, has_header, encoded[1:] if has_header else encoded, max_record_bytes


def _expected(
    data: bytes, names: list[str], has_header: bool, encoded: list[bytes], max_record_bytes: int
) -> tuple[list[tuple[str, ...]], list[int], list[int], list[int], list[InvalidRecord]]:
    """The reading rule applied one record at a time, with csv module values."""
    header = len(data) - sum(map(len, encoded))
    rows, offsets, indices, lines, invalid = [], [], [], [], []
    offset, line = header, 1 + data[:header].count(b"\n")
    for index, record in enumerate(encoded):
        content = record.removesuffix(b"\n").removesuffix(b"\r")
        fields = next(csv.reader(io.StringIO(content.decode(), newline="")), [""])
        spans = content.count(b"\n") + 1
        spanning = (
            f" (the record spans {spans:,} lines: a quoted field holds their line breaks; "
            "an unbalanced '\"'?)"
            if spans > 1
            else ""
        )
        if len(content) > max_record_bytes:
            size = f"record is {len(content):,} bytes (limit {max_record_bytes:,})"
            invalid.append(bad(line, offset, index, size + spanning))
        elif len(fields) != len(names):
            found = f"expected {len(names)} fields, found {len(fields)}"
            invalid.append(bad(line, offset, index, found + spanning))
        else:
            rows.append(tuple(fields))
            offsets.append(offset)
            indices.append(index)
            lines.append(line)
        offset += len(record)
        line += record.count(b"\n")
    return rows, offsets, indices, lines, invalid


@settings(max_examples=200, deadline=None)
@given(file=_csv_files(), block_bytes=st.integers(1, 200), segment=st.sampled_from([1, 2, 3, 7, 1 << 18]))
def test_any_block_size_reads_like_the_csv_module(
    file: tuple[bytes, list[str], bool, list[bytes], int], block_bytes: int, segment: int
) -> None:
    data, names, has_header, encoded, max_record_bytes = file
    expected = _expected(data, names, has_header, encoded, max_record_bytes)
    # Blocks are scanned a segment at a time, the quote parity and line count carried over.
    saved = boundaries.SEGMENT
    boundaries.SEGMENT = segment
    try:
        for size in (block_bytes, 4 << 20):
            result = read(data, names, has_header, block_bytes=size, max_record_bytes=max_record_bytes)
            assert (result.rows, result.offsets, result.indices, result.lines, result.invalid) == expected
            counted = count_records(io.BytesIO(data), has_header, block_bytes=size)
            assert counted == len(result.rows) + len(result.invalid) == len(encoded)
    finally:
        boundaries.SEGMENT = saved
