"""``emrml serve --workers N``: several processes on one port, each serving the mounted models, sharing the
real-time rate limits out among them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.web.server import reserve_socket
from raw_models import XY_SCHEMA

SCHEMA = json.dumps(XY_SCHEMA)
PEAK = 10


def _home_with_endpoint(home: Path, data: Path) -> None:
    data.write_text("x,y\n" + "".join(f"{i},{int(i > 50)}\n" for i in range(100)))
    app = EmrML(Settings.load(environ={"EMRML_PEAK_REQUESTS_PER_SECOND": str(PEAK)}, home=home))
    try:
        spec = {"DataLocationS3": str(data), "DataSchema": SCHEMA}
        request = {"DataSourceId": "ds", "DataSpec": spec, "ComputeStatistics": True}
        app.call("CreateDataSourceFromS3", request)
        app.call("CreateMLModel", {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds"})
        assert app.wait("MLModel", "ml")["Status"] == "COMPLETED"
        info = app.call("CreateRealtimeEndpoint", {"MLModelId": "ml"})["RealtimeEndpointInfo"]
        assert info["PeakRequestsPerSecond"] == PEAK
    finally:
        app.close()


def _await_health(process: subprocess.Popen[str], port: int) -> None:
    """Wait until the server ``process`` started answers ``/health`` on ``port`` (its workers are up)."""
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the workers did not become healthy"
        try:
            with urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                assert json.loads(response.read())["status"] == "ok"
            return
        except OSError:
            time.sleep(0.2)


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: AmazonML_20141212.Predict\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer.partition(b"\r\n\r\n")[2]


def test_workers_serve_predict_within_the_shared_rate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _home_with_endpoint(home, tmp_path / "data.csv")
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-m", "emrml", "--home", str(home), "serve", "--no-auth", "--port", str(port)]
    command += ["--workers", "2", "--workers-jobs", "0"]
    environment = {**os.environ, "EMRML_ACCESS_LOG_BATCH": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    try:
        _await_health(process, port)
        # The endpoint, created in this process, is served at the server's own URL.
        endpoint = f"http://127.0.0.1:{port}"
        body = json.dumps({"MLModelId": "ml", "Record": {"x": "70"}, "PredictEndpoint": endpoint}).encode()
        status, answer = _post(port, body)
        assert status == 200 and json.loads(answer)["Prediction"]["predictedLabel"] == "1"
        # Both processes' buckets full again: the one request took one token, back in 1 / (PEAK / 2) s.
        time.sleep(0.5)
        started = time.monotonic()
        statuses = [_post(port, body)[0] for _ in range(4 * PEAK)]
        elapsed = time.monotonic() - started
        admitted = statuses.count(200)
        assert set(statuses) <= {200, 400}
        # Each process admits PEAK / 2 at once and PEAK / 2 per second after: together at most the
        # endpoint's rate, where two processes each holding the whole rate would admit twice as many.
        assert 1 <= admitted <= PEAK + PEAK * elapsed + 1, (admitted, elapsed)
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert "with 2 processes" in output


def _login(port: int, user: str, password: str) -> int:
    """The status of one console login, on a connection of its own (so that ``--workers`` share them)."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirects)
    base = f"http://127.0.0.1:{port}/console/login"
    with opener.open(base, timeout=30) as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
    assert token
    form = urllib.parse.urlencode({"csrf_token": token.group(1), "username": user, "password": password})
    try:
        with opener.open(base, data=form.encode(), timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_workers_serving_the_console_each_count_failed_logins_together(tmp_path: Path) -> None:
    """Failed logins are counted in the metastore: N processes each serving the console allow no more
    failures than one (they allowed N times as many when each counted its own)."""
    from emrml.service.identity import Identities
    from emrml.service.logins import MAX_FAILURES, Logins

    home = tmp_path / "home"
    app = EmrML(Settings.load(environ={}, home=home))
    try:
        Identities(app.sessions, home).create_user("bob")
        Logins(app.sessions).set_password("bob", "bob-password-1")
    finally:
        app.close()
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-m", "emrml", "--home", str(home), "serve", "--port", str(port)]
    command += ["--workers", "2", "--workers-jobs", "0", "--console-in-process"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _await_health(process, port)
        assert [_login(port, "bob", f"guess-{n}") for n in range(MAX_FAILURES)] == [401] * MAX_FAILURES
        assert [_login(port, "bob", "bob-password-1") for _ in range(4)] == [429] * 4
    finally:
        process.terminate()
        process.communicate(timeout=60)


def test_workers_run_together_exactly_the_servers_job_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--workers-jobs 1 --workers 3`` runs one job at a time, and 25 slots over 4 processes are 25, not 28:
    each worker process gets its part of the slots. The processes are played by calls of ``worker_app``
    here (each holds its part for as long as it lives; these stay alive for the test)."""
    from emrml.web import server

    granted: list[int] = []
    held: list[int] = []
    monkeypatch.setattr(server, "_held_tickets", held)
    monkeypatch.setattr(
        server, "create_app", lambda _service, **options: granted.append(options["job_slots"])
    )
    monkeypatch.setattr(server, "EmrML", lambda settings, **_options: None)
    # A worker process logs to its stderr; here that is pytest's capture, closed at the end of the session,
    # when the session's live server still writes its access log.
    monkeypatch.setattr(server, "configure_logging", lambda: None)
    for slots, workers in ((1, 3), (25, 4)):
        tickets = tmp_path / f"tickets-{slots}-{workers}"
        tickets.mkdir()
        options = {"home": str(tmp_path / "home"), "public_url": "http://127.0.0.1:8080", "auth": True}
        options |= {"max_body_bytes": 1 << 20, "job_slots": slots, "workers": workers, "console_socket": None}
        monkeypatch.setenv(server.WORKER_OPTIONS, json.dumps({**options, "slot_tickets": str(tickets)}))
        granted.clear()
        for _ in range(workers):
            server.worker_app()
        assert sum(granted) == slots and max(granted) - min(granted) <= 1, granted
    for descriptor in held:  # the processes end
        os.close(descriptor)
