"""StartStream's Kinesis client is built once per process and endpoint (``kinesis.shared``): building one
loads botocore's service model again. A forked child builds its own rather than use its parent's
connections."""

from __future__ import annotations

import os

import pytest
from stream_helpers import Kinesalite

from emrml.service.app import EmrML
from emrml.stream import kinesis


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, str | None]]:
    """The (endpoint, region) of every Kinesis client built from now on; the process's shared clients are
    forgotten first (earlier tests of this process may have built them)."""
    monkeypatch.setattr(kinesis, "_shared", {})
    constructions: list[tuple[str | None, str | None]] = []
    original = kinesis.Kinesis.__init__

    def counted(self: kinesis.Kinesis, endpoint_url: str | None, region: str | None = None) -> None:
        constructions.append((endpoint_url, region))
        original(self, endpoint_url, region)

    monkeypatch.setattr(kinesis.Kinesis, "__init__", counted)
    return constructions


def _start(app: EmrML, name: str) -> None:
    request = {"StreamId": f"st-{name}", "MLModelId": "ml-binary", "Consumers": 0,
               "InputStream": f"kinesis://{name}", "OutputUri": f"kinesis://{name}-scored"}  # fmt: skip
    assert app.call("StartStream", request)["ConsumersStarted"] == 0


def test_two_stream_starts_build_one_kinesis_client(
    stream_app: EmrML, kinesalite: Kinesalite, built: list[tuple[str | None, str | None]]
) -> None:
    for name in ("shared-one", "shared-two"):
        kinesalite.create(name, 1)
        kinesalite.create(f"{name}-scored", 1)
    built.clear()  # the tests' own client, which created the streams
    _start(stream_app, "shared-one")
    _start(stream_app, "shared-two")
    assert built == [(kinesalite.endpoint, stream_app.settings.kinesis_region)]
    assert stream_app.call("GetStream", {"StreamId": "st-shared-two"})["Status"] == "RUNNING"


def test_a_forked_child_builds_its_own_client(built: list[tuple[str | None, str | None]]) -> None:
    parent = kinesis.shared("http://127.0.0.1:9", "us-east-1")
    assert kinesis.shared("http://127.0.0.1:9", "us-east-1") is parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: says whether it was given its parent's client, and ends at once
        try:
            own = kinesis.shared("http://127.0.0.1:9", "us-east-1")
            os.write(write, b"own" if own is not parent and own.client is not parent.client else b"parent's")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        said = answer.read()
    os.waitpid(pid, 0)
    assert said == b"own"
    assert len(built) == 1  # the parent's one: the child's was built in the child
