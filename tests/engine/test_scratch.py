"""Training's scratch files: records parsed once and replayed, featurized rows read back exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from emrml.engine.scratch import FeatureCache, RecordCache


def _batches(reads: list[int], fail_at: int | None = None) -> Iterator[pa.RecordBatch]:
    reads.append(1)
    for start in range(0, 9, 3):
        if fail_at == start:
            raise OSError("the source broke")
        yield pa.record_batch({"a": pa.array([str(i) for i in range(start, start + 3)])})


def test_records_are_read_once_then_replayed(tmp_path: Path) -> None:
    reads: list[int] = []
    cache = RecordCache(lambda: _batches(reads), tmp_path / "records.arrow")
    first = [batch.column("a").to_pylist() for batch in cache]
    second = [batch.column("a").to_pylist() for batch in cache]
    fractions: list[float] = []
    third = [b.num_rows for b in cache.with_progress(lambda f, _: fractions.append(f), 0.2, 0.4)]
    assert first == second == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8"]]
    assert third == [3, 3, 3]
    assert len(reads) == 1
    assert fractions == pytest.approx([0.2 + 0.2 / 3, 0.2 + 0.4 / 3, 0.4])


def test_an_unfinished_read_leaves_no_cache(tmp_path: Path) -> None:
    reads: list[int] = []
    failing = {"first": True}

    def read() -> Iterator[pa.RecordBatch]:
        fail = failing.pop("first", False)
        return _batches(reads, fail_at=3 if fail else None)

    cache = RecordCache(read, tmp_path / "records.arrow")
    with pytest.raises(OSError, match="broke"):
        list(cache)
    assert [b.num_rows for b in cache] == [3, 3, 3]
    assert len(reads) == 2
    with pytest.raises(RuntimeError):
        RecordCache(read, tmp_path / "other.arrow").with_progress(lambda *_: None, 0, 1).__next__()


def _random_batch(rng: np.random.Generator, rows: int, features: int) -> sp.csr_matrix:
    matrix = sp.random(rows, features, density=0.2, format="csr", random_state=rng)
    matrix.sort_indices()
    return matrix


@pytest.mark.parametrize("weighted", [False, True])
def test_featurized_batches_come_back_exactly(tmp_path: Path, weighted: bool) -> None:
    rng = np.random.default_rng(3)
    written = []
    cache = FeatureCache(tmp_path, 40, weighted=weighted)
    for rows in (5, 0, 7, 1):
        matrix = _random_batch(rng, rows, 40)
        y = rng.random(rows)
        weights = rng.random(rows) if weighted else None
        cache.append(matrix, y, weights)
        written.append((matrix, y, weights))
    with pytest.raises(RuntimeError):
        next(cache())
    cache.close()
    for _ in range(2):  # every pass reads the same
        read = list(cache())
        assert len(read) == len(written)
        for (matrix, y, weights), (back, y_back, weights_back) in zip(written, read, strict=True):
            assert back.shape == matrix.shape and back.format == "csr"
            assert (back != matrix).nnz == 0
            assert np.array_equal(back.indptr, matrix.indptr) and back.indices.dtype == np.int32
            assert np.array_equal(y_back, y)
            assert (weights_back is None) == (weights is None)
            if weights is not None:
                assert np.array_equal(weights_back, weights)


def test_shuffled_passes_and_class_codes(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, 3, weighted=False)
    for code in range(6):
        cache.append(sp.csr_matrix(np.eye(1, 3, code % 3)), np.array([float(code % 3)]), None)
    # Codes 0, 1, 2 stand for classes whose sorted indices are 2, 0, 1.
    cache.close(np.array([2, 0, 1]), shuffle_seed=0)
    orders = []
    for _ in range(3):
        batches = list(cache())
        assert sorted(tuple(b[0].indices) for b in batches) == sorted([(0,), (1,), (2,)] * 2)
        assert all(int(y[0]) == [2, 0, 1][int(X.indices[0])] for X, y, _ in batches)
        orders.append([int(X.indices[0]) for X, _, _ in batches])
    expected = np.random.default_rng(0)
    assert orders == [[[0, 1, 2, 0, 1, 2][i] for i in expected.permutation(6)] for _ in range(3)]
