"""The console's request bodies (console/app.py ``page``, account.py's login): what can be refused before
a body is read is refused unread, a body past its form's limit is cut off with a 413 saying the limit,
and an upload refused or abandoned midway leaves no temporary file open."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from console_helpers import BOB_PASSWORD, Installation, admin_signed_in, log_in, login_token
from starlette.testclient import TestClient

from emrml.config import Settings
from emrml.console import create_console
from emrml.console.account import LOGIN_FORM_MAX_BYTES
from emrml.console.app import FORM_MAX_BYTES, SESSION_COOKIE
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML

BOUNDARY = "emrml-test-boundary"
MIB = 1024 * 1024
#: The limit the small home sets: past the 1 MiB that Starlette keeps in memory, so an upload cut off at it
#: had been spooled to a file.
SMALL_LIMIT = 3 * MIB


class Unread(AssertionError):
    """The body was read where it should have been refused unread."""


def _multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for filename, body in files:
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        parts.append(head.encode() + b"Content-Type: text/csv\r\n\r\n" + body + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _send(
    app: Any,
    path: str,
    cookies: dict[str, str],
    chunks: list[bytes] | None,
    *,
    length: int | None = None,
    headers: dict[str, str] | None = None,
    disconnect: bool = False,
) -> tuple[int | None, bytes, int]:
    """POST ``chunks`` to the console app as a server would hand them over (``None``: any read of the body
    fails the test), ``length`` as its Content-Length, then the end of the body or, ``disconnect``, the
    client gone. The status (None: no answer), the answer's body and the bytes the app read."""
    sent: list[dict[str, Any]] = []
    pending = list(chunks or [])
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        if chunks is None:
            raise Unread(f"the body of {path} was read")
        if pending:
            chunk = pending.pop(0)
            read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending) or disconnect}
        if disconnect:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # the body ended: the client waits for the answer
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    if length is not None:
        raw.append((b"content-length", str(length).encode()))
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "root_path": "/console",
        "query_string": query.encode(),
        "headers": raw,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, read


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder uploads are spooled to past 1 MiB (Starlette's ``SpooledTemporaryFile``)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _open_in(folder: Path) -> list[str]:
    """The files of ``folder`` this process holds open (an unlinked temporary file's name ends in
    "(deleted)", and it takes disk space until closed)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder)):
                held.append(target)
    return held


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[tuple[EmrML, TestClient]]:
    """A home whose console takes uploads of ``SMALL_LIMIT`` bytes at most, and its admin logged in."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "emrml.toml").write_text(f"console_upload_max_bytes = {SMALL_LIMIT}\n")
    with admin_signed_in(home) as signed_in:
        yield signed_in


def _session(client: TestClient) -> tuple[dict[str, str], str]:
    """The client's session cookie, and the CSRF token its pages carry."""
    token = login_token(client.get("/console/storage").text)
    return {SESSION_COOKIE: client.cookies[SESSION_COOKIE]}, token


def test_an_upload_declared_past_the_limit_is_refused_unread(small_home: tuple[EmrML, TestClient]) -> None:
    service, client = small_home
    cookies, _ = _session(client)
    console = create_console(service)
    status, body, _ = _send(console, "/console/storage", cookies, None, length=SMALL_LIMIT + 1)
    assert status == 413
    assert f"at most {SMALL_LIMIT} bytes (setting console_upload_max_bytes)" in body.decode()
    status, body, _ = _send(console, "/console/storage?format=json", cookies, None, length=SMALL_LIMIT + 1)
    error = json.loads(body)["error"]
    assert status == 413 and error["status"] == 413 and "console_upload_max_bytes" in error["message"]


def test_an_upload_past_the_limit_is_cut_off_and_leaves_nothing(
    small_home: tuple[EmrML, TestClient], spool: Path
) -> None:
    """Sent without a Content-Length (chunked), the body is counted as it arrives: the reading stops at the
    limit, the file spooled so far is closed, and nothing is written to the folder."""
    service, client = small_home
    cookies, token = _session(client)
    folder = service.settings.data_roots[0] / "in"
    fields = {"csrf_token": token, "action": "upload", "location": str(folder)}
    form = _multipart(fields, [("big.csv", b"x" * (5 * MIB))])
    chunks = [form[start : start + MIB] for start in range(0, len(form), MIB)]
    status, body, read = _send(create_console(service), "/console/storage", cookies, chunks)
    assert status == 413 and b"console_upload_max_bytes" in body
    assert read <= SMALL_LIMIT + MIB
    assert _open_in(spool) == [] and not (folder / "big.csv").exists()


def test_a_form_without_a_file_is_bounded(admin: Any) -> None:
    token = login_token(admin.get("/console/account").text)
    sent = admin.post("/console/account?format=json", data={"csrf_token": token, "x": "y" * FORM_MAX_BYTES})
    assert sent.status_code == 413
    assert f"at most {FORM_MAX_BYTES} bytes" in sent.json()["error"]["message"]


def test_a_user_granted_no_storage_write_is_refused_before_the_upload_is_read(
    anonymous: Any, installation: Installation
) -> None:
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    cookies = {SESSION_COOKIE: anonymous.cookies[SESSION_COOKIE]}
    status, body, _ = _send(create_console(installation.service), "/console/storage", cookies, None)
    assert status == 403 and b"grant storage:Write nowhere" in body


def test_a_wrong_csrf_header_is_refused_before_the_body_is_read(
    admin: Any, installation: Installation
) -> None:
    cookies, _ = _session(admin)
    console = create_console(installation.service)
    headers = {"x-csrf-token": "forged"}
    status, body, _ = _send(console, "/console/storage", cookies, None, headers=headers)
    assert status == 403 and b"CSRF token is missing or wrong" in body


def test_a_client_gone_midway_through_an_upload_leaves_no_file_open(
    admin: Any, installation: Installation, spool: Path
) -> None:
    cookies, token = _session(admin)
    fields = {"csrf_token": token, "action": "upload", "location": str(installation.home / "data")}
    form = _multipart(fields, [("gone.csv", b"x" * (4 * MIB))])
    chunks = [form[: 2 * MIB]]
    _send(create_console(installation.service), "/console/storage", cookies, chunks, disconnect=True)
    assert _open_in(spool) == [] and not (installation.home / "data" / "gone.csv").exists()


def test_a_form_starlette_refuses_is_the_consoles_error_page(admin: Any, installation: Installation) -> None:
    """Two files where the storage form takes one: Starlette's refusal, said as the console's errors are."""
    token = login_token(admin.get("/console/storage").text)
    files = [("file", ("a.csv", b"a\n")), ("file", ("b.csv", b"b\n"))]
    location = str(installation.home / "data")
    sent = admin.post(
        "/console/storage?format=json",
        data={"csrf_token": token, "action": "upload", "location": location},
        files=files,
    )
    assert sent.status_code == 400
    assert sent.json()["error"]["message"] == "Too many files. Maximum number of files is 1."


def test_the_login_form_is_bounded_and_needs_its_cookie_before_it_is_read(
    anonymous: Any, installation: Installation
) -> None:
    token = login_token(anonymous.get("/console/login").text)
    form = {"csrf_token": token, "username": "admin", "password": "p" * LOGIN_FORM_MAX_BYTES}
    refused = anonymous.post("/console/login", data=form)
    assert refused.status_code == 413 and f"at most {LOGIN_FORM_MAX_BYTES} bytes" in refused.text
    console = create_console(installation.service)
    status, body, _ = _send(console, "/console/login", {}, None)
    assert status == 403 and b"The form expired" in body


def test_the_upload_limit_setting_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputException, match="setting console_upload_max_bytes must be a positive"):
        Settings.load(environ={"EMRML_CONSOLE_UPLOAD_MAX_BYTES": "0"}, home=tmp_path)


def test_an_empty_csrf_header_leaves_the_check_to_the_forms_token(
    admin: Any, installation: Installation
) -> None:
    token = login_token(admin.get("/console/storage").text)
    form = {"csrf_token": token, "action": "mkdir", "location": str(installation.home / "data")}
    made = admin.post("/console/storage", data={**form, "name": "header-empty"}, headers={"x-csrf-token": ""})
    assert made.status_code == 200 and (installation.home / "data" / "header-empty").is_dir()
