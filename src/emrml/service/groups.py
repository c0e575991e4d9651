"""Groups of users and their permission statements (tables of migration 0008).

A user's permissions are the statements of the groups it belongs to (``service.policy`` evaluates them).
Four groups are built in and cannot be deleted: ``admins`` (everything), ``users`` (their own objects; the
group every new user joins), ``viewers`` (read-only) and ``predictors`` (Predict only).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.metastore import Base, now
from emrml.service.policy import Statement

ADMINS, USERS, VIEWERS, PREDICTORS = "admins", "users", "viewers", "predictors"
BUILTIN_GROUPS = (ADMINS, USERS, VIEWERS, PREDICTORS)
#: The groups a new user joins unless others are named.
DEFAULT_GROUPS = (USERS,)


class Group(Base):
    __tablename__ = "groups"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    builtin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Float)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True
    )
    user_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True, index=True
    )


class GroupStatement(Base):
    __tablename__ = "group_statements"

    group_name: Mapped[str] = mapped_column(
        String(64), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True
    )
    sid: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: The statement as JSON (``Statement.document``).
    document: Mapped[str] = mapped_column(Text)


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


def statements_of(session: Session, group_names: list[str] | None = None) -> dict[str, list[Statement]]:
    """The statements of the named groups (all groups when None), by group, in sid order."""
    query = select(GroupStatement).order_by(GroupStatement.group_name, GroupStatement.sid)
    if group_names is not None:
        query = query.where(GroupStatement.group_name.in_(group_names))
    found: dict[str, list[Statement]] = {}
    for row in session.scalars(query):
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


def groups_of(session: Session, user_name: str) -> list[str]:
    query = select(GroupMember.group_name).where(GroupMember.user_name == user_name)
    return sorted(session.scalars(query))


def group_info(session: Session, group: Group) -> GroupInfo:
    members = session.scalars(
        select(GroupMember.user_name)
        .where(GroupMember.group_name == group.name)
        .order_by(GroupMember.user_name)
    )
    statements = statements_of(session, [group.name]).get(group.name, [])
    return GroupInfo(
        group.name, group.description, group.builtin, group.created_at, tuple(members), tuple(statements)
    )


def find_group(session: Session, name: str) -> Group:
    group = session.get(Group, name)
    if group is None:
        raise ResourceNotFoundException(f"group {name!r} does not exist")
    return group


def create_group(session: Session, name: str, description: str) -> Group:
    from emrml.service.identity import check_name

    check_name("group", name)
    if len(description) > 1000:
        raise InvalidInputException("a group's description must be at most 1000 characters")
    if session.get(Group, name) is not None:
        raise InvalidInputException(f"group {name!r} already exists")
    group = Group(name=name, description=description, builtin=False, created_at=now())
    session.add(group)
    return group


def add_statement(session: Session, group_name: str, statement: Statement) -> int:
    """Store ``statement`` (its sid is replaced) under the next free sid of the group; returns the sid."""
    used = session.scalars(select(GroupStatement.sid).where(GroupStatement.group_name == group_name))
    sid = max(used, default=0) + 1
    session.add(GroupStatement(group_name=group_name, sid=sid, document=json.dumps(statement.document())))
    return sid
