"""The ``emrml`` command line: a thin layer over ``EmrML.call`` that renders results with rich.

Every command builds an Amazon ML request, calls the service and prints either rich tables and charts
(``--output table``, the default; drawn by ``emrml.cli_render``) or the operations' raw JSON output
(``--output json``, for scripts), as ``emrml.cli_common`` describes. This module holds the root command and
its options; each sub-command comes from the module ``SUBCOMMANDS`` names, imported when the command runs
or the help lists it: ``emrml.cli_kinds`` the commands particular to one kind of object (``create`` and the
like), to which ``emrml.cli_objects`` adds the ones every kind has (wait, show, list, update, delete),
``emrml.cli_tags`` the tags, ``emrml.cli_quickstart`` the quickstart, ``emrml.cli_server`` the server, its
users, keys and groups, ``emrml.cli_stream``, ``emrml.cli_jobs``, ``emrml.cli_plan`` and ``emrml.cli_run``
their commands.
"""

# ruff: noqa: E402  (the job fork server starts before the other imports: see below)

from __future__ import annotations

from emrml.cli_program import end_program, start_job_server_early

# First of all: a command that runs a job has the job fork server import the job code while this process
# imports typer and the service (``emrml.cli_program``).
start_job_server_early()

import functools
import importlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
import typer.main
from typer.core import TyperGroup

from emrml import collector
from emrml.cli_common import (
    EXIT_CODES_HELP,
    JOB_FAILED_EXIT_CODE,
    Output,
    State,
    command_group,
    ends_quietly_when_stdout_closes,
    hoist_global_options,
    log_as_lines,
    name_option_values,
)

if TYPE_CHECKING:
    import click

__all__ = ["JOB_FAILED_EXIT_CODE", "SUBCOMMANDS", "app"]

#: The root's sub-commands in the order of the help (typer's: commands, then groups), each with the module
#: whose ``register(app)`` adds it. A command's module is imported, and typer builds the command, when it
#: runs or the help lists it: ``emrml serve`` imports no other command's module and builds no other's
#: options.
SUBCOMMANDS: dict[str, str] = {
    "quickstart": "emrml.cli_quickstart",
    "serve": "emrml.cli_server",
    "jobs": "emrml.cli_jobs",
    "plan": "emrml.cli_plan",
    "run": "emrml.cli_run",
    "predict": "emrml.cli_kinds",
    "datasource": "emrml.cli_kinds",
    "model": "emrml.cli_kinds",
    "evaluation": "emrml.cli_kinds",
    "batch-prediction": "emrml.cli_kinds",
    "tags": "emrml.cli_tags",
    "endpoint": "emrml.cli_kinds",
    "users": "emrml.cli_server",
    "keys": "emrml.cli_server",
    "groups": "emrml.cli_server",
    "stream": "emrml.cli_stream",
}


@functools.cache
def registered(module: str) -> typer.Typer:
    """A Typer app holding what ``module``'s ``register`` adds to the root. Registered once per process: a
    module's register may also add commands to groups of its own (``cli_server``: the users' membership
    commands), which a second call would add again."""
    group = command_group()
    importlib.import_module(module).register(group)
    return group


def build_command(name: str) -> click.Command:
    """The root's sub-command ``name`` as click's object, built by typer alone (not its module's other
    commands), its options' values named (``name_option_values``)."""
    source = registered(SUBCOMMANDS[name])
    one = command_group()
    one.registered_commands = [info for info in source.registered_commands if info.name == name]
    one.registered_groups = [info for info in source.registered_groups if info.name == name]
    command = typer.main.get_group(one).commands[name]
    name_option_values(command)
    return command


class _Commands(MutableMapping[str, "click.Command"]):
    """The root's sub-commands (``SUBCOMMANDS``), each built by its first look-up: listing their names
    imports nothing, and walking the items (the help, the docs' tests) builds them all."""

    def __init__(self) -> None:
        self._names = list(SUBCOMMANDS)
        self._built: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._built:
            if name not in self._names:
                raise KeyError(name)
            self._built[name] = build_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._built[name] = command
        if name not in self._names:
            self._names.append(name)

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _Root(TyperGroup):
    """The root command: its sub-commands are built when named (``SUBCOMMANDS``); accepts ``--output`` and
    ``--home`` after the sub-command too, as the aws CLI; a closed stdout ends any command, its help
    included, in silence (``ends_quietly_when_stdout_closes``); every option's value has a name in the help
    (``name_option_values``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        name_option_values(self)  # the root's own options; each sub-command's are named as it is built
        self.commands = _Commands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # the names alone: building every command is the help's, not a listing's

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            hoisted = hoist_global_options(args)
        except typer.BadParameter as error:
            error.ctx = ctx  # for the usage line above the error
            raise
        with ends_quietly_when_stdout_closes():  # emrml --help | head -1
            return super().parse_args(ctx, hoisted)

    def invoke(self, ctx: click.Context) -> Any:
        with ends_quietly_when_stdout_closes():  # the sub-commands, their own help included
            return super().invoke(ctx)


class _Program(typer.Typer):
    """The root: run as the ``emrml`` program, it ends the process when its command is done
    (``cli_program.end_program``); called from another program (a test's), it returns or raises as typer's."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not collector.is_the_program():
            return super().__call__(*args, **kwargs)
        try:
            super().__call__(*args, **kwargs)
        except SystemExit as exc:
            end_program(exc.code)
        end_program(None)  # (typer's standalone mode ends in SystemExit: this is its standalone_mode=False)


app = command_group(
    typer_class=_Program,
    name="emrml",
    cls=_Root,
    help="emrml: a self-hosted Amazon Machine Learning.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    output: Output = typer.Option(
        Output.table, "--output", "-o", help="table for people, json (the raw operation output) for scripts."
    ),
    home: Path | None = typer.Option(
        None,
        "--home",
        envvar="EMRML_HOME",
        help="emrml home folder (metastore, samples); default ~/.emrml.",
        file_okay=False,
    ),
) -> None:
    if ctx.invoked_subcommand != "serve":
        collector.resume()  # the command's own work runs with the collector (a server resumes it to listen)
    log_as_lines()
    # Undone when the command ends (after the service closes: closing may warn too), so that a program
    # that runs commands in its own process (tests) keeps its own logging.
    ctx.call_on_close(lambda: log_as_lines(enabled=False))
    current = State(output=output, home=home)
    ctx.obj = current
    ctx.call_on_close(current.close)
