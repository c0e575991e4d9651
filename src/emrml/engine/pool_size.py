"""How many processes a local batch prediction's pool runs (``engine.units``): one per core this process may
run on, at most ``LOCAL_WORKERS_MAX``, and no more than the memory available holds.

Each pool process holds a few blocks of ``Settings.batch_bytes`` of CSV at a time in their several forms (the
text, its Arrow columns, the features, the result lines and their gzip buffers) beside the allocator's own
slack; the model and the code are the job process's pages, shared by the fork. ``worker_budget`` is that
estimate: the private memory (``smaps_rollup``) of each of two pool processes scoring the bank data eight
times over (20 columns, a model of all its inputs) peaked at about 30, 90 and 165 MiB with batches of 1, 4
and 16 MiB; the budget (88, 160 and 448 MiB) leaves room for wider rows and longer texts.

The memory available is read when a job plans its pool: the kernel's ``MemAvailable``, and less when the
process's cgroup, or one above it (a container's memory limit), leaves less. Jobs starting at the same moment
read the same figure, so the bound is a guard against a machine of little memory and many cores, not a
reservation.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from emrml.config import Settings

#: The most processes a local batch prediction runs: each holds a few batches, and past this many a
#: machine's memory bandwidth, not its cores, bounds the scoring.
LOCAL_WORKERS_MAX = 8
#: A pool process's memory beyond its batches: the interpreter's private pages once it writes to them, the
#: allocator's arenas.
WORKER_BASE_BYTES = 64 << 20
#: Copies of a batch's bytes a pool process holds at its peak (text, Arrow columns, features, lines, gzip).
WORKER_BATCH_COPIES = 24

_MEMINFO = Path("/proc/meminfo")
#: The cgroups of this process, and where the cgroup file systems are mounted.
_SELF_CGROUP = Path("/proc/self/cgroup")
_CGROUP = Path("/sys/fs/cgroup")


def worker_budget(batch_bytes: int) -> int:
    """The memory one pool process is counted to need with batches of ``batch_bytes``."""
    return WORKER_BASE_BYTES + WORKER_BATCH_COPIES * batch_bytes


def local_workers(batch_bytes: int = Settings.batch_bytes) -> int:
    """The local pool's processes: the cores this process may run on (its CPU affinity, as a container's
    limit sets it), at most ``LOCAL_WORKERS_MAX``, and at most as many ``worker_budget``s as the memory
    available holds; always at least one (a job runs whatever the memory, as it did alone)."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    workers = min(cores, LOCAL_WORKERS_MAX)
    available = available_memory()
    if available is not None:
        workers = min(workers, available // worker_budget(batch_bytes))
    return max(1, workers)


def available_memory() -> int | None:
    """Bytes this process may still allocate without swapping: ``MemAvailable``, or the room left under the
    limits of its cgroups when smaller; None when neither can be read (not Linux): no bound then."""
    figures = [figure for figure in (_meminfo_available(), _cgroup_room()) if figure is not None]
    return min(figures) if figures else None


def _meminfo_available() -> int | None:
    try:
        text = _MEMINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024  # given in kB
    return None


def _cgroup_room() -> int | None:
    """The least memory left under the limits of this process's cgroup and of every cgroup above it (cgroup
    v2, or v1's memory controller); None without a limit or a cgroup to read. A limit on a parent bounds
    all the cgroups under it together: a container runtime or a systemd slice sets it there, leaving the
    process's own cgroup without one."""
    try:
        lines = _SELF_CGROUP.read_text().splitlines()
    except OSError:
        return None
    rooms: list[int] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            files, mount = ("memory.max", "memory.current"), _CGROUP
        elif "memory" in controllers.split(","):
            files, mount = ("memory.limit_in_bytes", "memory.usage_in_bytes"), _CGROUP / "memory"
        else:
            continue
        rooms += _rooms_up_to(mount, path, files)
    return min(rooms) if rooms else None


def _rooms_up_to(mount: Path, path: str, files: tuple[str, str]) -> list[int]:
    """The room under each limit from the cgroup ``path`` up to the ``mount``'s root, read from its ``files``
    (limit, use); a level without them (the root cgroup has none) or without a limit counts for nothing."""
    # The path is the host's unless the container has its own cgroup namespace; a container without one
    # mounts its own cgroup at the root, where the host's path does not exist. A process outside its
    # namespace's root sees a path with "..": not a folder under the mount.
    relative = PurePosixPath(path.lstrip("/"))
    folder = mount / relative
    if ".." in relative.parts or not folder.is_dir():
        folder = mount
    rooms = []
    while True:
        try:
            limit, used = ((folder / name).read_text().strip() for name in files)
            if limit != "max":  # v1 says "no limit" with a huge number, which MemAvailable undercuts
                rooms.append(max(0, int(limit) - int(used)))
        except (OSError, ValueError):
            pass
        if folder == mount:
            return rooms
        folder = folder.parent
