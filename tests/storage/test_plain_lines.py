"""Blocks of plain lines (no '"', no '\\r'): split without finding their records' positions, which the parser
derives from the fields it read. Everything read through them must be what the general scan gives."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from records_helpers import Read, read

from emrml.storage import boundaries
from emrml.storage.records import count_records

#: Plain bytes only, with the cases the general way handles: empty fields and lines, ragged rows, a byte
#: that is not UTF-8, a BOM inside the file, multi-byte characters.
_PLAIN = st.binary(min_size=0, max_size=6).map(
    lambda raw: bytes(b for b in raw if b not in b'"\r\n') or b""
) | st.sampled_from([b"", b"a", b"bb", b"\xff", "é€".encode(), boundaries.BOM + b"x", b" x "])


@st.composite
def _plain_files(draw: st.DrawFn) -> tuple[bytes, int, bool]:
    columns = draw(st.integers(1, 3))
    rows = draw(
        st.lists(
            st.one_of(
                st.lists(_PLAIN, min_size=columns, max_size=columns),
                st.lists(_PLAIN, min_size=1, max_size=4),
                st.just([b"x" * 50] * columns),  # past a small max_record_bytes
            ),
            max_size=30,
        )
    )
    data = b"".join(b",".join(fields) + b"\n" for fields in rows)
    if data and draw(st.booleans()):
        data = data[:-1]
    return data, columns, draw(st.booleans())


def _general(data: bytes, names: list[str], header: bool, **options: int) -> Read:
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(boundaries, "_plain_lines", lambda *args: None)
        return read(data, names, header, **options)


@settings(max_examples=300, deadline=None)
@given(
    file=_plain_files(),
    block_bytes=st.integers(1, 400),
    max_record_bytes=st.sampled_from([12, 40, 102_400]),
)
def test_plain_blocks_read_as_the_general_scan_does(
    file: tuple[bytes, int, bool], block_bytes: int, max_record_bytes: int
) -> None:
    data, columns, header = file
    names = [f"c{i}" for i in range(columns)]
    options = {"block_bytes": block_bytes, "max_record_bytes": max_record_bytes}
    expected = _general(data, names, header, **options)
    result = read(data, names, header, **options)
    assert (result.rows, result.offsets, result.indices, result.lines, result.invalid) == (
        expected.rows,
        expected.offsets,
        expected.indices,
        expected.lines,
        expected.invalid,
    )
    assert count_records(io.BytesIO(data), header, **options) == len(result.rows) + len(result.invalid)


def test_plain_blocks_come_without_positions_and_parse_into_them() -> None:
    # Records of 40 bytes or so: a block of 256 bytes holds up to 8 of them (one per RECORD_BYTES).
    data = b"a,b\n" + b"".join(b"%d,%s\n" % (i, b"x" * 36) for i in range(200))
    blocks = list(boundaries.split_blocks(io.BytesIO(data), True, 256, 100))
    plain = [block for block in blocks if block.plain]
    # The first block holds the header and the last ends the file: the general way; the others are plain.
    assert not blocks[0].plain and not blocks[-1].plain
    assert len(plain) == len(blocks) - 2
    assert all(block.positions is None for block in plain)
    result = read(data, ["a", "b"], True, block_bytes=256, max_record_bytes=100)
    assert result.rows == [(str(i), "x" * 36) for i in range(200)]
    assert result.offsets == [data.index(b"\n%d," % i) + 1 for i in range(200)]
    assert result.lines == list(range(2, 202))


def test_a_plain_block_with_an_invalid_record_is_read_the_general_way() -> None:
    lines = [b"%d,%s" % (i, b"x" * 40) for i in range(40)]
    lines[15] = b"15"  # one field: pyarrow refuses the block, whose positions are then found by the scan
    data = b"\n".join(lines) + b"\n"
    blocks = list(boundaries.split_blocks(io.BytesIO(data), False, 512, 100))
    assert blocks[1].plain and int(blocks[1].indices[0]) <= 15 <= int(blocks[1].indices[-1])
    result = read(data, ["a", "b"], False, block_bytes=512, max_record_bytes=100)
    assert [(r.line, r.offset, r.index, r.reason) for r in result.invalid] == [
        (16, data.index(b"\n15\n") + 1, 15, "expected 2 fields, found 1")
    ]
    assert len(result.rows) == 39 and result.lines[15] == 17
    assert result.offsets[15] == data.index(b"\n16,") + 1
