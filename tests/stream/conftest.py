"""Fixtures of the stream tests: a real Kinesis API server (kinesalite, from npm) shared by the session,
and a trained BINARY model to score with."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from stream_helpers import KINESALITE, Kinesalite, Running, train_binary

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.rows import StreamConsumer

#: Credentials kinesalite accepts (any); consumer processes inherit them through the environment.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIDSTREAMTESTS",
    "AWS_SECRET_ACCESS_KEY": "stream-tests",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _install(folder: Path) -> None:
    """``npm install`` beside the wrapper when ``.ci/run`` has not (a developer's first run)."""
    if (folder / "node_modules" / "kinesalite").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: kinesalite cannot be installed")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=folder, check=True, capture_output=True)


@pytest.fixture(scope="session")
def kinesalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kinesalite]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: kinesalite cannot run")
    _install(KINESALITE)
    saved = {name: os.environ.get(name) for name in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    # Its stderr goes to a file, not a pipe nobody reads (which could fill and stall it): a server that
    # dies during the session is reported with what it said.
    log = tmp_path_factory.mktemp("kinesalite") / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [node, str(KINESALITE / "server.js"), "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"kinesalite did not start: {log.read_text(errors='replace')[-2000:]}")
        port = json.loads(line)["port"]
        yield Kinesalite(f"http://127.0.0.1:{port}")
        if process.poll() is not None:
            raise RuntimeError(
                f"kinesalite exited ({process.returncode}) during the tests: "
                f"{log.read_text(errors='replace')[-2000:]}"
            )
    finally:
        process.kill()
        process.wait()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the COMPLETED BINARY model ``ml-binary``, copied by each test that needs it."""
    folder = tmp_path_factory.mktemp("stream-model")
    app = EmrML(Settings.load(environ={}, home=folder / "home"))
    try:
        train_binary(app, folder)
    finally:
        app.close()
    return folder / "home"


@pytest.fixture
def stream_settings(tmp_path: Path, model_home: Path, kinesalite: Kinesalite) -> Settings:
    """Settings of a fresh home holding ``ml-binary``, pointing at kinesalite, with short leases."""
    home = tmp_path / "home"
    shutil.copytree(model_home, home)
    return Settings.load(
        environ={},
        home=home,
        kinesis_endpoint_url=kinesalite.endpoint,
        stream_lease_seconds=3.0,
        stream_idle_seconds=0.2,
        stream_roll_seconds=1.0,
        stream_batch_records=100,
    )


@pytest.fixture
def stream_app(stream_settings: Settings) -> Iterator[EmrML]:
    app = EmrML(stream_settings)
    yield app
    app.close()


@pytest.fixture
def consumers(stream_settings: Settings) -> Iterator[list[Running]]:
    """Consumers a test starts (it appends them); stopped and joined after the test."""
    started: list[Running] = []
    yield started
    for running in started:
        running.consumer.stop()
        running.thread.join(30)


@pytest.fixture
def cleanup(stream_app: EmrML) -> Iterator[None]:
    """Kill whatever consumer process a test leaves behind (those StartStream spawned; not this one, whose
    consumer threads, ``Running``, have rows too)."""
    yield
    with stream_app.sessions() as session:
        pids = set(session.scalars(select(StreamConsumer.pid))) - {os.getpid()}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
