"""The API server's access log: one JSON line per request on stderr, written in batches and sampled
(``AccessLog``), the middleware that notes the requests of the routes other than the API's
(``LoggedRequests``), and the request ids every answer carries (``new_request_id``).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("emrml.access")


def configure_logging() -> None:
    """emrml's logs as ``LEVEL name: message`` lines and the access log as bare JSON lines, on stderr: in
    ``emrml serve``'s process and in each of its ``--workers`` processes, which start without the handlers.

    Idempotent: a second ``serve`` in one process (tests) does not duplicate the handlers.
    """
    emrml_logger = logging.getLogger("emrml")
    if any(getattr(handler, "emrml_serve", False) for handler in emrml_logger.handlers):
        return
    patterns = ((emrml_logger, "%(levelname)s %(name)s: %(message)s"), (access_log, "%(message)s"))
    for logger, pattern in patterns:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(pattern))
        handler.emrml_serve = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    access_log.propagate = False


class AccessLog:
    """The access log: one JSON line per HTTP request on the ``emrml.access`` logger.

    Lines are kept and written ``batch`` at a time as one log record (lines separated by newlines), and by
    :meth:`flush`, which the server calls every second and at shutdown; ``batch`` 1 writes each line at
    once and 0 writes none. ``sample`` < 1 logs that share of the requests, chosen at random. A request
    only notes its fields (:meth:`note`); they become JSON when written, a batch at a time (in a loop that
    stays in the processor's caches, which costs a request less than formatting its own line among its
    other work). The API handler notes its own requests; :class:`LoggedRequests` notes the others.
    """

    def __init__(self, *, batch: int = 1, sample: float = 1.0) -> None:
        self.batch = batch
        self.sample = sample
        # A deque: its appends (the event loop) and pops (any thread's flush) never lose an entry.
        self._entries: deque[tuple[Any, ...]] = deque()
        # (second, its text): the current second as the lines write it, formatted once per second.
        self._second: tuple[int, str] = (-1, "")
        # The JSON of a line's method, path, target and status, and of its key id and client (``_lines``).
        self._heads: dict[tuple[Any, ...], str] = {}
        self._tails: dict[tuple[Any, ...], str] = {}

    def note(
        self,
        started_ns: int,
        request_id: str,
        scope: Scope,
        target: str | None,
        status: int,
        access_key_id: str | None,
    ) -> None:
        """Keep the line of a request that started at ``started_ns`` (``time.perf_counter_ns()``) and has
        just been answered with ``status``; ``request_id`` is one of ``new_request_id``'s. Whether the
        logger writes INFO is asked once a batch, when it is written (a call a request cost 1 % of a signed
        Predict)."""
        if self.batch and (self.sample >= 1.0 or random.random() < self.sample):
            self._entries.append(
                (
                    time.time_ns(),
                    request_id,
                    scope["method"],
                    scope["path"],
                    target,
                    status,
                    time.perf_counter_ns() - started_ns,
                    access_key_id,
                    scope.get("client"),
                )
            )
            if len(self._entries) >= self.batch:
                self.flush()

    def flush(self) -> None:
        """Write the lines kept so far (from any thread)."""
        entries = []
        try:
            for _ in range(len(self._entries)):
                entries.append(self._entries.popleft())
        except IndexError:  # another thread's flush took the rest
            pass
        if entries and access_log.isEnabledFor(logging.INFO):
            access_log.info("\n".join(self._lines(entries)))

    def _lines(self, entries: list[tuple[Any, ...]]) -> list[str]:
        """The JSON lines of noted requests, in one loop (a call per line would cost a fifth of it).

        Each line is orjson's encoding of the dict of its fields, keys in their order, put together from
        pieces: a line's method, path, target and status, and its key id and client, take few distinct
        values under load (an API client's connections), so their JSON is made once and looked up; the time
        and the request id need no escaping (``new_request_id``'s letters, digits and dashes), and a
        duration is written as orjson spells the float of its whole microseconds in milliseconds
        (``_FRACTIONS``). A third less per line than that dict and its encoding; tests hold the lines to it.
        """
        lines = []
        cached_second, cached_text = self._second
        heads, tails = self._heads, self._tails
        for time_ns, request_id, method, path, target, status, duration_ns, key_id, client in entries:
            microseconds = duration_ns // 1000  # whole microseconds (round() costs a µs)
            second, milliseconds = divmod(time_ns // 1_000_000, 1000)
            if second != cached_second:
                cached_second = second
                cached_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
                self._second = (cached_second, cached_text)
            head = heads.get(known := (method, path, target, status))
            if head is None:
                fields = {"method": method, "path": path, "target": target, "status": status}
                head = _piece(heads, known, fields)
            tail = tails.get(known := (key_id, client))
            if tail is None:
                address = f"{client[0]}:{client[1]}" if client else None
                tail = _piece(tails, known, {"access_key_id": key_id, "client": address})
            lines.append(
                f'{{"time":"{cached_text}{_MILLISECONDS[milliseconds]}","request_id":"{request_id}",{head},'
                f'"duration_ms":{microseconds // 1000}{_FRACTIONS[microseconds % 1000]},{tail}}}'
            )
        return lines


#: How many JSON pieces each of ``AccessLog``'s two tables keeps: forgotten all at once when full, so that
#: made-up paths or many clients cannot grow them.
_MAX_PIECES = 512


def _piece(table: dict[tuple[Any, ...], str], known: tuple[Any, ...], fields: dict[str, Any]) -> str:
    """The JSON of ``fields`` without its braces, remembered in ``table`` under ``known``."""
    text = orjson.dumps(fields)[1:-1].decode()
    if len(table) >= _MAX_PIECES:
        table.clear()
    table[known] = text
    return text


#: A time's milliseconds as its line ends them (".007Z"): looked up, 6 times faster than formatted.
_MILLISECONDS = tuple(f".{milliseconds:03d}Z" for milliseconds in range(1000))
#: A duration's thousandths of a millisecond as ``repr`` of the float ends them (".25", ".0"): the shortest
#: decimal that reads back as the float of ``n / 1000`` is that quotient's own digits while it has at most 15
#: (``sys.float_info.dig``), which durations under 31 years have. A lookup and an integer division cost a
#: tenth of ``repr``, a fifth of a line.
_FRACTIONS = tuple(f".{thousandths:03d}".rstrip("0") if thousandths else ".0" for thousandths in range(1000))


class LoggedRequests:
    """ASGI middleware noting every HTTP request it passes to ``app`` in ``log``."""

    def __init__(self, app: ASGIApp, log: AccessLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter_ns()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.log.note(started, new_request_id(), scope, None, status, None)


class _RequestIds:
    """Request ids for ``x-amzn-RequestId``, shaped as version-4 UUIDs: a random UUID's first 80 bits,
    drawn once per process (again in a forked child), then a 48-bit counter. Ids must be unique, not
    secret; a random UUID per request would cost several times as much."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        text = str(uuid.uuid4())
        self._prefix = text[:24]
        self._counter = itertools.count(int(text[24:], 16))

    def __call__(self) -> str:
        # The counter's 48 bits as 12 hex digits: hex() of them with a 49th bit set, less "0x1", costs a
        # fifth less than a format spec.
        return self._prefix + hex(next(self._counter) & 0xFFFFFFFFFFFF | 0x1000000000000)[3:]


#: A new request id (a str of 36 characters).
new_request_id = _RequestIds()
