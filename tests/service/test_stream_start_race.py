"""Two StartStream calls of a stream at about the same time start its consumers once: the other answers
``ConsumersStarted: 0``, as a retried start of a running stream does. Each start decides from what it read
of the stream (a RUNNING stream whose consumers are all gone, which shows FAILED; a STOPPED one) and then
claims the start; a start whose reading another start made out of date claims nothing.

The starts are driven in one thread so that they interleave the same way every run: the second start runs
whole at the point where the first has read the stream and not yet claimed it. Consumer processes are not
spawned: a stand-in counts the spawns, and the consumers spawned report only after both starts, so that
the stream's own count of consumers is checked too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from emrml.service import streams
from emrml.service.app import EmrML
from emrml.service.rows import MLModel, Stream, StreamConsumer

REQUEST = {
    "StreamId": "st-race",
    "MLModelId": "ml-race",
    "InputStream": "kinesis://clicks",
    "OutputUri": "kinesis://scored",
    "Consumers": 2,
}


class _Kinesis:
    """Kinesis as StartStream asks it: every stream exists, ACTIVE, with four open shards."""

    def describe(self, name: str) -> dict[str, Any]:
        return {"StreamName": name, "StreamStatus": "ACTIVE", "OpenShardCount": 4}


class _Spawns:
    """The consumer processes StartStream spawned, none of which has reported yet."""

    def __init__(self) -> None:
        self.stream_ids: list[str] = []

    def spawn(self, _settings: object, stream_id: str) -> str:
        self.stream_ids.append(stream_id)
        return f"consumer-{len(self.stream_ids)}"

    def report(self, app: EmrML) -> None:
        """Each spawned consumer records itself running, as ``Consumer._prepare`` does."""
        moment = time.time()
        with app.sessions() as session, session.begin():
            for pid, stream_id in enumerate(self.stream_ids, start=7100):
                session.add(
                    StreamConsumer(
                        id=f"host:{pid}:race", stream_id=stream_id, host="host", pid=pid, started_at=moment,
                        heartbeat_at=moment, status="RUNNING", records_per_second=0.0,
                    )
                )  # fmt: skip


@pytest.fixture
def spawns(app: EmrML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Spawns:
    """A COMPLETED model to score with, Kinesis and consumer processes stood in for."""
    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"model")
    moment = time.time()
    with app.sessions() as session, session.begin():
        session.add(
            MLModel(
                id="ml-race", status="COMPLETED", created_by="arn:aws:iam::000000000000:root",
                created_at=moment, last_updated_at=moment, request="{}", model_type="BINARY",
                training_data_source_id="ds-race", training_parameters="{}", data_schema="{}",
                artifact_location=str(artifact),
            )
        )  # fmt: skip
    made = _Spawns()
    monkeypatch.setattr(streams, "kinesis_client", lambda _settings: _Kinesis())
    monkeypatch.setattr(streams, "spawn_consumer", made.spawn)
    monkeypatch.setattr(streams, "await_started", lambda _sessions, _stream_id, _spawned: 0)
    return made


def _failed_stream(app: EmrML) -> None:
    """``st-race`` RUNNING, its one consumer ended by an error: it shows FAILED."""
    assert app.call("StartStream", {**REQUEST, "Consumers": 0})["ConsumersStarted"] == 0
    moment = time.time()
    with app.sessions() as session, session.begin():
        session.add(
            StreamConsumer(
                id="host:7000:old", stream_id="st-race", host="host", pid=7000, started_at=moment - 60,
                heartbeat_at=moment - 30, status="FAILED", message="consumer 7000 stopped: boom",
                records_per_second=0.0,
            )
        )  # fmt: skip
    assert app.call("GetStream", {"StreamId": "st-race"})["Status"] == "FAILED"


def _after_both(app: EmrML, spawns: _Spawns, answers: list[dict[str, Any]]) -> None:
    """One start started the two consumers asked for, the other none; the stream runs those two."""
    assert sorted(answer["ConsumersStarted"] for answer in answers) == [0, 2]
    assert spawns.stream_ids == ["st-race", "st-race"]
    spawns.report(app)
    described = app.call("GetStream", {"StreamId": "st-race"})
    assert (described["Status"], described["Consumers"]) == ("RUNNING", 2)
    assert "Message" not in described
    # Started again now, it is a stream its consumers run.
    assert app.call("StartStream", REQUEST) == {"StreamId": "st-race", "ConsumersStarted": 0}
    assert len(spawns.stream_ids) == 2


def test_two_starts_of_a_failed_stream_start_its_consumers_once(
    app: EmrML, spawns: _Spawns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second start runs whole after the first found the stream's consumers gone, before it claimed
    the start: each found them gone, and each started two consumers."""
    _failed_stream(app)
    answers: list[dict[str, Any]] = []
    reads = 0
    gone = streams._consumers_gone

    def then_another_start(app_: EmrML, session: Any, stream: Stream) -> bool:
        nonlocal reads
        reads += 1
        found = gone(app_, session, stream)
        if reads == 2:  # the first start's reading before it claims (its first is StartStream's early check)
            assert found
            answers.append(app.call("StartStream", REQUEST))
        return found

    monkeypatch.setattr(streams, "_consumers_gone", then_another_start)
    answers.append(app.call("StartStream", REQUEST))
    _after_both(app, spawns, answers)


def test_two_starts_of_a_stopped_stream_start_its_consumers_once(
    app: EmrML, spawns: _Spawns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second start runs whole after the first read the stream STOPPED, before it claimed the start
    (where the first compares the stream's parameters with its request the second time)."""
    app.call("StartStream", {**REQUEST, "Consumers": 0})
    app.call("StopStream", {"StreamId": "st-race"})
    assert app.call("GetStream", {"StreamId": "st-race"})["Status"] == "STOPPED"
    answers: list[dict[str, Any]] = []
    reads = 0
    parameters = streams.start_parameters

    def then_another_start(stream: Stream) -> tuple[dict[str, Any], dict[str, Any]]:
        nonlocal reads
        reads += 1
        if reads == 2:  # the first start's reading before it claims (its first is StartStream's early check)
            answers.append(app.call("StartStream", REQUEST))
        return parameters(stream)

    monkeypatch.setattr(streams, "start_parameters", then_another_start)
    answers.append(app.call("StartStream", REQUEST))
    _after_both(app, spawns, answers)
