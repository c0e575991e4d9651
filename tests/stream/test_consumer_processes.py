"""Consumer processes that do not behave: one that does not stop when the stream is stopped (stuck in a
call that never returns) is ended, and one that dies before it runs (its Python cannot start) fails the
stream, saying why."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from stream_helpers import Kinesalite, record, wait_until

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.stream.__main__ import HUNG


class Relay:
    """A TCP relay to kinesalite that, once ``deaf`` is set, passes nothing on: every Kinesis call made
    through it then waits for an answer that never comes (the client's timeouts are minutes long);
    ``swallowed`` is set once it has held back something (a call, or an answer, is then waited for)."""

    def __init__(self, endpoint: str) -> None:
        target = urlparse(endpoint)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.deaf = threading.Event()
        self.swallowed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pass, args=(source, sink), daemon=True).start()

    def _pass(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.deaf.is_set():
                    sink.sendall(data)
                else:
                    self.swallowed.set()
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def relay(kinesalite: Kinesalite) -> Iterator[Relay]:
    relay = Relay(kinesalite.endpoint)
    yield relay
    relay.close()


def _request(name: str) -> dict[str, object]:
    return {"StreamId": f"st-{name}", "MLModelId": "ml-binary", "Consumers": 1,
            "InputStream": f"kinesis://{name}", "OutputUri": f"kinesis://{name}-scored"}  # fmt: skip


def _described(app: EmrML) -> dict[str, Any]:
    return app.call("GetStream", {"StreamId": "st-stuck"})


def test_a_consumer_stuck_when_its_stream_stops_is_ended_and_the_stream_says_so(
    stream_settings: Settings, kinesalite: Kinesalite, relay: Relay
) -> None:
    # Shorter leases than the other stream tests: the stuck consumer is given 3 lease times to end. Not
    # shorter still: StopStream must come within 2 lease times of its last heartbeat, or the stream would
    # read it as gone rather than stuck, and the test process may be slow to get there on a loaded machine.
    lease = 1.5
    settings = replace(stream_settings, kinesis_endpoint_url=relay.endpoint, stream_lease_seconds=lease)
    app = EmrML(settings)
    pid = None
    try:
        kinesalite.create("stuck", 1)
        kinesalite.create("stuck-scored", 1)
        kinesalite.put("stuck", [(record(i), str(i)) for i in range(10)])
        assert app.call("StartStream", _request("stuck"))["ConsumersStarted"] == 1
        running = wait_until(lambda: (found := _described(app))["RecordsIn"] == 10 and found, 60, 0.3)
        pid = running["ConsumerProcesses"][0]["Pid"]
        relay.deaf.set()  # its next Kinesis call never returns
        # It reads its shard every stream_idle_seconds: once the relay held something back, it waits on it.
        assert relay.swallowed.wait(30)
        app.call("StopStream", {"StreamId": "st-stuck"})
        grace = 3 * lease
        stopped = wait_until(lambda: (found := _described(app))["Status"] == "STOPPED" and found, 60, 0.3)
        # Not STOPPED while its process still ran: it was ended, and the stream says so.
        assert stopped["Message"].startswith("consumer ")
        ended_why = f"did not stop within {grace:g} s of being asked to: its process was ended"
        assert ended_why in stopped["Message"]
        ended, status = os.waitpid(pid, 0)  # (a child of this process: StartStream spawned it here)
        assert ended == pid and os.waitstatus_to_exitcode(status) == HUNG
        pid = None
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        app.close()


def test_a_consumer_whose_python_cannot_start_fails_the_stream_saying_why(
    stream_app: EmrML, kinesalite: Kinesalite, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinesalite.create("no-python", 1)
    kinesalite.create("no-python-scored", 1)
    monkeypatch.setenv("PYTHONHOME", "/nonexistent/python-home")  # the consumer's Python dies at once
    assert stream_app.call("StartStream", _request("no-python"))["ConsumersStarted"] == 0
    described = stream_app.call("GetStream", {"StreamId": "st-no-python"})
    assert described["Status"] == "FAILED" and described["Consumers"] == 0
    message = described["Message"]
    assert "ended before it ran (exit code 1)" in message
    assert "encodings" in message  # the last line the dying Python wrote: what it could not find
    assert str(stream_app.settings.home / "logs" / "stream-st-no-python.log") in message
    assert message.endswith("`emrml stream start --id st-no-python` (StartStream) starts consumers again")


def test_a_consumer_process_that_cannot_be_started_fails_the_stream_saying_why(
    stream_app: EmrML, kinesalite: Kinesalite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kinesalite.create("no-interpreter", 1)
    kinesalite.create("no-interpreter-scored", 1)
    gone = tmp_path / "gone" / "python3"
    monkeypatch.setattr(sys, "executable", str(gone))  # the interpreter removed since (an upgrade)
    assert stream_app.call("StartStream", _request("no-interpreter"))["ConsumersStarted"] == 0
    described = stream_app.call("GetStream", {"StreamId": "st-no-interpreter"})
    assert described["Status"] == "FAILED" and described["Consumers"] == 0
    assert described["Message"].startswith(
        f"a consumer process could not be started: No such file or directory ({gone})"
    )
