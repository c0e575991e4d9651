"""``web.one_write``: a response's head and body leave in one write; nothing a client waits for is held."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from emrml.web.one_write import OneWriteProtocol


class _Transport(asyncio.Transport):
    """Notes every write; enough of a transport for uvicorn's protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _answer(app: Any, request: bytes) -> _Transport:
    config = Config(app=app, lifespan="off", access_log=False, log_level="warning")
    protocol = OneWriteProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(20):  # the request's task, then its response
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


async def _json_answer(scope: Any, receive: Any, send: Any) -> None:
    await _send_back(scope, send, (await receive())["body"])


async def _send_back(scope: Any, send: Any, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def test_an_answer_of_one_body_message_leaves_in_one_write() -> None:
    request = b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{"a": 1234}'
    transport = asyncio.run(_answer(_json_answer, request))
    assert len(transport.writes) == 1  # uvicorn's own protocol writes the head, then the body
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 11" in head
    assert body == b'{"a": 1234}'


def test_a_head_answer_and_a_streamed_one_send_everything_in_order() -> None:
    head = asyncio.run(_answer(_json_answer, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert len(head.writes) == 1 and head.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")

    async def streamed(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]})
        for part in (b"ab", b"cd", b"ef"):
            await send({"type": "http.response.body", "body": part, "more_body": part != b"ef"})

    transport = asyncio.run(_answer(streamed, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    # The head rides with the first part; the later parts are written as they come, never held.
    assert [w[-2:] for w in transport.writes] == [b"ab", b"cd", b"ef"]
    assert b"".join(transport.writes).endswith(b"\r\n\r\nabcdef")

    async def chunked(scope: Any, receive: Any, send: Any) -> None:  # no length: a stream
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ab", "more_body": False})

    transport = asyncio.run(_answer(chunked, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")  # at once
    assert transport.writes[1] == b"2\r\nab\r\n0\r\n\r\n"


def test_a_100_continue_is_not_held_for_the_answer() -> None:
    writes_seen_by_app: list[list[bytes]] = []
    transports: list[_Transport] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        writes_seen_by_app.append(list(transports[0].writes))
        await _send_back(scope, send, body)

    async def run() -> _Transport:
        config = Config(app=app, lifespan="off", access_log=False, log_level="warning")
        protocol = OneWriteProtocol(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        transports.append(transport)
        protocol.connection_made(transport)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        protocol.data_received(head)
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.data_received(b"{}")
        for _ in range(20):
            await asyncio.sleep(0)
        return transport

    transport = asyncio.run(run())
    assert writes_seen_by_app == [[b"HTTP/1.1 100 Continue\r\n\r\n"]]  # written before the body was read
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK") and transport.writes[1].endswith(b"{}")


@pytest.mark.parametrize("fails_after_start", [True, False])
def test_a_failing_app_still_sends_what_uvicorn_sends(fails_after_start: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if fails_after_start:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("boom")

    transport = asyncio.run(_answer(app, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    if fails_after_start:  # the head that was sent, then the connection closed, as uvicorn does
        assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 200 OK")
        assert transport.closed
    else:  # uvicorn's 500, in one write
        assert len(transport.writes) == 1 and transport.writes[0].startswith(b"HTTP/1.1 500 ")


def test_an_answer_leaves_no_more_garbage_cycles_than_uvicorns_own_protocol() -> None:
    # The held head's transport refers to nothing of its request once the answer is out: a reference
    # cycle per request would leave every request's objects to the garbage collector, whose collections
    # then pause the event loop (150 a second under wrk when it did).
    request = b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{"a": 1234}'

    def garbage(protocol_class: Any) -> int:
        async def answer_many() -> None:
            config = Config(app=_json_answer, lifespan="off", access_log=False, log_level="warning")
            protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
            protocol.connection_made(_Transport())
            for _ in range(50):
                protocol.data_received(request)
                for _ in range(10):
                    await asyncio.sleep(0)

        gc.collect()
        gc.disable()
        try:
            asyncio.run(answer_many())
            return gc.collect()
        finally:
            gc.enable()

    plain, ours = garbage(HttpToolsProtocol), garbage(OneWriteProtocol)
    assert ours <= plain + 10, (ours, plain)
