"""The API server's proxy to the console process wakes the job scheduler after console requests that may
have queued a job (the console process cannot reach the API process's scheduler itself)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.web.scheduler import JobScheduler
from emrml.web.server import BackgroundServer, create_app, reserve_socket


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.method} {request.url.path}")


@pytest.fixture
def console_socket(tmp_path: Path) -> Iterator[str]:
    """A stand-in console process: an app answering every method, on a Unix socket."""
    path = str(tmp_path / "console.sock")
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(path)
    methods = ["GET", "HEAD", "OPTIONS", "POST", "DELETE"]
    app = Starlette(routes=[Route("/console/{rest:path}", _page, methods=methods)])
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the stand-in console did not start"
        time.sleep(0.01)
    yield path
    server.should_exit = True
    thread.join()
    listening.close()


def test_console_requests_that_may_queue_a_job_wake_the_scheduler(
    tmp_path: Path, console_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wakes: list[None] = []
    monkeypatch.setattr(JobScheduler, "wake", lambda self: wakes.append(None))
    service = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    app = create_app(service, job_slots=1, console_socket=console_socket)
    try:
        with BackgroundServer(app, reserve_socket()) as server, httpx2.Client(base_url=server.url) as client:
            for method in ("GET", "HEAD", "OPTIONS"):
                assert client.request(method, "/console/datasources").status_code == 200
            assert wakes == []
            answer = client.post("/console/datasources/create", data={"id": "ds-1"})
            assert answer.text == "POST /console/datasources/create"  # answered by the console
            assert len(wakes) == 1
            client.delete("/console/datasources/ds-1")
            assert len(wakes) == 2
    finally:
        service.close()
