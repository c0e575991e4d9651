"""The console in a process of its own, so that rendering pages never competes with the API for the
interpreter lock: a Predict arriving while a list page renders would otherwise wait for the page's thread
to give up the lock (milliseconds at a time), which is what `bench/console_charts.py` measured.

``emrml serve`` starts a ``ConsoleProcess``: it binds a Unix socket in a fresh owner-only folder and starts
``python -m emrml.web.console_process`` with the socket's descriptor; the child serves only the console
(``/console/...``) on it, with its own ``EmrML`` on the same home and metastore. The API server mounts
``ConsoleProxy`` at ``/console``: each request is forwarded over the socket with httpx2 and the answer
streamed back as it comes. The parent keeps the listening socket, so requests that arrive while the child
(re)starts wait in the socket's backlog rather than fail; a child that exits is started again.

The child starts with the first console request, not with the server: a server used through its API alone
never pays for the console (a second interpreter importing the console, about 0.5 s of CPU and 100 MB), and
on a machine of two cores that start would compete with the server's own, delaying its first answers. The
first page waits for the child's start instead (about as long as the server's own start).

The proxy sends the client's address and scheme as ``X-Forwarded-For`` / ``X-Forwarded-Proto`` (and drops
those a client sent): the address the API server took for the client's, the connection's own unless it
came through a proxy ``forwarded_allow_ips`` names. The child trusts them because nothing but this server
can reach the socket, so login throttling by address and ``Secure`` cookies under TLS work as they do in
one process. Sessions, CSRF
tokens and failed-login counts live in the metastore, never in the API process. Jobs the console
queues are picked up by the API process's scheduler at its next poll (within a second).
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from emrml.web.server_folders import server_folder

log = logging.getLogger(__name__)

#: The environment variable that hands the child its options (JSON: home, public_url, fd, server_pid).
OPTIONS = "EMRML_CONSOLE_OPTIONS"
#: Request and response headers that belong to one connection, not to the message (RFC 9110, 7.6.1), and
#: the forwarding headers only the proxy may set.
_HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"x-forwarded-for", b"x-forwarded-proto", b"forwarded",
    }
)  # fmt: skip
#: Response headers the API server writes itself.
_SERVER_HEADERS = frozenset({b"date", b"server"})
#: Seconds between a child's exit and its restart.
_RESTART_SECONDS = 1.0


def _listened_on(folder: Path) -> bool:
    """Whether a server (one in another pid namespace) serves the console on the folder's socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(folder / "console.sock"))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError:  # not a socket we can reach (a path too long, no permission): left alone
            return True
    return True


class ConsoleProcess:
    """The console's child process and the socket it serves on, for as long as the ``with`` block."""

    def __init__(self, home: Path, public_url: str) -> None:
        self.home = home
        self.public_url = public_url
        # A short path (Unix socket paths are limited to 107 bytes), in a folder only this user can enter.
        self._folder = server_folder("emrml-console-", _listened_on, room=len("/console.sock"))
        self.socket_path = str(self._folder / "console.sock")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.bind(self.socket_path)
        self._socket.listen(128)
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        # Wakes the watcher's wait for a first connection when the block ends; the lock keeps a child from
        # being started once the block has ended.
        self._wake_read, self._wake_write = os.pipe()
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="emrml-console-process", daemon=True)

    def __enter__(self) -> ConsoleProcess:
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._stopping.set()
            child = self._child
        os.write(self._wake_write, b"x")
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._watcher.join(10)
        self._socket.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        shutil.rmtree(self._folder, ignore_errors=True)

    def _start(self) -> bool:
        """Start the child, unless the block has ended; whether it was started."""
        options = {
            "home": str(self.home),
            "public_url": self.public_url,
            "fd": self._socket.fileno(),
            "server_pid": os.getpid(),
        }
        with self._lock:
            if self._stopping.is_set():
                return False
            self._child = subprocess.Popen(
                [sys.executable, "-m", "emrml.web.console_process"],
                env={**os.environ, OPTIONS: json.dumps(options)},
                pass_fds=(self._socket.fileno(),),
            )
            return True

    def _watch(self) -> None:
        # A listening socket reads as ready once a connection waits in its backlog: the first console
        # request, which the child accepts when it has started.
        ready, _, _ = select.select([self._socket, self._wake_read], [], [])
        if self._wake_read in ready or not self._start():
            return
        while True:
            child = self._child
            assert child is not None
            code = child.wait()
            if self._stopping.wait(_RESTART_SECONDS):
                return
            log.error("the console process exited with status %s; starting it again", code)
            if not self._start():
                return


#: Methods that change nothing: every other console request may have queued a job.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ConsoleProxy:
    """ASGI app forwarding HTTP requests to the console process on ``socket_path``.

    ``on_change`` is called once the console has answered a request that may have changed something (any
    method but GET, HEAD and OPTIONS): the API process's job scheduler, which the console process cannot
    reach, then looks for a job the request queued at once instead of at its next poll.
    """

    def __init__(
        self,
        socket_path: str,
        timeout_seconds: float = 120.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.timeout_seconds = timeout_seconds
        self.on_change = on_change
        self._connections: Any = None

    def _transport(self) -> Any:
        # A transport, not a client: a client keeps the cookies of the answers it gets and would send one
        # user's session with the next user's request. Made on first use, on the server's event loop.
        if self._connections is None:
            import httpx2

            self._connections = httpx2.AsyncHTTPTransport(uds=self.socket_path)
        return self._connections

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        import httpx2

        query = scope.get("query_string", b"")
        target = scope.get("raw_path") or scope["path"].encode()
        url = "http://console" + target.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        client = scope.get("client")
        headers = [(name, value) for name, value in scope["headers"] if name not in _HOP_BY_HOP]
        headers += [
            (b"x-forwarded-for", (client[0] if client else "unknown").encode()),
            (b"x-forwarded-proto", scope.get("scheme", "http").encode()),
        ]

        async def body() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        has_body = any(name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"])
        request = httpx2.Request(scope["method"], url, headers=headers, content=body() if has_body else None)
        seconds = self.timeout_seconds
        request.extensions["timeout"] = {"connect": 10.0, "read": seconds, "write": seconds, "pool": 10.0}
        try:
            response = await self._transport().handle_async_request(request)
        except httpx2.TransportError as exc:
            log.warning("the console process did not answer: %s", exc)
            await _unavailable(send)
            return
        if self.on_change is not None and scope["method"] not in _SAFE_METHODS:
            # The console has handled the request once its answer starts (a job it queued is in the
            # metastore): wake the scheduler before the first byte goes back, so that whoever reads the
            # answer, even one whose length is known before its end, finds the scheduler already woken.
            self.on_change()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (name, value)
                        for name, value in response.headers.raw
                        if name.lower() not in _HOP_BY_HOP and name.lower() not in _SERVER_HEADERS
                    ],
                }
            )
            async for chunk in response.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _unavailable(send: Any) -> None:
    body = b"The console is starting or restarting; try again in a moment.\n"
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """The child: the console app on the inherited socket until SIGTERM."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from emrml.config import Settings
    from emrml.console import create_console
    from emrml.core.arrow import skip_pandas_probe
    from emrml.lifetime import exit_with
    from emrml.service.app import EmrML

    skip_pandas_probe()
    options = json.loads(os.environ[OPTIONS])
    exit_with(int(options["server_pid"]))  # never outlive the server, even one killed outright
    listening = socket.socket(fileno=int(options["fd"]))
    settings = Settings.load(home=Path(options["home"]), public_url=options["public_url"])
    service = EmrML(settings)
    app = Starlette(routes=[Mount("/console", app=create_console(service))])
    # The forwarded client address and scheme are trusted: only the API server can reach the socket.
    config = uvicorn.Config(
        app, access_log=False, log_level="warning", lifespan="off", proxy_headers=True,
        forwarded_allow_ips="*",
    )  # fmt: skip
    try:
        uvicorn.Server(config).run(sockets=[listening])
    finally:
        service.close()


if __name__ == "__main__":
    main()
