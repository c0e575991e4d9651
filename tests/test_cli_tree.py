"""The root command builds each sub-command when it is named: the tree it shows is the one every module's
``register`` makes when all are added at once, and a command imports the modules of no other."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import typer.main
from typer.core import TyperGroup

from emrml.cli import SUBCOMMANDS, app, registered
from emrml.cli_common import command_group, name_option_values


def eager_commands() -> dict[str, Any]:
    """Every module's registrations in one Typer app, built together as typer builds a whole tree."""
    everything = command_group()
    for module in dict.fromkeys(SUBCOMMANDS.values()):
        everything.registered_commands += registered(module).registered_commands
        everything.registered_groups += registered(module).registered_groups
    group = typer.main.get_group(everything)
    name_option_values(group)
    return dict(group.commands)


def helps(command: Any, parent: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path, help text) of ``command`` and of every command under it."""
    ctx = command.make_context(path[-1], [], parent=parent, resilient_parsing=True)
    yield path, command.get_help(ctx)
    for name in getattr(command, "list_commands", lambda _: [])(ctx):
        yield from helps(command.get_command(ctx, name), ctx, (*path, name))


def test_the_root_names_every_command_the_modules_register() -> None:
    assert sorted(SUBCOMMANDS) == sorted(eager_commands())


def test_every_command_has_the_help_of_the_tree_built_at_once() -> None:
    root = typer.main.get_command(app)
    eager = eager_commands()
    assert isinstance(root, TyperGroup)
    # The root with every command built beforehand, in the root's order.
    built = TyperGroup(
        name="emrml",
        commands={name: eager[name] for name in SUBCOMMANDS},
        params=root.params,
        help=root.help,
        epilog=root.epilog,
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    lazy = dict(helps(root, None, ("emrml",)))
    assert len(lazy) > 70  # every group's commands were walked
    assert lazy == dict(helps(built, None, ("emrml",)))


def test_the_root_help_lists_each_command_with_its_help() -> None:
    text = subprocess.run(
        [sys.executable, "-m", "emrml", "--help"], capture_output=True, text=True, check=True
    ).stdout
    listed = [line.split()[0] for line in text.split("Commands:\n", 1)[1].split("\n\n")[0].splitlines()]
    assert listed == list(SUBCOMMANDS)
    assert "serve             Serve the Amazon ML API (boto3, aws CLI) with SigV4..." in text


def test_a_command_builds_and_imports_only_its_own_module() -> None:
    probe = (
        "import sys; from emrml.cli import app\n"
        "try:\n    app(['serve', '--help'], prog_name='emrml')\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(name for name in sys.modules if name.startswith('emrml.cli')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = result.stdout.splitlines()[-1]
    assert "'emrml.cli_server'" in loaded  # the command's help was shown
    others = ("emrml.cli_kinds", "emrml.cli_objects", "emrml.cli_jobs", "emrml.cli_stream", "emrml.cli_tags")
    assert [other for other in others if f"'{other}'" in loaded] == []
