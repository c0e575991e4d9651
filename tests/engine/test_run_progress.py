"""A pool worker is handed a run of consecutive units (``in_runs``), yet the job's progress still moves as
each unit of the run reads its bytes, not only as the run ends."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from emrml.engine.units import Unit, _Runner, in_runs

UNIT_BYTES = 100
UNITS = 16
#: Set before the pool forks (an event is shared by inheritance only): the first unit waits on it.
_gate: Any = None


def _read(unit: Unit, report: Any = None) -> int:
    report(unit.bytes)
    if unit.file_index == 0:
        # Holds its run open until the job's progress has shown this unit's bytes alone.
        _gate.wait(10)
    return unit.file_index


def test_progress_moves_per_unit_within_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    units = []
    for i in range(UNITS):
        path = tmp_path / f"part-{i:02d}.csv"
        path.write_bytes(b"x" * UNIT_BYTES)
        units.append(Unit(i, str(path), path.name, 0, None, 0, size=UNIT_BYTES))
    arguments = [(unit,) for unit in units]
    runs = in_runs(arguments, 2)
    run_bytes = {len(run) * UNIT_BYTES for run in runs}
    assert run_bytes == {2 * UNIT_BYTES}  # every run holds two units
    gate = multiprocessing.get_context("fork").Event()
    monkeypatch.setattr(f"{__name__}._gate", gate)
    seen: list[int] = []

    def progress(fraction: float, message: str | None) -> None:
        done = round(fraction * UNITS * UNIT_BYTES)
        seen.append(done)
        if done % (2 * UNIT_BYTES):  # a unit of a run read, the run not yet done
            gate.set()

    with _Runner(2, UNITS * UNIT_BYTES, progress) as runner:
        results = runner.map(_read, arguments, "reading", (0.0, 1.0))
    assert results == list(range(UNITS))
    assert gate.is_set(), f"progress only moved run by run: {seen}"
    assert seen[-1] == UNITS * UNIT_BYTES
