"""Compressed inputs: tell which codec a file uses and stream its decompressed bytes.

Codecs: ``none``, ``gzip``, ``bzip2``, ``zstd``, ``snappy`` (the framing format, or Hadoop's block format)
and ``lzo`` (lzop files). The codec comes from the file name's extension and from the leading bytes; when
they disagree the bytes win (a gzip file named ``.csv`` is read as gzip). Hadoop's snappy format carries no
signature, so it is recognised only in files named ``.snappy`` or ``.sz``. A 0-byte file is an empty stream
whatever its name: object stores and job outputs hold zero-byte placeholders, and an input without data is
then reported by the reader ("no records") instead of as a codec error.

Decompression streams about ``BLOCK_BYTES`` of output at a time (lzop and Hadoop snappy: one block of the
file, at most ``MAX_BLOCK_BYTES``), so memory stays bounded however large or compressible the file is.
Every failure while reading (truncated, corrupt, bad checksum) is a ``DataError`` naming the file. gzip,
bzip2 and zstd frames are the libraries' own; the zstd frame checks and the snappy and lzop containers
are read by ``storage.framing``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

import cramjam
import lzallright
import zstandard

from emrml.errors import DataError, ReadError
from emrml.storage.framing import (
    BLOCK_BYTES,
    LZOP_MAGIC,
    MAX_BLOCK_BYTES,
    SNAPPY_STREAM_ID,
    ZSTD_MAGIC,
    Corrupt,
    Unsupported,
    ZstdFrameCheckedInput,
    hadoop_snappy_blocks,
    lzop_blocks,
    read_upto,
    snappy_framed_blocks,
    snappy_max_packed,
    uvarint,
)

#: Codec names, as ``codec_of`` returns them.
CODECS = ("none", "gzip", "bzip2", "zstd", "snappy", "lzo")
#: How many leading bytes ``codec_of`` needs to recognise every signature.
HEAD_BYTES = 16

_SUPPORTED = "gzip, bzip2, zstd, snappy, lzo"
_EXTENSIONS = {
    "gz": "gzip",
    "gzip": "gzip",
    "bz2": "bzip2",
    "zst": "zstd",
    "zstd": "zstd",
    "snappy": "snappy",
    "sz": "snappy",
    "lzo": "lzo",
}
_UNSUPPORTED_EXTENSIONS = frozenset({"xz", "lzma", "7z", "zip", "lz4", "Z", "br"})

_GZIP_MAGIC = b"\x1f\x8b\x08"
_LONGEST_SIGNATURE = len(SNAPPY_STREAM_ID)
_EXPECTED = {
    "gzip": "the gzip signature 1f 8b 08",
    "bzip2": "the bzip2 signature 'BZh'",
    "zstd": "the zstd frame signature 28 b5 2f fd",
    "snappy": "the snappy framing signature ff 06 00 00 'sNaPpY' or a Hadoop snappy block header",
    "lzo": "the lzop signature 89 'LZO' 00 0d 0a 1a 0a",
}
_UNSUPPORTED_MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x1f\x9d", "Z"),
)


def codec_of(name: str, head: bytes) -> str:
    """The codec of the file ``name`` whose first bytes are ``head`` (give at least ``HEAD_BYTES``).

    Returns one of ``CODECS``. Raises ``DataError`` for a codec we do not read (by extension or signature),
    or when the extension names a codec whose signature the bytes do not carry.
    """
    if not head:
        return "none"
    sniffed = sniff_codec(head)
    if sniffed is not None and sniffed not in CODECS:
        raise _unsupported(name, sniffed)
    if sniffed is not None:
        return sniffed
    extension = _extension(name)
    if extension in _UNSUPPORTED_EXTENSIONS:
        raise _unsupported(name, extension)
    named = _EXTENSIONS.get(extension.lower())
    if named is None:
        return "none"
    # A file too short to hold a signature cannot be told apart; its decoder reports the truncation.
    if len(head) < _LONGEST_SIGNATURE:
        return named
    if named == "snappy" and _looks_hadoop_snappy(head):
        return named
    raise DataError(
        f"file {name}: the name says {named} but the data is not {named} (expected {_EXPECTED[named]})"
    )


def open_decompressed(raw: BinaryIO, name: str) -> BinaryIO:
    """A buffered stream of the decompressed bytes of ``raw``, the contents of the file ``name``.

    Takes ownership of ``raw``: closing the result closes it. Plain files come back as they are (rewound
    when seekable). Reads raise ``DataError`` naming the file for truncated or corrupt data.
    """
    head, stream = _peek(raw)
    codec = codec_of(name, head)
    if codec == "none":
        return stream
    read, close = _decoder(codec, stream, head)
    reader = _DecodingReader(read, close, name, codec)
    return io.BufferedReader(reader, buffer_size=BLOCK_BYTES)  # type: ignore[return-value]


def sniff_codec(head: bytes) -> str | None:
    """The compression whose signature starts ``head``, supported or not; None for none."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    # "BZh", the block size digit, then the magic of the first block or of the end of an empty stream.
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90"):
        return "bzip2"
    # A zstd frame, or a skippable frame (0x184D2A50-5F) such as the one pzstd writes first.
    if head.startswith(ZSTD_MAGIC) or (head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50):
        return "zstd"
    if head.startswith(SNAPPY_STREAM_ID):
        return "snappy"
    if head.startswith(LZOP_MAGIC):
        return "lzo"
    for magic, codec in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return codec
    return None


def _extension(name: str) -> str:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    return extension if dot and stem else ""


def _unsupported(name: str, codec: str) -> DataError:
    return DataError(f"file {name}: unsupported compression '{codec}' (supported: {_SUPPORTED})")


def _looks_hadoop_snappy(head: bytes) -> bool:
    """Whether ``head`` starts like Hadoop's snappy block format (see ``hadoop_snappy_blocks``)."""
    block = int.from_bytes(head[0:4], "big")
    packed = int.from_bytes(head[4:8], "big")
    try:
        first = uvarint(head, 8)
    except Corrupt:
        return False
    return 0 < block <= MAX_BLOCK_BYTES and 0 < packed <= snappy_max_packed(block) and 0 < first <= block


_DECODER_ERRORS = (
    EOFError,
    OSError,
    zlib.error,
    zstandard.ZstdError,
    cramjam.DecompressionError,
    lzallright.LZOError,
    Corrupt,
    Unsupported,
)


def _data_error(exc: BaseException, name: str, codec: str) -> DataError:
    if isinstance(exc, EOFError):
        # A flipped bit can turn deflate data into a longer stream that runs past the end: zlib cannot tell
        # that from a cut file.
        damage = "truncated or corrupt" if codec == "gzip" else "truncated"
        return DataError(f"file {name}: compressed data is {damage} (unexpected end of {codec} stream)")
    if isinstance(exc, Unsupported):
        return DataError(f"file {name}: {exc}")
    # Library decoders signal bad data with OSError subclasses that carry no errno (BadGzipFile, bz2's
    # "Invalid data stream"); an errno means the underlying read itself failed: another read may succeed.
    if isinstance(exc, OSError) and exc.errno is not None:
        return ReadError(f"file {name}: cannot be read ({exc.strerror or exc})")
    if isinstance(exc, lzallright.LZOError):
        return DataError(f"file {name}: corrupt {codec} data (LZO block does not decompress: {exc})")
    return DataError(f"file {name}: corrupt {codec} data ({exc})")


class _DecodingReader(io.RawIOBase):
    """Raw stream over a decoder's ``read(n)``; decoder failures become ``DataError`` naming the file.

    After a failure every later read raises the same error: a decoder cannot resume mid-stream.
    """

    def __init__(
        self, read: Callable[[int], bytes | memoryview], close: Callable[[], None], name: str, codec: str
    ):
        super().__init__()
        self._read = read
        self._close = close
        self._name = name
        self._codec = codec
        self._failure: DataError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._failure is not None:
            raise self._failure
        try:
            data = self._read(len(buffer))
        except _DECODER_ERRORS as exc:
            self._failure = _data_error(exc, self._name, self._codec)
            raise self._failure from exc
        size = len(data)
        buffer[:size] = data
        return size

    def close(self) -> None:
        if not self.closed:
            try:
                self._close()
            finally:
                super().close()


def _decoder(
    codec: str, stream: BinaryIO, head: bytes
) -> tuple[Callable[[int], bytes | memoryview], Callable[[], None]]:
    """``(read, close)`` for ``codec`` over ``stream``; ``close`` also closes ``stream``."""
    if codec == "gzip":
        # GzipFile reads concatenated members (and zero padding after them) as one stream.
        gz = gzip.GzipFile(fileobj=stream, mode="rb")
        return gz.read, _closing(gz, stream)
    if codec == "bzip2":
        bz = bz2.BZ2File(stream)  # reads concatenated streams
        return bz.read, _closing(bz, stream)
    if codec == "zstd":
        tracked = ZstdFrameCheckedInput(stream)
        zst = zstandard.ZstdDecompressor().stream_reader(
            tracked, read_size=BLOCK_BYTES, read_across_frames=True, closefd=False
        )
        return zst.read, _closing(zst, stream)
    if codec == "snappy":
        framed = head.startswith(SNAPPY_STREAM_ID)
        blocks = snappy_framed_blocks(stream) if framed else hadoop_snappy_blocks(stream)
        return _BlockReader(blocks).read, stream.close
    return _BlockReader(lzop_blocks(stream)).read, stream.close


def _closing(decoder: io.IOBase | zstandard.ZstdDecompressionReader, stream: BinaryIO) -> Callable[[], None]:
    def close() -> None:
        try:
            decoder.close()
        finally:
            stream.close()

    return close


class _BlockReader:
    """``read(n)`` over an iterator of decompressed blocks, each bounded in size by its format."""

    def __init__(self, blocks: Iterator[bytes | memoryview]) -> None:
        self._blocks = blocks
        self._view = memoryview(b"")

    def read(self, size: int) -> memoryview:
        while not self._view:
            block = next(self._blocks, None)
            if block is None:
                return self._view
            self._view = memoryview(block)
        out, self._view = self._view[:size], self._view[size:]
        return out


def _peek(raw: BinaryIO) -> tuple[bytes, BinaryIO]:
    """The first ``HEAD_BYTES`` of ``raw`` and a stream that still yields them."""
    if raw.seekable():
        start = raw.tell()
        head = read_upto(raw, HEAD_BYTES)
        raw.seek(start)
        return head, raw
    head = read_upto(raw, HEAD_BYTES)
    return head, io.BufferedReader(Replay(head, raw), buffer_size=BLOCK_BYTES)  # type: ignore[return-value]


class Replay(io.RawIOBase):
    """``head`` again, then the rest of the non-seekable ``raw`` it was read from."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:  # straight into the caller's buffer: no copy held under the GIL
            return readinto(buffer)
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._raw.close()
            finally:
                super().close()
