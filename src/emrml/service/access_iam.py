"""The management of users and groups: the ``iam:`` methods of ``Access``, mixed into it.

Users (their console passwords and access keys) and groups (their members and permission statements) are
changed only through these methods, each checked against the caller's policy with the matching ``iam:``
action (``Access.check``) whichever door asks: the ``emrml users`` / ``emrml groups`` commands and the
console's pages call them with their caller, so the console decides nothing by itself.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, delete, insert, select

from emrml.errors import (
    AccessDeniedException,
    AmazonMLError,
    InvalidInputException,
    ResourceNotFoundException,
)
from emrml.service import groups as grouping
from emrml.service.access_rules import known_actions
from emrml.service.groups import ADMINS, BUILTIN_GROUPS, GroupInfo
from emrml.service.identity import Identities, KeyInfo, NewAccessKey, UserInfo, check_name, user_arn
from emrml.service.logins import Logins, check_new_password
from emrml.service.policy import Statement
from emrml.service.tables import ACCESS_KEYS, GROUP_MEMBERS, GROUP_STATEMENTS, GROUPS, USERS

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from emrml.config import Settings
    from emrml.service.metastore import Sessions


class Management:
    """The users, keys and groups of ``Access``, which provides the metastore, the settings and the
    decisions (``check``, ``forget``) these methods use."""

    sessions: Sessions
    engine: Engine
    settings: Settings
    _identities: Identities | None

    if TYPE_CHECKING:  # Access's decisions

        def check(
            self, caller: str | None, action: str, resource: str = "*", own: bool = False, *spellings: str
        ) -> None: ...

        def forget(self) -> None: ...

    # --- users -----------------------------------------------------------------------------------------

    @property
    def identities(self) -> Identities:
        if self._identities is None:
            self._identities = Identities(self.sessions, self.settings.home, self.settings.account_id)
        return self._identities

    def user_arn(self, user: str) -> str:
        """The ARN of ``user`` in this installation's account (what its requests run as)."""
        return user_arn(self.settings.account_id, user)

    def _check_user(self, caller: str | None, action: str, user: str) -> None:
        check_name("user", user)
        self.check(caller, action, f"user/{user}", own=caller is not None and caller == self.user_arn(user))

    def list_users(self, *, caller: str | None = None) -> list[UserInfo]:
        self.check(caller, "iam:ListUsers")
        return self.identities.list_users()

    def get_user(self, name: str, *, caller: str | None = None) -> UserInfo:
        self._check_user(caller, "iam:GetUser", name)
        return self.identities.get_user(name)

    def create_user(
        self,
        name: str,
        groups: tuple[str, ...] | None = None,
        *,
        password: str | None = None,
        caller: str | None = None,
    ) -> UserInfo:
        """A new user in ``groups`` (default: ``users``), with a console ``password`` if one is given: that
        is setting its password too, which needs what ``set_password`` needs. Everything is checked before
        the user is made, so a refusal leaves no user behind."""
        self._check_user(caller, "iam:CreateUser", name)
        chosen = grouping.DEFAULT_GROUPS if groups is None else groups
        for group in chosen:
            self._check_group(caller, "iam:AddUserToGroup", group)
        if password is not None:
            self._check_user(caller, "iam:UpdateUser", name)
            check_new_password(password)
        created = self.identities.create_user(name, tuple(chosen))
        self.forget()
        if password is not None:
            Logins(self.sessions).set_password(name, password)
        return created

    def set_password(self, name: str, password: str, *, caller: str | None = None) -> None:
        """Set the user's console password, ending its sessions: ``iam:UpdateUser`` on the user. (A user
        changing its own password on the console's account page gives its current one instead: that is
        ``Logins.check_current_password``'s, not an administrator's change.)"""
        self._check_user(caller, "iam:UpdateUser", name)
        Logins(self.sessions).set_password(name, password)

    def sync_directory_user(self, name: str, groups: tuple[str, ...], decided: set[str]) -> None:
        """A user the directory (LDAP) vouched for: created on first login (in its mapped groups, or the
        default ones), then in exactly the ``decided`` groups its directory groups map to; other groups'
        memberships are left as administrators set them. The service's own act, not a caller's."""
        from emrml.service.directory import MappedGroupsMissing

        with self.engine.connect() as connection:
            known = _exists(connection, USERS.c.name, name)
            missing = sorted(group for group in set(groups) if not _exists(connection, GROUPS.c.name, group))
        if missing:  # before any change: not created, or left in the groups it had
            raise MappedGroupsMissing(missing)
        if not known:
            self.identities.create_user(name, groups or grouping.DEFAULT_GROUPS)
        with self.engine.begin() as connection:
            current = set(grouping.groups_of(connection, name))
            for group in decided & set(groups) - current:
                grouping.find_group(connection, group)
                connection.execute(insert(GROUP_MEMBERS).values(group_name=group, user_name=name))
        for group in (decided & current) - set(groups):
            with contextlib.suppress(AmazonMLError):  # the last enabled admin stays one
                self.remove_member(group, name)
        self.forget()

    def set_user_enabled(self, name: str, enabled: bool, *, caller: str | None = None) -> None:
        """Enable or disable a user: a disabled user's keys, console logins and share links are refused."""
        self._check_user(caller, "iam:UpdateUser", name)
        if not enabled:
            self._keep_an_admin(leaving=name)
        self.identities.set_enabled(name, enabled)
        self.forget()

    def delete_user(self, name: str, *, caller: str | None = None) -> int:
        self._check_user(caller, "iam:DeleteUser", name)
        self._keep_an_admin(leaving=name)
        removed = self.identities.delete_user(name)
        self.forget()
        return removed

    def reassign_objects(self, from_name: str, to_name: str, *, caller: str | None = None) -> dict[str, int]:
        """Make user ``to_name`` the creator of every object ``from_name`` created (a deleted user's, which
        a new user of that name would otherwise own; a leaving user's). Needs ``iam:ReassignObjects`` on
        both users. Returns how many objects of each kind moved."""
        self._check_user(caller, "iam:ReassignObjects", from_name)
        self._check_user(caller, "iam:ReassignObjects", to_name)
        return self.identities.reassign_objects(from_name, to_name)

    def list_keys(self, name: str | None = None, *, caller: str | None = None) -> list[KeyInfo]:
        if name is None:
            self.check(caller, "iam:ListAccessKeys", "user/*")
        else:
            self._check_user(caller, "iam:ListAccessKeys", name)
        return self.identities.list_keys(name)

    def create_key(self, name: str, *, caller: str | None = None) -> NewAccessKey:
        self._check_user(caller, "iam:CreateAccessKey", name)
        return self.identities.create_key(name)

    def set_key_active(self, access_key_id: str, active: bool, *, caller: str | None = None) -> None:
        """Deactivate a key (refused like an unknown one, within the servers' credential cache time) or
        make it active again."""
        self._check_key(caller, "iam:UpdateAccessKey", access_key_id)
        self.identities.set_key_active(access_key_id, active)

    def delete_key(self, access_key_id: str, *, caller: str | None = None) -> None:
        self._check_key(caller, "iam:DeleteAccessKey", access_key_id)
        self.identities.delete_key(access_key_id)

    def _check_key(self, caller: str | None, action: str, access_key_id: str) -> None:
        """Check ``action`` on the user owning the key. Another user's key the caller may not manage is
        answered like an unknown one: a refusal would tell which key ids exist."""
        missing = ResourceNotFoundException(f"access key {access_key_id!r} does not exist")
        if not (access_key_id.isascii() and access_key_id.isalnum()):  # no key's: not looked up (a NUL)
            raise missing
        with self.engine.connect() as connection:
            key = connection.execute(
                select(ACCESS_KEYS.c.user_name).where(ACCESS_KEYS.c.access_key_id == access_key_id)
            ).first()
        if key is None:
            raise missing
        try:
            self._check_user(caller, action, key.user_name)
        except AccessDeniedException:
            if caller == self.user_arn(key.user_name):  # its own key: it knows the key exists
                raise
            raise missing from None

    def _keep_an_admin(self, leaving: str, group: str = ADMINS) -> None:
        """Refuse a change that would leave no enabled member of ``admins``: nobody could manage emrml."""
        if group != ADMINS:
            return
        with self.engine.connect() as connection:
            admins = connection.scalars(
                select(USERS.c.name)
                .join(GROUP_MEMBERS, GROUP_MEMBERS.c.user_name == USERS.c.name)
                .where(GROUP_MEMBERS.c.group_name == ADMINS, USERS.c.enabled.is_(True))
            ).all()
        if list(admins) == [leaving]:
            raise InvalidInputException(
                f"{leaving!r} is the last enabled member of {ADMINS}: add or enable another admin first"
            )

    # --- groups ----------------------------------------------------------------------------------------

    def _check_group(self, caller: str | None, action: str, group: str) -> None:
        check_name("group", group)
        self.check(caller, action, f"group/{group}")

    def list_groups(self, *, caller: str | None = None) -> list[GroupInfo]:
        self.check(caller, "iam:ListGroups")
        with self.engine.connect() as connection:
            return [
                grouping.group_info(connection, g)
                for g in connection.execute(select(GROUPS).order_by(GROUPS.c.name))
            ]

    def get_group(self, name: str, *, caller: str | None = None) -> GroupInfo:
        self._check_group(caller, "iam:GetGroup", name)
        with self.engine.connect() as connection:
            return grouping.group_info(connection, grouping.find_group(connection, name))

    def create_group(self, name: str, description: str = "", *, caller: str | None = None) -> GroupInfo:
        self._check_group(caller, "iam:CreateGroup", name)
        with self.engine.begin() as connection:
            group = grouping.create_group(connection, name, description)
            return grouping.group_info(connection, group)

    def delete_group(self, name: str, *, caller: str | None = None) -> None:
        self._check_group(caller, "iam:DeleteGroup", name)
        if name in BUILTIN_GROUPS:
            raise InvalidInputException(f"{name!r} is a built-in group and cannot be deleted")
        with self.engine.begin() as connection:
            grouping.find_group(connection, name)
            # Explicit, not left to ON DELETE CASCADE: SQLite enforces foreign keys only when asked to.
            connection.execute(delete(GROUP_MEMBERS).where(GROUP_MEMBERS.c.group_name == name))
            connection.execute(delete(GROUP_STATEMENTS).where(GROUP_STATEMENTS.c.group_name == name))
            connection.execute(delete(GROUPS).where(GROUPS.c.name == name))
        self.forget()

    def add_member(self, group: str, user: str, *, caller: str | None = None) -> None:
        self._check_group(caller, "iam:AddUserToGroup", group)
        check_name("user", user)
        with self.engine.begin() as connection:
            grouping.find_group(connection, group)
            if not _exists(connection, USERS.c.name, user):
                raise ResourceNotFoundException(f"user {user!r} does not exist")
            member = (GROUP_MEMBERS.c.group_name == group) & (GROUP_MEMBERS.c.user_name == user)
            if connection.execute(select(GROUP_MEMBERS.c.user_name).where(member)).first() is None:
                connection.execute(insert(GROUP_MEMBERS).values(group_name=group, user_name=user))
        self.forget()

    def remove_member(self, group: str, user: str, *, caller: str | None = None) -> None:
        self._check_group(caller, "iam:RemoveUserFromGroup", group)
        check_name("user", user)
        self._keep_an_admin(leaving=user, group=group)
        with self.engine.begin() as connection:
            grouping.find_group(connection, group)
            removed = connection.execute(
                delete(GROUP_MEMBERS).where(
                    GROUP_MEMBERS.c.group_name == group, GROUP_MEMBERS.c.user_name == user
                )
            )
            if removed.rowcount == 0:
                raise ResourceNotFoundException(f"user {user!r} is not a member of {group!r}")
        self.forget()

    def add_statement(self, group: str, document: object, *, caller: str | None = None) -> int:
        """Add a permission statement (a JSON document, see ``service.policy``); returns its sid."""
        self._check_group(caller, "iam:PutGroupPolicy", group)
        self._builtin_admins(group)
        statement = Statement.parse(document, 0, known_actions())
        with self.engine.begin() as connection:
            grouping.find_group(connection, group)
            sid = grouping.add_statement(connection, group, statement)
        self.forget()
        return sid

    def remove_statement(self, group: str, sid: int, *, caller: str | None = None) -> None:
        self._check_group(caller, "iam:DeleteGroupPolicy", group)
        self._builtin_admins(group)
        if not 0 < sid < 10**9:  # past every statement's number and past the database's integers
            raise ResourceNotFoundException(f"group {group!r} has no statement {sid}")
        with self.engine.begin() as connection:
            grouping.find_group(connection, group)
            removed = connection.execute(
                delete(GROUP_STATEMENTS).where(
                    GROUP_STATEMENTS.c.group_name == group, GROUP_STATEMENTS.c.sid == sid
                )
            )
            if removed.rowcount == 0:
                raise ResourceNotFoundException(f"group {group!r} has no statement {sid}")
        self.forget()

    @staticmethod
    def _builtin_admins(group: str) -> None:
        if group == ADMINS:
            raise InvalidInputException(
                f"the statements of {ADMINS!r} cannot be changed: it allows everything"
            )


def _exists(connection: Connection, key: Column[Any], value: str) -> bool:
    """Whether ``key``'s table has a row whose ``key`` is ``value``."""
    return connection.execute(select(key).where(key == value)).first() is not None
