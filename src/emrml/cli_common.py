"""What every ``emrml`` command shares: options, the service handle, errors and output.

Errors are one line on stderr, ``error: <ErrorType>: <message>``, and the exit code tells scripts what
happened (``EXIT_CODES_HELP``). ``--output table`` (the default) draws rich tables and charts
(``emrml.cli_render``); ``--output json`` prints the operations' raw output for scripts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer

from emrml import collector
from emrml.config import Settings
from emrml.core.surrogates import is_text, shown_bytes
from emrml.errors import AmazonMLError, InvalidInputException

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from emrml.service.app import EmrML

#: Exit code when the request was accepted but its job ended FAILED (or the object is DELETED): the
#: same as for invalid input, since a failed job means its data, schema or recipe cannot be used.
JOB_FAILED_EXIT_CODE = InvalidInputException.exit_code
EXIT_CODES_HELP = (
    "Exit codes: 0 success, 1 internal error, 2 invalid input (including an object whose job ended FAILED), "
    "3 object not found, 4 idempotency mismatch, 5 limit exceeded, 6 model not mounted for predictions, "
    "7 access denied (by emrml, S3 or a file's permissions), "
    "8 emrml plan: the data does not fit the cluster, "
    "130 interrupted (Ctrl-C; during a job's wait, its wait command runs it again), "
    "141 stdout closed before the output ended (e.g. `emrml ... | head`, as git and cat end there)."
)

#: Exit code of a command stopped by Ctrl-C, the shells' 128 + SIGINT.
INTERRUPTED_EXIT_CODE = 130

#: Exit code of a command whose stdout was closed before its output ended (``emrml … | head -1``): what
#: git, cat and the other Unix tools end with there (128 + SIGPIPE, killed by the signal), so that a
#: ``set -o pipefail`` script treats ``emrml`` as it treats them.
CLOSED_STDOUT_EXIT_CODE = 141

#: Exit code of ``emrml plan`` when its verdict is "not enough space": a script tests the answer without
#: parsing it. Not an error's code (the plan was made and is printed), and none of theirs.
PLAN_DOES_NOT_FIT_EXIT_CODE = 8

P = ParamSpec("P")
R = TypeVar("R")


def command_group(typer_class: type[typer.Typer] = typer.Typer, **options: Any) -> typer.Typer:
    """A Typer app (the root or a group of commands; ``typer_class``, typer's or the root's own) whose help
    and usage errors click prints as plain text: Typer's rich formatting imports rich's Markdown and syntax
    highlighting, which would cost every ``--help`` and every mistyped option about as long as the rest of
    the start."""
    return typer_class(rich_markup_mode=None, **options)


#: An option's placeholder in the help by its value's type, where typer would show the type's name
#: (``--consumers <int>``), which says nothing of what to write.
_TYPE_METAVARS = {
    "int": "N",
    "int range": "N",
    "float": "NUMBER",
    "float range": "NUMBER",
    "file": "FILE",
    "filename": "FILE",
    "directory": "DIR",
    "path": "PATH",
}


def name_option_values(command: Any) -> None:
    """Give each option of ``command`` and of its sub-commands (click's objects) that takes a value and
    names no ``metavar`` a placeholder that says what to write: ``N`` for a whole number, ``NUMBER``,
    ``FILE``, ``DIR`` or ``PATH``, and for text the option's name (``--name NAME``, ``--host HOST``). An
    option whose name says too little names its own (``--input URI``, ``--wait SECONDS``); choices show
    themselves (``<auto|json|csv>``). Run once, on the root command, so every command is covered."""
    for param in command.params:
        if param.param_type_name != "option" or param.metavar is not None or param.is_flag or param.count:
            continue
        kind = param.type.name
        if kind != "choice":
            longest = max(param.opts, key=len)
            param.metavar = _TYPE_METAVARS.get(kind) or longest.lstrip("-").replace("-", "_").upper()
    for sub_command in getattr(command, "commands", {}).values():
        name_option_values(sub_command)


class StdoutClosedError(BrokenPipeError):
    """A write to (or flush of) stdout failed: its reader has gone (``emrml … | head -1``)."""


class _MarkedStdout:
    """stdout, with its broken pipes raised as ``StdoutClosedError``: what a closed stdout is known by on
    any platform (a pipe's reader gone is reported by poll differently on each, and not at all on Windows),
    and a broken pipe of anything else (a socket, a child's pipe) stays an error. Everything else is the
    stream's own, for rich and click to use it as they use stdout."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError as exc:
            raise StdoutClosedError(*exc.args) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError as exc:
            raise StdoutClosedError(*exc.args) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def ends_quietly_when_stdout_closes() -> Iterator[None]:
    """Within: a write to a stdout whose reader has gone (``emrml … | head -1``) ends the command in silence
    with ``CLOSED_STDOUT_EXIT_CODE``, as other Unix tools end, not with a traceback or an "internal error".
    A broken pipe of anything else (stdout still read) stays an error."""
    stream = sys.stdout
    if not isinstance(stream, _MarkedStdout):
        sys.stdout = _MarkedStdout(stream)  # type: ignore[assignment]
    try:
        yield
    except StdoutClosedError:
        try:
            # Whatever is still buffered for stdout, flushed as Python exits, goes nowhere rather than
            # failing again with a "BrokenPipeError ignored" message.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        raise typer.Exit(CLOSED_STDOUT_EXIT_CODE) from None
    finally:
        sys.stdout = stream


class Output(StrEnum):
    table = "table"
    json = "json"


@dataclass
class State:
    """Per-invocation options and the service, opened on first use and closed when the command ends."""

    output: Output
    home: Path | None
    _console: Console | None = None
    _service: EmrML | None = None
    _settings: Settings | None = None

    @property
    def json(self) -> bool:
        return self.output is Output.json

    @property
    def console(self) -> Console:
        """rich's console for tables and charts, made on first use (``emrml.cli_console``)."""
        if self._console is None:
            from emrml.cli_console import CliConsole

            # No markup: names and messages are user text and may contain square brackets.
            self._console = CliConsole(markup=False)
        return self._console

    @property
    def settings(self) -> Settings:
        """The settings, loaded on first use."""
        if self._settings is None:
            self._settings = Settings.load(home=self.home)
        return self._settings

    def serve_at(self, public_url: str) -> None:
        """Use ``public_url`` as the URL clients reach the service at (real-time EndpointUrls): for a
        command that starts the server after it opened the service."""
        self._settings = dataclasses.replace(self.settings, public_url=public_url)

    def existing_location(self, data: str, *, what: str) -> str:
        """``library.absolute_location`` of ``data`` (InvalidInputException naming ``what`` when nothing is
        there). Storage (the S3 endpoint, encryption) is configured from the settings first: a command
        checks its locations before it opens the service, which would configure it, and they must be
        looked for where the service will read them, not in AWS's S3."""
        from emrml.library import absolute_location
        from emrml.storage.locations import configure

        configure(self.settings)
        return absolute_location(data, what=what)

    def service(self, *, runs_jobs: bool = False) -> EmrML:
        """The service, opened on first use. ``runs_jobs``: the command will run a job, so the job fork
        server starts first and imports the job code while this process imports the service."""
        if self._service is None:
            if runs_jobs:
                from emrml.service import forkserver

                forkserver.start_early()
            # The service's imports (SQLAlchemy's ORM, the metastore's tables) are the program's start: the
            # collector, which the command's work runs with, is paused for them (``emrml.collector``).
            paused = collector.pause_while_starting()
            try:
                # Imported here so that --help and argument errors do not pay for the service's imports.
                from emrml.service.app import EmrML

                self._service = EmrML(self.settings)
            finally:
                if paused:
                    collector.resume()
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


class _LogLines(logging.Handler):
    """The warnings and errors the library logs during a command, each as one stderr line like the
    command's own (``warning: …``, ``error: …``): without a handler, Python prints their bare message,
    and a logged exception's traceback, among the command's output. A traceback's place is the logs
    (e.g. ``jobs.log``, which the message's reference finds); the line keeps the exception's summary."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().split("Traceback (most recent call last):", 1)[0]
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message += f" ({type(error).__name__}: {error})"
        text = " ".join(line.strip() for line in message.splitlines() if line.strip()).rstrip(":")
        return f"{'error' if record.levelno >= logging.ERROR else 'warning'}: {text}"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # The stderr of now, not of when the handler was made: tests' runners replace it per command.
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def log_as_lines(enabled: bool = True) -> None:
    """Print what is logged (warnings and errors) as ``_LogLines`` does, or, ``enabled`` False, stop: a
    server (``emrml serve``) logs in its own format (``web.access_log.configure_logging``)."""
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, _LogLines)]
    if enabled and not ours:
        root.addHandler(_LogLines())
    for handler in ours if not enabled else []:
        root.removeHandler(handler)


def state(ctx: typer.Context) -> State:
    """The root command's state, from any sub-command's context."""
    return ctx.find_root().obj


def fail(message: str, exit_code: int) -> typer.Exit:
    """Print ``error: <message>`` as one stderr line; return the Exit for the caller to raise."""
    # Plain echo, not rich: rich would wrap a long message over several lines.
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    return typer.Exit(exit_code)


def reports_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Turn service errors into one stderr line and their exit code; never show a traceback."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except KeyboardInterrupt:
            # Typer's own handling exits 130 in silence, which reads as a crash; a wait says more (its own
            # message names the wait command that resumes it).
            raise fail("interrupted before the command finished", INTERRUPTED_EXIT_CODE) from None
        except AmazonMLError as exc:
            raise fail(f"{exc.type_name}: {exc.message}", exc.exit_code) from None
        except Exception as exc:
            if isinstance(exc, StdoutClosedError):
                raise  # the output's reader is gone: not an error (ends_quietly_when_stdout_closes)
            raise fail(f"internal error: {type(exc).__name__}: {exc}", 1) from None

    return run


@contextmanager
def named_as_options(options: Mapping[str, str]) -> Iterator[None]:
    """Within: an invalid-input error about a request member the user gave as an option (``options`` maps
    members to options) starts with that option, e.g. ``--disk-per-node: DiskPerNode '800XB': unknown
    unit``: the service's messages name the API's members, which the user never typed."""
    try:
        yield
    except InvalidInputException as exc:
        for member, option in options.items():
            # "DataLocationS3 '…'", "Parameters: …", "Tags[1].Key …"
            if any(exc.message.startswith(member + mark) for mark in (" ", ":", "[")):
                raise InvalidInputException(f"{option}: {exc.message}") from None
        raise


def limit_option(default: int | None, help: str, *, maximum: int | None = None) -> Any:
    """``--limit N``, how many results a list command shows, written the same in every list's help: ``N``
    with its range in the help, where click's own number range would show ``<int range>`` and ``[x>=1]``."""
    if maximum is None:
        bounds, wanted = "1 or more", "a whole number, 1 or more"
    else:
        bounds, wanted = f"1\N{EN DASH}{maximum}", f"a whole number from 1 to {maximum}"

    def parse(value: str | int) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1 or (maximum is not None and number > maximum):
            raise typer.BadParameter(f"{value!r} is not {wanted}")
        return number

    return typer.Option(default, "--limit", metavar="N", parser=parse, help=f"{help} ({bounds}).")


def score_threshold_option(help: str, **checks: Any) -> Any:
    """``--score-threshold <0 to 1>``, a BINARY model's cut-off, named after Amazon ML's ``ScoreThreshold``
    by every command that takes one; ``checks``: click's (``min``, ``max``)."""
    return typer.Option(None, "--score-threshold", metavar="<0 to 1>", help=help, **checks)


def threshold_alias_option(**checks: Any) -> Any:
    """``--threshold``: the name ``evaluation show`` used to give the cut-off, still read (hidden from the
    help) so that scripts written with it keep working."""
    return typer.Option(None, "--threshold", hidden=True, **checks)


def cut_off(value: str | float) -> float:
    """A ``--score-threshold`` tried on an evaluation: a number from 0 to 1. Not click's float range, which
    lets NaN through and calls "abc" "not a valid float range"."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0.0 <= number <= 1.0:  # NaN too
        raise typer.BadParameter(f"{value!r} is not a number from 0 to 1")
    return number


def chosen_score_threshold(given: float | None, alias: float | None) -> float | None:
    """The cut-off of ``--score-threshold`` or its old name ``--threshold`` (refused when both are given:
    which one was meant?)."""
    if given is not None and alias is not None:
        raise InvalidInputException("--threshold is the old name of --score-threshold: give only one")
    return given if given is not None else alias


def present(members: Mapping[str, Any]) -> dict[str, Any]:
    """The members that have a value: absent and None mean different things to the API."""
    return {key: value for key, value in members.items() if value is not None}


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def print_sections(current: State, sections: list[RenderableType]) -> None:
    for position, section in enumerate(sections):
        if position:
            current.console.print()
        current.console.print(section)


def call_and_report(current: State, operation: str, request: dict[str, Any], message: str) -> None:
    """Call an operation that changes an object; print its output (json) or ``message``."""
    result = current.service().call(operation, request)
    if current.json:
        print_json(result)
    else:
        current.console.print(message)


#: Options of the root command that may also be written after the sub-command, as the aws CLI allows.
GLOBAL_OPTIONS = ("--output", "-o", "--home")
_FORMATS = {item.value for item in Output}


def _refuse_undecodable(arg: str) -> None:
    """Refuse an argument whose bytes are not UTF-8 (Python hands them over with surrogate escapes): no
    id, name or path emrml keeps can hold them, and a user or group name, or key id, so given ended in
    "internal error: UnicodeEncodeError" (exit 1) when the metastore was asked for it."""
    if not is_text(arg):
        raise typer.BadParameter("it is not UTF-8 text", param_hint=f"'{shown_bytes(arg)}'")


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the root's options (and their values) found anywhere before ``--`` to the front, so that
    ``emrml datasource show ID --output json`` means ``emrml --output json datasource show ID``; an argument
    that is not UTF-8 is refused first."""
    for arg in args:
        _refuse_undecodable(arg)
    front: list[str] = []
    rest: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":
            rest.extend(args[position:])
            break
        name = arg.split("=", 1)[0]
        following = args[position + 1] if position + 1 < len(args) else ""
        value = arg.partition("=")[2] if "=" in arg else following
        own_output = arg == "--output" and "stream" in rest  # emrml stream start --output: the sub-command's
        if arg in GLOBAL_OPTIONS and position + 1 == len(args) and not own_output:
            # Left to the sub-command, it would say "No such option: -o" of an option that exists.
            needed = "a folder" if arg == "--home" else "table or json"
            raise typer.BadParameter(f"it needs a value: {needed}", param_hint=f"'{arg}'")
        if name == "--home" and not value:
            # An empty value (--home "$UNSET") would be Path("."): the current folder silently made the
            # home, its metastore written there and its mode changed to owner-only.
            raise typer.BadParameter("it needs a folder, not an empty value", param_hint="'--home'")
        if name in ("--output", "-o") and value not in _FORMATS:
            rest.append(arg)  # not an output format: a sub-command's own --output (emrml stream start)
        elif name in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        elif arg in GLOBAL_OPTIONS and position + 1 < len(args):
            front += [arg, args[position + 1]]
            position += 1
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            front.append(arg)  # -ojson
        else:
            rest.append(arg)
        position += 1
    return front + rest


class _NoProgress:
    """The progress bar of ``--output json``, which draws nothing: what the commands call of rich's
    ``Progress``, without importing rich (20-60 ms of a command's start)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def add_task(self, description: str, **fields: Any) -> int:
        return 0

    def update(self, task: int, **fields: Any) -> None:
        return None

    def stop(self) -> None:
        return None


#: The spinner, a bar of 20 cells, the percentage, the time and the spaces between them.
_PROGRESS_COLUMNS_WIDTH = 36


def job_progress(current: State) -> Any:
    """The rich progress bar jobs are waited with: on stderr, gone when done, off for --output json and
    when stderr is not a terminal (a log or a pipe: rich would draw nothing there but an empty line)."""
    if current.json:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    from emrml.cli_console import CliConsole

    console = CliConsole(stderr=True)

    class Description(TextColumn):
        """The description, cut in its middle to what the terminal leaves beside the other columns: rich
        cut those instead, the time to "0:0…" and the bar to two cells, when a job read a long path; its
        end, the file's name, is kept."""

        def render(self, task: Task) -> Text:
            text = task.description
            room = max(console.width - _PROGRESS_COLUMNS_WIDTH, 16)
            if len(text) > room:
                text = text[: room // 2] + "…" + text[len(text) - (room - room // 2 - 1) :]
            return Text(text, no_wrap=True)

    return Progress(
        SpinnerColumn(),
        Description("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
