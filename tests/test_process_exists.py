"""``lifetime.process_exists``: whether a job's runner or worker is known to be gone (job recovery)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from emrml.lifetime import process_exists


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def test_a_zombie_has_exited_and_a_reaped_pid_is_gone() -> None:
    """A worker whose server was killed outright stays a zombie until its orphaned parent ends: it is gone
    for recovery all the same (a restarted server retries its job at once)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while _state(child.pid) != "Z":  # exited, not yet waited for
            time.sleep(0.01)
        assert not process_exists(child.pid)
    finally:
        child.wait()
    assert not process_exists(child.pid)


def test_a_running_process_exists() -> None:
    assert process_exists(os.getpid())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_exists(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
