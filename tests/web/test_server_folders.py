"""A starting server removes the job slot ticket folders that servers killed outright left, and no other."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from emrml.web.console_process import ConsoleProcess
from emrml.web.server import _tickets_held
from emrml.web.server_folders import SOCKET_PATH_BYTES, remove_left_behind


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


def test_a_console_socket_under_a_temporary_directory_too_deep_for_it_is_bound_in_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket's path has 107 bytes at most: a server whose TMPDIR lay deeper (a build tree's, a test
    runner's) failed to start with "AF_UNIX path too long"."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with ConsoleProcess(tmp_path / "home", "http://127.0.0.1:1") as console:
        socket_path = Path(console.socket_path)
        assert socket_path.is_socket()
        assert len(os.fsencode(socket_path)) <= SOCKET_PATH_BYTES
        assert socket_path.parent.parent == Path("/tmp")
        assert socket_path.parent.name.startswith(f"emrml-console-{os.getpid()}-")
    assert not socket_path.parent.exists()
    shallow = Path(tempfile.mkdtemp(prefix="emrml-test-", dir="/tmp"))  # used as it is
    monkeypatch.setattr(tempfile, "tempdir", str(shallow))
    try:
        with ConsoleProcess(tmp_path / "home", "http://127.0.0.1:1") as console:
            assert Path(console.socket_path).parent.parent == shallow
    finally:
        shutil.rmtree(shallow)


def test_folders_older_versions_named_after_no_pid_are_removed_when_nothing_uses_them(tmp_path: Path) -> None:
    """Older versions named the folders ``<prefix><random>`` (``mkdtemp``'s eight characters): a starting
    server removes those nothing uses that were last changed before it started, and no other."""
    from emrml.web.console_process import _listened_on

    before = time.time() - 3600
    names = (
        "emrml-console-k2x_9qaz",
        "emrml-console-live0001",
        "emrml-console-justmade",
        "emrml-console-notes",
    )
    left, live, just_made, other = (tmp_path / name for name in names)
    for folder in (left, live, just_made, other):
        folder.mkdir()
    (left / "console.sock").touch()  # the socket file of a server killed outright: nothing listens on it
    tickets = tmp_path / "emrml-job-slots-ab3defgh"
    tickets.mkdir()
    (tickets / "0").touch()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(live / "console.sock"))
        listening.listen(1)
        for folder in (left, live, other, tickets):
            os.utime(folder, (before, before))
        worker = os.open(tickets / "0", os.O_RDWR)
        try:
            fcntl.flock(worker, fcntl.LOCK_EX | fcntl.LOCK_NB)
            remove_left_behind(tmp_path, "emrml-console-", _listened_on)
            remove_left_behind(tmp_path, "emrml-job-slots-", _tickets_held)
            assert tickets.is_dir()  # a ticket held
        finally:
            os.close(worker)
        remove_left_behind(tmp_path, "emrml-job-slots-", _tickets_held)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[1:])
