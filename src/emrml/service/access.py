"""Who may do what: the one place every door's requests are authorized (``EmrML.call`` calls ``authorize``).

``OPERATION_ACCESS`` (``service.access_rules``) says, for every operation, which object it acts on and
which others it uses; the caller's policy (the statements of its groups, ``service.policy``) must allow
the operation on each of them. Describe* results list only the objects the caller may describe
(``visible``); the locations a request names need ``storage:Read`` / ``storage:Write`` (``check_storage``,
called by ``confinement.check_location``, the one door for locations). Users and groups are managed
through the methods below, which need the matching ``iam:`` actions.

The caller None is the account's root (the CLI and the library on their own home, a server without
authentication): it may do everything. Policies are remembered for ``ttl`` seconds, so a change made by
another process applies within that time; changes made through this object apply at once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, ColumnElement, Connection, bindparam, delete, insert, select

from emrml.errors import (
    AccessDeniedException,
    AmazonMLError,
    InvalidInputException,
    ResourceNotFoundException,
)
from emrml.service import groups as grouping
from emrml.service.access_rules import OPERATION_ACCESS, TAGGED, known_actions
from emrml.service.groups import ADMINS, BUILTIN_GROUPS, GroupInfo
from emrml.service.identity import Identities, KeyInfo, NewAccessKey, UserInfo, check_name, user_arn
from emrml.service.metastore import Sessions, engine_of
from emrml.service.operations import CALLER
from emrml.service.policy import RESOURCE_KINDS, Policy, Statement
from emrml.service.remembered import Remembered
from emrml.service.tables import ACCESS_KEYS, GROUP_MEMBERS, GROUP_STATEMENTS, GROUPS, OWNED_TABLES, USERS
from emrml.storage import locations

if TYPE_CHECKING:
    from emrml.config import Settings


def user_name_of(caller: str) -> str | None:
    """The user of an ARN ``arn:aws:iam::<account>:user/<name>``; None for the root."""
    _, separator, name = caller.rpartition(":user/")
    return name if separator else None


#: A user's enabled flag and the statements of its groups, in group name and sid order: one row per
#: statement (one row with no statement for a user without any; none for an unknown user). One query,
#: built once: a server rereads every known caller's policy every second (``Access.policies``).
#: On the tables' own columns and read through a Core connection: the ORM's share of a reread cost the
#: event loop as much interpreter lock time again as the rest.
_USERS, _MEMBERS, _STATEMENTS = USERS, GROUP_MEMBERS, GROUP_STATEMENTS
_POLICY_ROWS = (
    select(_USERS.c.enabled, _STATEMENTS.c.sid, _STATEMENTS.c.document)
    .select_from(_USERS)
    .outerjoin(_MEMBERS, _MEMBERS.c.user_name == _USERS.c.name)
    .outerjoin(_STATEMENTS, _STATEMENTS.c.group_name == _MEMBERS.c.group_name)
    .where(_USERS.c.name == bindparam("name"))
    .order_by(_MEMBERS.c.group_name, _STATEMENTS.c.sid)
)


class Access:
    """Authorization for one installation: decisions, Describe filters and the management of users and
    groups."""

    def __init__(
        self,
        sessions: Sessions,
        settings: Settings,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        #: Every statement here is Core, on connections of the engine: a server authorizes its callers'
        #: Predicts (and reads their policies) without importing the ORM.
        self.engine = engine_of(sessions)
        self.settings = settings
        #: The users' policies by caller ARN; a server refreshes them every ``ttl / 2`` seconds from a
        #: thread of its own, so that a caller seen before never waits for the metastore (``Predict`` is
        #: checked on the event loop).
        self.policies = Remembered(self._read_policy, ttl, clock)
        self._identities: Identities | None = None

    # --- decisions -------------------------------------------------------------------------------------

    def policy(self, caller: str) -> Policy:
        """The caller's policy, remembered for ``ttl`` seconds."""
        return self.policies.get(caller)

    def _read_policy(self, caller: str) -> Policy:
        name = user_name_of(caller) or ""
        with self.engine.connect() as connection:
            rows = connection.execute(_POLICY_ROWS, {"name": name}).all()
        statements = [grouping.stored_statement(sid, text) for _, sid, text in rows if sid is not None]
        return Policy(name, caller, bool(rows and rows[0][0]), statements)

    def enabled(self, user_name: str) -> bool:
        """Whether the user exists and is enabled (console sessions and logins ask on every page)."""
        return self.policy(self.user_arn(user_name)).enabled

    def may(self, user_name: str, action: str) -> bool:
        """Whether the user is allowed ``action`` on some resource (what the console offers it)."""
        return self.policy(self.user_arn(user_name)).may_ever(action)

    def forget(self) -> None:
        """Drop every remembered policy (after a change to users or groups)."""
        self.policies.clear()

    def check(
        self, caller: str | None, action: str, resource: str = "*", own: bool = False, *spellings: str
    ) -> None:
        """Raise AccessDeniedException unless ``caller`` may do ``action`` on ``resource`` (also named
        ``spellings``: ``Policy.allows``)."""
        if caller is None or user_name_of(caller) is None:
            return
        policy = self.policy(caller)
        if not policy.allows(action, resource, own, *spellings):
            raise _denied(policy, action, resource)

    def permits(self, caller: str | None, action: str, resource: str = "*") -> bool:
        """Whether ``check`` lets ``caller`` do ``action`` on ``resource``, a user's own ``user/NAME`` being
        its own (as the user and key methods below check it): the console asks before offering a change."""
        own = caller is not None and resource.startswith("user/") and caller == self.user_arn(resource[5:])
        try:
            self.check(caller, action, resource, own)
        except AccessDeniedException:
            return False
        return True

    def authorize(self, caller: str | None, operation: str, request: dict[str, Any]) -> None:
        """Raise AccessDeniedException unless ``caller`` may run ``operation`` with ``request`` (which is not
        validated yet: ids of the wrong type are left to validation)."""
        if caller is None or user_name_of(caller) is None:
            return
        rule = OPERATION_ACCESS.get(operation)
        if rule is None:  # every registered operation has a rule (a test checks); refuse an unknown one
            raise AccessDeniedException(f"operation {operation!r} has no authorization rule")
        action = f"machinelearning:{operation}"
        policy = self.policy(caller)
        if rule.listing:
            if not policy.may_ever(action):
                raise _denied(policy, action, f"{RESOURCE_KINDS[rule.kind or '']}/*")
            return
        kind = request.get(TAGGED) if rule.kind == TAGGED else rule.kind
        targets = [(kind, rule.member), *rule.uses] if kind is not None else []
        if not targets:
            if not policy.allows(action, "*", True):
                raise _denied(policy, action, "*")
            return
        # On the object acted on: the operation's own action, or one granting it unless its own is denied; on
        # the objects it uses, its own.
        granting = tuple(f"machinelearning:{name}" for name in rule.granted_by)
        unseen: Unseen | None = None
        with self.engine.connect() as connection:
            for index, (target_kind, member) in enumerate(targets):
                object_id = request.get(member) if member else None
                if (
                    not isinstance(target_kind, str)
                    or target_kind not in OWNED_TABLES
                    or not isinstance(object_id, str)
                ):
                    continue  # validation refuses the request
                resource = f"{RESOURCE_KINDS[target_kind]}/{object_id}"
                table = OWNED_TABLES[target_kind]
                owner = connection.execute(select(table.c.created_by).where(table.c.id == object_id)).scalar()
                own = owner is None or owner == caller
                grants = granting if index == 0 else ()
                if _decides(policy, action, resource, own, grants):
                    continue
                if (
                    own
                    or (index == 0 and rule.creates)
                    or not _answers_as_missing(
                        policy, target_kind, resource, _decides(policy, action, resource, True, grants)
                    )
                ):
                    raise _denied(policy, action, resource)
                # Answered as the id of no object would be, once the other objects are decided as usual.
                unseen = unseen or _unseen(target_kind, object_id, member, index)
        if unseen is not None:
            raise unseen

    def allowed(self, caller: str | None, operation: str, request: dict[str, Any]) -> bool:
        """Whether ``authorize`` lets ``caller`` run ``operation`` with ``request`` (the console asks before
        offering an action, so that a refusal is not the first the user learns of it)."""
        try:
            self.authorize(caller, operation, request)
        except (AccessDeniedException, Unseen):
            return False
        return True

    def readable(self, caller: str | None, kind: str, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` (of ``kind``) that exist and that ``caller`` may read (``Get<kind>``), in one
        query: the console links a page's references only to what its reader may open."""
        return set(self.readable_names(caller, kind, ids))

    def readable_names(self, caller: str | None, kind: str, ids: Iterable[str]) -> dict[str, str | None]:
        """``readable`` with the name of each (None when it has none), by id, in the same one query: the
        console names what it links, however many rows a page has."""
        wanted = set(ids)
        if not wanted:
            return {}
        table = OWNED_TABLES[kind]
        query = select(table.c.id, table.c.name).where(table.c.id.in_(wanted))
        if caller is not None and user_name_of(caller) is not None:
            policy = self.policy(caller)
            query = query.where(
                policy.visible(f"machinelearning:Get{kind}", kind, table.c.id, table.c.created_by)
            )
        with self.engine.connect() as connection:
            return {object_id: name for object_id, name in connection.execute(query)}

    def storage_folders(self, caller: str | None, action: str = "storage:Read") -> list[str]:
        """Where the caller's grants of a ``storage:`` action start (``Policy.granted_folders``): none for
        the root, which may read everything."""
        if caller is None or user_name_of(caller) is None:
            return []
        return self.policy(caller).granted_folders(action)

    def check_predict(self, caller: str, model_id: str, owner: str) -> None:
        """Predict's check, on the hot path: a remembered policy and decision (about a microsecond)."""
        if ":user/" not in caller:  # user_name_of(caller) is None (the root), without the call
            return
        policy = self.policies.get(caller)
        resource = f"mlmodel/{model_id}"
        own = owner == caller
        if not policy.allows("machinelearning:Predict", resource, own):
            if not own and _answers_as_missing(
                policy, "MLModel", resource, policy.allows("machinelearning:Predict", resource, True)
            ):
                raise _unseen("MLModel", model_id, "MLModelId", 0)
            raise _denied(policy, "machinelearning:Predict", resource)

    def visible(self, operation: str, kind: str) -> ColumnElement[bool] | None:
        """The SQL condition on ``kind``'s table selecting what the running request's caller may list with
        ``operation``; None for the root (everything)."""
        caller = CALLER.get()
        if caller is None or user_name_of(caller) is None:
            return None
        table = OWNED_TABLES[kind]
        policy = self.policy(caller)
        return policy.visible(f"machinelearning:{operation}", kind, table.c.id, table.c.created_by)

    def check_storage(self, location: str, *, write: bool) -> None:
        """``storage:Write`` (``write``) or ``storage:Read`` on ``location`` for the running request's
        caller. Local paths are compared resolved (links and ``..`` followed), so no spelling escapes a
        Deny."""
        caller = CALLER.get()
        if caller is None or user_name_of(caller) is None:
            return
        resource = _resource(location)
        # A location names a folder (everything below it) with or without its trailing slash, and
        # realpath drops the slash: both spellings are matched, so a grant of 'folder/*' covers the folder
        # itself, and a Deny of 'folder/*' is not passed by naming the folder (without its slash).
        other = resource[:-1] if resource.endswith("/") else resource + "/"
        self.check(caller, "storage:Write" if write else "storage:Read", resource, False, other)

    def check_storage_below(self, location: str, *, write: bool) -> None:
        """``check_storage`` said of every file below ``location`` too, for a location whose every file is
        used when it names a folder (a datasource's data, an output folder): the location's own name being
        granted does not tell that a Deny of a part of it (``/srv/data/private/*``) is not in the way.
        Written, a location is a folder whose files are yet to be made, so a Deny that may match anything
        below it refuses it. Read, its files are listed (only when some Deny may match below it) and each
        checked as it resolves (a link to a denied file is refused too); one that cannot be listed is
        refused like a written one. Local locations must have passed the data roots first: nothing outside
        them is listed."""
        caller = CALLER.get()
        if caller is None or user_name_of(caller) is None:
            return
        action = "storage:Write" if write else "storage:Read"
        policy = self.policy(caller)
        resource = _resource(location)
        folder = resource if resource.endswith("/") else resource + "/"
        pattern = policy.denied_below(action, folder)
        if pattern is None:
            return
        if not write:
            try:
                listed = locations.list_files(location)
            except AmazonMLError:  # missing or empty: the request or its job says so, if not refused here
                listed = None
            if listed is not None:
                for file in listed:
                    if policy.denies(action, _resource(file.uri), False):
                        raise AccessDeniedException(
                            f"User: {caller} is not authorized to perform: {action} on resource: {file.uri} "
                            f"(below {location}, whose every file would be read)"
                        )
                return
        raise AccessDeniedException(
            f"User: {caller} is not authorized to perform: {action} on resource: {pattern} (below {folder}, "
            f"which names a folder: every file below it would be {'written' if write else 'read'})"
        )

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
        self, name: str, groups: tuple[str, ...] | None = None, *, caller: str | None = None
    ) -> UserInfo:
        """A new user in ``groups`` (default: ``users``)."""
        self._check_user(caller, "iam:CreateUser", name)
        chosen = grouping.DEFAULT_GROUPS if groups is None else groups
        for group in chosen:
            self._check_group(caller, "iam:AddUserToGroup", group)
        created = self.identities.create_user(name, tuple(chosen))
        self.forget()
        return created

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


class Unseen(AmazonMLError):
    """The answer to a request naming another user's object that the caller may not even read: the answer
    the operation gives for an id of no object (a refusal would tell that the object exists)."""


class UnseenObject(Unseen, ResourceNotFoundException):
    """The object acted on, answered as missing."""


class UnseenReference(Unseen, InvalidInputException):
    """An object a Create* uses, answered as missing."""


def _unseen(kind: str, object_id: str, member: str | None, index: int) -> Unseen:
    """What the operations say of an id of no object, word for word."""
    if index > 0:  # operations.usable, streams' model
        return UnseenReference(f"{member} {object_id!r}: no such {kind}")
    if kind == "Stream":  # streams._find
        return UnseenObject(f"stream {object_id!r} does not exist")
    return UnseenObject(f"{kind} {object_id!r} does not exist")  # operations.find, mounted models


def _decides(policy: Policy, action: str, resource: str, own: bool, granting: tuple[str, ...]) -> bool:
    """Whether ``action`` on ``resource`` is allowed, by itself or by one of ``granting`` (unless a statement
    denies the action itself)."""
    return policy.allows(action, resource, own) or (
        not policy.denies(action, resource, own)
        and any(policy.allows(other, resource, own) for other in granting)
    )


def _answers_as_missing(policy: Policy, kind: str, resource: str, allowed_if_missing: bool) -> bool:
    """Whether a refused request on another user's ``resource`` (of ``kind``) is answered as one naming
    an id of no object: the caller may not know the object exists (read it with Get*, list it with
    Describe*, predict with it), and the request would pass were there no object of that id
    (``allowed_if_missing``: what an id of no object is decided as, the caller's own), so that the answers
    for both are the same. A disabled user is refused whatever it names."""
    knowing = (f"machinelearning:Get{kind}", f"machinelearning:Describe{kind}s")
    if kind == "MLModel":
        knowing += ("machinelearning:Predict",)
    return (
        policy.enabled
        and allowed_if_missing
        and not any(policy.allows(action, resource, False) for action in knowing)
    )


def _resource(location: str) -> str:
    """A location as storage statements match it: local paths resolved (links and ``..`` followed), S3
    and Kinesis URIs as written."""
    if location.startswith(("s3://", "kinesis://")):
        return location
    return os.path.realpath(locations.local_path(location))


def _denied(policy: Policy, action: str, resource: str) -> AccessDeniedException:
    if not policy.enabled:
        return AccessDeniedException(f"User: {policy.caller} is disabled or does not exist")
    return AccessDeniedException(
        f"User: {policy.caller} is not authorized to perform: {action} on resource: {resource}"
    )
