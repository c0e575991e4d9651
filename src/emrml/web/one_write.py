"""uvicorn's httptools protocol, writing a response's status line and headers together with its body.

uvicorn writes a response's head to the socket as soon as the application sends ``http.response.start``
and its body at ``http.response.body``: two ``send`` system calls, two TCP segments (the sockets have
TCP_NODELAY) and two wake-ups of the client, for an API answer of a few hundred bytes (one write instead
of two: 3 % more requests a second under ``wrk``, bench/README.md). ``OneWriteProtocol`` gives each request's
cycle a transport that holds the head until the body's first write and sends both in one; a response
that ends without a body write (HEAD) or a connection closed meanwhile sends the head first. Only the
head of an answer of known length (Content-Length) is held: a chunked one, whose parts may be far apart
(a stream), starts at once, as does a ``100 Continue``, which the client waits for to send the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _HeldHead:
    """A response cycle's transport: holds the head of an answer with a Content-Length (the cycle's first
    write once its response has started) until the next write or the end of the response. Everything else
    goes to ``transport`` as it comes.

    It lets go of the cycle and of the protocol's callback as soon as it no longer needs them: the cycle
    refers to it, and a reference cycle per request would leave every request's objects to the garbage
    collector (150 collections a second under ``wrk``, 30 ms a second of the event loop).
    """

    __slots__ = ("_cycle", "_head", "_on_response", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle: RequestResponseCycle | None = cycle
        self._head: bytes | None = None
        self._on_response: Callable[..., None] | None = cycle.on_response
        cycle.on_response = self._completed

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:  # the head (a 100 Continue comes before the start)
            self._cycle = None
            if cycle.chunked_encoding is False:
                self._head = bytes(data)
                return
        self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._cycle = self._on_response = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def _completed(self) -> None:
        self.flush()
        on_response, self._on_response = self._on_response, None
        if on_response is not None:
            on_response()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose responses go out in one write when their body is one message."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and not isinstance(cycle.transport, _HeldHead):
            cycle.transport = _HeldHead(self.transport, cycle)  # type: ignore[assignment]
