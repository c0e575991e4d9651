"""The rich console the command line draws tables and charts with.

A module of its own, imported where something is drawn: rich takes 15-20 ms to import, which a command
that draws nothing (``emrml serve``, ``--output json``, ``--help``) does not pay.
"""

from __future__ import annotations

import sys

from rich.console import Console


class CliConsole(Console):
    """rich's Console, except when its output is a closed pipe: rich exits 1 there, and the command line
    ends such a command as ``cli_common.ends_quietly_when_stdout_closes`` says."""

    def on_broken_pipe(self) -> None:
        # rich calls this while it handles the write's error: that error goes on as it was, so that one
        # of stdout's (``StdoutClosedError``) is still known as one.
        error = sys.exception()
        if isinstance(error, BrokenPipeError):
            raise error
        raise BrokenPipeError("the output's reader is gone")
