"""The job fork server: a clean process that imports the job code once and forks one worker per job.

A fork server starts clean (no database connections or threads of ours), so workers forked from it start
in milliseconds, not seconds. ``start_early`` starts it before the caller imports the service: a CLI
command that will run a job lets the fork server import the job code on one core while it imports the
service on the other. This module imports nothing heavy for that reason.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

#: What the fork server imports before forking workers: the job code (the datasource job's engine with it)
#: and Arrow set up. A CLI command runs a job or two and ends, so the other engines load in the workers
#: that need them; a server forks many workers and preloads them all (``preload_every_engine``).
PRELOAD = ["emrml.service.preload"]
#: boto3 and its S3 client code (0.5 s), for processes whose jobs may read or write S3.
PRELOAD_S3 = "emrml.service.preload_s3"
#: scipy.special holds the sigmoid the learner and the batch scorer call (0.15 s of imports); the
#: featurizer's fitting and batch modules load only when a batch is featurized (a Predict needs neither).
PRELOAD_EVERY_ENGINE = [
    *PRELOAD,
    "emrml.engine.training",
    "emrml.engine.batch",
    "emrml.core.features.fitting",
    "scipy.special",
    PRELOAD_S3,
]
_preload = PRELOAD
_MAIN_LOCK = threading.Lock()


def preload_every_engine() -> None:
    """Make the fork server, when it starts, import the training and batch engines too (a server)."""
    global _preload
    _preload = PRELOAD_EVERY_ENGINE


def preload_s3() -> None:
    """Make the fork server, when it starts, load the S3 client code too (S3 is configured)."""
    global _preload
    if PRELOAD_S3 not in _preload:
        _preload = [*_preload, PRELOAD_S3]


#: First and last of every preload: the collector is paused while the fork server imports (a tenth of the
#: preload's CPU, which a CLI command waits for) and resumed, what was imported frozen, before it forks a
#: worker (``emrml.collector``).
PAUSE_COLLECTOR = "emrml.service.preload_start"
RESUME_COLLECTOR = "emrml.service.preload_end"


def context() -> ForkServerContext:
    """The multiprocessing context whose processes are forked from the job fork server."""
    spawn = multiprocessing.get_context("forkserver")
    spawn.set_forkserver_preload([PAUSE_COLLECTOR, *_preload, RESUME_COLLECTOR])
    return spawn


@contextmanager
def main_hidden() -> Iterator[None]:
    """Start the fork server or a worker without making it re-run the caller's ``__main__`` script.

    multiprocessing re-imports the parent's main script in the fork server, so a user script that calls
    emrml at top level (no ``if __name__ == "__main__"`` guard) would run again there. Workers need
    nothing from ``__main__``; hiding its file while the start request is built avoids that.
    """
    main = sys.modules["__main__"]
    with _MAIN_LOCK:
        saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)


def end_with_its_clients(pid: int) -> None:
    """Registered with ``atexit`` by the fork server's preload (``preload_end``; ``pid``: its process): when
    its clients are gone, the fork server ends at once, without tearing down the modules it preloaded
    (numpy, Arrow, SQLAlchemy: 30-90 ms of CPU). It holds the stdout and stderr of the command that started
    it: a script reading the command's output (``$(emrml ...)``, a pipe) waits for them to close.

    Nothing else ends through this: not a worker forked from the fork server (another process), nor a
    process that imported the preload's modules itself (multiprocessing's fork server loop, which records
    its own address and no server's process, did not run there)."""
    server = sys.modules.get("multiprocessing.forkserver")
    if server is None or os.getpid() != pid:
        return
    state = server._forkserver
    if state._forkserver_address is not None and state._forkserver_pid is None:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os._exit(0)


def stop() -> None:
    """Stop the fork server this process started, at once (SIGTERM), even in the middle of its preload: for
    a process that is ending, its workers ended (``cli_program``)."""
    pid = forkserver._forkserver._forkserver_pid
    if pid is not None:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def start_early() -> None:
    """Start the fork server now, without waiting for it to import the job code."""
    context()
    with main_hidden():
        forkserver.ensure_running()
