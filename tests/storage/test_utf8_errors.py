"""Where each line's first bad UTF-8 byte is, found vectorized (storage.invalid.utf8_errors)."""

from __future__ import annotations

import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from emrml.storage import invalid
from emrml.storage.invalid import utf8_errors

# Bytes at the edges of UTF-8's ranges (Unicode table 3-7), and whole characters of each length.
_PIECES = st.sampled_from(
    [
        b"a",
        b"\n",
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        # Overlong forms and code points past U+10FFFF, with continuation bytes.
        b"\xc1\xbf",
        b"\xf5\x80\x80\x80",
        # Second bytes just inside and outside the ranges of E0, ED, F0 and F4.
        *(
            b"\xe0\xa0",
            b"\xe0\x9f",
            b"\xed\x9f",
            b"\xed\xa0",
            b"\xf0\x90",
            b"\xf0\x8f",
            b"\xf4\x8f",
            b"\xf4\x90",
        ),
        *(bytes([byte]) for byte in (0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF)),
        *(bytes([byte]) for byte in (0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF)),
    ]
)


def _first_errors(data: bytes) -> list[int | None]:
    """Python's decoder, a line at a time: where each line's first error starts."""
    firsts: list[int | None] = []
    start = 0
    for line in data.split(b"\n"):
        try:
            line.decode("utf-8")
            firsts.append(None)
        except UnicodeDecodeError as error:
            firsts.append(start + error.start)
        start += len(line) + 1
    return firsts


@settings(max_examples=600, deadline=None)
@given(
    pieces=st.lists(_PIECES, max_size=40),
    segment=st.sampled_from([1, 2, 3, 5, 1 << 18]),
    sparse=st.sampled_from([0, 16, 1 << 30]),
)
def test_each_line_first_bad_byte_is_where_python_decoding_fails(
    pieces: list[bytes], segment: int, sparse: int
) -> None:
    data = b"".join(pieces)
    saved = invalid._UTF8_SEGMENT, invalid._SPARSE
    # Segments cut sequences at every place; every segment is looked at by its bytes past ASCII (0),
    # byte by byte (1 << 30), or as it comes.
    invalid._UTF8_SEGMENT, invalid._SPARSE = segment, sparse
    try:
        found = utf8_errors(np.frombuffer(data, dtype=np.uint8))
    finally:
        invalid._UTF8_SEGMENT, invalid._SPARSE = saved
    assert found.dtype == np.int64
    lines = np.searchsorted(np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10), found)
    firsts: list[int | None] = [None] * (data.count(b"\n") + 1)
    for line, position in zip(lines.tolist(), found.tolist(), strict=True):
        if firsts[line] is None:
            firsts[line] = position
    assert firsts == _first_errors(data)


def test_only_bytes_past_ascii_are_classified() -> None:
    """Every byte of a segment holding one past ASCII was classified, a few dozen numpy passes over it:
    three quarters of the time of reading a block with a bad byte. Only the bytes from 0x80 on can be
    errors or start a sequence, so only they are looked at: mostly ASCII text with a bad byte every
    kilobyte makes no array the size of a segment of it."""
    line = b"x" * 998 + b"\xff\n"
    data = line * 4096
    tracemalloc.start()
    try:
        found = utf8_errors(np.frombuffer(data, dtype=np.uint8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.tolist() == list(range(998, len(data), len(line)))
    assert peak < len(data) // 8, f"peak {peak:,} bytes for {len(data):,}"
