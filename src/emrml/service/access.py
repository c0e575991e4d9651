"""Who may do what: the one place every door's requests are authorized (``EmrML.call`` calls ``authorize``).

``OPERATION_ACCESS`` (``service.access_rules``) says, for every operation, which object it acts on and
which others it uses; the caller's policy (the statements of its groups, ``service.policy``) must allow
the operation on each of them. Describe* results list only the objects the caller may describe
(``visible``); the locations a request names need ``storage:Read`` / ``storage:Write`` (``check_storage``,
called by ``confinement.check_location``, the one door for locations). Users and groups are managed
through the methods ``service.access_iam.Management`` mixes in, which need the matching ``iam:`` actions.

The caller None is the account's root (the CLI and the library on their own home, a server without
authentication): it may do everything. Policies are remembered for ``ttl`` seconds, so a change made by
another process applies within that time; changes made through this object apply at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, bindparam, select

from emrml.errors import (
    AccessDeniedException,
    AmazonMLError,
    InvalidInputException,
    ResourceNotFoundException,
)
from emrml.service import groups as grouping
from emrml.service.access_iam import Management
from emrml.service.access_rules import OPERATION_ACCESS, TAGGED
from emrml.service.identity import Identities
from emrml.service.metastore import Sessions, engine_of
from emrml.service.operations import CALLER
from emrml.service.policy import RESOURCE_KINDS, Policy
from emrml.service.remembered import Remembered
from emrml.service.tables import GROUP_MEMBERS, GROUP_STATEMENTS, OWNED_TABLES, USERS
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


class Access(Management):
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

    def decides_on(self, caller: str | None, operation: str, kind: str, object_id: str, owner: str) -> bool:
        """Whether ``caller`` may run ``operation`` on the object ``kind``/``object_id`` that ``owner``
        created, decided as ``authorize`` decides on the object an operation acts on, from a row already
        read: a Create* copies only the tags of its parents that its caller may read
        (``service.tags.inherit_tags``)."""
        if caller is None or user_name_of(caller) is None:
            return True
        granting = tuple(f"machinelearning:{name}" for name in OPERATION_ACCESS[operation].granted_by)
        resource = f"{RESOURCE_KINDS[kind]}/{object_id}"
        return _decides(
            self.policy(caller), f"machinelearning:{operation}", resource, owner == caller, granting
        )

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
        action = "storage:Write" if write else "storage:Read"
        # A location names a folder (everything below it) with or without its trailing slash, and
        # realpath drops the slash: a Deny matching either spelling refuses it, so a Deny of 'folder/*' is
        # not passed by naming the folder without its slash. Written as a folder, it must be granted as
        # one: a pattern matching files by their name ('*.csv'), like an S3 object ARN, grants no folder of
        # that name nor the files below it, while 'folder/*' grants the folder itself.
        folder = resource if resource.endswith("/") else resource + "/"
        if not location.endswith("/"):
            self.check(caller, action, resource, False, folder)
            return
        self.check(caller, action, folder, False)
        policy = self.policy(caller)
        if policy.denies(action, folder[:-1], False):
            raise _denied(policy, action, folder[:-1])

    def check_storage_below(self, location: str, *, write: bool) -> None:
        """``check_storage`` said of every file below ``location`` too, for a location whose every file is
        used when it names a folder (a datasource's data, an output folder): the location's own name being
        granted does not tell that a Deny of a part of it (``/srv/data/private/*``) is not in the way, nor,
        a location spelled without its trailing slash, that the grant is of a folder (``check_storage``).
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
        if not policy.allows(action, folder, False) and (write or _names_folder(location)):
            # Its name matched a grant of files ('*.csv', check_storage), its folder's spelling none.
            raise AccessDeniedException(
                f"User: {caller} is not authorized to perform: {action} on resource: {folder} ({location} "
                f"names a folder, every file below which would be {'written' if write else 'read'}: a "
                "grant of files by their name grants no folder of that name; grant the folder's files as "
                f"'{folder}*')"
            )
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


def _names_folder(location: str) -> bool:
    """Whether a location spelled without its trailing slash names a folder (a local directory, a bucket,
    an S3 prefix holding objects below it) rather than a file. One that cannot be listed names nothing
    yet: the request or its job says so."""
    if location.endswith("/"):
        return True
    if not location.startswith("s3://"):
        return os.path.isdir(_resource(location))
    if "/" not in location.removeprefix("s3://"):  # a bucket
        return True
    try:
        return any(file.uri != location for file in locations.list_files(location))
    except AmazonMLError:
        return False


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
