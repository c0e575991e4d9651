"""The folders ``emrml serve`` keeps in the temporary directory while it runs: the console's socket
(``console_process``) and the workers' job slot tickets (``server.serve_workers``).

A server removes its own when it stops; one killed outright (SIGKILL, the OOM killer, a power cut of a
container that keeps /tmp) cannot. So each folder is named after the server's pid, and a starting server
removes the folders of its kind that servers which no longer run left: those of this user, named after a
pid no process has, that nothing uses still (``in_use``: a server in another pid namespace sharing the
temporary directory has a pid this one cannot see, but it still listens on its socket, holds its tickets).
Older versions named them ``<prefix><random>``, after no pid: those of this user are removed too when nothing
uses them and they were last changed before this server started (one of an older version starting now has
not bound its socket yet).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: The longest path of a Unix socket (Linux's ``sun_path`` holds 108 bytes, its NUL among them).
SOCKET_PATH_BYTES = 107
#: What ``mkdtemp`` adds to a folder's prefix and pid: a dash and eight random characters.
_RANDOM_BYTES = 9
#: The characters of ``mkdtemp``'s random part, of which a folder of an older version is named.
_RANDOM_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
#: When this server started (this module is imported as it starts): an older version's folder changed
#: since may be one a server starting meanwhile is setting up.
_STARTED = time.time()


def server_folder(prefix: str, in_use: Callable[[Path], bool], *, room: int = 0) -> Path:
    """A new owner-only folder ``<tmp>/<prefix><pid>-<random>`` for this process, once the folders of
    ``prefix`` that servers no longer running left have been removed. ``room``: the bytes its path must
    leave below ``SOCKET_PATH_BYTES`` for a socket in it (``/console.sock``); a temporary directory too deep
    for that (a TMPDIR far down a build tree) gives way to ``/tmp``, where binding would fail instead."""
    parent = Path(tempfile.gettempdir())
    name_bytes = len(prefix) + len(str(os.getpid())) + _RANDOM_BYTES
    too_deep = len(os.fsencode(parent)) + 1 + name_bytes + room > SOCKET_PATH_BYTES
    if room and too_deep and Path("/tmp").is_dir():
        parent = Path("/tmp")
    remove_left_behind(parent, prefix, in_use)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def remove_left_behind(parent: Path, prefix: str, in_use: Callable[[Path], bool]) -> None:
    try:
        entries = list(os.scandir(parent))
    except OSError:  # a temporary directory that cannot be listed: mkdtemp says what is wrong with it
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        rest = entry.name.removeprefix(prefix)
        pid, dash, _ = rest.partition("-")
        old_style = len(rest) == _RANDOM_BYTES - 1 and set(rest) <= _RANDOM_CHARACTERS
        if not old_style and (not dash or not pid.isdigit()):
            continue
        try:
            status = entry.stat(follow_symlinks=False)
            mine = entry.is_dir(follow_symlinks=False) and status.st_uid == os.getuid()
        except OSError:  # removed meanwhile (by another server starting)
            continue
        folder = Path(entry.path)
        # Whether it is in use is asked last: a connection to a running console's socket starts its child.
        if old_style:
            if not mine or status.st_mtime >= _STARTED or in_use(folder):
                continue
            why = "by a server of an older version, and nothing uses it"
        else:
            if not mine or _running(int(pid)) or in_use(folder):
                continue
            why = f"by server process {pid}, which no longer runs"
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed %s, left behind %s", folder, why)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): it exists
        return True
    return True
