"""The API handler's request bodies as ASGI delivers them: in one message (the usual request, read without
a helper coroutine) or in several, a client that leaves mid-body, a body over the limit in either form;
and the requests other than ``POST /``, which the handler passes on to the rest of the app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from web_helpers import http_scope

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.web.protocol import TARGET_PREFIX
from emrml.web.server import ApiHandler, create_app

LIMIT = 4096


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHandler]:
    home = tmp_path_factory.mktemp("api-body")
    service = EmrML(Settings.load(environ={}, home=home))
    yield create_app(service, auth=False, max_body_bytes=LIMIT, console=False)
    service.close()


def _call(
    app: ApiHandler, messages: list[dict[str, Any]], method: str = "POST", path: str = "/", **headers: str
) -> tuple[list[dict[str, Any]], int]:
    """The messages ``app`` sends for a request whose body arrives as ``messages``; and how many it read."""
    sent = {
        "host": "127.0.0.1:8080",
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": TARGET_PREFIX + "DescribeDataSources",
        **headers,
    }
    scope = http_scope(method, path, sent)
    pending = list(messages)
    answer: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        answer.append(message)

    asyncio.run(app(scope, receive, send))
    return answer, len(messages) - len(pending)


def _body(answer: list[dict[str, Any]]) -> tuple[int, Any]:
    return answer[0]["status"], json.loads(b"".join(message.get("body", b"") for message in answer[1:]))


def _chunks(body: bytes, size: int) -> list[dict[str, Any]]:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def test_a_body_in_several_messages_is_answered_as_the_same_body_in_one(app: ApiHandler) -> None:
    body = json.dumps({"FilterVariable": "Name", "EQ": "x" * 500, "Limit": 5}).encode()
    whole, read_whole = _call(app, _chunks(body, len(body)))
    parts, read_parts = _call(app, _chunks(body, 100))
    assert (read_whole, read_parts) == (1, 6)
    assert _body(whole) == _body(parts) == (200, {"Results": []})


def test_a_client_leaving_mid_body_gets_no_answer(app: ApiHandler) -> None:
    first = {"type": "http.request", "body": b'{"Limit": ', "more_body": True}
    answer, _ = _call(app, [first, {"type": "http.disconnect"}])
    assert answer == []


def test_a_body_over_the_limit_is_refused_in_one_message_or_several(app: ApiHandler) -> None:
    body = json.dumps({"EQ": "x" * LIMIT}).encode()
    for messages in (_chunks(body, len(body)), _chunks(body, 1000)):
        answer, _ = _call(app, messages)
        status, error = _body(answer)
        assert (status, error["__type"]) == (413, "RequestEntityTooLargeException")
    # A declared length over the limit is refused before anything is read.
    answer, read = _call(app, _chunks(b"{}", 2), **{"content-length": str(LIMIT + 1)})
    assert (_body(answer)[0], read) == (413, 0)


def test_requests_other_than_post_slash_go_to_the_rest_of_the_app(app: ApiHandler) -> None:
    answer, _ = _call(app, [], method="GET", path="/")
    assert answer[0]["status"] == 405
    assert dict(answer[0]["headers"])[b"allow"] == b"POST"
    answer, _ = _call(app, [], method="POST", path="/elsewhere")
    assert answer[0]["status"] == 404
    assert app.other is not None
