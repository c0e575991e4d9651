"""Compressed inputs: detection, streaming decompression of every codec, and errors naming the file."""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import random
import shutil
import struct
import subprocess
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import cramjam
import lzallright
import pytest
import zstandard
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from emrml.errors import DataError, ReadError
from emrml.storage.codecs import CODECS, HEAD_BYTES, codec_of, open_decompressed
from emrml.storage.locations import open_binary

LZOP_MAGIC = b"\x89LZO\x00\r\n\x1a\n"
F_ADLER32_D, F_ADLER32_C, F_H_EXTRA_FIELD = 0x1, 0x2, 0x40
F_CRC32_D, F_CRC32_C, F_MULTIPART, F_H_FILTER, F_H_CRC32 = 0x100, 0x200, 0x400, 0x800, 0x1000


def lzop_bytes(
    data: bytes,
    *,
    flags: int = F_ADLER32_D,
    method: int = 1,
    block: int = 256 * 1024,
    version: int = 0x1040,
    lzop_filter: int = 0,
    extra: bytes | None = None,
) -> bytes:
    """An lzop file as lzop 1.04 writes it (see emrml.storage.framing.lzop_blocks for the layout)."""
    header = bytearray(struct.pack(">HH", version, 0x20A0))
    if version >= 0x0940:
        header += struct.pack(">H", 0x0940)
    header += bytes([method])
    if version >= 0x0940:
        header += bytes([5])
    header += struct.pack(">I", flags | (F_H_EXTRA_FIELD if extra is not None else 0))
    if lzop_filter:
        header += struct.pack(">I", lzop_filter)
    header += struct.pack(">II", 0o100644, 1_700_000_000)
    if version >= 0x0940:
        header += struct.pack(">I", 0)
    header += bytes([8]) + b"data.csv"
    checksum = zlib.crc32 if flags & F_H_CRC32 else zlib.adler32
    out = bytearray(LZOP_MAGIC) + header + struct.pack(">I", checksum(header))
    if extra is not None:
        field = struct.pack(">I", len(extra)) + extra
        out += field + struct.pack(">I", checksum(field))
    compressor = lzallright.LZOCompressor()
    for start in range(0, len(data), block):
        piece = data[start : start + block]
        packed = compressor.compress(piece)
        stored = len(packed) >= len(piece)
        if stored:
            packed = piece
        out += struct.pack(">II", len(piece), len(packed))
        if flags & F_ADLER32_D:
            out += struct.pack(">I", zlib.adler32(piece))
        if flags & F_CRC32_D:
            out += struct.pack(">I", zlib.crc32(piece))
        if flags & F_ADLER32_C and not stored:
            out += struct.pack(">I", zlib.adler32(packed))
        if flags & F_CRC32_C and not stored:
            out += struct.pack(">I", zlib.crc32(packed))
        out += packed
    return bytes(out + b"\0\0\0\0")


def hadoop_snappy_bytes(data: bytes, block: int = 256 * 1024, piece: int = 64 * 1024) -> bytes:
    """Hadoop's SnappyCodec block format, several pieces per block."""
    out = bytearray()
    for start in range(0, len(data), block):
        chunk = data[start : start + block]
        out += struct.pack(">I", len(chunk))
        for offset in range(0, len(chunk), piece):
            raw = bytes(cramjam.snappy.compress_raw(chunk[offset : offset + piece]))
            out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


COMPRESSORS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "plain": ("data.csv", lambda data: data),
    "gzip": ("data.csv.gz", lambda data: gzip.compress(data)),
    "bzip2": ("data.csv.bz2", lambda data: bz2.compress(data)),
    "zstd": ("data.csv.zst", lambda data: zstandard.ZstdCompressor().compress(data)),
    "snappy": ("data.csv.snappy", lambda data: bytes(cramjam.snappy.compress(data))),
    "hadoop-snappy": ("data.csv.snappy", hadoop_snappy_bytes),
    "lzo": ("data.csv.lzo", lzop_bytes),
}
CODEC_NAMES = {"plain": "none", "hadoop-snappy": "snappy"}


@pytest.fixture(scope="module")
def sms(shared_datasets: Path) -> bytes:
    return (shared_datasets / "sms_spam" / "data.csv").read_bytes()


def read_all(stream: BinaryIO, size: int = 1000) -> bytes:
    parts = []
    while chunk := stream.read(size):
        assert len(chunk) <= size
        parts.append(chunk)
    return b"".join(parts)


def decompress(data: bytes, name: str, size: int = 4096) -> bytes:
    with open_decompressed(io.BytesIO(data), name) as stream:
        return read_all(stream, size)


class Unseekable(io.RawIOBase):
    """A pipe-like source: no seek, short reads."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.closed_by_reader = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._data.read(min(len(buffer), 777))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.closed_by_reader = True
        super().close()


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_round_trip_of_a_real_dataset_file(kind: str, sms: bytes, tmp_path: Path) -> None:
    name, compress = COMPRESSORS[kind]
    path = tmp_path / name
    path.write_bytes(compress(sms))
    with open_binary(str(path)) as raw:
        head = raw.read(HEAD_BYTES)
    assert codec_of(name, head) == CODEC_NAMES.get(kind, kind)
    with open_decompressed(open_binary(str(path)), name) as stream:
        assert read_all(stream, 1000) == sms


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_unseekable_source_is_replayed_and_closed(kind: str, sms: bytes) -> None:
    name, compress = COMPRESSORS[kind]
    source = Unseekable(compress(sms[:50_000]))
    stream = open_decompressed(source, name)  # type: ignore[arg-type]
    assert read_all(stream, 333) == sms[:50_000]
    stream.close()
    assert source.closed_by_reader


def test_codecs_constant_lists_every_codec_detected() -> None:
    detected = {
        codec_of(name, compress(b"a,b\n" * 100)[:HEAD_BYTES]) for name, compress in COMPRESSORS.values()
    }
    assert detected == set(CODECS)


def test_multi_member_gzip_reads_every_member(sms: bytes) -> None:
    members = gzip.compress(sms[:1000]) + gzip.compress(b"") + gzip.compress(sms[1000:])
    assert decompress(members, "part.gz", 100) == sms
    # Zero padding after the last member is what some tape/block writers leave; gzip -d accepts it too.
    assert decompress(members + bytes(512), "part.gz") == sms


def test_multi_stream_bzip2(sms: bytes) -> None:
    assert decompress(bz2.compress(sms[:7]) + bz2.compress(sms[7:]), "x.bz2") == sms


def test_concatenated_and_skippable_zstd_frames(sms: bytes) -> None:
    plain = zstandard.ZstdCompressor(level=3)
    checked = zstandard.ZstdCompressor(write_checksum=True, write_content_size=False)
    skippable = struct.pack("<II", 0x184D2A5E, 5) + b"notes"
    streamed = io.BytesIO()
    with zstandard.ZstdCompressor(level=1).stream_writer(streamed, closefd=False) as writer:
        for start in range(0, len(sms), 10_000):
            writer.write(sms[start : start + 10_000])
    frames = skippable + plain.compress(sms[:300]) + checked.compress(sms[300:900]) + skippable
    frames += streamed.getvalue()
    assert codec_of("x.csv", skippable) == "zstd"
    assert decompress(frames, "x.zst", 999) == sms[:900] + sms


def test_snappy_framing_chunks_and_concatenated_streams(sms: bytes) -> None:
    incompressible = random.Random(7).randbytes(200_000)  # stored as uncompressed (0x01) chunks
    padding = b"\xfe\x03\x00\x00\x00\x00\x00"
    skippable = b"\x80\x02\x00\x00hi"
    stream = (
        bytes(cramjam.snappy.compress(sms))
        + padding
        + skippable
        + bytes(cramjam.snappy.compress(incompressible))
    )
    assert decompress(stream, "x.sz", 5000) == sms + incompressible


def test_snappy_bad_checksum_and_reserved_chunk_are_errors(sms: bytes) -> None:
    framed = bytearray(cramjam.snappy.compress(sms))
    framed[14] ^= 0x01  # masked CRC-32C of the first chunk
    with pytest.raises(DataError, match=r"file x\.snappy: corrupt snappy data \(.*checksum"):
        decompress(bytes(framed), "x.snappy")
    reserved = bytes(cramjam.snappy.compress(b"abc")) + b"\x02\x01\x00\x00z"
    with pytest.raises(DataError, match="reserved unskippable snappy chunk type 0x02"):
        decompress(reserved, "x.snappy")


def test_python_snappy_hadoop_format_single_piece_blocks(sms: bytes) -> None:
    # python-snappy's hadoop_snappy writes one piece per block; Hadoop itself may write several.
    assert decompress(hadoop_snappy_bytes(sms, block=65536, piece=65536), "x.snappy") == sms
    assert decompress(hadoop_snappy_bytes(sms, block=300_000, piece=50_000), "x.snappy") == sms


@pytest.mark.parametrize(
    "flags",
    [
        0,
        F_ADLER32_D,
        F_CRC32_D | F_H_CRC32,
        F_ADLER32_D | F_ADLER32_C | F_CRC32_D | F_CRC32_C,
    ],
)
def test_lzop_checksum_flags(flags: int, sms: bytes) -> None:
    noise = random.Random(3).randbytes(70_000)  # an incompressible block is stored, not compressed
    data = sms + noise + sms[:1000]
    assert decompress(lzop_bytes(data, flags=flags, block=64 * 1024), "x.lzo") == data


def test_lzop_header_variants(sms: bytes) -> None:
    assert decompress(lzop_bytes(sms, version=0x0930), "old.lzo") == sms
    assert decompress(lzop_bytes(sms, extra=b"extra field"), "extra.lzo") == sms
    assert decompress(lzop_bytes(sms, method=3), "best.lzo") == sms
    assert decompress(lzop_bytes(sms[:500]) + lzop_bytes(sms[500:]), "joined.lzo") == sms
    assert decompress(lzop_bytes(b""), "empty.lzo") == b""


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:], "lzop header checksum mismatch"),
        (lambda b: b + b"junk", "unexpected data after the end of the lzop stream"),
        (lambda b: b[:-4] + b"\xff\xff\xff\xff", "exceeds the lzop maximum"),
    ],
)
def test_lzop_damage(damage: Callable[[bytes], bytes], message: str, sms: bytes) -> None:
    with pytest.raises(DataError, match=f"file x.lzo: corrupt lzo data .*{message}"):
        decompress(damage(lzop_bytes(sms)), "x.lzo")


def test_lzop_data_checksum_mismatch_in_stored_and_compressed_blocks(sms: bytes) -> None:
    noise = random.Random(5).randbytes(1000)
    stored = bytearray(lzop_bytes(noise, flags=F_CRC32_D))
    stored[-10] ^= 0xFF
    with pytest.raises(DataError, match=r"crc32 checksum mismatch in an lzop block \(uncompressed data\)"):
        decompress(bytes(stored), "x.lzo")
    packed = bytearray(lzop_bytes(sms, flags=F_ADLER32_D | F_ADLER32_C))
    packed[-40] ^= 0x20
    with pytest.raises(DataError, match=r"adler32 checksum mismatch in an lzop block \(compressed data\)"):
        decompress(bytes(packed), "x.lzo")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": 0x1A}, "lzop method 26 is not supported"),
        ({"flags": F_ADLER32_D | F_H_FILTER, "lzop_filter": 1}, "lzop filter 1 is not supported"),
        ({"flags": F_ADLER32_D | F_MULTIPART}, "multipart lzop archives are not supported"),
    ],
)
def test_lzop_unsupported_features(options: dict[str, int], message: str) -> None:
    with pytest.raises(DataError, match=f"^file x.lzo: {message}"):
        decompress(lzop_bytes(b"a,b\n1,2\n", **options), "x.lzo")  # type: ignore[arg-type]


def _lzop_binary() -> str:
    binary = shutil.which("lzop")
    if binary is None:
        pytest.skip("lzop binary not installed")
    return binary


@pytest.mark.parametrize("options", [[], ["-9"], ["-1", "--crc32"], ["--no-checksum"]])
def test_files_written_by_the_lzop_tool(options: list[str], sms: bytes, tmp_path: Path) -> None:
    binary = _lzop_binary()
    source = tmp_path / "data.csv"
    source.write_bytes(sms)
    target = tmp_path / "data.csv.lzo"
    subprocess.run([binary, *options, "-o", str(target), str(source)], check=True)
    with open_decompressed(open_binary(str(target)), target.name) as stream:
        assert read_all(stream, 4096) == sms
    piped = subprocess.run([binary, "-c"], input=sms, capture_output=True, check=True).stdout
    assert decompress(piped, "stdin.lzo") == sms


def test_our_lzop_writer_matches_the_lzop_tool(sms: bytes, tmp_path: Path) -> None:
    """Cross-checks the layout the reader assumes: lzop itself accepts and extracts what the test writes."""
    binary = _lzop_binary()
    noise = random.Random(9).randbytes(100_000)
    for flags in (F_ADLER32_D, F_ADLER32_D | F_ADLER32_C | F_CRC32_D | F_CRC32_C | F_H_CRC32):
        path = tmp_path / "ours.lzo"
        path.write_bytes(lzop_bytes(sms + noise, flags=flags, extra=b"x"))
        extracted = subprocess.run([binary, "-dc", str(path)], capture_output=True, check=True).stdout
        assert extracted == sms + noise


@pytest.mark.parametrize("kind", sorted(set(COMPRESSORS) - {"plain"}))
def test_truncated_files_are_data_errors_naming_the_file(kind: str, sms: bytes) -> None:
    name, compress = COMPRESSORS[kind]
    compressed = compress(sms)
    for cut in (len(compressed) // 2, len(compressed) - 1):
        stream = open_decompressed(io.BytesIO(compressed[:cut]), f"in/{name}")
        with pytest.raises(DataError, match=f"^file in/{name}: compressed data is truncated") as caught:
            read_all(stream, 65536)
        # The stream stays failed: a decoder cannot resume after a gap.
        with pytest.raises(DataError) as again:
            stream.read(10)
        assert again.value is caught.value


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("x.gz", gzip.compress),
        ("x.bz2", bz2.compress),
        ("x.zst", zstandard.ZstdCompressor(write_checksum=True).compress),
    ],
)
def test_corrupt_library_streams_are_data_errors(
    name: str, compress: Callable[[bytes], bytes], sms: bytes
) -> None:
    damaged = bytearray(compress(sms))
    damaged[len(damaged) // 2] ^= 0x55
    with pytest.raises(DataError, match=f"^file {name}: corrupt ") as caught:
        decompress(bytes(damaged), name)
    assert not isinstance(caught.value, ReadError)  # the same bytes fail again: final


def test_read_failure_of_the_source_says_it_cannot_be_read() -> None:
    class Failing(io.RawIOBase):
        """A gzip header, then a disk error."""

        def __init__(self) -> None:
            self._header = memoryview(gzip.compress(b"x" * 100_000)[:30])

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if not self._header:
                raise OSError(errno.EIO, "Input/output error")
            size = min(len(buffer), len(self._header))
            buffer[:size] = self._header[:size]
            self._header = self._header[size:]
            return size

    # A failed read, not bad data: another attempt may succeed (the Spark engine retries it).
    with pytest.raises(ReadError, match=r"^file x\.gz: cannot be read \(Input/output error\)"):
        read_all(open_decompressed(Failing(), "x.gz"))  # type: ignore[arg-type]


@pytest.mark.parametrize("extension", ["xz", "7z", "zip", "lz4", "Z", "br", "lzma"])
def test_unsupported_compression_by_extension(extension: str) -> None:
    with pytest.raises(DataError) as caught:
        decompress(b"a,b\n1,2\n", f"data.csv.{extension}")
    assert caught.value.message == (
        f"file data.csv.{extension}: unsupported compression '{extension}' "
        "(supported: gzip, bzip2, zstd, snappy, lzo)"
    )


def test_unsupported_compression_by_signature() -> None:
    with pytest.raises(DataError, match=r"^file data\.csv: unsupported compression 'xz'"):
        decompress(lzma.compress(b"a,b\n"), "data.csv")
    with pytest.raises(DataError, match=r"^file part-0: unsupported compression 'zip'"):
        codec_of("part-0", b"PK\x03\x04\x14\x00\x00\x00")


def test_signature_wins_over_the_extension(sms: bytes) -> None:
    assert codec_of("data.csv", gzip.compress(b"x")[:HEAD_BYTES]) == "gzip"
    assert decompress(gzip.compress(sms), "data.csv") == sms
    assert decompress(zstandard.ZstdCompressor().compress(sms), "data.gz") == sms
    assert decompress(bz2.compress(sms), "data.lzo") == sms


@pytest.mark.parametrize(
    ("name", "codec", "expected"),
    [
        ("data.csv.gz", "gzip", "the gzip signature 1f 8b 08"),
        ("data.csv.GZ", "gzip", "the gzip signature 1f 8b 08"),
        ("data.bz2", "bzip2", "the bzip2 signature 'BZh'"),
        ("data.zst", "zstd", "the zstd frame signature 28 b5 2f fd"),
        ("data.snappy", "snappy", "the snappy framing signature"),
        ("data.lzo", "lzo", "the lzop signature"),
    ],
)
def test_extension_claims_a_codec_the_bytes_do_not_have(
    name: str, codec: str, expected: str, sms: bytes
) -> None:
    with pytest.raises(DataError) as caught:
        open_decompressed(io.BytesIO(sms), name)
    assert caught.value.message.startswith(
        f"file {name}: the name says {codec} but the data is not {codec} ("
    )
    assert expected in caught.value.message


def test_plain_text_that_starts_like_bzip2_stays_plain() -> None:
    text = b"BZh9,value\n1,2\n"
    assert codec_of("data.csv", text) == "none"
    assert decompress(text, "data.csv") == text


def test_empty_files_are_empty_streams_whatever_their_name() -> None:
    # A 0-byte file is a placeholder, not a broken stream: the reader reports "no records" for it.
    for name in ("empty.csv", "empty.gz", "empty.lzo", "empty.xz"):
        assert codec_of(name, b"") == "none"
        assert decompress(b"", name) == b""


def test_files_shorter_than_a_signature_are_truncated_not_mismatched() -> None:
    with pytest.raises(DataError, match=r"^file x\.gz: compressed data is truncated"):
        decompress(b"\x1f\x8b", "x.gz")
    with pytest.raises(DataError, match=r"^file x\.lzo: compressed data is truncated"):
        decompress(LZOP_MAGIC[:5], "x.lzo")


def _gzip_text(path: Path, sms: bytes, size: int) -> int:
    """Writes gzip members of the dataset until ``size`` bytes; returns the uncompressed size."""
    member = gzip.compress(sms, compresslevel=1)
    count = size // len(sms) + 1
    with path.open("wb") as out:
        for _ in range(count):
            out.write(member)
    return count * len(sms)


def _zeros(path: Path, compress: Callable[[bytes], bytes], size: int, piece: int) -> int:
    """Writes ``size`` zero bytes as repeated streams of ``piece`` bytes; returns the uncompressed size."""
    compressed = compress(bytes(piece))  # every piece is the same: compress once, repeat the stream
    with path.open("wb") as out:
        for _ in range(size // piece):
            out.write(compressed)
    return size // piece * piece


@pytest.mark.parametrize("kind", ["gzip-text", "gzip", "bzip2", "zstd", "snappy", "lzo"])
def test_memory_stays_bounded_on_50_mb_streams(kind: str, sms: bytes, tmp_path: Path) -> None:
    size = 48 << 20
    path = tmp_path / "big"
    if kind == "gzip-text":
        expected = _gzip_text(path, sms, size)
        name = "big.csv.gz"
    else:
        name, compress = {
            "gzip": ("big.gz", gzip.compress),
            "bzip2": ("big.bz2", bz2.compress),
            "zstd": ("big.zst", zstandard.ZstdCompressor().compress),
            "snappy": ("big.snappy", lambda data: bytes(cramjam.snappy.compress(data))),
            "lzo": ("big.lzo", lzop_bytes),
        }[kind]
        # Whole 48 MiB zero runs in one frame/member where the format allows: a decompression bomb.
        expected = _zeros(path, compress, size, size if kind in ("gzip", "zstd") else 8 << 20)
    total = 0
    tracemalloc.start()
    try:
        with open_decompressed(open_binary(str(path)), name) as stream:
            while chunk := stream.read(64 * 1024):
                total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == expected >= size
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=300_000) | st.builds(lambda n: b"abc,1\n" * n, st.integers(0, 60_000)),
    kind=st.sampled_from(sorted(COMPRESSORS)),
    read_size=st.integers(1, 70_000),
)
def test_any_bytes_round_trip_with_any_read_size(data: bytes, kind: str, read_size: int) -> None:
    name, compress = COMPRESSORS[kind]
    # Plain bytes that happen to start with a signature are (rightly) read as that codec.
    assume(kind != "plain" or codec_of(name, data[:HEAD_BYTES]) == "none")
    assert decompress(compress(data), name, read_size) == data


def test_a_gzip_file_with_a_damaged_byte_is_not_called_only_truncated() -> None:
    data = "\n".join(f"ham,message number {i} with some text {i * 7}" for i in range(3000)).encode()
    compressed = gzip.compress(data, mtime=0)
    messages = []
    # Damage in the last deflate blocks (the 8-byte trailer aside) can make zlib read on past the end.
    for position in range(len(compressed) - 300, len(compressed) - 8):
        damaged = bytearray(compressed)
        damaged[position] ^= 0xFF
        with pytest.raises(DataError) as caught:
            read_all(open_decompressed(io.BytesIO(bytes(damaged)), "x.gz"), 65536)
        messages.append(caught.value.message)
    ended = [m for m in messages if "unexpected end" in m]
    assert ended, "no damage ran past the end of the data: the test no longer covers it"
    assert all("truncated or corrupt" in m for m in ended), ended[0]


def test_zstd_frame_with_a_damaged_checksum_is_a_data_error(sms: bytes) -> None:
    # The blocks decode: only the frame's checksum (its last 4 bytes) tells that the bytes are wrong.
    damaged = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(sms))
    damaged[-1] ^= 0x01
    with pytest.raises(DataError, match=r"^file x\.zst: corrupt .*checksum"):
        decompress(bytes(damaged), "x.zst")
