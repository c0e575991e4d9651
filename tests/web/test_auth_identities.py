"""Users and access keys at rest: the identity tables, keys shaped as AWS's, secrets encrypted with a
private key file, the first-start admin key, and the credential cache that remembers keys for a TTL."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from emrml.errors import InternalServerException, InvalidInputException, ResourceNotFoundException
from emrml.service import identity
from emrml.service.auth import CredentialCache, ensure_admin
from emrml.service.identity import Credential, Identities, SecretBox
from emrml.service.metastore import migrate, open_engine, session_factory
from emrml.service.rows import Base


@pytest.fixture
def identities(tmp_path: Path, metastore_url: str) -> Iterator[Identities]:
    """Users and keys on each supported metastore (SQLite and PostgreSQL)."""
    engine = open_engine(metastore_url)
    migrate(engine, tmp_path)
    yield Identities(session_factory(engine), tmp_path)
    engine.dispose()


@pytest.fixture
def sqlite_identities(tmp_path: Path) -> Iterator[Identities]:
    """Users and keys in a SQLite file, whose bytes a test can inspect."""
    engine = open_engine(f"sqlite:///{tmp_path / 'metastore.db'}")
    migrate(engine, tmp_path)
    yield Identities(session_factory(engine), tmp_path)
    engine.dispose()


def test_migration_matches_the_identity_tables(identities: Identities) -> None:
    with identities.sessions() as session, warnings.catch_warnings():
        # SQLAlchemy reflects no index on an expression of SQLite's (Describe*'s sort keys), and says so.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index ix_")
        differences = compare_metadata(MigrationContext.configure(session.connection()), Base.metadata)
    ours = [d for d in differences if "users" in repr(d) or "access_keys" in repr(d)]
    assert ours == []


def test_users_and_keys_crud(identities: Identities) -> None:
    identities.create_user("alice")
    with pytest.raises(InvalidInputException, match="already exists"):
        identities.create_user("alice")
    with pytest.raises(InvalidInputException, match="user name"):
        identities.create_user("no spaces")
    with pytest.raises(ResourceNotFoundException):
        identities.create_key("bob")
    first, second = identities.create_key("alice"), identities.create_key("alice")
    assert first.access_key_id != second.access_key_id and len(first.access_key_id) == 20
    assert first.access_key_id.startswith("EMRL") and len(first.secret_access_key) == 40
    assert [u.access_keys for u in identities.list_users()] == [2]
    assert {k.access_key_id for k in identities.list_keys("alice")} == {
        first.access_key_id,
        second.access_key_id,
    }
    credential = identities.credential(first.access_key_id)
    assert credential is not None and credential.secret_access_key == first.secret_access_key
    identities.delete_key(first.access_key_id)
    assert identities.credential(first.access_key_id) is None
    with pytest.raises(ResourceNotFoundException):
        identities.delete_key(first.access_key_id)
    assert identities.delete_user("alice") == 1
    assert identities.list_users() == [] and identities.list_keys() == []


def test_secret_keys_are_aws_shaped_and_never_read_as_an_option() -> None:
    # 40 characters of base64's alphabet, as AWS's secrets: none starts with "-", which the aws CLI (and any
    # argparse-style parser) takes for an option (one secret in 64 did, and the printed profile commands
    # failed with it); 2,000 draws of the old 64 characters held a "-" or "_" almost surely.
    drawn = [identity.new_secret_access_key() for _ in range(2000)]
    assert all(re.fullmatch(r"[A-Za-z0-9+/]{40}", secret) for secret in drawn)
    assert len(set(drawn)) == len(drawn)


def test_secrets_are_encrypted_at_rest_with_a_private_key_file(
    sqlite_identities: Identities, tmp_path: Path
) -> None:
    identities = sqlite_identities
    identities.create_user("alice")
    key = identities.create_key("alice")
    # The SQLite file and its write-ahead log hold every byte the metastore stored.
    database = b"".join(path.read_bytes() for path in tmp_path.glob("metastore.db*"))
    assert key.access_key_id.encode() in database
    assert key.secret_access_key.encode() not in database
    key_file = tmp_path / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Another key file cannot decrypt the stored secret: the error says what to do, not the secret.
    key_file.unlink()
    other = Identities(identities.sessions, tmp_path)
    with pytest.raises(InternalServerException, match=r"secrets\.key"):
        other.credential(key.access_key_id)


def test_first_start_creates_an_admin_key_file(identities: Identities, tmp_path: Path) -> None:
    created = ensure_admin(identities, tmp_path)
    assert created is not None
    key, path = created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "aws_access_key_id": key.access_key_id,
        "aws_secret_access_key": key.secret_access_key,
    }
    assert [user.name for user in identities.list_users()] == ["admin"]
    assert ensure_admin(identities, tmp_path) is None


def test_credential_cache_forgets_after_its_ttl(identities: Identities) -> None:
    identities.create_user("alice")
    key = identities.create_key("alice")
    now = [0.0]
    cache = CredentialCache(identities, ttl=5.0, clock=lambda: now[0])
    assert cache.fresh(key.access_key_id) == (False, None)
    assert cache.load(key.access_key_id) is not None
    known, credential = cache.fresh(key.access_key_id)
    assert known and credential is not None and credential.user_name == "alice"
    identities.delete_key(key.access_key_id)
    assert cache.fresh(key.access_key_id)[1] is not None  # still trusted within the TTL
    now[0] = 6.0
    assert cache.fresh(key.access_key_id) == (False, None)
    assert cache.load(key.access_key_id) is None
    assert cache.fresh(key.access_key_id) == (True, None)  # unknown ids are remembered too
    assert cache.load("not a key id!") is None


def test_credential_cache_refresh_reloads_known_keys_only(identities: Identities) -> None:
    identities.create_user("alice")
    key = identities.create_key("alice")
    now = [0.0]
    queried: list[str] = []
    lookup = identities.credential

    def counted(access_key_id: str) -> Credential | None:
        queried.append(access_key_id)
        return lookup(access_key_id)

    cache = CredentialCache(identities, ttl=5.0, clock=lambda: now[0])
    with patch.object(identities, "credential", counted):
        cache.load(key.access_key_id)
        cache.load("EMRLUNKNOWN00000001")
        now[0] = 4.0
        cache.refresh()  # as the server's thread does every ttl / 2
        assert queried == [key.access_key_id, "EMRLUNKNOWN00000001", key.access_key_id]
        now[0] = 8.0  # past the first load's ttl, within the refresh's
        assert cache.fresh(key.access_key_id)[1] is not None
        assert cache.fresh("EMRLUNKNOWN00000001") == (False, None)  # unknown ids still expire
        identities.delete_key(key.access_key_id)
        cache.refresh()
        assert cache.fresh(key.access_key_id) == (True, None)  # a deleted key stops at the next refresh


def test_a_secret_sealed_with_another_key_file_fails_naming_the_key_file(tmp_path: Path) -> None:
    sealed = SecretBox(tmp_path / "one.key").encrypt("db-password")
    with pytest.raises(InternalServerException, match=r"another secrets\.key") as raised:
        SecretBox(tmp_path / "two.key").decrypt(sealed)
    assert "two.key" in raised.value.message and "db-password" not in raised.value.message


def _no_room(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_console_password_that_cannot_be_written_down_leaves_the_admin_key_file_whole(
    sqlite_identities: Identities, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start adds the console password to the file holding the admin's access key. The disk full
    as it did, the file was removed first and left empty: the key, and the password just set, were known
    nowhere. Now the file keeps the key, the password is not set (the next start gives one), and the
    error names the file."""
    from emrml.service.logins import Logins, ensure_admin_password

    created = ensure_admin(sqlite_identities, tmp_path)
    assert created is not None
    key, path = created
    kept = path.read_text()
    logins = Logins(sqlite_identities.sessions)
    with monkeypatch.context() as patched:
        patched.setattr(json, "dump", _no_room)  # the write's first bytes find no room
        with pytest.raises(InternalServerException) as refused:
            ensure_admin_password(logins, tmp_path)
    assert refused.value.message == (
        f"{path}: cannot write it (No space left on device); free some space or make the folder writable, "
        "and start again"
    )
    assert path.read_text() == kept
    assert [file.name for file in tmp_path.iterdir() if "admin-credentials" in file.name] == [path.name]
    assert not logins.has_password("admin")
    password = ensure_admin_password(logins, tmp_path)
    assert password is not None and logins.verify("admin", password)
    assert json.loads(path.read_text()) == {
        "aws_access_key_id": key.access_key_id,
        "aws_secret_access_key": key.secret_access_key,
        "console_user": "admin",
        "console_password": password,
    }


def test_an_admin_key_that_cannot_be_written_down_is_made_again_at_the_next_start(
    sqlite_identities: Identities, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk full as the first start wrote the admin's access key down: the user kept a key known
    nowhere, and later starts, finding a user, made none."""
    with monkeypatch.context() as patched:
        patched.setattr(json, "dump", _no_room)
        with pytest.raises(InternalServerException):
            ensure_admin(sqlite_identities, tmp_path)
    assert sqlite_identities.list_users() == []
    created = ensure_admin(sqlite_identities, tmp_path)
    assert created is not None
    assert json.loads(created[1].read_text())["aws_access_key_id"] == created[0].access_key_id
