"""The ``emrml`` program's start and end around its command: both are on the path of every command's wall.

Start: a command that runs a job waits for the job fork server's preload (numpy, Arrow, SQLAlchemy, the job
code), which takes longer than the command's own start (typer, the service, the request). ``emrml.cli``
calls ``start_job_server_early`` before it imports anything else, so the fork server's preload starts with
the program instead of once typer has parsed the arguments. Only the words on the command line are looked
at: a command named wrongly, or whose arguments typer refuses, started a fork server for nothing, which
ends with the program.

End: ``end_program`` ends the process once the command is done, its ``atexit`` functions run and its output
flushed, without the interpreter's teardown of every module (SQLAlchemy's ORM, typer, rich: 50-130 ms of
CPU after the output is out, which the user's shell waits for).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence
from contextlib import suppress
from typing import NoReturn

from emrml import collector

#: The commands that run a job (unless given ``--no-wait``), by their words: each opens the service with
#: ``runs_jobs`` (``cli_common.State.service``).
JOB_COMMANDS = frozenset(
    {
        ("datasource", "create"),
        ("model", "create"),
        ("evaluation", "create"),
        ("batch-prediction", "create"),
        ("quickstart",),
    }
)
#: The root's options that take a value, which may come before the command's words
#: (``emrml --home H --output json datasource create``; ``cli_common.GLOBAL_OPTIONS``).
_VALUED_OPTIONS = ("--home", "--output", "-o")
#: Options after which the command runs no job.
_NO_JOB_OPTIONS = ("--no-wait", "--help", "-h")
#: Python's exit status when stdout cannot be flushed at the exit.
_FLUSH_FAILED_STATUS = 120


def runs_a_job(args: Sequence[str]) -> bool:
    """Whether the command line ``args`` (without the program's name) names a command that runs a job."""
    words: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":
            break
        if arg in _NO_JOB_OPTIONS:
            return False
        if len(words) < 2:
            if arg in _VALUED_OPTIONS:
                position += 1  # its value is no command's word
            elif not arg.startswith("-"):
                words.append(arg)
        position += 1
    return tuple(words) in JOB_COMMANDS or tuple(words[:1]) in JOB_COMMANDS


def start_job_server_early() -> None:
    """Start the job fork server now if this process is the ``emrml`` program and its command runs a job."""
    if collector.is_the_program() and runs_a_job(sys.argv[1:]):
        # Registered before multiprocessing (imported with the fork server) registers its own exit
        # function, which joins the job's workers: this one runs after it.
        atexit.register(_stop_job_server)
        from emrml.service import forkserver

        forkserver.start_early()


def _stop_job_server() -> None:
    """At the program's exit, its workers joined: stop the fork server it started early. A command that
    ended before its job (its arguments refused, its data missing) would otherwise leave it importing its
    preload, holding the command's stdout and stderr open for a script reading them until it is done."""
    from emrml.service import forkserver

    forkserver.stop()


def end_program(status: object) -> NoReturn:
    """End the program with ``status`` (a ``SystemExit``'s code) as Python's own exit would, its ``atexit``
    functions run and stdout and stderr flushed, but without tearing down the interpreter's modules.

    Python's exit ends as usual when threads other than daemons still run (it waits for them) or
    ``status`` is text (it prints it)."""
    others = [thread for thread in threading.enumerate() if thread is not threading.main_thread()]
    if any(not thread.daemon for thread in others) or not (status is None or isinstance(status, int)):
        raise SystemExit(status)
    code = status or 0
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or _FLUSH_FAILED_STATUS
    with suppress(OSError, ValueError):  # nowhere left to say it, as for Python
        sys.stderr.flush()
    os._exit(code)
