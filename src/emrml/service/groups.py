"""Groups of users and their permission statements (tables of migration 0008).

A user's permissions are the statements of the groups it belongs to (``service.policy`` evaluates them).
Four groups are built in and cannot be deleted: ``admins`` (everything), ``users`` (their own objects; the
group every new user joins), ``viewers`` (read-only) and ``predictors`` (Predict only).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, insert, select

from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.metastore import now
from emrml.service.policy import Statement
from emrml.service.tables import GROUP_MEMBERS, GROUP_STATEMENTS, GROUPS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

ADMINS, USERS, VIEWERS, PREDICTORS = "admins", "users", "viewers", "predictors"
BUILTIN_GROUPS = (ADMINS, USERS, VIEWERS, PREDICTORS)
#: The groups a new user joins unless others are named.
DEFAULT_GROUPS = (USERS,)


@dataclass(frozen=True)
class GroupInfo:
    name: str
    description: str
    builtin: bool
    created_at: float
    members: tuple[str, ...]
    statements: tuple[Statement, ...]

    def document(self) -> dict[str, object]:
        """The group as JSON (the CLI's ``--output json`` and the console's JSON twin)."""
        return {
            "GroupName": self.name,
            "Description": self.description,
            "BuiltIn": self.builtin,
            "CreatedAt": self.created_at,
            "Members": list(self.members),
            "Statements": [{"Sid": s.sid, **s.document()} for s in self.statements],
        }


def statements_of(
    connection: Connection | Session, group_names: list[str] | None = None
) -> dict[str, list[Statement]]:
    """The statements of the named groups (all groups when None), by group, in sid order."""
    query = select(GROUP_STATEMENTS).order_by(GROUP_STATEMENTS.c.group_name, GROUP_STATEMENTS.c.sid)
    if group_names is not None:
        query = query.where(GROUP_STATEMENTS.c.group_name.in_(group_names))
    found: dict[str, list[Statement]] = {}
    for row in connection.execute(query):
        found.setdefault(row.group_name, []).append(stored_statement(row.sid, row.document))
    return found


@functools.lru_cache(maxsize=4096)
def stored_statement(sid: int, document: str) -> Statement:
    """A statement as the ``group_statements`` table stores it (its sid, its JSON document). Remembered:
    a server rereads its callers' statements every second, and a statement compiles its patterns."""
    fields = json.loads(document)
    return Statement(
        sid, fields["Effect"], tuple(fields["Action"]), tuple(fields["Resource"]), fields["Owner"]
    )


def groups_of(connection: Connection | Session, user_name: str) -> list[str]:
    query = select(GROUP_MEMBERS.c.group_name).where(GROUP_MEMBERS.c.user_name == user_name)
    return sorted(connection.scalars(query))


def group_info(connection: Connection | Session, group: Row[Any]) -> GroupInfo:
    """``group``: its row of the ``groups`` table (``find_group``)."""
    members = connection.scalars(
        select(GROUP_MEMBERS.c.user_name)
        .where(GROUP_MEMBERS.c.group_name == group.name)
        .order_by(GROUP_MEMBERS.c.user_name)
    )
    statements = statements_of(connection, [group.name]).get(group.name, [])
    return GroupInfo(
        group.name, group.description, group.builtin, group.created_at, tuple(members), tuple(statements)
    )


def find_group(connection: Connection | Session, name: str) -> Row[Any]:
    """The group's row of the ``groups`` table."""
    group = connection.execute(select(GROUPS).where(GROUPS.c.name == name)).first()
    if group is None:
        raise ResourceNotFoundException(f"group {name!r} does not exist")
    return group


def create_group(connection: Connection | Session, name: str, description: str) -> Row[Any]:
    """A new group without members or statements; its row (``find_group``)."""
    from emrml.service.identity import check_name

    check_name("group", name)
    if len(description) > 1000:
        raise InvalidInputException("a group's description must be at most 1000 characters")
    if connection.execute(select(GROUPS.c.name).where(GROUPS.c.name == name)).first() is not None:
        raise InvalidInputException(f"group {name!r} already exists")
    values = {"name": name, "description": description, "builtin": False, "created_at": now()}
    connection.execute(insert(GROUPS).values(**values))
    return find_group(connection, name)


def add_statement(connection: Connection | Session, group_name: str, statement: Statement) -> int:
    """Store ``statement`` (its sid is replaced) under the next free sid of the group; returns the sid."""
    used = connection.scalars(
        select(GROUP_STATEMENTS.c.sid).where(GROUP_STATEMENTS.c.group_name == group_name)
    )
    sid = max(used, default=0) + 1
    document = json.dumps(statement.document())
    connection.execute(insert(GROUP_STATEMENTS).values(group_name=group_name, sid=sid, document=document))
    return sid
