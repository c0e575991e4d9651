"""Batch prediction ranges start where they would after an even number of quotes, with no pass counting
the quotes first; the quotes each range read tell a wrong guess, and the job then plans again counting
them. Either way the results are a sequential pass's, byte for byte."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import csv_text, generated_rows, generated_schema, predict_to

from emrml.config import Settings
from emrml.engine import batch
from emrml.engine.batch import Parallelism
from emrml.engine.units import Unit, _open_unit, misplaced, quotes_read

CUT = Parallelism(workers=2, range_bytes=4_000, min_bytes=0)


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    return Settings.load(environ={}, home=workspace / "home")


@pytest.fixture
def plans(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each plan ``batch_predict`` made guessed the quotes (in the job's process, before the pool
    forks)."""
    made: list[bool] = []
    units = batch._units

    def recording(*args: Any, guess: bool = False, **kwargs: Any) -> list[Unit]:
        made.append(guess)
        return units(*args, guess=guess, **kwargs)

    monkeypatch.setattr(batch, "_units", recording)
    return made


def _same_results(parallel: batch.BatchResult, sequential: batch.BatchResult) -> None:
    assert (parallel.total_records, parallel.invalid_records) == (
        sequential.total_records,
        sequential.invalid_records,
    )
    for uri, location in sequential.results.items():
        expected = gzip.decompress(Path(location).read_bytes())
        assert gzip.decompress(Path(parallel.results[uri]).read_bytes()) == expected


def test_without_quoted_line_breaks_the_guess_holds_and_quotes_are_not_counted(
    workspace: Path, settings: Settings, models: dict[str, Path], plans: list[bool]
) -> None:
    schema = generated_schema("BINARY")
    rows = generated_rows("BINARY", 600, seed=4)
    for row in rows:
        row["note"] = row["note"].replace("\n", " ")  # quoted commas and quotes remain, no line break
    data = workspace / "one-line.csv"
    data.write_text(csv_text(rows, schema.names))
    sequential = predict_to(settings, models["BINARY"], data, schema, workspace / "one-line-seq")
    plans.clear()
    parallel = predict_to(
        settings, models["BINARY"], data, schema, workspace / "one-line-par", parallelism=CUT
    )
    assert plans == [True]
    _same_results(parallel, sequential)
    assert Path(parallel.results[str(data)]).read_bytes().count(b"\x1f\x8b\x08") > 4


def test_a_range_guessed_inside_a_quoted_field_is_planned_again(
    workspace: Path, settings: Settings, models: dict[str, Path], plans: list[bool]
) -> None:
    # Every record a long quoted note of many short lines: most cuts fall inside one, where the first line
    # break after the cut is data, not a record end.
    schema = generated_schema("BINARY")
    rows = generated_rows("BINARY", 200, seed=6)
    for i, row in enumerate(rows):
        row["note"] = "\n".join(["good day"] * (20 + i % 7))
    data = workspace / "long-notes.csv"
    data.write_text(csv_text(rows, schema.names))
    sequential = predict_to(settings, models["BINARY"], data, schema, workspace / "long-notes-seq")
    plans.clear()
    parallel = predict_to(
        settings, models["BINARY"], data, schema, workspace / "long-notes-par", parallelism=CUT
    )
    assert plans == [True, False]
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
