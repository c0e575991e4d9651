"""Whose ``X-Forwarded-For`` ``emrml serve`` believes: by default no one's, so a client cannot choose the
address the console's login throttle counts and the access log records; with ``--forwarded-allow-ips`` (or
the ``forwarded_allow_ips`` setting) the proxies named there say who the client is, through the console
process as in one process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from cli_helpers import free_port, invoke, wait_until_answered
from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.service.logins import MAX_FAILURES


class Server:
    def __init__(self, url: str, home: Path, log: Path) -> None:
        self.url, self.home, self.log = url, home, log

    def access_clients(self, path: str) -> set[str]:
        """The client addresses the access log recorded for requests to ``path`` (flushed at least once a
        second)."""
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return {line["client"].rsplit(":", 1)[0] for line in lines if line["path"] == path}


@pytest.fixture(
    params=[
        ("default", ()),
        ("option", ("--forwarded-allow-ips", "10.0.0.5, 127.0.0.1")),
        ("setting", ("--console-in-process",)),
        ("workers", ("--workers", "2", "--forwarded-allow-ips", "127.0.0.1")),
    ]
)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Server]]:
    """``emrml serve`` trusting no proxy, trusting 127.0.0.1 by its option (console process), by the
    setting in emrml.toml (console in the API process), or by its option in ``--workers`` processes (whose
    access log is theirs to write)."""
    kind, options = request.param
    home, log_path = tmp_path / "home", tmp_path / "server.log"
    home.mkdir()
    if kind == "setting":
        (home / "emrml.toml").write_text('forwarded_allow_ips = "127.0.0.0/8"\n')
    port = free_port()
    env = {**os.environ, "EMRML_ACCESS_LOG_BATCH": "1"}
    env.pop("FORWARDED_ALLOW_IPS", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "emrml", "--home", str(home), "serve", "--port", str(port), *options],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_answered(f"{url}/health", process, log_path, 60)
            yield kind, Server(url, home, log_path)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)


def _log_in(client: Any, password: str, forwarded_for: str) -> int:
    """A console login as admin from a client claiming to be ``forwarded_for``; the answer's status."""
    headers = {"X-Forwarded-For": forwarded_for}
    client.cookies.clear()  # a session from an earlier login would lead away from the login page
    page = client.get("/console/login", headers=headers)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    form = {"csrf_token": match.group(1), "username": "admin", "password": password}
    return client.post("/console/login", data=form, headers=headers).status_code


def test_only_a_trusted_proxy_says_which_address_logs_in(server: tuple[str, Server]) -> None:
    kind, running = server
    password = json.loads((running.home / "admin-credentials.json").read_text())["console_password"]
    with httpx2.Client(base_url=running.url, follow_redirects=False, timeout=30) as client:
        # Failures claiming a new address each time: believed, each address has one failure of its own.
        for attempt in range(MAX_FAILURES):
            assert _log_in(client, "not the password", f"10.9.9.{attempt}") == 401
        forged = _log_in(client, password, "10.9.9.200")
        if kind == "default":
            # Not believed: every failure was 127.0.0.1's, which has reached the limit.
            assert forged == 429
            assert running.access_clients("/console/login") == {"127.0.0.1"}
        else:
            assert forged == 303
            # The forwarded address is the one counted: five failures from one address lock it there.
            for _ in range(MAX_FAILURES):
                assert _log_in(client, "not the password", "10.9.9.50") == 401
            assert _log_in(client, password, "10.9.9.50") == 429
            assert _log_in(client, password, "10.9.9.51") == 303
            clients = running.access_clients("/console/login")
            assert {"10.9.9.0", "10.9.9.50", "10.9.9.200"} <= clients and "127.0.0.1" not in clients


def test_the_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    settings = Settings.load(environ={}, home=tmp_path, forwarded_allow_ips=" 10.0.0.5, 10.1.2.3/16,::1 ")
    assert settings.forwarded_allow_ips == "10.0.0.5,10.1.0.0/16,::1"
    assert Settings.load(environ={}, home=tmp_path).forwarded_allow_ips == ""
    (tmp_path / "emrml.toml").write_text('forwarded_allow_ips = ["10.0.0.5", "fd00::/8"]\n')
    assert Settings.load(environ={}, home=tmp_path).forwarded_allow_ips == "10.0.0.5,fd00::/8"
    for wrong in ("*", "proxy.internal", "10.0.0.300", "10.0.0.0/33"):
        with pytest.raises(InvalidInputException, match="forwarded_allow_ips"):
            Settings.load(environ={}, home=tmp_path, forwarded_allow_ips=wrong)
    result = invoke("--home", str(tmp_path / "home"), "serve", "--forwarded-allow-ips", "*", code=2)
    assert "InvalidInputException: setting forwarded_allow_ips: '*'" in result.stderr
