"""Batch prediction ranges start where they would after an even number of quotes, with no pass counting
the quotes first, unless a quote is near a cut; the quotes each range read tell a wrong guess, and the job
then plans again counting them. Either way the results are a sequential pass's, byte for byte."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from batch_helpers import csv_text, generated_rows, generated_schema, predict_to
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from emrml.config import Settings
from emrml.engine import batch, record_starts, units
from emrml.engine.batch import Parallelism
from emrml.engine.record_starts import quotes_read
from emrml.engine.units import Unit, _open_unit, misplaced

CUT = Parallelism(workers=2, range_bytes=4_000, min_bytes=0)


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    return Settings.load(environ={}, home=workspace / "home")


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The functions the job's runner mapped over the input, in order (in the job's process)."""
    mapped: list[str] = []
    run = units._Runner.map

    def recording(self: units._Runner, function: Callable[..., Any], *args: Any) -> list[Any]:
        mapped.append(function.__name__)
        return run(self, function, *args)

    monkeypatch.setattr(units._Runner, "map", recording)
    return mapped


def _same_results(parallel: batch.BatchResult, sequential: batch.BatchResult) -> None:
    assert (parallel.total_records, parallel.invalid_records) == (
        sequential.total_records,
        sequential.invalid_records,
    )
    for uri, location in sequential.results.items():
        expected = gzip.decompress(Path(location).read_bytes())
        assert gzip.decompress(Path(parallel.results[uri]).read_bytes()) == expected


def _unquoted_rows(count: int, seed: int) -> list[dict[str, str]]:
    rows = generated_rows("BINARY", count, seed=seed)
    for row in rows:
        for name in ("color", "note"):
            row[name] = row[name].replace(",", " ").replace('"', "").replace("\n", " ")
    return rows


def test_without_quotes_near_the_cuts_no_pass_counts_them(
    workspace: Path, settings: Settings, models: dict[str, Path], passes: list[str]
) -> None:
    schema = generated_schema("BINARY")
    data = workspace / "unquoted.csv"
    data.write_text(csv_text(_unquoted_rows(600, seed=4), schema.names))
    assert b'"' not in data.read_bytes()
    sequential = predict_to(settings, models["BINARY"], data, schema, workspace / "unquoted-seq")
    passes.clear()
    parallel = predict_to(
        settings, models["BINARY"], data, schema, workspace / "unquoted-par", parallelism=CUT
    )
    assert passes == ["run_unit"]
    _same_results(parallel, sequential)
    assert Path(parallel.results[str(data)]).read_bytes().count(b"\x1f\x8b\x08") > 4


def test_quotes_near_a_cut_are_counted_first(
    workspace: Path, settings: Settings, models: dict[str, Path], passes: list[str]
) -> None:
    # Every record a long quoted note of many short lines: most cuts fall inside one, where the first line
    # break after the cut is data, not a record end; a guess would often be wrong.
    schema = generated_schema("BINARY")
    rows = generated_rows("BINARY", 200, seed=6)
    for i, row in enumerate(rows):
        row["note"] = "\n".join(["good day"] * (20 + i % 7))
    data = workspace / "long-notes.csv"
    data.write_text(csv_text(rows, schema.names))
    sequential = predict_to(settings, models["BINARY"], data, schema, workspace / "long-notes-seq")
    passes.clear()
    parallel = predict_to(
        settings, models["BINARY"], data, schema, workspace / "long-notes-par", parallelism=CUT
    )
    assert passes == ["count_quotes", "run_unit"]
    _same_results(parallel, sequential)


def test_a_range_guessed_inside_a_quoted_field_is_planned_again(
    workspace: Path,
    settings: Settings,
    models: dict[str, Path],
    passes: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One note of 2,000 lines amid short unquoted records, the file's middle (its one cut) inside it, and no
    # quote within the window after the cut: a kilobyte here stands for the megabyte.
    monkeypatch.setattr(record_starts, "_SYNC_WINDOW", 1024)
    schema = generated_schema("BINARY")
    rows = _unquoted_rows(201, seed=7)
    rows[100]["note"] = "\n".join(["good day"] * 2000)
    data = workspace / "one-long-note.csv"
    data.write_text(csv_text(rows, schema.names))
    text = data.read_bytes()
    middle = len(text) // 2
    assert text.count(b'"') == 2 and text.index(b'"') < middle - 1024 and text.rindex(b'"') > middle + 1024
    sequential = predict_to(settings, models["BINARY"], data, schema, workspace / "one-long-note-seq")
    passes.clear()
    parallel = predict_to(
        settings,
        models["BINARY"],
        data,
        schema,
        workspace / "one-long-note-par",
        parallelism=Parallelism(workers=2, range_bytes=len(text), min_bytes=0),
    )
    assert passes == ["run_unit", "count_quotes", "run_unit"]
    _same_results(parallel, sequential)
    assert sequential.invalid_records == 0


def test_a_range_counts_the_quotes_it_reads(tmp_path: Path) -> None:
    content = b'a,"b\n"\nc,d\n"e",f\n' * 5000
    path = tmp_path / "quotes.csv"
    path.write_bytes(content)
    start, stop = 7, len(content) - 3
    unit = Unit(0, str(path), "quotes.csv", start, stop, 1, size=len(content))
    with _open_unit(unit) as (_, stream):
        read = stream.read(1000) + stream.read(-1)
        assert stream.read(10) == b""
        assert quotes_read(stream) == content[start:stop].count(b'"')
    assert read == content[start:stop]
    whole = Unit(0, str(path), "quotes.csv", 0, None, 0, size=len(content))
    with _open_unit(whole) as (_, stream):
        stream.read()
        assert quotes_read(stream) == 0  # a whole file is never cut: nothing to check


def test_misplaced_is_an_odd_number_of_quotes_before_a_range_of_its_file() -> None:
    def ranges(file_index: int, starts: list[int]) -> list[Unit]:
        return [
            Unit(file_index, f"f{file_index}", "", start, None, part) for part, start in enumerate(starts)
        ]

    units = ranges(0, [0, 10, 20]) + ranges(1, [0, 10])
    # A file's quotes are its own: the first file's 7 say nothing of the second's first range.
    assert not misplaced(units, [2, 4, 1, 4, 7])
    assert misplaced(units, [2, 3, 1, 0, 0])  # the third range of the first file starts after 5
    assert misplaced(units, [2, 4, 1, 1, 7])


_LINES = st.lists(st.sampled_from([b"a,b", b"", b"\xef\xbb\xbfc,d", b"e\r", b"\r", b"fg,h"]), max_size=12)


@examples(max_examples=150, deadline=None)
@given(_LINES, st.integers(0, 60), st.sampled_from([b"\n", b"\r\n"]))
def test_a_guessed_start_without_quotes_is_found_in_the_window_it_read(
    lines: list[bytes], offset: int, end: bytes
) -> None:
    content = end.join(lines) + end
    position = min(offset, len(content))
    window = 16
    read: list[int] = []
    opened = record_starts.open_binary

    def counting(*args: Any, **kwargs: Any) -> Any:
        raw = opened(*args, **kwargs)
        plain = raw.read

        def counted(size: int = -1) -> bytes:
            data = plain(size)
            read.append(len(data))
            return data

        raw.read = counted
        return raw

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        path.write_bytes(content)
        with mock.patch.object(record_starts, "_SYNC_WINDOW", window):
            expected = record_starts.record_start(str(path), position, odd=False)
            with mock.patch.object(record_starts, "open_binary", counting):
                assert record_starts.guessed_start(str(path), position) == (False, expected)
    # A start in the window it read for quotes (with the bytes of a byte order mark after the line break):
    # nothing more is read.
    if position >= 2 and expected is not None and expected + 3 <= min(position + window, len(content)):
        assert sum(read) <= window + 2
