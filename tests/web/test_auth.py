"""Authentication: users and access keys at rest, SigV4 verification exactly as botocore signs, the AWS
auth errors over raw HTTP and boto3, the first-start admin key, and the users/keys commands."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch
from urllib.request import urlopen

import boto3
import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from typer.testing import CliRunner
from web_helpers import post, sign

from emrml.cli_server import register
from emrml.config import Settings
from emrml.errors import (
    IncompleteSignatureException,
    InternalServerException,
    InvalidInputException,
    InvalidSignatureException,
    ResourceNotFoundException,
)
from emrml.service import identity
from emrml.service.app import EmrML
from emrml.service.auth import (
    CredentialCache,
    HttpRequest,
    ensure_admin,
    parse_signature,
    received_headers,
    verify,
)
from emrml.service.identity import Credential, Identities, SecretBox
from emrml.service.metastore import Base, migrate, open_engine, session_factory
from emrml.web import access_log, server
from emrml.web.server import reserve_socket

BODY = b'{"Limit": 1}'


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


# ---------------------------------------------------------------------------------------------- at rest


def test_migration_matches_the_identity_tables(identities: Identities) -> None:
    with identities.sessions() as session:
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


# ---------------------------------------------------------------------------------------------- SigV4


def _as_received(headers: dict[str, str], body: bytes, path: str = "/", query: str = "") -> HttpRequest:
    received = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    received.append((b"host", b"127.0.0.1:8080"))
    return HttpRequest("POST", path, query, received_headers(received), body)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"X-Amz-Content-SHA256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"X-Custom": "  spaced   value  ", "X-Other": "a"},
    ],
)
def test_verification_reproduces_botocore_signatures(extra: dict[str, str]) -> None:
    body = b"" if "X-Amz-Content-SHA256" in extra else BODY
    headers = sign(
        "http://127.0.0.1:8080", "DescribeDataSources", body, "EMRLKEY0000000000001", "s3cret", headers=extra
    )
    claim = parse_signature(_as_received(headers, body), time.time())
    caller = verify(claim, Credential("EMRLKEY0000000000001", "s3cret", "alice"))
    assert caller.user_name == "alice"
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verify(claim, Credential("EMRLKEY0000000000001", "other", "alice"))


@pytest.mark.parametrize(
    "layout",
    [
        "{c}, {h}, {s}",
        "{c},{h},{s}",
        " {c} ,  {h},{s} ",
        "{s}, {c}, {h}",
        "{c}, {h}, {s},Extra=x",
        "{c}\t, {h}, {s}",
    ],
)
def test_authorization_headers_are_read_in_any_layout(layout: str) -> None:
    # The SDKs' layout is read by partitions; any other goes through the general parser, same answer.
    headers = sign("http://127.0.0.1:8080", "DescribeDataSources", BODY, "EMRLKEY0000000000001", "s3cret")
    algorithm, _, parts = headers["Authorization"].partition(" ")
    c, h, s = parts.split(", ")
    headers["Authorization"] = f"{algorithm} {layout.format(c=c, h=h, s=s)}"
    claim = parse_signature(_as_received(headers, BODY), time.time())
    assert verify(claim, Credential("EMRLKEY0000000000001", "s3cret", "alice")).user_name == "alice"


@pytest.mark.parametrize("stamp", ["20261340T000000Z", "20260101T250000Z", "2026-01-01T00:00:00Z"])
def test_a_timestamp_that_is_no_date_is_refused(stamp: str) -> None:
    headers = sign("http://127.0.0.1:8080", "DescribeDataSources", BODY, "EMRLKEY0000000000001", "s3cret")
    headers["X-Amz-Date"] = stamp
    for _ in range(2):  # the second time from what the first remembered
        with pytest.raises(IncompleteSignatureException, match="basic format"):
            parse_signature(_as_received(headers, BODY), time.time())


def test_path_and_query_are_canonicalized_like_botocore() -> None:
    url = "http://127.0.0.1:8080/a b/./c/?z=1&a=2"
    request = AWSRequest(method="POST", url=url, data=BODY, headers={"X-Amz-Target": "AmazonML_20141212.X"})
    SigV4Auth(Credentials("EMRLKEY0000000000001", "k"), "machinelearning", "eu-west-1").add_auth(request)
    prepared = request.prepare()
    path, _, query = prepared.url.split("8080", 1)[1].partition("?")
    claim = parse_signature(_as_received(dict(prepared.headers.items()), BODY, path, query), time.time())
    assert verify(claim, Credential("EMRLKEY0000000000001", "k", "bob")).user_name == "bob"


def test_a_header_sent_twice_is_verified_as_botocore_signs_it() -> None:
    # Its values, each trimmed, joined by a comma: as botocore's canonical request has them.
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8080/",
        data=BODY,
        headers={"X-Amz-Target": "AmazonML_20141212.X"},
    )
    request.headers["X-Custom"] = "  a   b "
    request.headers["X-Custom"] = "c"
    SigV4Auth(Credentials("EMRLKEY0000000000001", "k"), "machinelearning", "eu-west-1").add_auth(request)
    received = [(name.lower().encode(), value.encode()) for name, value in request.headers.items()]
    assert [name for name, _ in received].count(b"x-custom") == 2
    headers = received_headers([*received, (b"host", b"127.0.0.1:8080")])
    assert headers["x-custom"] == "a b,c"
    claim = parse_signature(HttpRequest("POST", "/", "", headers, BODY), time.time())
    assert verify(claim, Credential("EMRLKEY0000000000001", "k", "bob")).user_name == "bob"


# ---------------------------------------------------------------------------------------------- over HTTP


def _error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status, body["__type"], body["message"]


def test_a_signed_request_is_served_as_its_user(live_server: Any) -> None:
    headers = sign(
        live_server.url,
        "DescribeDataSources",
        BODY,
        live_server.key.access_key_id,
        live_server.key.secret_access_key,
    )
    response = post(live_server.url, headers, BODY)
    assert response.status == 200 and "Results" in response.json()
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert len(response.headers["x-amzn-requestid"]) == 36


def test_a_server_reloads_the_keys_and_policies_in_use_before_they_expire(tmp_path: Path) -> None:
    service = EmrML(Settings.load(environ={}, home=tmp_path))
    identities = Identities(service.sessions, tmp_path)
    identities.create_user("alice")
    key = identities.create_key("alice")
    app = server.create_app(service, console=False, credential_ttl_seconds=2.0)
    cache = app.api.credentials
    with server.BackgroundServer(app, reserve_socket()) as running:
        headers = sign(running.url, "DescribeDataSources", BODY, key.access_key_id, key.secret_access_key)
        assert post(running.url, headers, BODY).status == 200
        first_expiry = cache.expires_at(key.access_key_id)
        assert first_expiry is not None
        while time.monotonic() < first_expiry + 0.5:
            time.sleep(0.1)
        # No request since: the server's own threads (every ttl / 2) loaded it, and alice's policy, again.
        assert cache.fresh(key.access_key_id)[1] is not None
        arn = f"arn:aws:iam::{service.settings.account_id}:user/alice"
        policies = service.access.policies
        with patch.object(policies, "read", side_effect=AssertionError("read on a request's path")):
            assert service.access.policy(arn).enabled
    service.close()


def _with(headers: dict[str, str], **changes: str | None) -> dict[str, str]:
    updated = dict(headers)
    for name, value in changes.items():
        updated.pop(name.replace("_", "-"), None)
        if value is not None:
            updated[name.replace("_", "-")] = value
    return updated


@pytest.mark.parametrize(
    ("case", "status", "error_type", "message"),
    [
        ("unsigned", 403, "MissingAuthenticationTokenException", "missing Authentication Token"),
        ("expired", 403, "InvalidSignatureException", "Signature expired"),
        ("future", 403, "InvalidSignatureException", "Signature not yet current"),
        ("wrong secret", 403, "InvalidSignatureException", "does not match"),
        (
            "unknown key",
            403,
            "UnrecognizedClientException",
            "security token included in the request is invalid",
        ),
        ("not sigv4", 403, "IncompleteSignatureException", "Unsupported"),
        ("no signature", 403, "IncompleteSignatureException", "requires 'Signature'"),
        ("target unsigned", 403, "IncompleteSignatureException", "x-amz-target"),
        ("other service", 403, "InvalidSignatureException", "correct service"),
        ("no date", 403, "IncompleteSignatureException", "X-Amz-Date"),
        ("body changed", 403, "InvalidSignatureException", "does not match"),
        ("target changed", 403, "InvalidSignatureException", "does not match"),
        ("session token", 403, "UnrecognizedClientException", "security token"),
    ],
)
def test_auth_errors_over_raw_http(
    live_server: Any, case: str, status: int, error_type: str, message: str
) -> None:
    key, secret = live_server.key.access_key_id, live_server.key.secret_access_key
    body = BODY
    now = datetime.now(UTC)
    headers = sign(live_server.url, "DescribeDataSources", body, key, secret)
    authorization = headers["Authorization"]
    if case == "unsigned":
        headers = _with(headers, Authorization=None)
    elif case in ("expired", "future"):
        when = now + timedelta(minutes=-20 if case == "expired" else 20)
        headers = sign(live_server.url, "DescribeDataSources", body, key, secret, when=when)
    elif case == "wrong secret":
        headers = sign(live_server.url, "DescribeDataSources", body, key, secret + "x")
    elif case == "unknown key":
        headers = sign(live_server.url, "DescribeDataSources", body, "EMRLNOSUCHKEY0000000", secret)
    elif case == "not sigv4":
        headers = _with(headers, Authorization="AWS " + key + ":c2lnbmF0dXJl")
    elif case == "no signature":
        headers = _with(headers, Authorization=authorization.split(", Signature=")[0])
    elif case == "target unsigned":
        headers = _with(headers, Authorization=authorization.replace(";x-amz-target", ""))
    elif case == "other service":
        headers = _with(headers, Authorization=authorization.replace("/machinelearning/", "/dynamodb/"))
    elif case == "no date":
        headers = _with(headers, X_Amz_Date=None)
    elif case == "body changed":
        body = b'{"Limit": 2}'
    elif case == "target changed":
        headers = _with(headers, X_Amz_Target="AmazonML_20141212.DescribeMLModels")
    elif case == "session token":
        headers = _with(headers, X_Amz_Security_Token="FwoGZXIvYXdzE")
    response = post(live_server.url, headers, body)
    got_status, got_type, got_message = _error(response)
    assert (got_status, got_type) == (status, error_type)
    assert message in got_message
    assert response.headers["x-amzn-errortype"] == error_type


def test_auth_errors_through_boto3(live_server: Any) -> None:
    cases = [
        (live_server.client(secret="not-the-secret-" * 3), "InvalidSignatureException"),
        (live_server.client(access_key_id="EMRLNOSUCHKEY0000000"), "UnrecognizedClientException"),
    ]
    for client, code in cases:
        with pytest.raises(ClientError) as raised:
            client.describe_data_sources()
        assert raised.value.response["Error"]["Code"] == code
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    client = live_server.client()
    long_ago = datetime.now(UTC) - timedelta(minutes=20)
    with (
        patch("botocore.auth.get_current_datetime", return_value=long_ago),
        pytest.raises(ClientError) as raised,
    ):
        client.describe_data_sources()
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "Signature expired" in raised.value.response["Error"]["Message"]


def test_a_new_key_works_at_once_and_a_deleted_key_stops_working(live_server: Any) -> None:
    live_server.identities.create_user("carol")
    key = live_server.identities.create_key("carol")
    client = live_server.client(key.access_key_id, key.secret_access_key)
    missing = live_server.service.settings.data_roots[-1] / "no" / "such-file.csv"
    # A new user reads no storage until a group grants it.
    access = live_server.service.access
    access.create_group("carol-storage", "carol's data")
    # The data and, with no schema given, the schema file beside it, which the job reads too.
    for resource in (missing, f"{missing}.schema"):
        access.add_statement(
            "carol-storage", {"Effect": "Allow", "Action": "storage:Read", "Resource": f"{resource}"}
        )
    access.add_member("carol-storage", "carol")
    client.create_data_source_from_s3(DataSourceId="auth-carol", DataSpec={"DataLocationS3": str(missing)})
    created_by = live_server.service.call("GetDataSource", {"DataSourceId": "auth-carol"})["CreatedByIamUser"]
    assert created_by == "arn:aws:iam::000000000000:user/carol"
    live_server.identities.delete_user("carol")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            client.describe_data_sources(Limit=1)
        except ClientError as exc:
            # Refused at once by authorization (the user is gone), then unknown once the key cache expires.
            code = exc.response["Error"]["Code"]
            assert code in ("AccessDeniedException", "UnrecognizedClientException")
            if code == "UnrecognizedClientException":
                break
        time.sleep(0.5)
    else:
        pytest.fail("a deleted key was still accepted after 15 s")


# ---------------------------------------------------------------------------------------------- commands


def _root_app() -> typer.Typer:
    """A root app with the main command line's --home and --output options, plus ours."""
    app = typer.Typer()

    @app.callback()
    def main(
        home: Path = typer.Option(..., "--home"),
        output: str = typer.Option("table", "--output"),
    ) -> None:
        """emrml"""

    register(app)
    return app


def test_users_and_keys_commands(tmp_path: Path) -> None:
    app, runner, home = _root_app(), CliRunner(), ["--home", str(tmp_path)]
    created = runner.invoke(app, [*home, "users", "create", "dana"])
    assert created.exit_code == 0 and "arn:aws:iam::000000000000:user/dana" in created.output
    duplicate = runner.invoke(app, [*home, "users", "create", "dana"])
    assert duplicate.exit_code == 2 and "InvalidInputException" in duplicate.output
    key = json.loads(runner.invoke(app, [*home, "--output", "json", "keys", "create", "dana"]).output)
    assert key["UserName"] == "dana" and len(key["SecretAccessKey"]) == 40
    listing = runner.invoke(app, [*home, "--output", "json", "keys", "list"]).output
    assert key["AccessKeyId"] in listing and key["SecretAccessKey"] not in listing
    users = json.loads(runner.invoke(app, [*home, "--output", "json", "users", "list"]).output)["Results"]
    assert users == [
        {
            "UserName": "dana",
            "Arn": "arn:aws:iam::000000000000:user/dana",
            "CreatedAt": users[0]["CreatedAt"],
            "AccessKeys": 1,
            "Enabled": True,
            "Groups": ["users"],
        }
    ]
    assert runner.invoke(app, [*home, "keys", "delete", "EMRLNOSUCHKEY0000000"]).exit_code == 3
    (listed,) = json.loads(runner.invoke(app, [*home, "--output", "json", "keys", "list"]).output)["Results"]
    key_id = listed["AccessKeyId"]
    assert listed["Status"] == "Active"
    assert runner.invoke(app, [*home, "keys", "deactivate", key_id]).exit_code == 0
    (listed,) = json.loads(runner.invoke(app, [*home, "--output", "json", "keys", "list"]).output)["Results"]
    assert listed["Status"] == "Inactive"
    assert "Inactive" in runner.invoke(app, [*home, "keys", "list"]).output
    assert runner.invoke(app, [*home, "keys", "activate", key_id]).exit_code == 0
    assert runner.invoke(app, [*home, "keys", "deactivate", "EMRLNOSUCHKEY0000000"]).exit_code == 3
    deleted = runner.invoke(app, [*home, "users", "delete", "dana"])
    assert deleted.exit_code == 0 and "1 access key" in deleted.output
    assert "No users." in runner.invoke(app, [*home, "users", "list"]).output


def test_groups_commands_grant_and_take_permissions(tmp_path: Path) -> None:
    app, runner, home = _root_app(), CliRunner(), ["--home", str(tmp_path)]

    def ok(*args: str) -> str:
        result = runner.invoke(app, [*home, *args])
        assert result.exit_code == 0, result.output
        return result.output

    ok("users", "create", "erin", "--group", "viewers")
    ok("groups", "create", "data", "--description", "the shared folder")
    ok("groups", "allow", "data", "-a", "storage:Read", "-r", "/srv/shared/*")
    ok("groups", "deny", "data", "-a", "Delete*", "--owner", "self")
    ok("users", "add-to-group", "erin", "data")
    ok("users", "disable", "erin")
    shown = json.loads(ok("--output", "json", "groups", "show", "data"))
    assert shown["Members"] == ["erin"]
    assert [(s["Sid"], s["Effect"], s["Action"], s["Resource"], s["Owner"]) for s in shown["Statements"]] == [
        (1, "Allow", ["storage:Read"], ["/srv/shared/*"], "any"),
        (2, "Deny", ["machinelearning:Delete*"], ["*"], "self"),
    ]
    (erin,) = json.loads(ok("--output", "json", "users", "list"))["Results"]
    assert erin["Groups"] == ["data", "viewers"] and erin["Enabled"] is False
    # A description is the user's text, not rich markup: "[/red]" failed the whole list.
    ok("groups", "create", "marked", "--description", "team [/red] [b]x")
    assert "team [/red] [b]x" in ok("groups", "list")
    ok("groups", "delete", "marked")
    typo = runner.invoke(app, [*home, "groups", "allow", "data", "-a", "Descrbe*"])
    assert typo.exit_code == 2 and "matches no action" in typo.output
    builtin = runner.invoke(app, [*home, "groups", "delete", "viewers"])
    assert builtin.exit_code == 2 and "built-in" in builtin.output
    # A statement file with its own Sid is refused: the group numbers statements, and removes by that number.
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"Sid": "s1", "Effect": "Allow", "Action": "Predict", "Resource": "*"}))
    with_sid = runner.invoke(app, [*home, "groups", "add-statement", "data", str(named)])
    assert with_sid.exit_code == 2 and "takes no Sid" in with_sid.output and "groups show" in with_sid.output
    # A file in another encoding was an internal error; a member given twice took its last value silently.
    for content, says in [
        ('{"Effect": "Allow", "Action": "Predict"}'.encode("utf-16"), "is not UTF-8 text (byte 1 "),
        (b'{"Effect": "Deny", "Action": "Predict", "Effect": "Allow"}', "names the member 'Effect' twice"),
    ]:
        named.write_bytes(content)
        odd = runner.invoke(app, [*home, "groups", "add-statement", "data", str(named)])
        assert odd.exit_code == 2 and odd.output == f"error: InvalidInputException: {named} {says}" + (
            "cannot be read): save it as UTF-8 JSON\n" if "UTF-8" in says else "\n"
        )
    not_a_number = runner.invoke(app, [*home, "groups", "remove-statement", "data", "s1"])
    assert not_a_number.exit_code == 2 and not_a_number.output.count("\n") == 1
    assert not_a_number.output.startswith("error: InvalidInputException: SID: ")
    assert "'s1' is not a whole number" in not_a_number.output and "groups show data" in not_a_number.output
    assert len(json.loads(ok("--output", "json", "groups", "show", "data"))["Statements"]) == 2
    ok("groups", "remove-statement", "data", "2")
    ok("users", "remove-from-group", "erin", "data")
    ok("groups", "delete", "data")
    assert "data" not in ok("groups", "list")
    ok("users", "create", "root-admin", "--group", "admins")
    last = runner.invoke(app, [*home, "users", "delete", "root-admin"])
    assert last.exit_code == 2 and "last enabled member of admins" in last.output


def test_a_deleted_users_name_is_given_out_again_once_its_objects_are_reassigned(tmp_path: Path) -> None:
    app, runner, home = _root_app(), CliRunner(), ["--home", str(tmp_path)]
    for name in ("fay", "keeper"):  # keeper: the admin left when fay goes
        assert runner.invoke(app, [*home, "users", "create", name, "--group", "admins"]).exit_code == 0
    service = EmrML(Settings.load(environ={}, home=tmp_path))
    try:
        schema = {
            "version": "1.0",
            "dataFormat": "CSV",
            "attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}],
        }
        spec = {"DataLocationS3": "/srv/fay.csv", "DataSchema": json.dumps(schema)}
        fay = service.access.user_arn("fay")
        service.call("CreateDataSourceFromS3", {"DataSourceId": "ds-fay", "DataSpec": spec}, caller=fay)
        assert runner.invoke(app, [*home, "users", "delete", "fay"]).exit_code == 0
        refused = runner.invoke(app, [*home, "users", "create", "fay"])
        assert refused.exit_code == 2 and "1 object(s) (1 DataSource)" in refused.output
        assert "emrml users reassign-objects fay OTHER_USER" in refused.output
        assert runner.invoke(app, [*home, "users", "create", "gus"]).exit_code == 0
        moved = runner.invoke(app, [*home, "users", "reassign-objects", "fay", "gus"])
        assert moved.exit_code == 0 and "Gave 1 object(s) of fay to gus (1 DataSource)" in moved.output, (
            moved.output
        )
        gus = service.access.user_arn("gus")
        assert service.call("GetDataSource", {"DataSourceId": "ds-fay"})["CreatedByIamUser"] == gus
        assert runner.invoke(app, [*home, "users", "create", "fay"]).exit_code == 0
    finally:
        service.close()


def test_serve_prints_first_start_help_once_and_warns_without_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[str, int]] = []
    monkeypatch.setattr(server, "serve", lambda app, host, port, **_: served.append((host, port)))
    # The real serve logs to stderr; here stderr is the runner's capture, closed after each invoke.
    monkeypatch.setattr(access_log, "configure_logging", lambda: None)
    app, runner = _root_app(), CliRunner()
    first = runner.invoke(app, ["--home", str(tmp_path), "serve", "--port", "8123", "--workers-jobs", "0"])
    assert first.exit_code == 0, first.output
    credentials_file = tmp_path / "admin-credentials.json"
    credentials = json.loads(credentials_file.read_text())
    assert str(credentials_file) in first.output and credentials["aws_secret_access_key"] not in first.output
    assert (
        "aws machinelearning describe-data-sources --profile emrml --endpoint-url http://127.0.0.1:8123"
        in (first.output)
    )
    assert 'boto3.client("machinelearning", endpoint_url="http://127.0.0.1:8123"' in first.output
    again = runner.invoke(app, ["--home", str(tmp_path), "serve", "--port", "8123", "--workers-jobs", "0"])
    assert again.exit_code == 0 and "First start" not in again.output
    assert json.loads(credentials_file.read_text()) == credentials
    open_home = tmp_path / "open"
    no_auth = runner.invoke(app, ["--home", str(open_home), "serve", "--no-auth", "--host", "0.0.0.0"])
    assert no_auth.exit_code == 0 and "WARNING: Authentication is OFF" in no_auth.output
    assert not (open_home / "admin-credentials.json").exists()
    assert served == [("127.0.0.1", 8123), ("127.0.0.1", 8123), ("0.0.0.0", 8080)]


SERVE_SCRIPT = """
import typer
from pathlib import Path
from emrml import cli_server
from emrml.cli_server import register
app = typer.Typer()
@app.callback()
def main(home: Path = typer.Option(..., "--home"), output: str = typer.Option("table", "--output")) -> None:
    "emrml"
register(app)
app()
"""


def test_serve_runs_signed_requests_logs_them_and_stops_on_sigint(tmp_path: Path) -> None:
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-c", SERVE_SCRIPT, "--home", str(tmp_path), "serve", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "emrml serve did not become healthy"
            try:
                with urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.2)
        assert health == {"status": "ok", "auth": True, "jobs_running": 0, "job_slots": 25}
        credentials = saved = json.loads((tmp_path / "admin-credentials.json").read_text())
        assert saved["console_user"] == "admin" and len(saved["console_password"]) >= 16
        client = boto3.client(
            "machinelearning",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=saved["aws_access_key_id"],
            aws_secret_access_key=saved["aws_secret_access_key"],
        )
        assert client.describe_data_sources()["Results"] == []
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert "Application shutdown complete" in output
    access = [json.loads(line) for line in output.splitlines() if line.startswith('{"time"')]
    [logged] = [line for line in access if line["target"] == "AmazonML_20141212.DescribeDataSources"]
    assert logged["status"] == 200 and logged["access_key_id"] == credentials["aws_access_key_id"]
    assert set(logged) == {
        "time",
        "request_id",
        "method",
        "path",
        "target",
        "status",
        "duration_ms",
        "access_key_id",
        "client",
    }
    assert credentials["aws_secret_access_key"] not in output


def test_a_secret_sealed_with_another_key_file_fails_naming_the_key_file(tmp_path: Path) -> None:
    sealed = SecretBox(tmp_path / "one.key").encrypt("db-password")
    with pytest.raises(InternalServerException, match=r"another secrets\.key") as raised:
        SecretBox(tmp_path / "two.key").decrypt(sealed)
    assert "two.key" in raised.value.message and "db-password" not in raised.value.message


def test_a_key_file_emrml_did_not_write_is_named_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real serve logs to stderr; here stderr is the runner's capture, closed after each invoke.
    monkeypatch.setattr(access_log, "configure_logging", lambda: None)
    app, home = _root_app(), tmp_path / "home"
    assert CliRunner().invoke(app, ["--home", str(home), "users", "create", "bob"]).exit_code == 0
    for garbled in (b"", b"not a key\n", b"x" * 44):
        (home / "secrets.key").write_bytes(garbled)
        refused = CliRunner().invoke(app, ["--home", str(home), "keys", "create", "bob"])
        assert refused.exit_code == 2 and refused.output == (
            f"error: InvalidInputException: {home / 'secrets.key'} holds no key (emrml writes 44 characters "
            "of base64 there): restore the copy the metastore's secrets were encrypted with; every server "
            "sharing the metastore needs it\n"
        )
    # The server says so too, before it listens (it was a traceback).
    refused = CliRunner().invoke(app, ["--home", str(home), "serve", "--port", "1", "--workers-jobs", "0"])
    assert refused.exit_code == 2 and refused.output.endswith("every server sharing the metastore needs it\n")


def test_a_deactivated_key_is_refused_until_activated_again(live_server: Any) -> None:
    live_server.identities.create_user("dave")
    key = live_server.identities.create_key("dave")
    client = live_server.client(key.access_key_id, key.secret_access_key)
    client.describe_data_sources(Limit=1)
    access = live_server.service.access
    access.set_key_active(key.access_key_id, False)
    assert [k.active for k in access.list_keys("dave")] == [False]

    def refused() -> bool:
        try:
            client.describe_data_sources(Limit=1)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "UnrecognizedClientException"
            return True
        return False

    deadline = time.monotonic() + 15  # servers remember a key's answer for a few seconds
    while not refused():
        assert time.monotonic() < deadline, "an inactive key was still accepted after 15 s"
        time.sleep(0.5)
    access.set_key_active(key.access_key_id, True)
    deadline = time.monotonic() + 15
    while refused():
        assert time.monotonic() < deadline, "an active key was still refused after 15 s"
        time.sleep(0.5)
    dave = "arn:aws:iam::000000000000:user/dave"
    with pytest.raises(Exception, match="iam:UpdateAccessKey"):  # a user's own keys: only an admin
        access.set_key_active(key.access_key_id, False, caller=dave)
    with pytest.raises(ResourceNotFoundException):
        access.set_key_active("AKIDNOSUCHKEY0000000", False)
