"""Helpers shared by the streaming CSV records' tests (test_records_reading,
test_records_invalid_and_streaming): read a file whole, and an invalid record of mem://data.csv."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from emrml.storage.invalid import InvalidRecord
from emrml.storage.records import read_chunks


@dataclass
class Read:
    rows: list[tuple[str, ...]]
    offsets: list[int]
    indices: list[int]
    lines: list[int]
    invalid: list[InvalidRecord]
    chunks: int


def read(data: bytes, names: list[str], has_header: bool = False, **options: int) -> Read:
    result = Read([], [], [], [], [], 0)
    for chunk in read_chunks(io.BytesIO(data), "mem://data.csv", names, has_header, **options):
        assert chunk.file == "mem://data.csv"
        assert chunk.batch.schema.names == names
        assert len(chunk.offsets) == len(chunk.indices) == len(chunk.lines) == chunk.batch.num_rows
        assert chunk.offsets.dtype == chunk.indices.dtype == chunk.lines.dtype == np.int64
        columns = [column.to_pylist() for column in chunk.batch.columns]
        result.rows.extend(zip(*columns, strict=True))
        result.offsets.extend(chunk.offsets.tolist())
        result.indices.extend(chunk.indices.tolist())
        result.lines.extend(chunk.lines.tolist())
        result.invalid.extend(chunk.invalid)
        result.chunks += 1
    return result


def bad(line: int, offset: int, index: int, reason: str) -> InvalidRecord:
    return InvalidRecord("mem://data.csv", line, offset, index, reason)
