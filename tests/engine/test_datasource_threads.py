"""The datasource job's threads: an error of the job leaves no thread of it running."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from emrml.config import Settings
from emrml.core.schema import parse_schema
from emrml.core.stats.columns import NumericStats
from emrml.engine.local import build_datasource


def test_an_error_of_the_job_stops_the_reading_threads_at_once(
    tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's scan thread stopped only when the garbage collector closed the reading generator:
    while the job's error was kept (its traceback holds the generator), the thread stayed, with its block."""
    folder = shared_datasets / "bank_marketing"
    settings = Settings.load(environ={"EMRML_BATCH_BYTES": str(64 << 10)}, home=tmp_path / "home")

    def fail(self: NumericStats, column: pa.Array) -> None:
        raise RuntimeError("numeric statistics failed")

    monkeypatch.setattr(NumericStats, "update", fail)
    running = set(threading.enumerate())  # other tests' servers may run here
    with pytest.raises(RuntimeError, match="numeric statistics failed") as raised:
        build_datasource(
            str(folder / "data.csv"),
            parse_schema((folder / "data.csv.schema").read_text()),
            None,
            compute_statistics=True,
            settings=settings,
            progress=lambda _fraction, _message: None,
        )
    assert raised.tb is not None  # still held here
    assert [thread.name for thread in set(threading.enumerate()) - running] == []
