"""The cyclic garbage collector, paused while the ``emrml`` program starts.

Starting a command imports typer and its commands, and a server SQLAlchemy with its ORM, the metastore's
mapped classes and Starlette: hundreds of thousands of objects that live as long as the process. The
collector runs every 700 allocations and, as the heap grows, scans them all again and again: about an
eighth of those imports' CPU time (the serve path's imports: 358 ms with it, 316 ms without, six runs).

So the program pauses it from its first import (:func:`pause_while_starting`) until its command starts
working, a server until it is about to listen (:func:`resume`). Resuming freezes what was allocated so
far, so no later collection scans it again (a server would otherwise pay a full collection, tens of ms,
during its first requests); the few hundred unreachable objects the imports left stay allocated.

A program that imports emrml's modules (tests, a notebook, the library) keeps its collector as it was.
The job fork server pauses it for its preload too (``service.forkserver``), and resumes it before it forks
a worker: the preload (SQLAlchemy, numpy, Arrow, the job code) is on a CLI command's critical path.
"""

from __future__ import annotations

import gc
import os
import sys

_paused = False


def is_the_program() -> bool:
    """Whether this process runs the ``emrml`` program: ``python -m emrml`` or the console script (not a
    process multiprocessing started from it, whose copy of the main module is named ``__mp_main__``)."""
    main = sys.modules.get("__main__")
    if getattr(main, "__name__", None) != "__main__":
        return False
    spec = getattr(main, "__spec__", None)
    if spec is not None:
        return spec.name == "emrml.__main__"
    return bool(sys.argv) and os.path.basename(sys.argv[0]) == "emrml"


def pause_while_starting() -> bool:
    """Pause the collector if this process is the ``emrml`` program and it runs; whether it paused it."""
    return is_the_program() and pause()


def pause() -> bool:
    """Pause the collector (if it runs) until :func:`resume`: the start of a process whose imports are
    its own (the program; the job fork server's preload, ``service.forkserver``). Returns whether it
    paused it (it was running)."""
    global _paused
    if not _paused and gc.isenabled():
        gc.disable()
        _paused = True
        return True
    return False


def resume() -> None:
    """Collect again (if paused here), leaving everything allocated so far out of every collection."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
