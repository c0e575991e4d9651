"""SigV4 verification exactly as botocore signs, and the AWS auth errors over raw HTTP and boto3 on a live
server: signed requests served as their user, keys created, deleted and deactivated while it runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from web_helpers import post, sign

from emrml.config import Settings
from emrml.errors import IncompleteSignatureException, InvalidSignatureException, ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.auth import HttpRequest, parse_signature, received_headers, verify
from emrml.service.identity import Credential, Identities
from emrml.web import server
from emrml.web.server import reserve_socket

BODY = b'{"Limit": 1}'


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
    cache = app.credentials
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
