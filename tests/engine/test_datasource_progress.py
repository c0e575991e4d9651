"""The datasource job's progress reports (metastore writes in a worker) are made on a thread of their own:
the reading, the job's slowest link, never waits for one, and an error a report meets still ends the job."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.core.schema import parse_schema
from emrml.engine import local
from emrml.engine.local import build_datasource


@pytest.fixture
def bank(shared_datasets: Path) -> tuple[str, str]:
    folder = shared_datasets / "bank_marketing"
    return str(folder / "data.csv"), (folder / "data.csv.schema").read_text()


@pytest.mark.parametrize("compute_statistics", [True, False])
def test_reading_goes_on_while_a_report_is_being_written(
    tmp_path: Path, bank: tuple[str, str], monkeypatch: pytest.MonkeyPatch, compute_statistics: bool
) -> None:
    location, schema_text = bank
    # Blocks of 64 KB: the 41,188 records are read in about 80 blocks, each followed by a report.
    settings = Settings.load(environ={"EMRML_BATCH_BYTES": str(64 << 10)}, home=tmp_path / "home")
    read_to_the_end = threading.Event()
    check_unchanged = local.check_unchanged

    def last_read(files: list[local.FileRef]) -> None:  # read_selected's call after the last block
        read_to_the_end.set()
        check_unchanged(files)

    monkeypatch.setattr(local, "check_unchanged", last_read)
    reports: list[tuple[float, str]] = []
    waited: list[bool] = []

    def progress(fraction: float, _message: str | None) -> None:
        if not reports:
            # A report made by the reading thread would hold it here: the end would never come.
            waited.append(read_to_the_end.wait(10))
        reports.append((fraction, threading.current_thread().name))

    summary = build_datasource(
        location,
        parse_schema(schema_text),
        None,
        compute_statistics=compute_statistics,
        settings=settings,
        progress=progress,
    )
    assert summary.total_records == 41_188
    assert waited == [True]
    assert {name for _, name in reports} == {"emrml-progress"}
    # Only the latest report is written: those made while the first was held were replaced, not queued.
    assert len(reports) <= 3
    assert reports[-1][0] == pytest.approx(1.0)


class Stop(Exception):
    pass


def test_an_error_a_report_meets_ends_the_job(tmp_path: Path, bank: tuple[str, str]) -> None:
    location, schema_text = bank
    settings = Settings.load(environ={"EMRML_BATCH_BYTES": str(64 << 10)}, home=tmp_path / "home")

    def progress(_fraction: float, _message: str | None) -> None:
        raise Stop

    with pytest.raises(Stop):
        build_datasource(
            location,
            parse_schema(schema_text),
            None,
            compute_statistics=True,
            settings=settings,
            progress=progress,
        )
