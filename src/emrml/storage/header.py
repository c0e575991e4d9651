"""The header of a CSV file: its first record, read before the records themselves (``storage.records``).

Reading the header is also where a file that is not CSV text is told apart, before any record of it is
counted invalid: another format by its signature (Parquet, Excel, a tar archive…), UTF-16 text, binary
data, and classic Mac OS line endings (a lone CR, which does not end a record) are refused by name with
advice. ``read_header_again`` hands back the bytes it read, so one opening of a file serves both the
header and the records.
"""

from __future__ import annotations

import csv
import io
from typing import Any, BinaryIO

from emrml.errors import DataError
from emrml.storage.boundaries import read_up_to, split_blocks
from emrml.storage.codecs import Replay, sniff_codec
from emrml.storage.invalid import not_utf8


def read_header(
    stream: BinaryIO, file: str, *, max_record_bytes: int = 102_400, strict: bool = True
) -> list[str]:
    """The fields of the first record of ``stream`` (BOM stripped); ``[]`` for an empty file.

    Consumes the stream. Raises ``DataError`` naming ``file`` when the file looks UTF-16 encoded, and when
    that record is too long or not UTF-8; with ``strict=False`` (the first record of a file without a
    header, which reading reports as an invalid record) returns ``[]`` for those two instead.
    """
    head = read_up_to(stream, 64 << 10)
    other = _other_format(head)
    if other is not None:
        advice = "extract its files" if other == "a tar archive" else "export the data as CSV"
        raise DataError(
            f"{file}: the file is {other}, not CSV text: emrml reads CSV files, plain or compressed; {advice}"
        )
    nested = sniff_codec(head)
    if nested is not None:
        # Read through the file's codec, which took off one compression: a second one inside (a .gz of a
        # .gz) was called classic Mac OS line endings, its bytes holding a CR and no LF.
        raise DataError(
            f"{file}: the file is compressed twice ({nested} data inside its compression), not CSV text: "
            "emrml reads CSV files, plain or compressed once; decompress it once and read that"
        )
    if b"\r" in head and b"\n" not in head and b"\x00" not in head:  # binary data is told below
        # Classic Mac OS (and Excel's "CSV (Macintosh)") ends lines with a lone CR: the file is one line.
        raise DataError(
            f"{file}: its lines end with a carriage return alone (classic Mac OS line endings), which does "
            "not end a record: the whole file reads as one line; convert the line endings to \\n or \\r\\n"
        )
    stream = io.BufferedReader(Replay(head, stream))  # type: ignore[arg-type,assignment]
    for block in split_blocks(stream, False, 64 << 10, max_record_bytes):
        if block.blanks is not None:
            return [""]
        if block.oversize is not None:
            if not strict:
                return []
            raise DataError(
                f"{file}: the header line is {block.oversize.size:,} bytes (limit {max_record_bytes:,})"
            )
        if len(block.starts):
            start, end = int(block.starts[0]), int(block.ends[0])
            line = block.buf[start:end]
            if line.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_ascii(line):
                # Excel's "Unicode text" and Windows tools write UTF-16: every other byte of ASCII is NUL.
                raise DataError(
                    f"{file}: the file looks UTF-16 encoded (a UTF-16 byte-order mark or NUL bytes in its "
                    "first line); emrml reads UTF-8 text: convert it, e.g. iconv -f UTF-16 -t UTF-8"
                )
            if b"\x00" in line:
                raise DataError(
                    f"{file}: the file holds binary data (NUL bytes in its first line), not CSV text: emrml "
                    "reads CSV files, plain or compressed"
                )
            if end - start > max_record_bytes:
                if not strict:
                    return []
                raise DataError(
                    f"{file}: the header line is {end - start:,} bytes (limit {max_record_bytes:,})"
                )
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                if not strict:
                    return []
                raise DataError(
                    f"{file}: the header line is not valid UTF-8 at byte {exc.start} "
                    f"{not_utf8(line[exc.start])}"
                ) from None
            return next(csv.reader(io.StringIO(text, newline="")), [""])
    return []


#: Files users point a datasource at by mistake, by their signature (offset, bytes): told by name, where
#: their NUL bytes would have them taken for UTF-16 text and the advice to convert them with iconv.
_OTHER_FORMATS = (
    (0, b"PAR1", "a Parquet file"),
    (0, b"ORC", "an ORC file"),
    (0, b"Obj\x01", "an Avro file"),
    (0, b"ARROW1", "an Arrow file"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls) or another OLE document"),
    (0, b"%PDF-", "a PDF document"),
    (257, b"ustar", "a tar archive"),
)


def _other_format(head: bytes) -> str | None:
    for offset, signature, name in _OTHER_FORMATS:
        if head[offset : offset + len(signature)] == signature:
            return name
    return None


def _utf16_ascii(line: bytes) -> bool:
    """Whether ``line`` reads as UTF-16 without a byte-order mark: an ASCII character is a NUL byte and
    the character, so at least half the pairs of bytes (a header is mostly ASCII) have a NUL, all on
    the same side."""
    sample = line[:4096]
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    return max(even, odd) * 4 >= len(sample) and min(even, odd) <= max(even, odd) // 10


def read_header_again(
    stream: BinaryIO, file: str, *, max_record_bytes: int = 102_400, strict: bool = True
) -> tuple[list[str], BinaryIO]:
    """:func:`read_header`, and a stream of all of ``stream``'s bytes again from the first: those read for
    the header, then the rest. One opening of a file then serves the header check and the reading (on S3,
    one GET instead of two)."""
    recording = _Recording(stream)
    header = read_header(
        recording,  # type: ignore[arg-type]
        file,
        max_record_bytes=max_record_bytes,
        strict=strict,
    )
    return header, io.BufferedReader(Replay(bytes(recording.seen), stream))  # type: ignore[return-value]


class _Recording(io.RawIOBase):
    """Reads ``stream`` and keeps every byte read."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self.stream = stream
        self.seen = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.seen += data
        return len(data)
