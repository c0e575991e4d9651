"""The sample generator: deterministic bytes, the documented layout, values that parse, a learnable target."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from emrml.core.schema import AttributeType
from emrml.core.values import parse_binary, parse_numeric
from emrml.samples import CHUNK_ROWS, bank_sample_schema, write_bank_sample

ROWS = 5_000


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: Path) -> pa.Table:
    names = bank_sample_schema().names
    return pcsv.read_csv(
        path, convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    )


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bank_sample(tmp_path_factory.mktemp("sample") / "bank.csv", ROWS)


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    positives = int(label.sum())
    negatives = len(label) - positives
    return float((ranks[label == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def test_same_seed_and_rows_give_identical_bytes(tmp_path: Path, sample: Path) -> None:
    again = write_bank_sample(tmp_path / "again.csv", ROWS)
    assert _digest(again) == _digest(sample)


def test_other_seed_gives_other_data(tmp_path: Path, sample: Path) -> None:
    other = write_bank_sample(tmp_path / "other.csv", ROWS, seed=8)
    assert _digest(other) != _digest(sample)


def test_rows_across_chunks_are_deterministic(tmp_path: Path) -> None:
    rows = CHUNK_ROWS + 123
    first = write_bank_sample(tmp_path / "a.csv", rows)
    second = write_bank_sample(tmp_path / "b.csv", rows)
    assert _digest(first) == _digest(second)
    assert first.read_bytes().count(b"\n") == rows + 1


def test_gzip_output_is_deterministic_and_holds_the_plain_bytes(tmp_path: Path, sample: Path) -> None:
    first = write_bank_sample(tmp_path / "a.csv.gz", ROWS, compression="gzip")
    second = write_bank_sample(tmp_path / "b.csv.gz", ROWS, compression="gzip")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(first.read_bytes()) == sample.read_bytes()


def test_unknown_compression_and_negative_rows_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compression"):
        write_bank_sample(tmp_path / "x.csv", 10, compression="rar")
    with pytest.raises(ValueError, match="rows"):
        write_bank_sample(tmp_path / "x.csv", -1)


def test_zero_rows_writes_only_the_header(tmp_path: Path) -> None:
    path = write_bank_sample(tmp_path / "empty.csv", 0)
    assert path.read_text() == ",".join(bank_sample_schema().names) + "\n"


def test_layout_matches_schema_and_real_file_conventions(sample: Path) -> None:
    schema = bank_sample_schema()
    text = sample.read_text()
    lines = text.split("\n")
    assert lines[0].split(",") == schema.names
    assert lines[-1] == ""  # every record ends with a newline
    assert len(lines) == ROWS + 2
    assert '"' not in text and "\r" not in text
    assert all(line.count(",") == 20 for line in lines[1:-1])
    assert schema.target == "y" and schema.has_header
    counts = {kind: sum(a.type == kind for a in schema.attributes) for kind in AttributeType}
    assert counts == {
        AttributeType.NUMERIC: 10,
        AttributeType.CATEGORICAL: 9,
        AttributeType.TEXT: 1,
        AttributeType.BINARY: 1,
    }


def test_values_parse_and_look_like_the_bank_file(sample: Path) -> None:
    schema = bank_sample_schema()
    table = _read(sample)
    assert table.num_rows == ROWS
    for attribute in schema.attributes:
        column = table[attribute.name]
        if attribute.type == AttributeType.NUMERIC:
            parsed = parse_numeric(column)
            assert not parsed.missing.any() and not parsed.invalid.any(), attribute.name
    age = parse_numeric(table["age"]).values
    assert age.min() >= 17 and age.max() <= 98 and 35 < np.median(age) < 42
    pdays = parse_numeric(table["pdays"]).values
    assert 0.9 < np.mean(pdays == 999) < 0.99
    nr_employed = table["nr_employed"].to_pylist()
    assert all(v == str(float(v)).removesuffix(".0") for v in nr_employed[:200])
    assert set(table["month"].to_pylist()) <= {
        "mar",
        "apr",
        "may",
        "jun",
        "jul",
        "aug",
        "sep",
        "oct",
        "nov",
        "dec",
    }
    assert "admin." in set(table["job"].to_pylist())
    words = [len(note.split(" ")) for note in table["notes"].to_pylist()]
    assert min(words) == 3 and max(words) == 12


def test_target_is_binary_with_about_eleven_percent_positives(sample: Path) -> None:
    y = parse_binary(_read(sample)["y"])
    assert not y.invalid.any() and not y.missing.any()
    assert 0.09 < y.values.mean() < 0.13


def test_target_depends_on_the_attributes(sample: Path) -> None:
    table = _read(sample)
    y = parse_binary(table["y"]).values.astype(np.int64)
    duration = parse_numeric(table["duration"]).values
    assert _auc(duration, y) > 0.7
    employed = parse_numeric(table["nr_employed"]).values
    assert _auc(-employed, y) > 0.6
    positive_words = {"interested", "agreed", "keen", "appointment"}
    leaning = np.array(
        [sum(w in positive_words for w in note.split(" ")) for note in table["notes"].to_pylist()]
    )
    assert leaning[y == 1].mean() > 1.5 * leaning[y == 0].mean()
