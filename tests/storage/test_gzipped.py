"""The gzip compressor of emrml's outputs writes standard gzip: members in a row read as one file."""

from __future__ import annotations

import gzip
import zlib

from emrml.storage.gzipped import gzip_compressor


def _member(text: bytes) -> bytes:
    compressor = gzip_compressor()
    return compressor.compress(memoryview(text)) + compressor.flush()


def test_members_one_after_another_read_back_as_one_gzip_file() -> None:
    first = b"bestAnswer,score\n" + b"".join(b"1,%d.0E-1\n" % (i % 10) for i in range(5_000))
    second = "0,9.99E-1\nnon-ASCII: é ✓\n".encode()
    joined = _member(first) + _member(second)
    assert gzip.decompress(joined) == first + second
    assert zlib.decompressobj(31).decompress(_member(first)) == first  # one member: zlib's gzip reader
    assert len(_member(first)) < len(first) / 4  # compressed, not stored
