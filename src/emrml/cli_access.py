"""``emrml groups …`` and the group side of ``emrml users …``: who may do what (``service.access``).

Like ``emrml users`` and ``emrml keys``, they work on the home's metastore as its owner (the root), so
they can always repair access, including that of the last administrator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from emrml.cli_common import command_group, reports_errors
from emrml.errors import InvalidInputException

if TYPE_CHECKING:
    from emrml.service.access import Access

groups_app = command_group(
    help="Groups of users and the permission statements they grant (see docs/security.md).",
    no_args_is_help=True,
)


def access_of(ctx: typer.Context) -> Access:
    from emrml.cli_server import _identities, _settings
    from emrml.service.access import Access

    return Access(_identities(ctx).sessions, _settings(ctx))


def _json_output(ctx: typer.Context) -> bool:
    return str(ctx.find_root().params.get("output") or "table") == "json"


def register(users_app: typer.Typer, app: typer.Typer) -> None:
    """Add ``groups`` to the command line and the membership commands to ``users``."""
    app.add_typer(groups_app, name="groups")
    users_app.command("enable")(users_enable)
    users_app.command("disable")(users_disable)
    users_app.command("add-to-group")(users_add_to_group)
    users_app.command("remove-from-group")(users_remove_from_group)
    users_app.command("reassign-objects")(users_reassign_objects)


@reports_errors
def users_enable(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", help="User name.")
) -> None:
    """Enable a disabled user: its access keys and console login work again."""
    access_of(ctx).set_user_enabled(name, True)
    typer.echo(f"Enabled user {name}.")


@reports_errors
def users_disable(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="NAME", help="User name.")
) -> None:
    """Disable a user: its access keys, console logins and share links are refused (within seconds on
    running servers); its objects stay."""
    access_of(ctx).set_user_enabled(name, False)
    typer.echo(f"Disabled user {name}.")


@reports_errors
def users_add_to_group(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="User name."),
    group: str = typer.Argument(..., metavar="GROUP", help="Group name."),
) -> None:
    """Put a user in a group (it gets the group's permissions)."""
    access_of(ctx).add_member(group, name)
    typer.echo(f"Added {name} to {group}.")


@reports_errors
def users_remove_from_group(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="User name."),
    group: str = typer.Argument(..., metavar="GROUP", help="Group name."),
) -> None:
    """Take a user out of a group."""
    access_of(ctx).remove_member(group, name)
    typer.echo(f"Removed {name} from {group}.")


@groups_app.command("list")
@reports_errors
def groups_list(ctx: typer.Context) -> None:
    """List the groups, their members and how many statements each has."""
    groups = access_of(ctx).list_groups()
    if _json_output(ctx):
        typer.echo(json.dumps({"Results": [group.document() for group in groups]}, indent=2))
        return
    from emrml.cli_render.parts import titled_table  # the tables' code: not a server's start

    table = titled_table(
        "Groups", "Group", "Built-in", "Members", "Statements", "Description", right=["Statements"]
    )
    for group in groups:
        table.add_row(
            group.name,
            "yes" if group.builtin else "",
            ", ".join(group.members),
            str(len(group.statements)),
            group.description,
        )
    from emrml.cli_console import CliConsole

    CliConsole(markup=False).print(table)  # names and descriptions are text, not markup


@groups_app.command("show")
@reports_errors
def groups_show(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="GROUP", help="Group name.")
) -> None:
    """Show a group's members and permission statements (as JSON)."""
    typer.echo(json.dumps(access_of(ctx).get_group(name).document(), indent=2))


@groups_app.command("create")
@reports_errors
def groups_create(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="GROUP", help="Group name: letters, digits and + = , . @ _ - (at most 64)."
    ),
    description: str = typer.Option("", "--description", metavar="TEXT", help="What the group is for."),
) -> None:
    """Create a group without statements (add them with: emrml groups allow / deny)."""
    access_of(ctx).create_group(name, description)
    typer.echo(f"Created group {name}.")


@groups_app.command("delete")
@reports_errors
def groups_delete(
    ctx: typer.Context, name: str = typer.Argument(..., metavar="GROUP", help="Group name.")
) -> None:
    """Delete a group (not a built-in one); its members lose its permissions."""
    access_of(ctx).delete_group(name)
    typer.echo(f"Deleted group {name}.")


def _add(
    ctx: typer.Context, effect: str, group: str, actions: list[str], resources: list[str], owner: str
) -> None:
    document = {"Effect": effect, "Action": actions, "Resource": resources or ["*"], "Owner": owner}
    sid = access_of(ctx).add_statement(group, document)
    typer.echo(f"Added statement {sid} to {group}: {json.dumps(document)}")


_ACTIONS = typer.Option(
    ..., "--action", "-a", help="Action or pattern, e.g. Describe*, storage:Read (repeat)."
)
_RESOURCES = typer.Option(
    [],
    "--resource",
    "-r",
    help="Resource pattern, e.g. mlmodel/ml-*, s3://bucket/*, /data/* (repeat; default *).",
)
_OWNER = typer.Option(
    "any", "--owner", metavar="<any|self>", help="any, or self: only the caller's own objects."
)


def _statement_command(effect: str, help_text: str) -> None:
    """Register ``emrml groups allow`` or ``deny``: the same command with another Effect."""

    @groups_app.command(effect.lower(), help=help_text)
    @reports_errors
    def command(
        ctx: typer.Context,
        group: str = typer.Argument(..., metavar="GROUP", help="Group name."),
        action: list[str] = _ACTIONS,
        resource: list[str] = _RESOURCES,
        owner: str = _OWNER,
    ) -> None:
        _add(ctx, effect, group, action, resource, owner)


_statement_command("Allow", "Add an Allow statement to a group.")
_statement_command("Deny", "Add a Deny statement to a group (a deny wins over every allow).")


@groups_app.command("add-statement")
@reports_errors
def groups_add_statement(
    ctx: typer.Context,
    group: str = typer.Argument(..., metavar="GROUP", help="Group name."),
    document: Path = typer.Argument(
        ..., metavar="FILE", help="A JSON file holding one statement.", exists=True, dir_okay=False
    ),
) -> None:
    """Add a statement written as JSON (Effect, Action, Resource, Owner; the group numbers it)."""
    from emrml.service.policy import statement_document  # sqlalchemy: imported by the commands that use it

    statement = statement_document(document.read_bytes(), str(document))
    sid = access_of(ctx).add_statement(group, statement)
    typer.echo(f"Added statement {sid} to {group}.")


@groups_app.command("remove-statement")
@reports_errors
def groups_remove_statement(
    ctx: typer.Context,
    group: str = typer.Argument(..., metavar="GROUP", help="Group name."),
    sid: str = typer.Argument(..., metavar="SID", help="The statement's number (emrml groups show)."),
) -> None:
    """Remove a statement from a group."""
    from emrml.service.policy import statement_number  # sqlalchemy: imported by the commands that use it

    try:
        number = statement_number(sid)
    except InvalidInputException as exc:
        raise InvalidInputException(
            f"SID: {exc.message}: give the number emrml groups show {group} prints for the statement"
        ) from None
    access_of(ctx).remove_statement(group, number)
    typer.echo(f"Removed statement {sid} from {group}.")


@reports_errors
def users_reassign_objects(
    ctx: typer.Context,
    name: str = typer.Argument(
        ..., metavar="FROM_NAME", help="The user (or deleted user's name) whose objects move."
    ),
    to: str = typer.Argument(..., metavar="TO_NAME", help="The existing user who becomes their creator."),
) -> None:
    """Give every object a user created to another user (their CreatedByIamUser changes): a deleted user's
    objects, before its name is given to someone new, or a leaving user's."""
    moved = access_of(ctx).reassign_objects(name, to)
    kinds = ", ".join(f"{count} {kind}" for kind, count in moved.items()) or "none"
    typer.echo(f"Gave {sum(moved.values())} object(s) of {name} to {to} ({kinds}).")
