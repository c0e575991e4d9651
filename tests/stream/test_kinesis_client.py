"""The Kinesis client's back-off (stream/kinesis.py). kinesalite never throttles, so these give the client a
stand-in for botocore's that refuses as Kinesis does when a shard's limits are passed; the waits are
recorded, not slept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emrml.errors import ResourceNotFoundException
from emrml.stream import kinesis
from emrml.stream.kinesis import Kinesis, KinesisError


def refusal(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} says no"}}, "GetRecords")


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    # The client module's own names are replaced, not the time and random modules: other threads of the
    # test process (earlier tests' consumers, servers) keep sleeping for real.
    recorded: list[float] = []
    monkeypatch.setattr(kinesis, "time", SimpleNamespace(sleep=recorded.append))
    monkeypatch.setattr(kinesis, "random", SimpleNamespace(random=lambda: 1.0))  # no jitter
    return recorded


class Throttled:
    """Refuses GetRecords ``times`` times with ProvisionedThroughputExceededException, then answers."""

    def __init__(self, times: int, code: str = "ProvisionedThroughputExceededException") -> None:
        self.times, self.code, self.calls = times, code, 0

    def get_records(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.times:
            raise refusal(self.code)
        return {"Records": [{"Data": b"x"}], "NextShardIterator": "next"}


def client(stand_in: Any) -> Kinesis:
    stream = Kinesis("http://127.0.0.1:9", "us-east-1")
    stream.client = stand_in
    return stream


def test_a_throttled_read_waits_longer_each_time_then_reads(waits: list[float]) -> None:
    stand_in = Throttled(4)
    answer = client(stand_in).call("get_records", ShardIterator="it", Limit=10)
    assert answer["Records"] == [{"Data": b"x"}] and stand_in.calls == 5
    assert waits == [0.1, 0.2, 0.4, 0.8]  # doubling from 0.1 s


def test_back_off_is_capped_and_ends_with_a_clear_error(waits: list[float]) -> None:
    with pytest.raises(KinesisError, match="ProvisionedThroughputExceededException says no") as raised:
        client(Throttled(100)).call("get_records", ShardIterator="it")
    assert raised.value.code == "ProvisionedThroughputExceededException"
    assert len(waits) == 11 and max(waits) == kinesis.MAX_BACKOFF


def test_refusals_that_are_not_throttling_are_not_retried(waits: list[float]) -> None:
    with pytest.raises(KinesisError, match="ExpiredIteratorException"):
        client(Throttled(1, "ExpiredIteratorException")).call("get_records", ShardIterator="old")
    with pytest.raises(ResourceNotFoundException, match="Kinesis: ResourceNotFoundException says no"):
        client(Throttled(1, "ResourceNotFoundException")).call("get_records", ShardIterator="it")
    assert waits == []


class PartlyRefused:
    """PutRecords that refuses every other record on its first call (throttled), then takes the rest."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.sent.append([entry["Data"] for entry in Records])
        first = len(self.sent) == 1
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException"}
            if first and i % 2
            else {"SequenceNumber": "1"}
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": sum("ErrorCode" in r for r in results), "Records": results}


def test_records_refused_by_put_records_are_sent_again_and_only_they(waits: list[float]) -> None:
    stand_in = PartlyRefused()
    records = [(f"r{i}".encode(), f"k{i}") for i in range(6)]
    client(stand_in).put_records("out", records)
    assert stand_in.sent == [[b"r0", b"r1", b"r2", b"r3", b"r4", b"r5"], [b"r1", b"r3", b"r5"]]
    assert waits == [0.05]


def test_put_records_calls_hold_at_most_500_records() -> None:
    stand_in = PartlyRefused()
    stand_in.sent.append([])  # no refusals
    client(stand_in).put_records("out", [(b"r", "k")] * 1201)
    assert [len(call) for call in stand_in.sent[1:]] == [500, 500, 201]
