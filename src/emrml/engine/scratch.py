"""Training's scratch files: the training records parsed once, and the featurized rows, read back by
memory map.

Training reads its data several times (the feature space's fit, featurization, then every SGD pass). The
CSV is parsed, split and selected only on the first read: :class:`RecordCache` keeps the selected record
batches as an uncompressed Arrow IPC file that later reads map without copying. :class:`FeatureCache`
keeps the featurized rows as raw arrays (values, column indices, row pointers, targets, weights), one file
each, appended batch after batch; a pass maps them and slices each batch out, so reading costs neither a
zip container, a CRC nor a copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

Progress = Callable[[float, str | None], None]
SparseBatch = tuple[sp.csr_matrix, np.ndarray, np.ndarray | None]


class RecordCache:
    """Re-iterable record batches, read from their source once.

    The first complete iteration passes the batches of ``read()`` through while writing them to ``path``;
    later iterations map ``path``. An iteration left unfinished leaves no cache, so the next one calls
    ``read()`` again.
    """

    def __init__(self, read: Callable[[], Iterable[pa.RecordBatch]], path: Path) -> None:
        self.read = read
        self.path = path
        self.complete = False

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self.complete:
            yield from self._replay()
            return
        writer: pa.ipc.RecordBatchFileWriter | None = None
        try:
            for batch in self.read():
                if writer is None:
                    writer = pa.ipc.new_file(str(self.path), batch.schema)
                writer.write_batch(batch)
                yield batch
            if writer is not None:
                writer.close()
                writer = None
            self.complete = True
        finally:
            if writer is not None:
                writer.close()

    def _replay(
        self, progress: Progress | None = None, span: tuple[float, float] = (0.0, 1.0)
    ) -> Iterator[pa.RecordBatch]:
        if not self.path.exists():  # a source without a single batch
            return
        with pa.memory_map(str(self.path)) as mapped:
            reader = pa.ipc.open_file(mapped)
            count = reader.num_record_batches
            low, high = span
            for index in range(count):
                yield reader.get_batch(index)
                if progress is not None:
                    progress(low + (high - low) * (index + 1) / count, "featurizing the training data")

    def with_progress(self, progress: Progress, low: float, high: float) -> Iterator[pa.RecordBatch]:
        """Iterate, reporting progress in ``[low, high]`` as batches are read back (the first iteration
        must have completed; it reports its own)."""
        if not self.complete:
            raise RuntimeError("the record cache is read back only after a complete first read")
        yield from self._replay(progress, (low, high))


@dataclass(frozen=True)
class _Extent:
    rows: int
    row_start: int  # into targets and weights
    pointer_start: int  # into the row pointers (rows + 1 of them per batch)
    nnz_start: int  # into values and column indices
    nnz: int


class FeatureCache:
    """Featurized batches in raw files under ``folder``, written with :meth:`append` and read back, after
    :meth:`close`, by calling the cache: a ``BatchSource`` of the learner.

    Targets are float64: numbers, 0/1, or class codes for MULTICLASS, which :meth:`close` maps through
    ``class_codes`` (code → class index, when the class list is complete).
    """

    _NAMES = ("values", "indices", "pointers", "targets", "weights")

    def __init__(self, folder: Path, n_features: int, *, weighted: bool) -> None:
        self.folder = folder
        self.index_type = np.dtype(np.int32 if n_features < 2**31 else np.int64)
        self.n_features = n_features
        self.weighted = weighted
        self.extents: list[_Extent] = []
        self._rows = self._pointers = self._nnz = 0
        self._files: dict[str, BinaryIO] | None = {
            name: open(folder / f"{name}.bin", "wb")  # noqa: SIM115 - closed by close()
            for name in self._NAMES
        }
        self._class_codes: np.ndarray | None = None
        self._shuffle: np.random.Generator | None = None

    def append(self, matrix: sp.csr_matrix, targets: np.ndarray, weights: np.ndarray | None) -> None:
        assert self._files is not None, "the feature cache is closed"
        rows, nnz = matrix.shape[0], matrix.nnz
        pointers = np.asarray(matrix.indptr, dtype=np.int64) - int(matrix.indptr[0])
        parts = {
            "values": np.asarray(matrix.data, dtype=np.float64),
            "indices": np.asarray(matrix.indices, dtype=self.index_type),
            "pointers": pointers,
            "targets": np.asarray(targets, dtype=np.float64),
        }
        if self.weighted:
            assert weights is not None
            parts["weights"] = np.asarray(weights, dtype=np.float64)
        for name, array in parts.items():
            self._files[name].write(np.ascontiguousarray(array).data)
        self.extents.append(_Extent(rows, self._rows, self._pointers, self._nnz, nnz))
        self._rows += rows
        self._pointers += rows + 1
        self._nnz += nnz

    def close(self, class_codes: np.ndarray | None = None, shuffle_seed: int | None = None) -> None:
        """Finish writing. ``class_codes`` maps MULTICLASS codes to class indices; with ``shuffle_seed``
        every pass visits the batches in a new random order (the learner then mixes rows across batches),
        so data stored in a meaningful order (sorted by the target, by time) trains like shuffled data."""
        if self._files is not None:
            for file in self._files.values():
                file.close()
            self._files = None
        self._class_codes = class_codes
        self._shuffle = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None

    def _map(self, name: str, dtype: np.dtype | type) -> np.ndarray:
        path = self.folder / f"{name}.bin"
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=dtype)
        # A plain ndarray view of the map: results computed from it are plain arrays too.
        return np.asarray(np.memmap(path, dtype=dtype, mode="r"))

    def __call__(self) -> Iterator[SparseBatch]:
        if self._files is not None:
            raise RuntimeError("the feature cache is read only after close()")
        values, indices = self._map("values", np.float64), self._map("indices", self.index_type)
        pointers, targets = self._map("pointers", np.int64), self._map("targets", np.float64)
        weights = self._map("weights", np.float64) if self.weighted else None
        order = range(len(self.extents))
        if self._shuffle is not None:
            order = self._shuffle.permutation(len(self.extents)).tolist()
        for index in order:
            extent = self.extents[index]
            nnz = slice(extent.nnz_start, extent.nnz_start + extent.nnz)
            rows = slice(extent.row_start, extent.row_start + extent.rows)
            matrix = sp.csr_matrix(
                (
                    values[nnz],
                    indices[nnz],
                    pointers[extent.pointer_start : extent.pointer_start + extent.rows + 1],
                ),
                shape=(extent.rows, self.n_features),
            )
            y = targets[rows]
            if self._class_codes is not None:
                y = self._class_codes[y.astype(np.int64)]
            yield matrix, y, None if weights is None else weights[rows]
