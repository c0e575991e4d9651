"""Clients for the web tests: boto3 and raw HTTP, signed the way botocore signs; and `emrml serve` as a
process of its own."""

from __future__ import annotations

import json
import socket
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPConnection
from typing import Any
from unittest.mock import patch
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from emrml.service.app import EmrML
from emrml.service.identity import Identities, NewAccessKey
from emrml.web.protocol import CONTENT_TYPE, TARGET_PREFIX

REGION = "us-east-1"

#: ``emrml serve`` in a process of its own (``python -c SERVE_SCRIPT --home HOME serve ...``): the main
#: command line's --home and --output options and the server's commands, as the installed ``emrml`` has.
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


@dataclass
class LiveServer:
    url: str
    service: EmrML
    identities: Identities
    key: NewAccessKey

    def client(self, access_key_id: str | None = None, secret: str | None = None, **config: Any) -> Any:
        """A boto3 machinelearning client signing with the given key (default: the test user's)."""
        return boto3.client(
            "machinelearning",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=access_key_id or self.key.access_key_id,
            aws_secret_access_key=secret or self.key.secret_access_key,
            config=Config(retries={"max_attempts": 1}, **config),
        )


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def sign(
    url: str,
    target: str,
    body: bytes,
    access_key_id: str,
    secret: str,
    *,
    when: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers botocore sends for a signed API request, optionally signed at another time ``when``."""
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + target, **(headers or {})},
    )
    clock = patch("botocore.auth.get_current_datetime", return_value=when) if when else nullcontext()
    with clock:
        SigV4Auth(Credentials(access_key_id, secret), "machinelearning", REGION).add_auth(request)
    return dict(request.headers.items())


def connect(url: str) -> HTTPConnection:
    """A keep-alive connection to ``url`` with Nagle's algorithm off, as urllib3 (boto3) opens them.

    http.client sends the headers and the body in two writes; with Nagle's algorithm on, the second waits
    for the server's delayed acknowledgement of the first, adding ~40 ms to every request.
    """
    parsed = urlsplit(url)
    connection = HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    connection.connect()
    assert connection.sock is not None
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def post(
    url: str, headers: dict[str, str], body: bytes, connection: HTTPConnection | None = None
) -> RawResponse:
    """POST ``body`` to ``url``/ with exactly ``headers`` (plus Host and Content-Length)."""
    own = connection is None
    connection = connection or connect(url)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        if own:
            connection.close()


def http_scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """The ASGI scope of an HTTP/1.1 request from 127.0.0.1 to the server on 127.0.0.1:8080."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }


async def asgi_request(
    app: Any, headers: dict[str, str], body: bytes, method: str = "POST", path: str = "/"
) -> RawResponse:
    """Send one HTTP request straight to an ASGI app (no network) and collect its response."""
    scope = http_scope(method, path, headers)
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = messages[0]
    response_headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    payload = b"".join(message.get("body", b"") for message in messages[1:])
    return RawResponse(start["status"], response_headers, payload)
