"""The sample schema inference reads from a file (engine.location_schema.infer_location_schema)."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from emrml.config import Settings
from emrml.engine.location_schema import infer_location_schema
from emrml.errors import DataError, InvalidInputException


def _refused_traced(folder: Path, settings: Settings) -> tuple[DataError, int]:
    """The refusal of inferring ``folder``'s schema, and the peak of memory traced while it was read."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as refused:
            infer_location_schema(f"{folder}/", target=None, row_id=None, has_header=True, settings=settings)
        return refused.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_sample_of_a_wide_file_stays_in_arrow(tmp_path: Path) -> None:
    # The sample was kept as Python lists of strings: 10,000 rows of 1,000 columns held 900 MB to infer
    # the schema of a 35 MB file. As the reader's Arrow columns it is a few bytes a value, outside the
    # Python heap.
    rng = random.Random(5)
    width, rows = 400, 3_000
    lines = [",".join(f"c{i}" for i in range(width)) + ",y"]
    lines += [",".join(str(rng.randint(0, 99)) for _ in range(width)) + f",{i % 2}" for i in range(rows)]
    data = tmp_path / "wide.csv"
    data.write_text("\n".join(lines) + "\n")
    settings = Settings.load(environ={}, home=tmp_path / "home")
    # Once on a small file first, so that the modules imported on first use are not counted.
    small = tmp_path / "small.csv"
    small.write_text("a,y\n1,0\n2,1\n")
    infer_location_schema(str(small), target="y", row_id=None, has_header=True, settings=settings)
    tracemalloc.start()
    try:
        inferred = infer_location_schema(
            str(data), target="y", row_id=None, has_header=True, settings=settings
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [a.type.value for a in inferred.schema.attributes] == ["NUMERIC"] * width + ["BINARY"]
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_files_of_short_invalid_records_are_read_only_up_to_the_limit(tmp_path: Path) -> None:
    # A zstd frame of a few hundred bytes holds a million records "x" (two fields expected): each file's
    # first 4 MiB were parsed into Python objects, and the invalid records of up to 64 such files held
    # together, gigabytes in the server's request for InferDataSchema.
    settings = Settings.load(environ={}, home=tmp_path / "home")
    folder = tmp_path / "invalid"
    folder.mkdir()
    frame = zstandard.ZstdCompressor().compress(b"a,b\n" + b"x\n" * 1_000_000)
    for index in range(4):
        (folder / f"part-{index}.csv.zst").write_bytes(frame)
    refused, peak = _refused_traced(folder, settings)
    # Reading stops past max_invalid_records in each file, as it always did: those past it are not kept.
    assert refused.message == (
        "cannot infer a schema: every record read is invalid (40,004 of them; the first, line 2 of "
        f"{folder}/part-0.csv.zst: expected 2 fields, found 1)"
    )
    assert peak < 64 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_a_file_is_not_read_on_past_the_invalid_records_that_reject_it(tmp_path: Path) -> None:
    # Once a valid record was found, invalid ones were no longer counted: a valid record followed by
    # billions of invalid ones (a few compressed bytes) was read to its end, twice (the sample, then the
    # look for a second target value). Past max_invalid_records the file is rejected; reading stops.
    settings = Settings.load(environ={}, home=tmp_path / "home")
    data = tmp_path / "data.csv.zst"
    text = b"a,y\n1,0\n" + b"x\n" * 50_000 + b"2,1\n"  # more than max_invalid_records, and than a block
    data.write_bytes(zstandard.ZstdCompressor().compress(text))
    inferred = infer_location_schema(str(data), target="y", row_id=None, has_header=True, settings=settings)
    assert inferred.description() == f"inferred from the first 1 records of {data}"


def test_only_the_first_invalid_record_of_each_file_is_kept(tmp_path: Path) -> None:
    # Up to max_invalid_records + 1 invalid records of a file were made objects and kept while it was
    # read (twice the memory of reading it), when only the first, and their count, make the message.
    settings = Settings.load(environ={}, home=tmp_path / "home")
    folder = tmp_path / "ragged"
    folder.mkdir()
    for index in range(64):
        (folder / f"part-{index:02d}.csv").write_bytes(b"a,b\n" + b"x\n" * 12_000)
    refused, peak = _refused_traced(folder, settings)
    assert refused.message == (
        "cannot infer a schema: every record read is invalid (640,064 of them; the first, line 2 of "
        f"{folder}/part-00.csv: expected 2 fields, found 1)"
    )
    assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_a_folder_s_missing_target_names_the_file_whose_columns_were_read(tmp_path: Path) -> None:
    """A README beside the data is read first (it sorts first): the error listed its first line as the
    columns without saying whose they were."""
    folder = tmp_path / "bank"
    folder.mkdir()
    (folder / "README.md").write_text("# bank marketing\nabout the data\n")
    (folder / "data.csv").write_text("age,y\n41,1\n29,0\n")
    settings = Settings.load(environ={}, home=tmp_path / "home")
    with pytest.raises(InvalidInputException) as refused:
        infer_location_schema(f"{folder}/", target="y", row_id=None, has_header=True, settings=settings)
    message = refused.value.message
    assert message.startswith("target 'y' is not one of the columns")
    assert f"the columns of {folder}/README.md, the first file with records of the 2 under" in message
    # One file: its columns are the data's, as the location says.
    with pytest.raises(InvalidInputException) as single:
        infer_location_schema(
            str(folder / "data.csv"), target="z", row_id=None, has_header=True, settings=settings
        )
    assert "the first file with records" not in single.value.message


def test_a_file_wider_than_the_attribute_limit_is_refused_before_its_sample_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing costs each block a column's work for every column: 30 MB of 15,000 columns (a few kilobytes
    # compressed) took InferDataSchema 100 s and 9 GB, on the server's request thread, only to be refused
    # for its width once the sample was read.
    from emrml.engine import location_schema

    width = 5_000
    row = ",".join("1" for _ in range(width))
    text = ",".join(f"c{i}" for i in range(width)) + "\n" + (row + "\n") * 2_000
    data = tmp_path / "wide.csv.zst"
    data.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    read: list[str] = []

    def read_chunks(_stream: object, uri: str, *_args: object, **_options: object) -> Iterator[object]:
        read.append(uri)
        return iter(())

    monkeypatch.setattr(location_schema, "read_chunks", read_chunks)
    settings = Settings.load(environ={}, home=tmp_path / "home")
    for has_header in (True, False):
        with pytest.raises(InvalidInputException) as refused:
            infer_location_schema(
                str(data),
                target=None,
                row_id=None,
                has_header=has_header,
                settings=settings,
            )
        assert refused.value.message == (
            "cannot infer a schema: the data has 5,000 columns; the limit is 1,000 attributes (the "
            "max_attributes setting)"
        )
    assert read == []


def test_inference_reads_at_most_its_byte_budget_of_a_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Empty lines are passed over: a gigabyte of them (32 KB of zstd) was read to its end, 23 s on the
    # server's request thread, and again in each of the location's first 64 files; the look for a second
    # target value read up to a million records more, however long.
    from emrml.engine import location_schema

    monkeypatch.setattr(location_schema, "INFER_MAX_BYTES", 1 << 20)
    settings = Settings.load(environ={}, home=tmp_path / "home")
    blank = tmp_path / "blank"
    blank.mkdir()
    frame = zstandard.ZstdCompressor().compress(b"a,y\n" + b"\n" * (3 << 20) + b"1,0\n")
    for index in range(3):
        (blank / f"part-{index}.csv.zst").write_bytes(frame)
    with pytest.raises(DataError) as refused:
        infer_location_schema(f"{blank}/", target=None, row_id=None, has_header=True, settings=settings)
    assert refused.value.message == (
        f"cannot infer a schema: the first 1 MiB read from {blank}/ hold no record, only empty lines"
    )
    # A sample whose target holds one value: the records read on for another stop at the budget too, and
    # the sample is what the schema is inferred from.
    sorted_data = tmp_path / "sorted.csv.zst"
    text = b"a,y\n" + b"1,0\n" * 20_000 + b"\n" * (2 << 20) + b"2,1\n"  # read to it, y is BINARY
    sorted_data.write_bytes(zstandard.ZstdCompressor().compress(text))
    inferred = infer_location_schema(
        str(sorted_data), target="y", row_id=None, has_header=True, settings=settings
    )
    assert inferred.description() == f"inferred from the first 20,000 records of {sorted_data}"
    assert {a.name: a.type.value for a in inferred.schema.attributes}["y"] == "NUMERIC"
