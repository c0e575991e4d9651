"""Streaming CSV records: the shared datasets read like the csv module, record structure, headers, and
memory bounded by the block size."""

from __future__ import annotations

import csv
import gzip
import io
import sys
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import zstandard
from records_helpers import bad, read

from emrml.errors import DataError
from emrml.storage.boundaries import split_blocks
from emrml.storage.codecs import open_decompressed
from emrml.storage.header import read_header, read_header_again
from emrml.storage.invalid import InvalidRecord
from emrml.storage.records import count_records, read_chunks

# --- the shared datasets -----------------------------------------------------------------------------

DATASETS = [
    ("bank_marketing", 41_188),
    ("sms_spam", 5_574),
    ("wine_quality", 6_497),
    ("bike_sharing_hourly", 17_379),
    ("california_housing", 20_640),
]


@pytest.mark.parametrize(("name", "rows"), DATASETS)
def test_shared_datasets_read_like_the_csv_module(shared_datasets: Path, name: str, rows: int) -> None:
    path = shared_datasets / name / "data.csv"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        expected = [tuple(row) for row in csv.reader(handle)]
    raw = path.read_bytes()
    names = list(expected[0])
    with path.open("rb") as stream:
        whole = [
            (c.batch, c.offsets, c.indices, c.lines, c.invalid)
            for c in read_chunks(stream, str(path), names, True)
        ]
    assert all(not invalid for *_, invalid in whole)
    values = [tuple(row.values()) for batch, *_ in whole for row in batch.to_pylist()]
    assert len(values) == rows
    assert values == expected[1:]
    # These files hold no line breaks inside values: record i is line i + 2 and starts after a newline.
    offsets = np.concatenate([offsets for _, offsets, *_ in whole])
    line_starts = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10) + 1
    assert np.array_equal(offsets, line_starts[: len(offsets)])
    assert np.array_equal(np.concatenate([indices for _, _, indices, *_ in whole]), np.arange(rows))
    assert np.array_equal(np.concatenate([lines for *_, lines, _ in whole]), np.arange(rows) + 2)
    # Small blocks cut records at other places and must give the same answer.
    small = read(raw, names, True, block_bytes=100_003)
    assert small.chunks > 3
    assert small.rows == values
    assert small.offsets == offsets.tolist()
    with path.open("rb") as stream:
        assert count_records(stream, True) == rows
    with path.open("rb") as stream:
        assert read_header(stream, str(path)) == names


def test_sms_spam_keeps_commas_inside_quoted_messages(shared_datasets: Path) -> None:
    path = shared_datasets / "sms_spam" / "data.csv"
    with path.open("rb") as stream:
        batch = next(read_chunks(stream, str(path), ["is_spam", "message"], True)).batch
    first = batch.slice(0, 1).to_pylist()[0]
    assert first == {
        "is_spam": "0",
        "message": "Go until jurong point, crazy.. Available only in bugis n great world la e buffet... "
        "Cine there got amore wat...",
    }


def test_aws_batch_tutorial_file_with_a_truncated_last_record(shared_datasets: Path) -> None:
    path = shared_datasets / "bank_marketing" / "aml-tutorial" / "banking-batch.csv"
    raw = path.read_bytes()
    names = raw.split(b"\r\n", 1)[0].decode().split(",")
    assert len(names) == 20
    result = read(raw, names, True)
    assert len(result.rows) == 294
    assert result.rows[0][:3] == ("30", "blue-collar", "married")
    assert all(not value.endswith("\r") for row in result.rows for value in row)
    last_start = raw.rindex(b"\r\n") + 2
    assert result.invalid == [bad(296, last_start, 294, "expected 20 fields, found 12")]
    assert result.offsets[1] == raw.index(b"\r\n", result.offsets[0]) + 2
    assert count_records(io.BytesIO(raw), True) == 295


# --- record structure --------------------------------------------------------------------------------


def test_quoted_fields_hold_commas_newlines_and_escaped_quotes() -> None:
    data = b'id,text\n1,"a, b"\n2,"line one\nline two"\n3,"say ""hi"""\n4,""\n5,plain\n'
    result = read(data, ["id", "text"], True)
    assert result.rows == [
        ("1", "a, b"),
        ("2", "line one\nline two"),
        ("3", 'say "hi"'),
        ("4", ""),
        ("5", "plain"),
    ]
    assert result.offsets == [8, 17, 39, 54, 59]
    assert [data[o : o + 2] for o in result.offsets] == [b"1,", b"2,", b"3,", b"4,", b"5,"]
    assert result.lines == [2, 3, 5, 6, 7]
    assert result.indices == [0, 1, 2, 3, 4]
    assert not result.invalid


def test_blocks_without_quotes_are_parsed_without_quote_handling(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small blocks: the first ones hold no '"' and skip the parser's quote handling; the last one's quoted
    # fields are still read as quoted.
    data = b'id,text\n1,plain\n2,also plain\n3,"a, ""b"""\n4,"two\nlines"\n'
    quote_chars: list[str | bool] = []
    parse = pacsv.read_csv

    def spy(*args: object, parse_options: pacsv.ParseOptions, **kwargs: object) -> pa.Table:
        quote_chars.append(parse_options.quote_char)
        return parse(*args, parse_options=parse_options, **kwargs)

    monkeypatch.setattr(pacsv, "read_csv", spy)
    result = read(data, ["id", "text"], True, block_bytes=20)
    assert result.rows == [("1", "plain"), ("2", "also plain"), ("3", 'a, "b"'), ("4", "two\nlines")]
    assert result.lines == [2, 3, 4, 5]
    assert False in quote_chars and '"' in quote_chars
    assert not result.invalid


def test_crlf_terminators_are_not_part_of_values() -> None:
    data = b'a,b\r\n1,2\r\n"x\r\ny",3\r\n4,\r\n'
    result = read(data, ["a", "b"], True)
    assert result.rows == [("1", "2"), ("x\r\ny", "3"), ("4", "")]
    assert result.offsets == [5, 10, 20]
    assert result.lines == [2, 3, 5]


def test_byte_order_mark_is_skipped_but_counted_in_offsets() -> None:
    data = b"\xef\xbb\xbfa,b\n1,2\n"
    assert read(data, ["a", "b"], True).offsets == [7]
    headerless = read(b"\xef\xbb\xbf1,2\n3,4\n", ["a", "b"])
    assert headerless.rows == [("1", "2"), ("3", "4")]
    assert headerless.offsets == [3, 7]
    assert read_header(io.BytesIO(data), "f") == ["a", "b"]


@pytest.mark.parametrize("block_bytes", [1, 2, 5, 4 << 20])
def test_byte_order_mark_inside_the_file_is_data(block_bytes: int) -> None:
    # pyarrow drops a BOM at the start of its input; a record that starts a block must keep it.
    data = b"x,y\n\xef\xbb\xbfa,b\n"
    result = read(data, ["p", "q"], block_bytes=block_bytes)
    assert result.rows == [("x", "y"), ("\ufeffa", "b")]


def test_last_record_without_newline() -> None:
    assert read(b"a,b\n1,2\n3,4", ["a", "b"], True).rows == [("1", "2"), ("3", "4")]
    assert read(b"3,4\r", ["a", "b"]).rows == [("3", "4")]


@pytest.mark.parametrize("block_bytes", [1, 2, 3, 4 << 20])
def test_trailing_blank_lines_are_ignored_and_inner_ones_are_invalid(block_bytes: int) -> None:
    data = b"1,2\n\n3,4\r\n\r\n\n\r\n"
    result = read(data, ["a", "b"], block_bytes=block_bytes)
    assert result.rows == [("1", "2"), ("3", "4")]
    assert result.indices == [0, 2]
    assert result.invalid == [bad(2, 4, 1, "expected 2 fields, found 1")]
    assert count_records(io.BytesIO(data), False, block_bytes=block_bytes) == 3


@pytest.mark.parametrize("block_bytes", [1, 3, 4 << 20])
def test_blank_lines_of_a_single_column_file_are_empty_values(block_bytes: int) -> None:
    result = read(b"v\n1\n\n\r\n2\n\n\n", ["v"], True, block_bytes=block_bytes)
    assert result.rows == [("1",), ("",), ("",), ("2",)]
    assert result.offsets == [2, 4, 5, 7]
    assert result.lines == [2, 3, 4, 5]
    assert result.indices == [0, 1, 2, 3]


def test_memory_stays_bounded_on_a_bomb_of_empty_lines() -> None:
    """A zstd frame of a few hundred bytes may hold millions of empty lines, held back until a record
    follows (they might be trailing lines): held at a bit each, and released a bounded number at a time,
    each still an invalid record in its place."""
    lines = 1_000_000
    raw = zstandard.ZstdCompressor().compress(b"a,b\n" + b"\r\n" * 10 + b"\n" * lines + b"1,2\n")
    first: list[InvalidRecord] = []
    last: InvalidRecord | None = None
    rows = count = 0
    tracemalloc.start()
    try:
        with open_decompressed(io.BytesIO(raw), "bomb.csv.zst") as stream:
            for chunk in read_chunks(stream, "bomb", ["a", "b"], True, block_bytes=64 << 10):
                rows += chunk.batch.num_rows
                count += len(chunk.invalid)
                first.extend(chunk.invalid[: 2 - len(first)])
                last = chunk.invalid[-1] if chunk.invalid else last
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 1 and count == lines + 10 and len(raw) < 1_000
    reason = "expected 2 fields, found 1"
    assert first == [InvalidRecord("bomb", 2, 4, 0, reason), InvalidRecord("bomb", 3, 6, 1, reason)]
    assert last == InvalidRecord("bomb", 11 + lines, 24 + lines - 1, 9 + lines, reason)
    assert peak < 32 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_a_run_of_empty_lines_is_held_in_memory_that_does_not_grow_with_it() -> None:
    """Held at a bit each, the run grew with the bomb: 10 GB of line breaks (a few hundred kilobytes of
    zstd) held 1.25 GB in the job reading them, 40 million held 10 MiB. Lines alike are a length and a
    count; runs of mixed ones, and the records after a run, read as before (the tests of blank lines
    above)."""
    lines = 40_000_000
    raw = zstandard.ZstdCompressor().compress(b"a,b\n1,2\n" + b"\r\n" * 3 + b"\n" * lines)
    records = 0
    tracemalloc.start()
    try:
        with open_decompressed(io.BytesIO(raw), "bomb.csv.zst") as stream:
            for block in split_blocks(stream, True, 64 << 10, 102_400):
                records += len(block.indices)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert records == 1  # the empty lines are trailing lines, passed over
    assert peak < 5 << 20, f"peak {peak / 2**20:.1f} MiB"


def _read_peak(data: bytes, names: list[str], block_bytes: int) -> tuple[int, list[InvalidRecord], int]:
    """Rows, the first and last invalid records, and the peak traced memory of reading ``data``."""
    stream = io.BytesIO(data)
    rows, ends = 0, []
    tracemalloc.start()
    try:
        for chunk in read_chunks(stream, "f", names, True, block_bytes=block_bytes):
            rows += chunk.batch.num_rows
            if len(chunk.invalid):
                ends = [ends[0] if ends else chunk.invalid[0], chunk.invalid[-1]]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return rows, ends, peak


def test_invalid_records_cost_no_more_memory_than_valid_ones() -> None:
    """Blocks full of short invalid records ("x" for three columns) held a Python object and a reason
    string each: 2 bytes of input cost 500, and 15 seconds of CPU per 4 MiB block. As arrays they cost
    what valid records of the same size do: a bounded multiple of the block size."""
    block = 1 << 20
    lines = 2 * block  # four blocks of two-byte records
    count, ends, peak = _read_peak(b"a,b,c\n" + b"x\n" * lines, ["a", "b", "c"], block)
    reason = "expected 3 fields, found 1"
    assert count == 0
    assert ends == [
        InvalidRecord("f", 2, 6, 0, reason),
        InvalidRecord("f", lines + 1, 4 + 2 * lines, lines - 1, reason),
    ]
    valid, _, baseline = _read_peak(b"a\n" + b"1\n" * lines, ["a"], block)
    assert valid == lines
    assert peak < 1.5 * baseline, f"peak {peak / 2**20:.1f} MiB, valid records {baseline / 2**20:.1f} MiB"
    assert peak < 16 * block, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    ("header", "record", "names"),
    [
        (b"a\n", b"1\n", ["a"]),
        (b"a,b\n", b"\n", ["a", "b"]),
        (b"a,b\n", b"\n\n\n\n\n\n\n1,2\n", ["a", "b"]),
        (b"a\n", b"\xff\n", ["a"]),
        (b"a\n", b'""\n', ["a"]),
        (b"a\n", b'"1\n2"\n', ["a"]),
    ],
    ids=["valid", "empty", "empty-between", "bad-utf8", "quoted", "multiline"],
)
def test_memory_is_bounded_by_the_block_size_whatever_the_record_length(
    header: bytes, record: bytes, names: list[str]
) -> None:
    """Each record cost five int64 arrays while its block was found, more while it was parsed, and the
    stream was read two blocks ahead: records of a byte or two cost over a hundred times the block size. A
    block now holds at most one record per RECORD_BYTES of it, and finding them keeps an int32 each."""
    block = 1 << 20
    data = header + record * (4 * block // len(record))
    _, _, peak = _read_peak(data, names, block)
    assert peak < 20 * block, f"peak {peak / block:.1f} blocks"


def test_quote_heavy_blocks_cost_what_plain_ones_do() -> None:
    """A block of long runs of quotes in unquoted fields (nearly a quote per byte, two of them out of
    place per record) cost 17 times its size: the positions of every quote were kept, and each step over
    them made arrays of 8 bytes per quote. Found a segment at a time, quotes cost about what plain text
    does: a small multiple of the block."""
    block = 1 << 20
    count = block // 64 - 1  # records of 64 bytes: one block with the header
    names = ["a", "b", "c"]
    quoted, _, peak = _read_peak(b"a,b,c\n" + (b"1,a" + b'""' * 28 + b"bc,3\n") * count, names, block)
    plain, _, baseline = _read_peak(b"a,b,c\n" + (b"1,a" + b"x" * 56 + b"bc,3\n") * count, names, block)
    assert quoted == plain == count
    assert peak < 4 * block, f"peak {peak / block:.1f} blocks"
    assert peak < baseline + block, f"peak {peak / block:.1f} blocks, plain text {baseline / block:.1f}"


def _python_calls(data: bytes, names: list[str]) -> int:
    """The Python function calls made on this thread while reading ``data`` into chunks."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        for _ in read_chunks(io.BytesIO(data), "f", names, True):
            pass
    finally:
        sys.setprofile(None)
    return calls


def test_records_of_bad_utf8_cost_no_python_call_each() -> None:
    """Bad sequences were found by a decoder whose error handler, a Python function, was called once per
    sequence: seconds for a block of short records each holding a bad byte (and before that, decoding again
    after each error was quadratic). Found by numpy over the block's bytes, they cost a few calls a block."""
    reason = (
        "invalid UTF-8 at byte 2 of the record (0xff: a file in Latin-1 or Windows-1252 must be converted"
    )
    counted = []
    for lines in (20_000, 40_000):
        data = b"a,b\n" + b"1,\xff\n" * lines + b"2,\xc3\xa9\n"
        result = read(data, ["a", "b"], True)
        assert result.rows == [("2", "é")]
        assert len(result.invalid) == lines
        assert result.invalid[0] == bad(2, 4, 0, reason + ", e.g. iconv -f WINDOWS-1252 -t UTF-8)")
        assert result.invalid[-1].offset == 4 + 4 * (lines - 1)
        counted.append(_python_calls(data, ["a", "b"]))
    assert counted[1] - counted[0] < 1_000, counted


@pytest.mark.parametrize("data", [b"", b"a,b\n", b"a,b", b"\xef\xbb\xbfa,b\r\n", b"a,b\n\n\n"])
def test_files_without_records(data: bytes) -> None:
    assert read(data, ["a", "b"], True).chunks == 0
    assert count_records(io.BytesIO(data), True) == 0


def test_read_header() -> None:
    assert read_header(io.BytesIO(b""), "f") == []
    assert read_header(io.BytesIO(b'"a,1",b\r\n1,2\n'), "f") == ["a,1", "b"]
    assert read_header(io.BytesIO(b'"multi\nline",b'), "f") == ["multi\nline", "b"]
    # The header of a Windows-1252 file was told "not valid UTF-8 (byte 3)" without the advice its records
    # get.
    with pytest.raises(DataError) as refused:
        read_header(io.BytesIO(b"caf\xe9,y\n1,2\n"), "s3://b/k.csv")
    assert refused.value.message == (
        "s3://b/k.csv: the header line is not valid UTF-8 at byte 3 (0xe9: a file in Latin-1 or "
        "Windows-1252 must be converted, e.g. iconv -f WINDOWS-1252 -t UTF-8)"
    )
    with pytest.raises(DataError, match=r"f: the header line is 300 bytes \(limit 100\)"):
        read_header(io.BytesIO(b"x" * 300 + b"\n1\n"), "f", max_record_bytes=100)


def test_read_header_names_files_of_another_encoding_or_line_ending() -> None:
    for data in ("a,b\n1,2\n".encode("utf-16"), "a,b\n1,2\n".encode("utf-16-le")):
        with pytest.raises(DataError, match=r"^f: the file looks UTF-16 encoded .*iconv -f UTF-16 -t UTF-8$"):
            read_header(io.BytesIO(data), "f")
    # Other formats' NUL bytes were taken for UTF-16, with the advice to convert the file with iconv.
    parquet = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2], "y": [0, 1]}), parquet)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        member = tarfile.TarInfo("data.csv")
        member.size = 8
        tar.addfile(member, io.BytesIO(b"a,b\n1,2\n"))
    for data, kind, advice in [
        (parquet.getvalue(), "a Parquet file", "export the data as CSV"),
        (archive.getvalue(), "a tar archive", "extract its files"),
    ]:
        with pytest.raises(DataError, match=rf"^f: the file is {kind}, not CSV text: .*; {advice}$"):
            read_header(io.BytesIO(data), "f")
    with pytest.raises(DataError, match=r"^f: the file holds binary data \(NUL bytes in its first line\)"):
        read_header(io.BytesIO(b"a,b\x00\x00\x00\x00c\n1,2,3\n"), "f")
    # Classic Mac OS line endings: no record ever ends, so the header would be the whole file.
    for size in (3, 70_000):
        data = b"a,b\r" + b"1,2\r" * size
        with pytest.raises(DataError, match=r"^f: its lines end with a carriage return alone"):
            read_header(io.BytesIO(data), "f")
    # A file compressed twice (a .gz of a .gz, a .gz of a .zst) was called classic Mac OS line endings
    # when the inner compressed bytes held a CR and no LF; binary data with a CR is binary data.
    csv_text = b"a,b\n" + b"1,2\n" * 50
    for inner, codec in [(gzip.compress(csv_text, mtime=0), "gzip"), (zstandard.compress(csv_text), "zstd")]:
        stream = open_decompressed(io.BytesIO(gzip.compress(inner)), "k.csv.gz")
        with stream, pytest.raises(DataError) as refused:
            read_header(stream, "k.csv.gz")
        assert refused.value.message == (
            f"k.csv.gz: the file is compressed twice ({codec} data inside its compression), not CSV text: "
            "emrml reads CSV files, plain or compressed once; decompress it once and read that"
        )
    with pytest.raises(DataError, match=r"^f: the file holds binary data \(NUL bytes in its first line\)"):
        read_header(io.BytesIO(b"\x01\x02\r\x00\x00\x03\r\x00"), "f")
    # Without a header, a first record that is too long or not UTF-8 is the reader's to report.
    assert read_header(io.BytesIO(b"x" * 300 + b"\n1\n"), "f", max_record_bytes=100, strict=False) == []
    assert read_header(io.BytesIO(b"a,\xff\n1,2\n"), "f", strict=False) == []
    # The lines a header check reads are replayed whole: long files keep their bytes.
    long = b"a,b\r\n" + b"1,2\r\n" * 40_000
    header, again = read_header_again(io.BytesIO(long), "f")
    assert header == ["a", "b"] and again.read() == long
