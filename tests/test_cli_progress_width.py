"""The job progress bar on an 80-column terminal: a long description gives way, not the bar or the time."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from emrml.cli_common import Output, State, job_progress


def test_a_long_path_is_cut_in_its_middle_and_the_time_stays_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_TERMINAL", "1")
    monkeypatch.setenv("COLUMNS", "80")
    progress = job_progress(State(Output.table, None))
    path = "/work/shared/datasets/bank_marketing/data.csv"
    task = progress.add_task(f"model ml-bank: reading {path}", total=1.0)
    progress.update(task, completed=0.2)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(progress.make_tasks_table(progress.tasks))
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line and len(line) <= 80
    assert re.search(r" 20% \d:\d\d:\d\d$", line.rstrip())  # rich had cut the time to "0:0…"
    assert "model ml-bank: reading…" in line and "marketing/data.csv ━" in line
    bar = line[line.index("data.csv ") + len("data.csv ") : line.index("20%")]
    assert len(bar) >= 16  # the bar keeps its room (it had two cells)
