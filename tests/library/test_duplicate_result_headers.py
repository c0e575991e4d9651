"""A result file of an older version whose header names two columns alike (a MULTICLASS class named as
another column, which training now refuses) is read keeping every column: each repeated name gets a
``_2``, ``_3``, … suffix not taken already, and its values are read as its position's are (a class's
scores as numbers, not as the text of the column it is named like)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pytest

from emrml import results as result_files


def test_a_result_file_naming_two_columns_alike_is_read_keeping_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bp-old-result.gz"
    rows = 3_000
    with gzip.open(path, "wt") as out:
        out.write("tag,trueLabel,trueLabel,score,score_2,score\n")
        out.writelines(
            f'"r{i}\n",{"xyz"[i % 3]},0.{i:04d},0.25,0.5,0.{i % 10}\n' if i % 500 else "\n"
            for i in range(rows)
        )
    monkeypatch.setattr(result_files, "RESULT_BLOCK_BYTES", 16 << 10)  # many blocks, the header in the first
    batches = list(result_files.result_batches(str(path)))
    assert len(batches) > 2
    table = pa.Table.from_batches(batches)
    assert table.column_names == ["tag", "trueLabel", "trueLabel_2", "score", "score_2", "score_3"]
    assert table.schema.field("trueLabel").type == pa.string()
    assert all(table.schema.field(name).type == pa.float64() for name in table.column_names[2:])
    read = table.to_pydict()
    assert len(read) == 6 and table.num_rows == rows
    assert read["tag"][1] == "r1\n" and read["trueLabel"][1] == "y"
    assert read["trueLabel_2"][1] == pytest.approx(0.0001) and read["score_3"][7] == pytest.approx(0.7)
    assert read["score"][2_999] == 0.25 and read["score_2"][2_999] == 0.5
    assert all(read[name][500] is None for name in table.column_names)  # an empty line: unscored


def test_repeated_names_take_suffixes_no_column_has() -> None:
    assert result_files.distinct_names(["a", "b", "a", "a_2", "a"]) == ["a", "b", "a_3", "a_2", "a_4"]
    assert result_files.distinct_names(["tag", "score"]) == ["tag", "score"]
