"""A starting server removes the job slot ticket folders that servers killed outright left, and no other."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from emrml.web.server import _tickets_held
from emrml.web.server_folders import remove_left_behind


def _dead_pid() -> int:
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait(30)
    return ended.pid


def test_ticket_folders_of_servers_no_longer_running_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    left, held, running = (tmp_path / name for name in (f"emrml-job-slots-{dead}-left",
        f"emrml-job-slots-{dead}-held", f"emrml-job-slots-{os.getpid()}-running"))  # fmt: skip
    for folder in (left, held, running):
        folder.mkdir()
        for index in range(2):
            (folder / str(index)).touch()
    other = tmp_path / "emrml-job-slots-old"  # not named after a pid: not one this removes
    other.mkdir()
    # A worker of a server in another pid namespace holds a ticket of its folder: its pid is unknown here.
    worker = os.open(held / "1", os.O_RDWR)
    try:
        fcntl.flock(worker, fcntl.LOCK_EX | fcntl.LOCK_NB)
        remove_left_behind(tmp_path, "emrml-job-slots-", _tickets_held)
    finally:
        os.close(worker)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([held.name, running.name, other.name])
