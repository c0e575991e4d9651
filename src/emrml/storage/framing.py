"""Container formats decoded a unit at a time for ``storage.codecs``: the zstd frame structure (checked,
so a truncated stream is an error), snappy's framing format and Hadoop's snappy block format, and lzop
files. Each yields decompressed blocks of bounded size, or raises ``Truncated``, ``Corrupt`` or
``Unsupported``, which ``storage.codecs`` turns into a ``DataError`` naming the file.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

import cramjam
import lzallright

#: Decompressed bytes produced per internal step, and the buffer size of the returned stream.
BLOCK_BYTES = 1 << 20
#: The largest block a snappy (Hadoop) or lzop stream may declare: lzop's own limit.
MAX_BLOCK_BYTES = 64 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SNAPPY_STREAM_ID = b"\xff\x06\x00\x00sNaPpY"
LZOP_MAGIC = b"\x89LZO\x00\r\n\x1a\n"


class Truncated(EOFError):
    """The compressed stream ended inside a unit (header, block, frame)."""


class Corrupt(ValueError):
    """The compressed stream breaks its format; the message says how."""


class Unsupported(Exception):
    """A valid stream that uses a feature we do not read; the message says which."""


def read_upto(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of ``stream``."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = read_upto(stream, size)
    if len(data) < size:
        raise Truncated
    return data


def _u32(stream: BinaryIO) -> int:
    return int.from_bytes(_read_exact(stream, 4), "big")


class ZstdFrameCheckedInput:
    """The compressed input of a zstd stream reader, following frame boundaries (RFC 8878, section 3).

    python-zstandard's stream reader returns a short result without error when its input ends inside a
    frame, so this walks the frame structure (headers, block headers, checksums; never the block contents)
    and raises ``Truncated`` when the input ends anywhere but between frames.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending = bytearray()  # bytes of the header being collected
        self._need = 4  # size of that header
        self._skip = 0  # payload bytes to pass over before the next header
        self._parse: Callable[[bytes], None] = self._frame_magic
        self._checksum = False

    def read(self, size: int) -> bytes:
        data = self._stream.read(size)
        if not data and not self._between_frames():
            raise Truncated
        self._follow(data)
        return data

    def _between_frames(self) -> bool:
        return self._parse == self._frame_magic and not self._pending and not self._skip

    def _follow(self, data: bytes) -> None:
        view = memoryview(data)
        while True:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                if self._skip:
                    return
            take = min(self._need - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < self._need:
                return
            header = bytes(self._pending)
            self._pending.clear()
            self._parse(header)

    def _expect(self, size: int, parse: Callable[[bytes], None], skip: int = 0) -> None:
        self._need, self._parse, self._skip = size, parse, skip

    def _frame_magic(self, header: bytes) -> None:
        magic = int.from_bytes(header, "little")
        if magic == 0xFD2FB528:
            self._expect(1, self._frame_descriptor)
        elif magic & 0xFFFFFFF0 == 0x184D2A50:
            self._expect(4, self._skippable_size)
        else:
            raise Corrupt(f"unknown zstd frame magic {header.hex()}")

    def _skippable_size(self, header: bytes) -> None:
        self._expect(4, self._frame_magic, skip=int.from_bytes(header, "little"))

    def _frame_descriptor(self, header: bytes) -> None:
        descriptor = header[0]
        if descriptor & 0x08:
            raise Corrupt("reserved bit set in a zstd frame header")
        content_size_flag = descriptor >> 6
        single_segment = bool(descriptor & 0x20)
        self._checksum = bool(descriptor & 0x04)
        rest = (
            (0 if single_segment else 1)  # window descriptor
            + (0, 1, 2, 4)[descriptor & 0x03]  # dictionary id
            + ((1 if single_segment else 0), 2, 4, 8)[content_size_flag]  # frame content size
        )
        self._expect(3, self._block_header, skip=rest)

    def _block_header(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        last, kind, size = value & 1, (value >> 1) & 3, value >> 3
        if kind == 3:
            raise Corrupt("reserved zstd block type")
        payload = 1 if kind == 1 else size  # an RLE block stores its byte once
        if last:
            self._expect(4, self._frame_magic, skip=payload + (4 if self._checksum else 0))
        else:
            self._expect(3, self._block_header, skip=payload)


def uvarint(data: bytes, position: int) -> int:
    """The little-endian base-128 length that starts every raw snappy block (at most 32 bits)."""
    value = shift = 0
    for byte in data[position : position + 5]:
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
    raise Corrupt("bad snappy block length")


def snappy_max_packed(size: int) -> int:
    """Snappy's bound on the compressed size of ``size`` bytes (``MaxCompressedLength``)."""
    return 32 + size + size // 6


def snappy_framed_blocks(stream: BinaryIO) -> Iterator[memoryview]:
    """Decompressed blocks of a snappy framing-format stream.

    Format (https://github.com/google/snappy/blob/main/framing_format.txt): a sequence of chunks, each a
    1-byte type, a 3-byte little-endian length, then that many bytes:

    * 0xff stream identifier, the bytes ``sNaPpY`` (it recurs where streams were concatenated);
    * 0x00 compressed data: a 4-byte masked CRC-32C of the uncompressed data, then one raw snappy block;
    * 0x01 uncompressed data: the same checksum, then the data as is;
    * 0x02-0x7f reserved and unskippable; 0x80-0xfd reserved and skippable; 0xfe padding.

    A data chunk holds at most 64 KiB uncompressed. Whole chunks are batched up to ``BLOCK_BYTES`` of output
    and handed, behind a stream identifier, to cramjam's framed decoder, which verifies the CRC-32C (the
    standard library has no CRC-32C) while memory stays bounded by the batch.
    """
    batch = bytearray(SNAPPY_STREAM_ID)
    pending = 0
    while header := read_upto(stream, 4):
        if len(header) < 4:
            raise Truncated
        kind = header[0]
        length = int.from_bytes(header[1:], "little")
        body = _read_exact(stream, length)
        if kind == 0xFF:
            if body != SNAPPY_STREAM_ID[4:]:
                raise Corrupt("bad snappy stream identifier")
        elif kind in (0x00, 0x01):
            if length < 4:
                raise Corrupt("snappy data chunk shorter than its checksum")
            size = length - 4 if kind == 0x01 else uvarint(body, 4)
            if size > 65536:
                raise Corrupt(f"snappy chunk of {size} bytes exceeds the 64 KiB limit")
            batch += header
            batch += body
            pending += size
            if pending >= BLOCK_BYTES:
                yield memoryview(cramjam.snappy.decompress(batch))
                del batch[len(SNAPPY_STREAM_ID) :]
                pending = 0
        elif kind < 0x80:
            raise Corrupt(f"reserved unskippable snappy chunk type 0x{kind:02x}")
    if len(batch) > len(SNAPPY_STREAM_ID):
        yield memoryview(cramjam.snappy.decompress(batch))


def hadoop_snappy_blocks(stream: BinaryIO) -> Iterator[memoryview]:
    """Decompressed blocks of Hadoop's snappy format (``SnappyCodec``, what Hadoop and Spark write).

    A sequence of blocks: a 4-byte big-endian uncompressed length, then one or more pieces, each a 4-byte
    big-endian compressed length and a raw snappy block, until the pieces add up to the uncompressed length.
    The format has no signature and no checksums.
    """
    while header := read_upto(stream, 4):
        if len(header) < 4:
            raise Truncated
        remaining = int.from_bytes(header, "big")
        if remaining > MAX_BLOCK_BYTES:
            raise Corrupt(f"Hadoop snappy block of {remaining} bytes exceeds {MAX_BLOCK_BYTES}")
        while remaining > 0:
            packed = _u32(stream)
            if packed > snappy_max_packed(remaining):
                raise Corrupt(f"Hadoop snappy piece of {packed} bytes for {remaining} bytes of data")
            piece = _read_exact(stream, packed)
            if uvarint(piece, 0) > remaining:
                raise Corrupt("Hadoop snappy piece larger than its block")
            data = cramjam.snappy.decompress_raw(piece)
            remaining -= len(data)
            yield memoryview(data)


# lzop flags (lzop's conf.h).
_F_ADLER32_D = 0x1
_F_ADLER32_C = 0x2
_F_H_EXTRA_FIELD = 0x40
_F_CRC32_D = 0x100
_F_CRC32_C = 0x200
_F_MULTIPART = 0x400
_F_H_FILTER = 0x800
_F_H_CRC32 = 0x1000
#: lzop 1.04 (2017), the latest release; the file format is unchanged since version 0x0940.
_LZOP_NEWEST = 0x1040
#: Methods lzop writes with LZO1X, which lzallright decompresses: -1..-6 (1), 15-bit (2), -7..-9 (3).
_LZOP_LZO1X_METHODS = frozenset({1, 2, 3})


def lzop_blocks(stream: BinaryIO) -> Iterator[bytes]:
    """Decompressed blocks of an lzop file; concatenated lzop files read as one stream, as ``lzop -d`` does.

    Written by hand because no maintained Python library reads the lzop container; lzallright supplies the
    LZO1X block decompressor. Layout (lzop.c, ``read_header`` and ``x_decompress``; integers big-endian):

    header: magic ``89 4c 5a 4f 00 0d 0a 1a 0a``, version (2 bytes), library version (2), version needed to
    extract (2, from version 0x0940), method (1), level (1, from 0x0940), flags (4), filter (4, when
    F_H_FILTER), mode (4), mtime low (4), mtime high (4, from 0x0940), name length (1) and name, then the
    adler32 (or crc32 with F_H_CRC32) of the header fields after the magic; with F_H_EXTRA_FIELD an extra
    field follows (length 4, data, checksum 4).

    blocks: uncompressed size (4; 0 ends the file), compressed size (4), then checksums as the flags ask:
    adler32 then crc32 of the uncompressed data (F_ADLER32_D, F_CRC32_D), adler32 then crc32 of the
    compressed data (F_ADLER32_C, F_CRC32_C; only for blocks that are compressed), then the data. A block
    whose compressed size equals its uncompressed size is stored as is.
    """
    magic = read_upto(stream, len(LZOP_MAGIC))
    while magic:
        if magic != LZOP_MAGIC:
            if LZOP_MAGIC.startswith(magic):
                raise Truncated
            raise Corrupt("unexpected data after the end of the lzop stream")
        flags = _lzop_header(stream)
        yield from _lzop_member_blocks(stream, flags)
        magic = read_upto(stream, len(LZOP_MAGIC))


def _lzop_header(stream: BinaryIO) -> int:
    """Reads the lzop header after the magic; returns its flags."""
    fields = bytearray()

    def field(size: int) -> int:
        data = _read_exact(stream, size)
        fields.extend(data)
        return int.from_bytes(data, "big")

    version = field(2)
    if version < 0x0900:
        raise Corrupt(f"lzop header version 0x{version:04x} is not a valid lzop version")
    field(2)  # LZO library version
    if version >= 0x0940 and field(2) > _LZOP_NEWEST:
        raise Unsupported("lzop file needs a newer lzop than 1.04 to extract")
    method = field(1)
    if version >= 0x0940:
        field(1)  # level
    flags = field(4)
    lzop_filter = field(4) if flags & _F_H_FILTER else 0
    field(4)  # mode
    field(4)  # mtime, low 32 bits
    if version >= 0x0940:
        field(4)  # mtime, high 32 bits
    field(field(1))  # original file name
    expected = zlib.crc32(fields) if flags & _F_H_CRC32 else zlib.adler32(fields)
    if _u32(stream) != expected:
        raise Corrupt("lzop header checksum mismatch")
    if flags & _F_H_EXTRA_FIELD:
        _skip_lzop_extra_field(stream, crc=bool(flags & _F_H_CRC32))
    if method not in _LZOP_LZO1X_METHODS:
        raise Unsupported(f"lzop method {method} is not supported (only LZO1X, methods 1-3)")
    if lzop_filter:
        raise Unsupported(f"lzop filter {lzop_filter} is not supported (compress without --filter)")
    if flags & _F_MULTIPART:
        raise Unsupported("multipart lzop archives are not supported")
    return flags


def _skip_lzop_extra_field(stream: BinaryIO, crc: bool) -> None:
    data = _read_exact(stream, 4)
    length = int.from_bytes(data, "big")
    checksum = zlib.crc32(data) if crc else zlib.adler32(data)
    while length:
        piece = _read_exact(stream, min(length, BLOCK_BYTES))
        checksum = zlib.crc32(piece, checksum) if crc else zlib.adler32(piece, checksum)
        length -= len(piece)
    if _u32(stream) != checksum:
        raise Corrupt("lzop extra field checksum mismatch")


def _lzop_member_blocks(stream: BinaryIO, flags: int) -> Iterator[bytes]:
    while size := _u32(stream):
        if size > MAX_BLOCK_BYTES:
            raise Corrupt(f"lzop block of {size} bytes exceeds the lzop maximum of {MAX_BLOCK_BYTES}")
        packed = _u32(stream)
        if not 0 < packed <= size:
            raise Corrupt(f"lzop block of {size} bytes claims {packed} compressed bytes")
        stored = packed == size
        data_adler = _u32(stream) if flags & _F_ADLER32_D else None
        data_crc = _u32(stream) if flags & _F_CRC32_D else None
        packed_adler = _u32(stream) if flags & _F_ADLER32_C and not stored else None
        packed_crc = _u32(stream) if flags & _F_CRC32_C and not stored else None
        data = _read_exact(stream, packed)
        _check(data, packed_adler, packed_crc, "compressed")
        if not stored:
            data = lzallright.LZOCompressor.decompress(data, size)
            if len(data) != size:
                raise Corrupt(f"lzop block decompressed to {len(data)} bytes instead of {size}")
        _check(data, data_adler, data_crc, "uncompressed")
        yield data


def _check(data: bytes, adler: int | None, crc: int | None, what: str) -> None:
    if adler is not None and zlib.adler32(data) != adler:
        raise Corrupt(f"adler32 checksum mismatch in an lzop block ({what} data)")
    if crc is not None and zlib.crc32(data) != crc:
        raise Corrupt(f"crc32 checksum mismatch in an lzop block ({what} data)")
