"""Console logins: passwords, browser sessions and failed-login throttling (tables of 0006 and 0013).

The console authenticates people with a user name and a password; everything they do then goes through
``EmrML.call`` as that user, exactly like a signed API request. This module keeps what that needs and
nothing about HTML:

* passwords, hashed with scrypt (the standard library's, backed by OpenSSL) under a random salt;
* sessions: a random token in the browser's cookie, only its SHA-256 in the metastore, so a copy of the
  metastore logs nobody in; each session has its own CSRF token and ends at logout or after
  ``SESSION_SECONDS`` without use;
* a throttle on failed logins per account at one client address, with larger ceilings per client address
  (guessing across accounts) and per account (guessing from many addresses), counted in the metastore by
  every process serving the console.

Share links are ``service.sharing``'s.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from emrml.errors import AmazonMLError, InvalidInputException, ResourceNotFoundException
from emrml.service.metastore import Sessions, engine_of, now
from emrml.service.tables import CONSOLE_LOGINS, CONSOLE_SESSIONS, LOGIN_FAILURES, USERS

if TYPE_CHECKING:
    from emrml.service.directory import Directory

log = logging.getLogger(__name__)

#: scrypt's cost: 2**15 × 8 × 128 bytes = 32 MiB and about 0.1 s per hash on one core (OWASP's minimum).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
#: A session not used for this long has ended.
SESSION_SECONDS = 12 * 3600
#: Failed logins allowed within the window before refusing, counted per account at one client address:
#: one person mistyping locks only that account from that address, not everyone behind the same address
#: (an office behind one NAT address).
MAX_FAILURES = 5
#: Ceilings on the failures of one client address, whatever the accounts tried (guessing passwords across
#: accounts from one address), and of one account, whatever the addresses (guessing from many addresses).
MAX_ADDRESS_FAILURES = 10 * MAX_FAILURES
MAX_ACCOUNT_FAILURES = 5 * MAX_FAILURES
FAILURE_WINDOW_SECONDS = 15 * 60
#: What failures are counted against (the first part of a throttle key), and how many each allows.
FAILURE_LIMITS = {
    "account at address": MAX_FAILURES,
    "address": MAX_ADDRESS_FAILURES,
    "account": MAX_ACCOUNT_FAILURES,
}


@dataclass(frozen=True)
class SessionInfo:
    user_name: str
    csrf_token: str


@dataclass(frozen=True)
class NewSession:
    token: str
    csrf_token: str


class LoginRefused(Exception):
    """A login that did not succeed; ``retry_after`` is set when it was throttled."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def token_digest(token: str) -> str:
    """What the metastore keeps of a session's or share link's token."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) of ``password`` under a fresh 16-byte salt."""
    salt = os.urandom(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(key).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=128 * 1024 * 1024,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_new_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInputException(
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters (got {len(password)})"
        )


@functools.cache
def _decoy_hash() -> str:
    """A hash to check against when the user does not exist, so that the answer takes as long either way
    (made on first use: a scrypt hash costs ~0.1 s, which every server start would otherwise pay)."""
    return hash_password(secrets.token_urlsafe(16))


#: A throttle key: what failures are counted against (a key of the throttle's limits), then its values.
ThrottleKey = tuple[str, ...]


def _key_digest(key: ThrottleKey) -> str:
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


class LoginThrottle:
    """Failed logins per key (an account at an address, an address, an account) in a sliding window,
    counted in the metastore: every process and server on it counts together, and a restart forgets
    nothing. ``limits``: the failures each kind of key allows; ``clock``: wall-clock seconds (shared by the
    processes, as ``now`` is)."""

    def __init__(
        self,
        sessions: Sessions,
        limits: Mapping[str, int] = FAILURE_LIMITS,
        window: float = FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.limits = dict(limits)
        self.window = window
        self.clock = clock

    def retry_after(self, *keys: ThrottleKey) -> float | None:
        """Seconds until one more try is allowed for every key, or None if it is allowed now."""
        moment = self.clock()
        digests = {_key_digest(key): key for key in keys}
        failures: dict[str, list[float]] = {}
        with engine_of(self.sessions).connect() as connection:
            rows = connection.execute(
                select(LOGIN_FAILURES.c.throttle_key, LOGIN_FAILURES.c.failed_at)
                .where(
                    LOGIN_FAILURES.c.throttle_key.in_(digests),
                    LOGIN_FAILURES.c.failed_at > moment - self.window,
                )
                .order_by(LOGIN_FAILURES.c.failed_at)
            )
            for digest, failed_at in rows:
                failures.setdefault(digest, []).append(failed_at)
        waits = []
        for digest, times in failures.items():
            limit = self.limits[digests[digest][0]]
            if len(times) >= limit:
                # The oldest failure that still counts against the limit must leave the window.
                waits.append(times[len(times) - limit] + self.window - moment)
        return max(waits) if waits else None

    def failed(self, *keys: ThrottleKey) -> None:
        moment = self.clock()
        with engine_of(self.sessions).begin() as connection:
            # Failures older than the window count no more: they go as new ones come.
            connection.execute(
                delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.failed_at <= moment - self.window)
            )
            failures = [{"throttle_key": _key_digest(key), "failed_at": moment} for key in keys]
            connection.execute(insert(LOGIN_FAILURES), failures)

    def succeeded(self, *keys: ThrottleKey) -> None:
        digests = [_key_digest(key) for key in keys]
        with engine_of(self.sessions).begin() as connection:
            connection.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.throttle_key.in_(digests)))


class Logins:
    """Passwords and sessions in the metastore."""

    def __init__(
        self,
        sessions: Sessions,
        throttle: LoginThrottle | None = None,
        directory: Directory | None = None,
        on_directory_login: Callable[[str, tuple[str, ...], set[str]], None] | None = None,
    ) -> None:
        """``directory``: an LDAP directory for users without a local password; ``on_directory_login``
        (user, mapped groups, the groups the directory decides) creates the user and sets its groups."""
        self.sessions = sessions
        self.throttle = throttle or LoginThrottle(sessions)
        self.directory = directory
        self.on_directory_login = on_directory_login

    # ------------------------------------------------------------------------------------ passwords

    def set_password(self, user_name: str, password: str) -> None:
        check_new_password(password)
        from emrml.service.identity import check_name  # identity imports this module

        check_name("user", user_name)
        hashed = hash_password(password)
        with engine_of(self.sessions).begin() as connection:
            if connection.scalar(select(USERS.c.name).where(USERS.c.name == user_name)) is None:
                raise ResourceNotFoundException(f"user {user_name!r} does not exist")
            values = {"password_hash": hashed, "updated_at": now()}
            if _stored_hash(connection, user_name) is None:
                connection.execute(insert(CONSOLE_LOGINS).values(user_name=user_name, **values))
            else:
                logins = CONSOLE_LOGINS
                connection.execute(update(logins).where(logins.c.user_name == user_name).values(**values))
            # A new password ends every other session of the user.
            connection.execute(delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.user_name == user_name))

    def set_first_password(self, user_name: str, password: str) -> bool:
        """Give the user ``password`` unless it has one; whether it did. Atomic: of processes starting at
        once on one metastore (servers of several machines), one sets the password it then writes down."""
        if self.has_password(user_name):
            return False  # (no hashing for nothing on every start)
        hashed = hash_password(password)
        try:
            with engine_of(self.sessions).begin() as connection:
                values = {"user_name": user_name, "password_hash": hashed, "updated_at": now()}
                connection.execute(insert(CONSOLE_LOGINS).values(**values))
        except IntegrityError:
            return False
        return True

    def has_password(self, user_name: str) -> bool:
        with engine_of(self.sessions).connect() as connection:
            return _stored_hash(connection, user_name) is not None

    def verify(self, user_name: str, password: str) -> bool:
        with engine_of(self.sessions).connect() as connection:
            stored = _stored_hash(connection, user_name)
        if stored is None:
            check_password(password, _decoy_hash())
            return False
        return check_password(password, stored)

    def _attempt(self, user_name: str, client: str, right: Callable[[], bool], wrong: str) -> None:
        """Pass if ``right()``; LoginRefused(``wrong``) otherwise, counted as a failure of the user at the
        client, of the client and of the user; LoginRefused with ``retry_after``, without trying, while any
        of them has failed too often (``FAILURE_LIMITS``)."""
        keys = (("account at address", user_name, client), ("address", client), ("account", user_name))
        wait = self.throttle.retry_after(*keys)
        if wait is not None:
            raise LoginRefused(
                f"Too many failed logins: try again in {int(wait) + 1} seconds.", retry_after=wait
            )
        if not right():
            self.throttle.failed(*keys)
            raise LoginRefused(wrong)
        # A success forgives the user's own failures, not the address's: a guesser who knows one password
        # must not reset the count of its guesses at the other accounts.
        self.throttle.succeeded(keys[0], keys[2])

    def check_current_password(self, user_name: str, password: str, client: str) -> None:
        """LoginRefused unless ``password`` is the user's, throttled as logins are (and counted with them):
        a session left open must not become a way to guess the password it was opened with."""
        self._attempt(
            user_name, client, lambda: self.verify(user_name, password), "This is not your current password."
        )

    def log_in(self, user_name: str, password: str, client: str) -> NewSession:
        """A new session for a right user name and password; LoginRefused otherwise (or when throttled)."""
        from emrml.service.identity import USER_NAME  # identity imports this module

        # A name no user can have is a wrong login, counted as any other, without being looked up: one
        # holding a NUL was a 500 on PostgreSQL, whose text holds none (the console's login form sends
        # the name as typed).
        possible = USER_NAME.fullmatch(user_name) is not None
        self._attempt(
            user_name,
            client,
            lambda: (
                possible and (self.verify(user_name, password) or self._directory_login(user_name, password))
            ),
            "Wrong user name or password.",
        )
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        moment = now()
        with engine_of(self.sessions).begin() as connection:
            connection.execute(
                insert(CONSOLE_SESSIONS).values(
                    token_hash=token_digest(token),
                    user_name=user_name,
                    csrf_token=csrf,
                    created_at=moment,
                    last_seen_at=moment,
                )
            )
        return NewSession(token, csrf)

    # ------------------------------------------------------------------------------------ sessions

    def _directory_login(self, user_name: str, password: str) -> bool:
        """Whether the directory knows the user (one without a local password) by this password; the user
        is then created or updated with its groups. An unreachable directory is LoginRefused, not a failure
        of the user's."""
        if self.directory is None or self.has_password(user_name):
            return False
        from emrml.service.directory import DirectoryRefused, DirectoryUnavailable, MappedGroupsMissing

        try:
            found = self.directory.authenticate(user_name, password)
        except DirectoryRefused:
            return False
        except DirectoryUnavailable as exc:
            log.warning("LDAP login of %r: %s", user_name, exc)
            raise LoginRefused("The user directory (LDAP) cannot be reached: try again later.") from None
        if self.on_directory_login is not None:
            try:
                self.on_directory_login(user_name, found.groups, self.directory.mapped_groups)
            except MappedGroupsMissing as exc:
                log.error("%s", self.directory.missing_groups_message(user_name, found, exc.groups))
                raise LoginRefused(
                    "Your account cannot be set up: the directory puts you in a group mapped to emrml "
                    f"group(s) {', '.join(map(repr, exc.groups))}, which do not exist. Ask an administrator "
                    "to create them or correct the mapping (the server's log says which)."
                ) from None
            except AmazonMLError as exc:  # a user emrml refuses to create (a name whose objects remain)
                log.warning("LDAP login of %r: %s", user_name, exc.message)
                raise LoginRefused(
                    "Your account cannot be set up yet: ask an administrator (the server's log says why)."
                ) from None
        return True

    def session(self, token: str) -> SessionInfo | None:
        """The live session of a cookie's token, or None (unknown, ended or expired)."""
        if not token or len(token) > 100:
            return None
        moment = now()
        with engine_of(self.sessions).begin() as connection:
            this = CONSOLE_SESSIONS.c.token_hash == token_digest(token)
            found = connection.execute(select(CONSOLE_SESSIONS).where(this)).first()
            if found is None:
                return None
            if found.last_seen_at < moment - SESSION_SECONDS:
                connection.execute(delete(CONSOLE_SESSIONS).where(this))
                return None
            if found.last_seen_at < moment - 60:
                # Written at most once a minute: page loads stay reads.
                connection.execute(update(CONSOLE_SESSIONS).where(this).values(last_seen_at=moment))
            return SessionInfo(found.user_name, found.csrf_token)

    def log_out(self, token: str) -> None:
        with engine_of(self.sessions).begin() as connection:
            connection.execute(
                delete(CONSOLE_SESSIONS).where(CONSOLE_SESSIONS.c.token_hash == token_digest(token))
            )


def _stored_hash(connection: Connection, user_name: str) -> str | None:
    """The user's password hash, None when it has no password."""
    logins = CONSOLE_LOGINS
    return connection.scalar(select(logins.c.password_hash).where(logins.c.user_name == user_name))


def ensure_admin_password(logins: Logins, home: Path) -> str | None:
    """Give user ``admin`` a random console password if it has none; returns it, or None.

    The password is added to ``<home>/admin-credentials.json`` (mode 0600) as ``console_user`` and
    ``console_password``, beside the access key that file may already hold. Never a default password.
    """
    from emrml.service.auth import ADMIN_CREDENTIALS_FILE, ADMIN_USER, write_private_json

    # Core statements throughout: a server's start comes here, and does not import the ORM.
    with engine_of(logins.sessions).connect() as connection:
        if connection.scalar(select(USERS.c.name).where(USERS.c.name == ADMIN_USER)) is None:
            return None
    password = secrets.token_urlsafe(18)
    if not logins.set_first_password(ADMIN_USER, password):
        return None
    path = home / ADMIN_CREDENTIALS_FILE
    document: dict[str, str] = {}
    if path.is_file():
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            document = {}
    document.update({"console_user": ADMIN_USER, "console_password": password})
    try:
        write_private_json(path, document)
    except AmazonMLError:
        # A password written down nowhere: it goes, for the next start to give one again.
        with engine_of(logins.sessions).begin() as connection:
            connection.execute(delete(CONSOLE_LOGINS).where(CONSOLE_LOGINS.c.user_name == ADMIN_USER))
        raise
    return password
