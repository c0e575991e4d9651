"""Several consumer processes sharing a stream's shards through leases in the metastore: balance, takeover
of a killed consumer's shards with nothing lost, resharding followed in order."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from stream_helpers import Kinesalite, record, wait_until

from emrml.service.app import EmrML
from emrml.service.metastore import StreamConsumer


@pytest.fixture
def cleanup(stream_app: EmrML) -> Iterator[None]:
    """Kill whatever consumer process a test leaves behind."""
    yield
    with stream_app.sessions() as session:
        pids = list(session.scalars(select(StreamConsumer.pid)))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _leases_per_consumer(app: EmrML, stream_id: str) -> list[int]:
    described = app.call("GetStream", {"StreamId": stream_id})
    return sorted(consumer["Leases"] for consumer in described["ConsumerProcesses"])


def _scored(kinesalite: Kinesalite, name: str) -> Counter[tuple[str, str]]:
    return Counter(
        (item["ShardId"], item["SequenceNumber"])
        for item in map(json.loads, (r["Data"] for r in kinesalite.read_all(name)))
    )


def test_two_consumers_share_four_shards_and_a_killed_one_loses_nothing(
    stream_app: EmrML, kinesalite: Kinesalite, cleanup: None
) -> None:
    kinesalite.create("events-1", 4)
    kinesalite.create("events-1-scored", 1)
    kinesalite.put("events-1", [(record(i), f"k{i}") for i in range(200)])
    stream_app.call(
        "StartStream",
        {
            "StreamId": "st-k",
            "MLModelId": "ml-binary",
            "InputStream": "kinesis://events-1",
            "OutputUri": "kinesis://events-1-scored",
            "Consumers": 2,
        },
    )
    wait_until(lambda: _leases_per_consumer(stream_app, "st-k") == [2, 2], 60, 0.3)

    # Records keep coming while one consumer is killed without warning.
    stop_writing = threading.Event()

    def write() -> None:
        i = 200
        while not stop_writing.is_set() and i < 1200:
            kinesalite.put("events-1", [(record(j), f"k{j}") for j in range(i, i + 25)])
            i += 25
            stop_writing.wait(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-k"})["RecordsIn"] >= 300, 60, 0.2)
        victim = stream_app.call("GetStream", {"StreamId": "st-k"})["ConsumerProcesses"][0]
        os.kill(victim["Pid"], signal.SIGKILL)
        os.waitpid(victim["Pid"], 0)
    finally:
        writer.join()
    sent = {(r["SequenceNumber"]) for r in kinesalite.read_all("events-1")}
    assert len(sent) == 1200

    def survivor_holds_all() -> bool:
        described = stream_app.call("GetStream", {"StreamId": "st-k"})
        return [c["Leases"] for c in described["ConsumerProcesses"] if c["Pid"] != victim["Pid"]] == [4]

    wait_until(survivor_holds_all, 60, 0.3)
    wait_until(lambda: {seq for _, seq in _scored(kinesalite, "events-1-scored")} >= sent, 60, 0.5)
    scored = _scored(kinesalite, "events-1-scored")
    assert {seq for _, seq in scored} == sent  # every input record has an output
    duplicates = sum(count - 1 for count in scored.values())
    # At most one micro-batch (stream_batch_records) per shard taken over.
    assert duplicates <= 2 * stream_app.settings.stream_batch_records
    leases = stream_app.call("GetStream", {"StreamId": "st-k"})["ShardLeases"]
    assert sum(lease["OwnerSwitches"] for lease in leases) >= 2

    stream_app.call("StopStream", {"StreamId": "st-k"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-k"})["Status"] == "STOPPED", 30, 0.3)
