"""A stream recorded with a StartStream member that StartStream now refuses (one started before its
members were checked) starts again from its own parameters: the member is dropped, saying so."""

from __future__ import annotations

import json
import logging

import pytest
from stream_helpers import Kinesalite, wait_until

from emrml.service.app import EmrML
from emrml.service.operations import canonical
from emrml.service.rows import Stream


def test_a_stream_stored_with_an_unknown_member_starts_again_without_it(
    stream_app: EmrML, kinesalite: Kinesalite, caplog: pytest.LogCaptureFixture
) -> None:
    kinesalite.create("stored-junk", 1)
    kinesalite.create("stored-junk-scored", 1)
    request = {"StreamId": "st-junk", "MLModelId": "ml-binary", "InputStream": "kinesis://stored-junk",
               "OutputUri": "kinesis://stored-junk-scored", "RecordFormat": "json"}  # fmt: skip
    assert stream_app.call("StartStream", {**request, "Consumers": 0})["ConsumersStarted"] == 0
    stream_app.call("StopStream", {"StreamId": "st-junk"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-junk"})["Status"] == "STOPPED", 30)
    # As a stream started before StartStream refused members it does not read left its row.
    with stream_app.sessions() as session, session.begin():
        row = session.get(Stream, "st-junk")
        assert row is not None
        row.request = canonical({**json.loads(row.request), "ShardCount": 2, "Startingtimestamp": 5})

    # What the CLI (`emrml stream start --id`) and the console's start button send: GetStream's parameters.
    described = stream_app.call("GetStream", {"StreamId": "st-junk"})
    assert described["StartParameters"] == request
    with caplog.at_level(logging.WARNING, logger="emrml.service.streams"):
        started = stream_app.call("StartStream", {**described["StartParameters"], "Consumers": 0})
    assert started == {"StreamId": "st-junk", "ConsumersStarted": 0}
    assert stream_app.call("GetStream", {"StreamId": "st-junk"})["Status"] == "RUNNING"
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert "st-junk" in warned[0]
    assert '{"ShardCount": 2, "Startingtimestamp": 5}' in warned[0]
    with stream_app.sessions() as session:
        row = session.get(Stream, "st-junk")
        assert row is not None and json.loads(row.request) == request
    # Dropped once: the next start says nothing of it; a request that still names it is refused, naming it.
    stream_app.call("StopStream", {"StreamId": "st-junk"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-junk"})["Status"] == "STOPPED", 30)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emrml.service.streams"):
        assert stream_app.call("StartStream", {**request, "Consumers": 0})["ConsumersStarted"] == 0
    assert not [record for record in caplog.records if record.levelno == logging.WARNING]
    stream_app.call("StopStream", {"StreamId": "st-junk"})
