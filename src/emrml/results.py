"""Reading a batch prediction's result files (gzip CSV, spec 9) back as Arrow record batches of a bounded
size, for ``emrml.library.BatchPrediction.results`` and ``iter_results``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from emrml.storage import locations

if TYPE_CHECKING:
    import pyarrow as pa

#: Result columns that hold text (ids and labels); the others are numbers.
_TEXT_RESULT_COLUMNS = ("tag", "trueLabel", "bestAnswer")
#: Decompressed bytes of a result file parsed at a time: what one batch of ``iter_results`` costs.
RESULT_BLOCK_BYTES = 4 << 20


def result_batches(location: str) -> Iterator[pa.RecordBatch]:
    """The rows of one result file (gzip CSV) in batches of about :data:`RESULT_BLOCK_BYTES`, text
    columns as strings and the rest float64, and at least one batch (empty for a file of no rows), so
    that its schema is known. A record that could not be scored (an empty line, spec 9) is a row of nulls,
    so that row ``n`` is input record ``n``."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from emrml.storage.codecs import open_decompressed

    # Arrow's own streaming reader reads blocks ahead of the consumer, up to the whole file: the file is
    # cut here into pieces of whole records instead, each parsed on its own.
    parse = pcsv.ParseOptions(ignore_empty_lines=False, newlines_in_values=True)  # empty lines stay rows
    convert = pcsv.ConvertOptions(column_types=dict.fromkeys(_TEXT_RESULT_COLUMNS, pa.string()))
    names: list[str] | None = None  # from the header, which the first piece starts with
    with open_decompressed(locations.open_binary(location, what="result"), location) as data:
        for piece in _record_pieces(data, RESULT_BLOCK_BYTES):
            options = pcsv.ReadOptions(column_names=names, use_threads=False)
            table = pcsv.read_csv(io.BytesIO(piece), options, parse, convert)
            if names is None and len(set(table.column_names)) < table.num_columns:
                # A header of an older version naming two columns alike (a class named as another column,
                # which training now refuses): read again under distinct names, or a reader by name keeps
                # one of them, and the class's scores would be read as text under "trueLabel".
                names = distinct_names(table.column_names)
                options = pcsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False)
                table = pcsv.read_csv(io.BytesIO(piece), options, parse, convert)
            columns = [
                column if name in _TEXT_RESULT_COLUMNS else column.cast(pa.float64())
                for name, column in zip(table.column_names, table.columns, strict=True)
            ]
            table = pa.table(columns, names=table.column_names).combine_chunks()
            if names is None:
                names = table.column_names
                if table.num_rows == 0:
                    yield pa.record_batch([pa.array([], c.type) for c in columns], schema=table.schema)
            for batch in table.to_batches():
                yield _nulls_for_empty_lines(batch)


def distinct_names(names: list[str]) -> list[str]:
    """``names`` with each repeated one given a ``_2``, ``_3``, … suffix (one not taken already), as a
    header's repeated attribute names are (``core.schema.header_names``)."""
    taken = set(names)
    seen: set[str] = set()
    distinct: list[str] = []
    for name in names:
        if name in seen:
            copy = 2
            while f"{name}_{copy}" in taken:
                copy += 1
            name = f"{name}_{copy}"
            taken.add(name)
        seen.add(name)
        distinct.append(name)
    return distinct


def _record_pieces(stream: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """``stream`` in pieces of about ``block_bytes`` that end where a record does: after a line break
    outside quotes (tags and labels may hold line breaks inside quotes; ``""`` counts twice)."""
    import numpy as np

    rest = b""
    while True:
        more = stream.read(block_bytes)
        if not more:
            if rest:
                yield rest
            return
        data = rest + more
        codes = np.frombuffer(data, dtype=np.uint8)
        # The parity of the quotes so far says whether a byte is inside quotes (uint8 wraps, keeping it).
        inside = np.cumsum(codes == ord('"'), dtype=np.uint8) & 1
        ends = np.flatnonzero((codes == ord("\n")) & (inside == 0))
        if len(ends) == 0:
            rest = data
            continue
        cut = int(ends[-1]) + 1
        yield data[:cut]
        rest = data[cut:]


def _nulls_for_empty_lines(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with the rows of empty lines all null. Arrow reads an empty line as empty text and null
    numbers; a scored record always has its last column (a score), so a null there marks one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if batch.num_columns == 0 or batch.column(batch.num_columns - 1).null_count == 0:
        return batch
    unscored = batch.column(batch.num_columns - 1).is_null()
    columns = [pc.if_else(unscored, pa.scalar(None, column.type), column) for column in batch.columns]
    return pa.record_batch(columns, schema=batch.schema)
