"""Processes that end with the process they work for.

A job's worker process must not outlive the server or CLI that started it: an orphan would go on working
for a job that is handed to another runner, and hold memory and files nobody watches. Workers are forked
by multiprocessing's fork server, which is not the server itself (and stays up while a worker holds its
pipe), so the kernel's parent-death signal cannot tie them to the server: ``exit_with`` watches the server's
pid instead. The processes a worker forks itself (a batch prediction's pool) use ``die_with_parent``,
``prctl(PR_SET_PDEATHSIG)`` through ctypes, since Python has no binding for it.

Neither is needed for correctness: the attempt fencing of ``service.jobs`` keeps a stray process's writes
out of the metastore. They keep the machine clean.
"""

from __future__ import annotations

import ctypes
import functools
import os
import select
import signal
import socket
import sys
import threading
import time

#: From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def exit_with(pid: int) -> None:
    """End this process (``os._exit(1)``) as soon as process ``pid`` has exited; at once if it has.

    Uses a pidfd (Linux 5.3+), which cannot be fooled by pid reuse; elsewhere polls the pid twice a second.
    """
    try:
        descriptor: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        descriptor = None

    def watch() -> None:
        if descriptor is not None:
            select.select([descriptor], [], [])
        else:
            while process_exists(pid):
                time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="emrml-exit-with", daemon=True).start()


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent exits; True if it was arranged.

    Exits at once if the parent is already gone. The parent is the *thread* that forked this process, so
    use it only in processes forked by a thread that lives as long as they should. Linux only.
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        arranged = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent exited before the request took effect
        os._exit(1)
    return arranged


@functools.cache
def machine() -> str:
    """Where this process's pids mean something: the host name, and on Linux the pid namespace
    (``myhost/4026531836``). Containers may share a host name (host networking, a replicated service given
    one ``hostname``) but not pids: a process of another namespace must never be taken for gone because no
    process of its pid exists here. Never contains ``:`` or a space (it starts the job and scratch owner
    records)."""
    host = socket.gethostname().replace(":", "_").replace(" ", "_")
    try:
        return f"{host}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return host


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (perhaps another one, if the pid was reused) and has not exited.

    A zombie (exited, its status not yet collected by its parent) has exited: a server killed outright leaves
    its job workers zombies until their parent, its orphaned forkserver, ends. A server started again must
    take them for gone at its first recovery, not at its next one a quarter of a lease later.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _exited(pid)


def _exited(pid: int) -> bool:
    """Whether the existing process ``pid`` is a zombie (Linux's /proc; elsewhere never known)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except FileNotFoundError:
        return os.path.exists("/proc/self/stat")  # gone since the signal (or no /proc at all)
    except OSError:
        return False
    # The state follows the command name, in parentheses that may themselves hold any character.
    state = stat.rindex(b")") + 2
    return stat[state : state + 1] in (b"Z", b"X")
