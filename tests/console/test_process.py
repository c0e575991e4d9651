"""`emrml serve` serves the console from a process of its own, through a proxy on the API's port: pages,
login with CSRF and cookies, forms, static files; the process starts with the first console request, and
one that dies is started again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import login_token

from cli_helpers import free_port, wait_until_answered


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), command))
    return found


def _console_pids(server: subprocess.Popen[bytes]) -> list[int]:
    return [pid for pid, command in _children(server.pid) if "emrml.web.console_process" in command]


def _console_pid(url: str, server: subprocess.Popen[bytes]) -> int:
    """The console process's pid, once a console page has been answered (which starts it)."""
    with _client(url) as client:
        assert client.get("/console/login").status_code == 200
    (pid,) = _console_pids(server)
    return pid


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    folder = tmp_path_factory.mktemp("console-process")
    home, log = folder / "home", (folder / "server.log").open("wb")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "emrml", "--home", str(home), "serve", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "EMRML_HOME": str(home)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_answered(f"{url}/health", process, folder / "server.log", 60)
    yield url, home, process
    process.send_signal(signal.SIGINT)
    process.wait(30)
    log.close()


def _client(url: str) -> Any:
    import httpx2

    return httpx2.Client(base_url=url, follow_redirects=False, timeout=30)


def test_the_console_is_served_by_its_own_process_through_the_api_port(server: Any) -> None:
    url, home, process = server
    console = _console_pid(url, process)
    assert console != process.pid
    password = json.loads((home / "admin-credentials.json").read_text())["console_password"]
    with _client(url) as client:
        assert client.get("/console/").status_code == 303  # not logged in: to the login page
        page = client.get("/console/login")
        assert page.status_code == 200 and "csrf_token" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert len(page.headers.get_list("date")) == 1  # the API server's own, once
        form = {"csrf_token": login_token(page.text), "username": "admin", "password": password}
        answer = client.post("/console/login", data=form)
        assert answer.status_code == 303 and "emrml_session=" in answer.headers["set-cookie"]
        with _client(url) as stranger:  # the proxy keeps no cookies: one user's session is theirs alone
            assert stranger.get("/console/login").status_code == 200
            assert stranger.get("/console/?format=json").status_code == 401
        home_page = client.get("/console/?format=json")
        assert home_page.status_code == 200 and isinstance(home_page.json(), dict)
        # A form without its CSRF token is refused by the console process, as in one process.
        assert client.post("/console/logout", data={}).status_code == 403
        static = [line for line in client.get("/console/").text.split('"') if "/console/static/" in line]
        assert static and client.get(static[0]).status_code == 200


def test_a_console_process_that_dies_is_started_again(server: Any) -> None:
    url, _, process = server
    first = _console_pid(url, process)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    with _client(url) as client:
        while True:
            try:
                if client.get("/console/login").status_code == 200:
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, "the console did not come back"
            time.sleep(0.2)
    assert _console_pid(url, process) != first
    with _client(url) as client:
        assert client.get("/health").status_code == 200  # the API never went away


def _serve(folder: Path, temporary: Path | None = None) -> tuple[str, subprocess.Popen[bytes]]:
    """``emrml serve`` on a new home in ``folder`` (with ``temporary`` as its TMPDIR), once it answers:
    (its URL, its process)."""
    port = free_port()
    log = folder / "server.log"
    environment = {**os.environ, "TMPDIR": str(temporary)} if temporary else None
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "emrml", "--home", str(folder / "home"), "serve", "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, env=environment,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answered(f"{url}/health", server, log, 60)
    except BaseException:
        server.kill()
        server.wait(30)
        raise
    return url, server


def test_the_console_process_starts_with_the_first_console_request(tmp_path: Path) -> None:
    url, server = _serve(tmp_path)
    try:
        assert _console_pids(server) == []  # serving the API alone
        console = _console_pid(url, server)  # the first page is answered: the process was started for it
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    assert not Path(f"/proc/{console}").exists() or "zombie" in _state(console)


def test_the_console_process_ends_with_a_server_killed_outright(tmp_path: Path) -> None:
    url, server = _serve(tmp_path)
    try:
        console = _console_pid(url, server)
    finally:
        server.kill()
        server.wait(30)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{console}").exists() and "zombie" not in _state(console):
        assert time.monotonic() < deadline, "the console process outlived the server"
        time.sleep(0.2)


def test_a_server_killed_outright_leaves_no_socket_folder_behind_the_next_start(tmp_path: Path) -> None:
    """The console's socket folder of a server killed outright is removed by the next server's start; not
    those of running servers: one named after a live process, nor one whose process this one cannot see
    (a server in another pid namespace sharing the temporary directory) that still listens on its socket."""
    # A temporary directory of its own, short enough for the socket below it (one deeper gives way to /tmp).
    temporary = Path(tempfile.mkdtemp(prefix="emrml-test-"))
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
    try:
        _servers_killed_and_started(temporary, first, second)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _servers_killed_and_started(temporary: Path, first: Path, second: Path) -> None:
    _, killed = _serve(first, temporary)
    killed.kill()
    killed.wait(30)
    (left,) = temporary.glob(f"emrml-console-{killed.pid}-*")
    assert (left / "console.sock").exists()
    running = temporary / f"emrml-console-{os.getpid()}-running"
    running.mkdir()
    elsewhere = temporary / f"emrml-console-{killed.pid}-elsewhere"
    elsewhere.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(elsewhere / "console.sock"))
        listening.listen(1)
        _, server = _serve(second, temporary)
        try:
            assert not left.exists()
            assert running.is_dir() and elsewhere.is_dir()
            (own,) = temporary.glob(f"emrml-console-{server.pid}-*")
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(30)
    assert not own.exists()  # stopped, a server removes its own


def _state(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}") / "status").read_text().split("State:", 1)[1].splitlines()[0].lower()
    except (OSError, IndexError):
        return "gone"
