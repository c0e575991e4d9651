"""A stream's status and message account for every consumer of its run, not only the last started, and
for those that ran when it was asked to stop."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import event, select, update

from emrml.service import streams
from emrml.service.app import EmrML
from emrml.service.rows import Stream, StreamConsumer
from emrml.service.stream_status import live_consumers


def _stream(app: EmrML, stream_id: str, consumers: list[tuple[str, int, str]]) -> None:
    """A RUNNING stream whose consumers (status, pid, message) all stopped reporting
    an hour ago, started in the order given."""
    moment = time.time()
    with app.sessions() as session, session.begin():
        session.add(
            Stream(
                id=stream_id, status="RUNNING", created_by="arn:aws:iam::000000000000:user/admin",
                created_at=moment - 7200, last_updated_at=moment - 7200, request="{}", ml_model_id="ml-x",
                input_uri="kinesis://clicks", output_uri="kinesis://scored", dead_letter_uri="",
                starting_position="TRIM_HORIZON", record_format="auto",
            )
        )  # fmt: skip
        for order, (status, pid, message) in enumerate(consumers):
            session.add(
                StreamConsumer(
                    id=f"host-{pid}:{pid}:c", stream_id=stream_id, host=f"host-{pid}", pid=pid,
                    started_at=moment - 7000 + order, heartbeat_at=moment - 3600, status=status,
                    message=message, records_per_second=0.0,
                )
            )  # fmt: skip


def test_a_frozen_consumer_fails_the_stream_when_a_newer_one_stopped_cleanly(sqlite_app: EmrML) -> None:
    _stream(sqlite_app, "st-frozen", [("RUNNING", 4101, ""), ("STOPPED", 4102, "")])
    described = sqlite_app.call("GetStream", {"StreamId": "st-frozen"})
    assert described["Status"] == "FAILED"
    message = described["Message"]
    assert message.startswith("no consumer is running: consumer host-4101:4101:c (pid 4101 on host-4101)")
    assert "stopped reporting at " in message and "frozen" in message
    assert "4102" not in message
    [listed] = sqlite_app.call("DescribeStreams", {})["Results"]
    assert (listed["Status"], listed["Message"]) == ("FAILED", message)


def test_an_older_consumers_failure_is_told_when_the_last_stopped_cleanly(sqlite_app: EmrML) -> None:
    _stream(sqlite_app, "st-older", [("FAILED", 4201, "consumer 4201 stopped: boom"), ("STOPPED", 4202, "")])
    described = sqlite_app.call("GetStream", {"StreamId": "st-older"})
    assert described["Status"] == "FAILED"
    assert described["Message"].startswith(
        "consumer 4201 stopped: boom; no consumer is running: `emrml stream"
    )


def test_consumers_that_all_stopped_cleanly_leave_the_stream_running_with_a_message(
    sqlite_app: EmrML,
) -> None:
    _stream(sqlite_app, "st-clean", [("STOPPED", 4301, ""), ("STOPPED", 4302, "")])
    described = sqlite_app.call("GetStream", {"StreamId": "st-clean"})
    assert described["Status"] == "RUNNING"
    assert described["Message"].startswith("no consumer is running: consumer host-4302:4302:c, the last,")


def test_many_failed_consumers_are_named_up_to_three_and_counted(sqlite_app: EmrML) -> None:
    _stream(
        sqlite_app, "st-many", [("FAILED", 4400 + n, f"consumer {4400 + n} stopped: boom") for n in range(5)]
    )
    message = sqlite_app.call("GetStream", {"StreamId": "st-many"})["Message"]
    assert (
        message.count("stopped: boom") == 3 and "; 2 more consumers failed; no consumer is running" in message
    )
    # The last started first.
    assert message.startswith("consumer 4404 stopped: boom; consumer 4403")


def test_several_silent_consumers_are_told_in_the_plural(sqlite_app: EmrML) -> None:
    _stream(sqlite_app, "st-silent", [("RUNNING", 4501, ""), ("RUNNING", 4502, "")])
    message = sqlite_app.call("GetStream", {"StreamId": "st-silent"})["Message"]
    assert "pid 4501" in message and "pid 4502" in message
    assert "without stopping: their processes are frozen, hang or died" in message


def test_a_consumer_silent_since_the_stop_fails_the_stream_whatever_came_after(sqlite_app: EmrML) -> None:
    """A consumer that ran when the stream was asked to stop, and froze instead of stopping, leaves it
    FAILED even when another consumer's failure message, written long after the stop, moved the stream's
    ``LastUpdatedAt`` past two lease times of the frozen one's last report; that message stays, first."""
    lease = sqlite_app.settings.stream_lease_seconds
    _stream(sqlite_app, "st-stop", [("RUNNING", 4601, ""), ("RUNNING", 4602, "")])
    moment = time.time()
    with sqlite_app.sessions() as session, session.begin():
        for consumer in session.scalars(select(StreamConsumer)):
            consumer.heartbeat_at = moment  # both running
    sqlite_app.call("StopStream", {"StreamId": "st-stop"})
    # Ten lease times later, as seen from the records: the stop and 4601's last report long past, then 4602
    # ended by an error, which it says on the stream (as ``Consumer._record_failure`` does).
    later = 10 * lease
    with sqlite_app.sessions() as session, session.begin():
        stream = session.get(Stream, "st-stop")
        assert stream is not None and stream.status == "STOPPING"
        assert stream.stop_requested_at == stream.last_updated_at
        stream.stop_requested_at -= later
        stream.message, stream.last_updated_at = "consumer host-4602:4602:c stopped: boom", moment
        for consumer in session.scalars(select(StreamConsumer)):
            consumer.heartbeat_at -= later
            if consumer.pid == 4602:
                consumer.status, consumer.heartbeat_at = "FAILED", moment - 3 * lease
    described = sqlite_app.call("GetStream", {"StreamId": "st-stop"})
    assert described["Status"] == "FAILED"
    message = described["Message"]
    assert message.startswith(
        "consumer host-4602:4602:c stopped: boom; consumer host-4601:4601:c (pid 4601 on host-4601) stopped "
        "reporting at "
    )
    assert "instead of stopping" in message


def test_a_run_of_many_consumers_is_told_from_a_few_rows(app: EmrML) -> None:
    """A run whose consumers a supervisor restarted after each failure holds a row for each: the message
    names three of the failures and three of the silent consumers and counts the others, and neither
    GetStream nor DescribeStreams loads every row to say so (on every metastore)."""
    consumers = [("FAILED", 4700 + n, f"consumer {4700 + n} stopped: boom") for n in range(200)]
    consumers += [("RUNNING", 4900 + n, "") for n in range(5)] + [("STOPPED", 4950, "")]
    _stream(app, "st-restarted", consumers)
    with app.sessions() as session, session.begin():
        for consumer in session.scalars(select(StreamConsumer).where(StreamConsumer.status == "RUNNING")):
            consumer.heartbeat_at -= consumer.pid - 4900  # 4900 reported last, then 4901, ...
    loaded: list[StreamConsumer] = []
    listen = (StreamConsumer, "load", lambda target, context: loaded.append(target))
    event.listen(*listen)
    try:
        described = app.call("GetStream", {"StreamId": "st-restarted"})
        [listed] = app.call("DescribeStreams", {})["Results"]
    finally:
        event.remove(*listen)
    assert len(loaded) <= 2 * (3 + 1)
    message = described["Message"]
    assert (described["Status"], listed["Status"], listed["Message"]) == ("FAILED", "FAILED", message)
    assert message.startswith(
        "consumer 4899 stopped: boom; consumer 4898 stopped: boom; consumer 4897 stopped: boom; "
        "197 more consumers failed; no consumer is running: consumer host-4900:4900:c (pid 4900 on host-4900)"
    )
    assert "pid 4901" in message and "pid 4902" in message and "pid 4903" not in message
    assert "2 more consumers stopped reporting without stopping: their processes are frozen" in message


def test_a_consumer_starting_while_the_stream_is_read_leaves_no_stale_message(
    sqlite_app: EmrML, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer that starts as GetStream reads the stream commits its row and the clearing of the earlier
    consumer's failure together (``Consumer._prepare``); GetStream read the stream's message before and the
    live consumers after, and said RUNNING with one consumer and the failure it no longer had. Read in one
    snapshot, taken before the consumer started, it tells the stream as it was then; the next read, as it
    is now."""
    failure = "consumer host-4801:4801:c stopped: boom"
    _stream(sqlite_app, "st-joined", [("FAILED", 4801, failure)])
    with sqlite_app.sessions() as session, session.begin():
        stream = session.get(Stream, "st-joined")
        assert stream is not None
        stream.message = failure

    def joined_meanwhile(session: Any, stream_id: str, lease_seconds: float) -> list[StreamConsumer]:
        with sqlite_app.sessions() as other, other.begin():
            if other.get(StreamConsumer, "host-4802:4802:c") is None:
                moment = time.time()
                other.add(
                    StreamConsumer(
                        id="host-4802:4802:c", stream_id=stream_id, host="host-4802", pid=4802,
                        started_at=moment, heartbeat_at=moment, status="RUNNING", records_per_second=0.0,
                    )
                )  # fmt: skip
                other.execute(update(Stream).where(Stream.id == stream_id).values(message=None))
        return live_consumers(session, stream_id, lease_seconds)

    monkeypatch.setattr(streams, "live_consumers", joined_meanwhile)
    described = sqlite_app.call("GetStream", {"StreamId": "st-joined"})
    assert (described["Status"], described["Consumers"]) == ("FAILED", 0)
    assert described["Message"].startswith(f"{failure}; no consumer is running: ")
    monkeypatch.undo()
    described = sqlite_app.call("GetStream", {"StreamId": "st-joined"})
    assert (described["Status"], described["Consumers"]) == ("RUNNING", 1)
    assert "Message" not in described
