"""How the ``emrml`` command line writes, whatever the command: to a closed pipe, the JSON of its lists,
and the warnings the library logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from cli_helpers import invoke_json
from emrml.cli_common import CLOSED_STDOUT_EXIT_CODE, ends_quietly_when_stdout_closes

#: ``python -m emrml`` on a platform whose ``select`` has no ``poll`` (Windows): a closed stdout was told
#: from other broken pipes by Linux's poll flags, and there the command ended with a traceback.
WITHOUT_POLL = "import select, sys; del select.poll; from emrml.cli import app; app(prog_name='emrml')"


def run_into_closed_pipe(home: Path, *args: str, poll: bool = True) -> subprocess.CompletedProcess[str]:
    """``emrml ARGS`` in a process of its own whose stdout is a pipe nobody reads any longer, as in
    ``emrml ARGS | head -1`` once head has its line."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        start = ["-m", "emrml"] if poll else ["-c", WITHOUT_POLL]
        command = [sys.executable, *start, "--home", str(home), *args]
        return subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)


@pytest.mark.parametrize(
    "args",
    [
        ("datasource", "list"),  # rich, which exited 1 in silence
        ("--output", "json", "groups", "list"),  # plain writes, which said "internal error: BrokenPipeError"
        ("groups", "list"),
        ("datasource", "show", "--help"),  # click's help, which exited 1
    ],
    ids=["table", "json", "access-table", "help"],
)
def test_a_closed_stdout_ends_the_command_in_silence_as_unix_tools_end(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    for poll in (True, False):
        ran = run_into_closed_pipe(tmp_path / "home", *args, poll=poll)
        assert (ran.returncode, ran.stderr) == (CLOSED_STDOUT_EXIT_CODE, ""), poll
    assert CLOSED_STDOUT_EXIT_CODE == 128 + 13  # killed by SIGPIPE, as the shells report git and cat


def test_a_broken_pipe_of_anything_but_stdout_stays_an_error(tmp_path: Path) -> None:
    """Only stdout's reader gone is the quiet end: a pipe the command writes to otherwise (a socket, a
    child's input) broken is an error, even when stdout is closed too."""
    with pytest.raises(BrokenPipeError), ends_quietly_when_stdout_closes():
        raise BrokenPipeError("a socket's peer is gone")
    reader, writer = os.pipe()
    os.close(reader)
    with open(writer, "w", encoding="utf-8") as closed:
        original = sys.stdout
        sys.stdout = closed
        try:
            with pytest.raises(BrokenPipeError), ends_quietly_when_stdout_closes():
                raise BrokenPipeError("a socket's peer is gone")
            with pytest.raises(typer.Exit) as ended, ends_quietly_when_stdout_closes():
                print("x" * 100_000)
            assert ended.value.exit_code == CLOSED_STDOUT_EXIT_CODE and sys.stdout is closed
        finally:
            sys.stdout = original


def test_every_list_prints_its_results_in_one_shape(tmp_path: Path) -> None:
    """``users``, ``keys`` and ``groups list`` printed a bare list where the lists of objects print
    ``{"Results": [...]}`` (DescribeDataSources' shape): a script reads each the same way."""
    home = ("--home", str(tmp_path / "home"))
    invoke_json(*home, "users", "create", "dana")
    key = invoke_json(*home, "keys", "create", "dana")
    assert invoke_json(*home, "datasource", "list") == {"Results": []}
    (user,) = invoke_json(*home, "users", "list")["Results"]
    (listed,) = invoke_json(*home, "keys", "list")["Results"]
    groups = invoke_json(*home, "groups", "list")["Results"]
    assert user["UserName"] == "dana" and listed["AccessKeyId"] == key["AccessKeyId"]
    assert "users" in {group["GroupName"] for group in groups}


def test_what_the_library_logs_is_one_warning_line_among_the_output(tmp_path: Path) -> None:
    """A warning logged during a command (here: the home's key file readable by others; during ``emrml
    stream run``, a consumer's lost leases) was printed bare, unlike every other line the CLI writes."""
    home = tmp_path / "home"
    invoke_json("--home", str(home), "users", "list")  # creates the home and its key file
    key_file = home / "secrets.key"
    key_file.chmod(0o644)
    command = [sys.executable, "-m", "emrml", "--home", str(home), "users", "list"]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert ran.stdout == "No users.\n"
    assert ran.stderr.splitlines() == [
        f"warning: {key_file} is readable by other users (mode 644); chmod 600 it"
    ]


LOG_AN_EXCEPTION = """
import logging
from emrml.cli_common import log_as_lines
log_as_lines()
log_as_lines()  # once is enough: no line twice
try:
    raise OSError("disk gone")
except OSError:
    logging.getLogger("emrml.service.worker").exception("job X failed (reference r1):\\nmore text")
logging.getLogger("emrml.x").info("not shown")
"""


def test_the_log_lines_end_with_the_command(tmp_path: Path) -> None:
    """A program that runs commands in its own process keeps its own logging after them."""
    import logging

    before = list(logging.getLogger().handlers)
    invoke_json("--home", str(tmp_path / "home"), "datasource", "list")
    assert logging.getLogger().handlers == before


def test_a_logged_exception_is_one_error_line_without_its_traceback() -> None:
    ran = subprocess.run([sys.executable, "-c", LOG_AN_EXCEPTION], capture_output=True, text=True, check=True)
    assert ran.stderr.splitlines() == ["error: job X failed (reference r1): more text (OSError: disk gone)"]
