"""Who may call the API: users and their access keys, kept in the metastore (tables of migration 0002).

A user is an IAM-style name; ``arn:aws:iam::<account>:user/<name>`` is what the objects it creates show as
``CreatedByIamUser``. An access key pairs a public id with a secret. SigV4 verification needs the secret in
plain text, so it is stored encrypted with Fernet under a key-encryption key that never enters the
metastore: the file ``$EMRML_HOME/secrets.key`` (mode 0600). Every server sharing one metastore needs a copy
of that file.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from emrml.config import DEFAULT_ACCOUNT_ID
from emrml.errors import InternalServerException, InvalidInputException, ResourceNotFoundException
from emrml.service.groups import DEFAULT_GROUPS, find_group
from emrml.service.metastore import Sessions, engine_of, now
from emrml.service.tables import (
    ACCESS_KEYS,
    CONSOLE_LOGINS,
    CONSOLE_SESSIONS,
    GROUP_MEMBERS,
    OWNED_TABLES,
    SHARE_LINKS,
    USERS,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

#: IAM's rule for user names, less "." and "..": a name is a part of the console's paths
#: (``/console/users/NAME``), and browsers resolve those two parts away, leaving the user's page unreachable.
USER_NAME = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9+=,.@_-]{1,64}")
#: Access key ids look like AWS's (20 upper-case characters) but start with EMRL, so that secret scanners
#: looking for AWS keys (``AKIA…``) do not mistake them for Amazon credentials.
ACCESS_KEY_PREFIX = "EMRL"
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
#: Secret access keys are 40 characters of base64's alphabet, as AWS's are (240 random bits): never a "-" or
#: "_" (``token_urlsafe``'s), since a secret starting with "-" is taken for an option by command-line parsers
#: (``aws configure set aws_secret_access_key -…`` fails, as the printed profile commands did).
_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SECRET_LENGTH = 40
KEY_FILE_NAME = "secrets.key"


_KEYS = ACCESS_KEYS
#: ``Identities.credential``'s query, built once (a server rereads every known key every few seconds).
_CREDENTIAL = select(
    _KEYS.c.access_key_id, _KEYS.c.active, _KEYS.c.secret_encrypted, _KEYS.c.user_name
).where(_KEYS.c.access_key_id == bindparam("access_key_id"))


@dataclass(frozen=True)
class UserInfo:
    name: str
    created_at: float
    access_keys: int
    enabled: bool = True
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyInfo:
    """An access key without its secret (listings)."""

    access_key_id: str
    user_name: str
    created_at: float
    active: bool = True


@dataclass(frozen=True)
class NewAccessKey:
    """A freshly created key: the only time its secret is handed out."""

    access_key_id: str
    secret_access_key: str
    user_name: str
    created_at: float


@dataclass(frozen=True)
class Credential:
    """What SigV4 verification needs about a key: its secret and its owner."""

    access_key_id: str
    secret_access_key: str
    user_name: str


class SecretBox:
    """Encrypts secrets with the key-encryption key in ``key_file``, creating it (mode 0600) on first use."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        key = self._load_or_create()
        try:
            self._fernet = Fernet(key)
        except ValueError:
            # A file emrml did not write (emptied, garbled, another file copied over it): named here, where
            # it was cryptography's ValueError, an internal error of every command reading a secret.
            raise InvalidInputException(
                f"{key_file} holds no key (emrml writes 44 characters of base64 there): restore the copy "
                "the metastore's secrets were encrypted with; every server sharing the metastore needs it"
            ) from None
        # A key of its own for digests, derived from the same file: a digest reveals nothing of the other.
        self._digest_key = hmac.new(key, b"emrml secret digest", hashlib.sha256).digest()

    def _load_or_create(self) -> bytes:
        try:
            return self._load()
        except FileNotFoundError:
            pass
        key = Fernet.generate_key()
        # Written aside, then linked into place: a process starting at the same moment (a second server, a
        # CLI command) reads a whole key or none, never a file created but not yet written; of two processes
        # creating one, the first link wins and the other reads that key.
        aside = self.key_file.with_name(f".{self.key_file.name}.{secrets.token_hex(8)}")
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(key + b"\n")
            os.link(aside, self.key_file)
        except FileExistsError:
            return self._load()
        finally:
            aside.unlink(missing_ok=True)
        return key

    def _load(self) -> bytes:
        key = self.key_file.read_bytes().strip()
        mode = self.key_file.stat().st_mode
        if mode & 0o077:
            log.warning("%s is readable by other users (mode %o); chmod 600 it", self.key_file, mode & 0o777)
        return key

    def digest(self, secret: str) -> str:
        """A keyed hash (HMAC-SHA256) of ``secret``: equal secrets give equal digests, which only a holder of
        the key file can compute (so a stolen metastore cannot be searched for guessed passwords)."""
        return "hmac-sha256:" + hmac.new(self._digest_key, secret.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            # Not the caller's fault: the metastore's secrets (access keys, database passwords) were
            # encrypted under another key file.
            raise InternalServerException(
                f"cannot decrypt a stored secret (access key or database password) with {self.key_file}: "
                "the metastore's secrets were encrypted with another secrets.key (copy that file to this "
                "server)"
            ) from None


def user_arn(account_id: str, user_name: str) -> str:
    """What a user's requests run as, and its objects' ``CreatedByIamUser``."""
    return f"arn:aws:iam::{account_id}:user/{user_name}"


def _new_access_key_id() -> str:
    return ACCESS_KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))


def new_secret_access_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def check_name(kind: str, name: str) -> None:
    """InvalidInputException unless ``name`` can be the name of a ``kind`` ("user" or "group"). Checked
    before a name is looked up too, not only when one is created: a name no user or group can have is
    answered by the rule it breaks, and never reaches a query (PostgreSQL's text holds no NUL, which was an
    internal error)."""
    if not USER_NAME.fullmatch(name):
        raise InvalidInputException(
            f"{kind} name {name!r} must be 1-64 characters from letters, digits and + = , . @ _ -, "
            "and not . or .."
        )


def objects_created_by(connection: Connection | Session, arn: str) -> dict[str, int]:
    """How many objects of each kind the ARN created (DELETED ones too: their Get* still answers), the
    kinds without any left out. Compared as the metastore compares ``created_by`` for ``Owner: self``."""
    counts = {}
    for kind, table in OWNED_TABLES.items():
        count = connection.scalar(select(func.count()).select_from(table).where(table.c.created_by == arn))
        if count:
            counts[kind] = count
    return counts


def _user_exists(connection: Connection, name: str) -> bool:
    return connection.scalar(select(USERS.c.name).where(USERS.c.name == name)) is not None


class NameHeldByObjects(InvalidInputException):
    """A new user's name that a deleted user's remaining objects still name (``Identities.create_user``):
    ``name`` is carried so a form can offer to reassign them."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class Identities:
    """Users and access keys of one metastore; ``account_id``: the account of its users' ARNs."""

    def __init__(self, sessions: Sessions, home: Path, account_id: str = DEFAULT_ACCOUNT_ID) -> None:
        self.sessions = sessions
        #: Every statement here is Core, run on a connection of the engine: a server's start and its Predict
        #: path (``auth.ensure_admin``, ``credential``) come through here without importing the ORM.
        self.engine = engine_of(sessions)
        self.box = SecretBox(home / KEY_FILE_NAME)
        self.account_id = account_id

    def arn(self, name: str) -> str:
        return user_arn(self.account_id, name)

    def create_user(self, name: str, groups: tuple[str, ...] = DEFAULT_GROUPS) -> UserInfo:
        """A new user, member of ``groups`` (default: ``users``, which gives no storage access).

        Refused while objects created by an earlier user of that name remain: users are known by name (an
        object's ``CreatedByIamUser`` is its creator's ARN), so the new user would own them. They are given
        to another user first (``reassign_objects``); deleting them would not do, a DELETED object stays.
        """
        check_name("user", name)
        created = now()
        with self.engine.begin() as connection:
            if _user_exists(connection, name):
                raise InvalidInputException(f"user {name!r} already exists")
            left = objects_created_by(connection, self.arn(name))
            if left:
                kinds = ", ".join(f"{count} {kind}" for kind, count in left.items())
                raise NameHeldByObjects(
                    f"user {name!r} cannot be created: {sum(left.values())} object(s) ({kinds}) created by "
                    f"an earlier user of that name would become the new user's. Give them to an existing "
                    f"user first (the console's Users page: Reassign objects of a deleted user; or emrml "
                    f"users reassign-objects {name} OTHER_USER), or choose another name",
                    name,
                )
            for group in groups:
                find_group(connection, group)
            connection.execute(insert(USERS).values(name=name, created_at=created, enabled=True))
            if groups:
                members = [{"group_name": group, "user_name": name} for group in sorted(set(groups))]
                connection.execute(insert(GROUP_MEMBERS), members)
        return UserInfo(name, created, 0, True, tuple(sorted(set(groups))))

    def list_users(self) -> list[UserInfo]:
        keys = ACCESS_KEYS.c
        counts = select(keys.user_name, func.count().label("keys")).group_by(keys.user_name).subquery()
        query = (
            select(USERS.c.name, USERS.c.created_at, func.coalesce(counts.c["keys"], 0), USERS.c.enabled)
            .outerjoin(counts, counts.c.user_name == USERS.c.name)
            .order_by(USERS.c.name)
        )
        with self.engine.connect() as connection:
            memberships: dict[str, list[str]] = {}
            members = select(GROUP_MEMBERS.c.group_name, GROUP_MEMBERS.c.user_name)
            for group, user in connection.execute(members):
                memberships.setdefault(user, []).append(group)
            return [
                UserInfo(name, created, keys, enabled, tuple(sorted(memberships.get(name, []))))
                for name, created, keys, enabled in connection.execute(query)
            ]

    def get_user(self, name: str) -> UserInfo:
        for user in self.list_users():
            if user.name == name:
                return user
        raise ResourceNotFoundException(f"user {name!r} does not exist")

    def set_enabled(self, name: str, enabled: bool) -> None:
        with self.engine.begin() as connection:
            if not _user_exists(connection, name):
                raise ResourceNotFoundException(f"user {name!r} does not exist")
            connection.execute(update(USERS).where(USERS.c.name == name).values(enabled=enabled))
            if not enabled:  # its console sessions end now, and do not come back when it is enabled again
                connection.execute(delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.user_name == name))

    def count_users(self) -> int:
        # A Core connection: a server's start asks (``auth.ensure_admin``), and the ORM is not imported then.
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(USERS)) or 0

    def delete_user(self, name: str) -> int:
        """Delete a user, its access keys, console password, sessions and share links; returns how many keys
        went with it."""
        with self.engine.begin() as connection:
            if not _user_exists(connection, name):
                raise ResourceNotFoundException(f"user {name!r} does not exist")
            # Explicit, not left to ON DELETE CASCADE: SQLite enforces foreign keys only when asked to.
            removed = connection.execute(delete(ACCESS_KEYS).where(ACCESS_KEYS.c.user_name == name)).rowcount
            connection.execute(delete(GROUP_MEMBERS).where(GROUP_MEMBERS.c.user_name == name))
            # The console's password, sessions and share links go too: a new user of the same name starts
            # with none (a link shows its object as its creator, so it would show it as the new user).
            connection.execute(delete(CONSOLE_LOGINS).where(CONSOLE_LOGINS.c.user_name == name))
            connection.execute(delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.user_name == name))
            connection.execute(delete(SHARE_LINKS).where(SHARE_LINKS.c.created_by == name))
            connection.execute(delete(USERS).where(USERS.c.name == name))
        return removed

    def reassign_objects(self, from_name: str, to_name: str) -> dict[str, int]:
        """Make ``to_name`` (an existing user) the creator of every object ``from_name`` created (a deleted
        user's, or a user leaving); returns how many of each kind."""
        if from_name == to_name:
            raise InvalidInputException("the objects' new owner must be another user")
        with self.engine.begin() as connection:
            if not _user_exists(connection, to_name):
                raise ResourceNotFoundException(f"user {to_name!r} does not exist")
            moved = objects_created_by(connection, self.arn(from_name))
            for table in OWNED_TABLES.values():
                connection.execute(
                    update(table)
                    .where(table.c.created_by == self.arn(from_name))
                    .values(created_by=self.arn(to_name))
                )
        return moved

    def create_key(self, user_name: str) -> NewAccessKey:
        secret = new_secret_access_key()
        key = NewAccessKey(_new_access_key_id(), secret, user_name, now())
        with self.engine.begin() as connection:
            if not _user_exists(connection, user_name):
                raise ResourceNotFoundException(f"user {user_name!r} does not exist")
            connection.execute(
                insert(ACCESS_KEYS).values(
                    access_key_id=key.access_key_id,
                    user_name=user_name,
                    secret_encrypted=self.box.encrypt(secret),
                    created_at=key.created_at,
                )
            )
        return key

    def list_keys(self, user_name: str | None = None) -> list[KeyInfo]:
        keys = ACCESS_KEYS.c
        query = select(keys.access_key_id, keys.user_name, keys.created_at, keys.active)
        if user_name is not None:
            query = query.where(keys.user_name == user_name)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(keys.user_name, keys.created_at))
            return [KeyInfo(*row) for row in rows]

    def delete_key(self, access_key_id: str) -> None:
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(ACCESS_KEYS).where(ACCESS_KEYS.c.access_key_id == access_key_id)
            )
            if removed.rowcount == 0:
                raise ResourceNotFoundException(f"access key {access_key_id!r} does not exist")

    def set_key_active(self, access_key_id: str, active: bool) -> None:
        found = ACCESS_KEYS.c.access_key_id == access_key_id
        with self.engine.begin() as connection:
            if connection.scalar(select(ACCESS_KEYS.c.access_key_id).where(found)) is None:
                raise ResourceNotFoundException(f"access key {access_key_id!r} does not exist")
            connection.execute(update(ACCESS_KEYS).where(found).values(active=active))

    def credential(self, access_key_id: str) -> Credential | None:
        """The key's decrypted secret and owner, or None for an unknown or inactive key."""
        # A Core connection, not an ORM session: a server rereads every known key from a thread of its
        # own, and a session's get costs twice the interpreter lock time the event loop then waits for.
        with self.engine.connect() as connection:
            row = connection.execute(_CREDENTIAL, {"access_key_id": access_key_id}).first()
        if row is None or not row.active:
            return None
        # The stored id, as before: a metastore whose collation ignores case finds it from another spelling.
        return Credential(row.access_key_id, self.box.decrypt(row.secret_encrypted), row.user_name)
