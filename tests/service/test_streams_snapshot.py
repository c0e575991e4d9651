"""GetStream and DescribeStreams build a stream's status from rows read in one snapshot: a consumer that
starts between two of their reads is in all of them or in none."""

from __future__ import annotations

import time
from typing import Any

import pytest

from emrml.service import streams
from emrml.service.app import EmrML
from emrml.service.rows import Stream, StreamConsumer
from emrml.service.stream_status import live_consumers


def _started_stream(app: EmrML, stream_id: str) -> None:
    """A stream just started, RUNNING, none of whose consumers has reported yet."""
    moment = time.time()
    with app.sessions() as session, session.begin():
        session.add(
            Stream(
                id=stream_id, status="RUNNING", created_by="arn:aws:iam::000000000000:user/admin",
                created_at=moment, last_updated_at=moment, request="{}", ml_model_id="ml-x",
                input_uri="kinesis://clicks", output_uri="kinesis://scored", dead_letter_uri="",
                starting_position="TRIM_HORIZON", record_format="auto",
            )
        )  # fmt: skip


def _a_consumer_starts_after_the_live_ones_are_read(app: EmrML, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read of a stream's live consumers is followed by the commit of a new consumer of it, as
    ``Consumer._prepare`` records one, before the read goes on: the interleaving that made a stream just
    started show FAILED, its first consumer having "stopped reporting"."""
    joined = iter(range(5100, 5200))

    def then_one_joins(session: Any, stream_id: str, lease_seconds: float) -> list[StreamConsumer]:
        live = live_consumers(session, stream_id, lease_seconds)
        pid, moment = next(joined), time.time()
        with app.sessions() as other, other.begin():
            other.add(
                StreamConsumer(
                    id=f"host-{pid}:{pid}:c", stream_id=stream_id, host=f"host-{pid}", pid=pid,
                    started_at=moment, heartbeat_at=moment, status="RUNNING", records_per_second=0.0,
                )
            )  # fmt: skip
        return live

    monkeypatch.setattr(streams, "live_consumers", then_one_joins)


def test_get_stream_does_not_fail_a_stream_whose_first_consumer_starts_as_it_is_read(
    app: EmrML, monkeypatch: pytest.MonkeyPatch
) -> None:
    _started_stream(app, "st-first")
    _a_consumer_starts_after_the_live_ones_are_read(app, monkeypatch)
    described = app.call("GetStream", {"StreamId": "st-first"})
    assert (described["Status"], described["Consumers"], described["ConsumerProcesses"]) == ("RUNNING", 0, [])
    assert "Message" not in described
    monkeypatch.undo()
    described = app.call("GetStream", {"StreamId": "st-first"})
    assert (described["Status"], described["Consumers"]) == ("RUNNING", 1)
    assert "Message" not in described


def test_describe_streams_does_not_fail_a_stream_whose_first_consumer_starts_as_it_is_read(
    app: EmrML, monkeypatch: pytest.MonkeyPatch
) -> None:
    _started_stream(app, "st-listed")
    _a_consumer_starts_after_the_live_ones_are_read(app, monkeypatch)
    [listed] = app.call("DescribeStreams", {})["Results"]
    assert (listed["StreamId"], listed["Status"], listed["Consumers"]) == ("st-listed", "RUNNING", 0)
    assert "Message" not in listed
