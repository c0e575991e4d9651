"""A pool of processes whose work failed leaves no process behind; one whose work is done is not waited
for as its processes end (engine/units.py)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from multiprocessing import util
from pathlib import Path

from emrml.engine.units import _Runner

# Made before the pool forks, so that its processes share them.
_FORK = multiprocessing.get_context("fork")
_BUSY = _FORK.Event()
_NEVER = _FORK.Event()
_BUSY_PID = _FORK.Value("q", 0)


def _unit(kind: str, report: object = None) -> None:
    """A unit that works until it is killed ("busy"), or fails once the other is busy ("failing")."""
    if kind == "busy":
        _BUSY_PID.value = os.getpid()
        _BUSY.set()
        _NEVER.wait()
    else:
        _BUSY.wait()
        raise ValueError("this unit failed")


def _exists(pid: int) -> bool:
    """Whether the process exists and is no zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_failed_pool_kills_its_processes_still_working() -> None:
    """One unit fails while the other would work on for good: the failure is raised, and the pool's
    processes are gone once the runner is left (it does not wait for the unit still at work)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            with _Runner(2, 1, lambda _fraction, _message: None) as runner:
                runner.map(_unit, [("busy",), ("failing",)], "working", (0.0, 1.0))
        except ValueError as exc:
            raised.append(exc)

    children_before = {process.pid for process in multiprocessing.active_children()}
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the runner waited for the unit still at work"
    assert [str(exc) for exc in raised] == ["this unit failed"]
    assert not _exists(_BUSY_PID.value)
    # None of the pool's: children this process had before (a pool an earlier test left ending) may be gone.
    assert {process.pid for process in multiprocessing.active_children()} <= children_before


def _slow_to_end(_item: int, report: object = None) -> int:
    """A unit whose process, once its pool ends it, takes a while to end (a finalizer run as it exits)."""
    if not any(getattr(f, "_callback", None) is time.sleep for f in util._finalizer_registry.values()):
        util.Finalize(None, time.sleep, args=(30,), exitpriority=0)
    return os.getpid()


def test_a_pool_whose_work_is_done_is_left_without_waiting_for_its_processes() -> None:
    # The results are all a job needs to publish: its pool's processes tear down on their own meanwhile.
    children_before = {process.pid for process in multiprocessing.active_children()}
    with _Runner(2, 1, lambda _fraction, _message: None) as runner:
        pids = set(runner.map(_slow_to_end, [(1,), (2,), (3,), (4,)], "working", (0.0, 1.0)))
    ending = [p for p in multiprocessing.active_children() if p.pid not in children_before]
    assert pids <= {p.pid for p in ending}
    assert all(_exists(pid) for pid in pids)
    for process in ending:
        process.kill()
        process.join(60)
