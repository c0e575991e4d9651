"""Several consumer processes sharing a stream's shards through leases in the metastore: balance, takeover
of a killed consumer's shards with nothing lost, resharding followed in order."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from stream_helpers import Kinesalite, Running, record, wait_until

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.metastore import open_engine, session_factory


def _leases_per_consumer(app: EmrML, stream_id: str) -> list[int]:
    described = app.call("GetStream", {"StreamId": stream_id})
    return sorted(consumer["Leases"] for consumer in described["ConsumerProcesses"])


def _scored(kinesalite: Kinesalite, name: str) -> Counter[tuple[str, str]]:
    return Counter(
        (item["ShardId"], item["SequenceNumber"])
        for item in map(json.loads, (r["Data"] for r in kinesalite.read_all(name)))
    )


@pytest.fixture
def quick_app(stream_settings: Settings) -> Iterator[EmrML]:
    """``stream_app`` with 1.5 s leases, for the tests that wait for a killed consumer's lease to lapse or
    its reports to stop (its consumers, processes or threads, are given them too): every renewal, steal,
    takeover and stop comes twice as soon. The other tests keep 3 s, the more margin for a loaded machine."""
    app = EmrML(dataclasses.replace(stream_settings, stream_lease_seconds=1.5))
    yield app
    app.close()


def test_two_consumers_share_four_shards_and_a_killed_one_loses_nothing(
    quick_app: EmrML, kinesalite: Kinesalite, cleanup: None
) -> None:
    stream_app = quick_app
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
        killed_at = time.monotonic()
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
    leases = stream_app.call("GetStream", {"StreamId": "st-k"})["ShardLeases"]
    takeovers = sum(lease["OwnerSwitches"] for lease in leases)
    assert takeovers >= 2
    # At most one micro-batch (stream_batch_records) per takeover: the victim's two shards, and any lease
    # a consumer slowed by a loaded machine renewed too late.
    assert duplicates <= takeovers * stream_app.settings.stream_batch_records

    # A consumer heard from within two lease times of the stop request is taken for one that went silent
    # instead of stopping (settle_stopping: the stream ends FAILED). The victim died before the request: it
    # is asked for only after that, or the outcome would depend on how fast the survivor caught up.
    lease = stream_app.settings.stream_lease_seconds
    time.sleep(max(0.0, killed_at + 2 * lease + 0.5 - time.monotonic()))
    stream_app.call("StopStream", {"StreamId": "st-k"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-k"})["Status"] == "STOPPED", 30, 0.3)


def test_a_stream_whose_consumer_was_killed_says_so_until_a_consumer_runs_again(
    quick_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    """Its consumer killed, a stream is read by nobody: GetStream and DescribeStreams say FAILED once the
    consumer's reports stop for longer than its lease allows, and no longer give the lag it last reported
    (the shard goes on growing). A consumer started again (``emrml stream run``) makes it RUNNING."""
    stream_app = quick_app
    kinesalite.create("events-gone", 1)
    kinesalite.create("events-gone-scored", 1)
    kinesalite.put("events-gone", [(record(i), f"k{i}") for i in range(10)])
    request = {"StreamId": "st-gone", "MLModelId": "ml-binary", "InputStream": "kinesis://events-gone",
               "OutputUri": "kinesis://events-gone-scored", "Consumers": 1}  # fmt: skip
    stream_app.call("StartStream", request)

    def described() -> dict[str, Any]:
        return stream_app.call("GetStream", {"StreamId": "st-gone"})

    wait_until(lambda: described()["RecordsIn"] == 10 and "MillisBehindLatest" in described(), 60, 0.3)
    victim = described()["ConsumerProcesses"][0]
    os.kill(victim["Pid"], signal.SIGKILL)
    os.waitpid(victim["Pid"], 0)

    failed = wait_until(lambda: (found := described())["Status"] == "FAILED" and found, 30, 0.3)
    assert failed["Message"].startswith(f"no consumer is running: consumer {victim['ConsumerId']} (pid ")
    assert (
        "its process is frozen, hangs or died; "
        "`emrml stream start --id st-gone` (StartStream) starts consumers again" in failed["Message"]
    )
    assert "MillisBehindLatest" not in failed
    assert all("MillisBehindLatest" not in lease for lease in failed["ShardLeases"])
    [listed] = stream_app.call("DescribeStreams", {})["Results"]
    assert listed["Status"] == "FAILED" and listed["Message"] == failed["Message"]

    consumers.append(Running(stream_app.settings, "st-gone"))
    kinesalite.put("events-gone", [(record(i), f"k{i}") for i in range(10, 20)])
    # Awaited with the records: a test process stalled for two short leases would read the new consumer's
    # last report as too old.
    running = wait_until(
        lambda: (found := described())["RecordsIn"] == 20 and found["Status"] == "RUNNING" and found, 60, 0.3
    )
    assert "Message" not in running


def test_more_consumers_than_shards_start_one_per_shard_and_score_everything(
    stream_app: EmrML, kinesalite: Kinesalite, cleanup: None
) -> None:
    kinesalite.create("events-few", 2)
    kinesalite.create("events-few-scored", 1)
    kinesalite.put("events-few", [(record(i), f"k{i}") for i in range(60)])
    request = {
        "StreamId": "st-few",
        "MLModelId": "ml-binary",
        "InputStream": "kinesis://events-few",
        "OutputUri": "kinesis://events-few-scored",
        "Consumers": 6,
    }
    assert stream_app.call("StartStream", request) == {"StreamId": "st-few", "ConsumersStarted": 2}
    wait_until(lambda: _leases_per_consumer(stream_app, "st-few") == [1, 1], 60, 0.3)
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-few"})["RecordsIn"] == 60, 60, 0.3)
    # Started again while RUNNING (a retry): no more consumers, and the answer says so.
    assert stream_app.call("StartStream", request) == {"StreamId": "st-few", "ConsumersStarted": 0}
    stream_app.call("StopStream", {"StreamId": "st-few"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-few"})["Status"] == "STOPPED", 30, 0.3)


def test_a_split_is_followed_children_after_their_parent_in_key_order(
    stream_app: EmrML, kinesalite: Kinesalite
) -> None:
    kinesalite.create("events-2", 1)
    kinesalite.create("events-2-scored", 1)
    keys = [f"key-{k}" for k in range(8)]
    kinesalite.put("events-2", [(record(i), keys[i % 8]) for i in range(80)])
    stream_app.call(
        "StartStream",
        {
            "StreamId": "st-split",
            "MLModelId": "ml-binary",
            "InputStream": "kinesis://events-2",
            "OutputUri": "kinesis://events-2-scored",
            "Consumers": 0,
        },
    )
    running = Running(stream_app.settings, "st-split")
    try:
        wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-split"})["RecordsIn"] >= 40, 30, 0.1)
        kinesis = kinesalite.client()
        parent = kinesis.shards("events-2")[0].shard_id
        kinesis.call(
            "split_shard", StreamName="events-2", ShardToSplit=parent, NewStartingHashKey=str(2**127)
        )
        wait_until(lambda: kinesis.describe("events-2")["StreamStatus"] == "ACTIVE", 10)
        kinesalite.put("events-2", [(record(i), keys[i % 8]) for i in range(80, 200)])

        def leases() -> dict[str, dict]:
            described = stream_app.call("GetStream", {"StreamId": "st-split"})
            return {lease["ShardId"]: lease for lease in described["ShardLeases"]}

        wait_until(lambda: sum(lease["RecordsIn"] for lease in leases().values()) == 200, 60, 0.3)
        shards = leases()
        assert len(shards) == 3 and shards[parent]["Checkpoint"] == "SHARD_END"
        children = [lease for shard_id, lease in shards.items() if shard_id != parent]
        assert all(lease["ParentShardIds"] == [parent] for lease in children)
        assert sum(lease["RecordsIn"] for lease in children) == 120
    finally:
        running.consumer.stop()
        running.join()
    source = {r["SequenceNumber"]: json.loads(r["Data"]) for r in kinesalite.read_all("events-2")}
    order: dict[str, list[int]] = {}
    for item in (json.loads(r["Data"]) for r in kinesalite.read_all("events-2-scored")):
        order.setdefault(item["PartitionKey"], []).append(int(source[item["SequenceNumber"]]["x"]))
    assert sorted(x for xs in order.values() for x in xs) == list(range(200))
    for key, xs in order.items():
        assert xs == sorted(xs), key  # each key's records come out in the order they went in


def test_a_consumer_cut_off_from_the_metastore_stops_reading_before_its_leases_can_be_taken(
    stream_app: EmrML, kinesalite: Kinesalite
) -> None:
    kinesalite.create("events-3", 2)
    kinesalite.create("events-3-scored", 1)
    kinesalite.put("events-3", [(record(i), f"k{i}") for i in range(50)])
    stream_app.call(
        "StartStream",
        {
            "StreamId": "st-cut",
            "MLModelId": "ml-binary",
            "InputStream": "kinesis://events-3",
            "OutputUri": "kinesis://events-3-scored",
            "Consumers": 0,
        },
    )
    # Consumer A's metastore connection fails, at the driver, while `cut` is set.
    settings = stream_app.settings
    engine = open_engine(settings.database_url)
    cut = threading.Event()

    def drop(*_: object) -> None:
        if cut.is_set():
            raise OperationalError(
                "SELECT", None, ConnectionResetError("connection to the metastore dropped")
            )

    event.listen(engine, "before_cursor_execute", drop)
    a = Running(settings, "st-cut", sessions=session_factory(engine))
    b: Running | None = None
    try:
        wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-cut"})["RecordsIn"] == 50, 30, 0.1)
        reads: list[float] = []
        original = a.consumer.kinesis.call

        def counting(operation: str, **request: object) -> dict:
            if operation == "get_records":
                reads.append(time.monotonic())
            return original(operation, **request)

        a.consumer.kinesis.call = counting  # type: ignore[method-assign]
        cut.set()
        cut_at = time.monotonic()
        b = Running(settings, "st-cut")

        def b_holds_both() -> bool:
            leases = stream_app.call("GetStream", {"StreamId": "st-cut"})["ShardLeases"]
            return {lease.get("Owner") for lease in leases} == {b.consumer.id}

        wait_until(b_holds_both, 30, 0.2)
        kinesalite.put("events-3", [(record(i), f"k{i}") for i in range(50, 100)])
        wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-cut"})["RecordsIn"] >= 100, 30, 0.2)
        # A read nothing once another consumer could hold its shards (a lease time after the cut).
        assert reads and max(reads) < cut_at + settings.stream_lease_seconds
        scored = _scored(kinesalite, "events-3-scored")
        assert len({seq for _, seq in scored}) == 100
    finally:
        cut.clear()
        for running in (a, b):
            if running is not None:
                running.consumer.stop()
                running.join()
        engine.dispose()


def test_a_merge_is_followed_the_child_after_both_parents_in_key_order(
    stream_app: EmrML, kinesalite: Kinesalite
) -> None:
    kinesalite.create("events-merge", 2)
    kinesalite.create("events-merge-scored", 1)
    keys = [f"key-{k}" for k in range(8)]
    kinesalite.put("events-merge", [(record(i), keys[i % 8]) for i in range(80)])
    stream_app.call(
        "StartStream",
        {"StreamId": "st-merge", "MLModelId": "ml-binary", "InputStream": "kinesis://events-merge",
         "OutputUri": "kinesis://events-merge-scored", "Consumers": 0},
    )  # fmt: skip
    running = Running(stream_app.settings, "st-merge")
    try:
        wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-merge"})["RecordsIn"] >= 40, 30, 0.1)
        kinesis = kinesalite.client()
        first, second = sorted(shard.shard_id for shard in kinesis.shards("events-merge"))
        kinesis.call(
            "merge_shards", StreamName="events-merge", ShardToMerge=first, AdjacentShardToMerge=second
        )
        wait_until(lambda: kinesis.describe("events-merge")["StreamStatus"] == "ACTIVE", 10)
        kinesalite.put("events-merge", [(record(i), keys[i % 8]) for i in range(80, 200)])

        def leases() -> dict[str, dict]:
            described = stream_app.call("GetStream", {"StreamId": "st-merge"})
            return {lease["ShardId"]: lease for lease in described["ShardLeases"]}

        wait_until(lambda: sum(lease["RecordsIn"] for lease in leases().values()) == 200, 60, 0.3)
        shards = leases()
        assert len(shards) == 3
        assert shards[first]["Checkpoint"] == shards[second]["Checkpoint"] == "SHARD_END"
        (child,) = [lease for shard_id, lease in shards.items() if shard_id not in (first, second)]
        assert sorted(child["ParentShardIds"]) == [first, second] and child["RecordsIn"] == 120
    finally:
        running.consumer.stop()
        running.join()
    source = {r["SequenceNumber"]: json.loads(r["Data"]) for r in kinesalite.read_all("events-merge")}
    order: dict[str, list[int]] = {}
    for item in (json.loads(r["Data"]) for r in kinesalite.read_all("events-merge-scored")):
        order.setdefault(item["PartitionKey"], []).append(int(source[item["SequenceNumber"]]["x"]))
    assert sorted(x for xs in order.values() for x in xs) == list(range(200))
    for key, xs in order.items():
        assert xs == sorted(xs), key  # the child's records of a key come after its parent's


def test_a_lease_stolen_to_balance_leaves_no_duplicate_in_file_outputs(
    stream_settings: Settings, kinesalite: Kinesalite, tmp_path: Path
) -> None:
    # A consumer that had scored a shard into its open part and then lost the lease (a second consumer
    # stole it to balance) published that part anyway, and the new owner scored the shard again from its
    # checkpoint: every such record came twice, on every rebalance.
    settings = dataclasses.replace(stream_settings, stream_roll_seconds=60.0)
    app = EmrML(settings)
    output = tmp_path / "scored"
    try:
        kinesalite.create("events-steal", 2)
        inputs = [(record(i), f"k{i}") for i in range(120)]
        kinesalite.put("events-steal", inputs)
        request = {
            "StreamId": "st-steal",
            "MLModelId": "ml-binary",
            "InputStream": "kinesis://events-steal",
            "OutputUri": str(output),
            "DeadLetterUri": str(tmp_path / "dead"),
            "Consumers": 0,
        }
        app.call("StartStream", request)
        first = Running(settings, "st-steal")
        # The first consumer holds both shards and has every record in its open, unpublished part.
        wait_until(lambda: sum(s.counts[0] for s in list(first.consumer.held.values())) == len(inputs), 30)
        assert not list(output.glob("part-*"))
        second = Running(settings, "st-steal")
        # The first consumer, too, knows its lease was stolen (it has dropped its part then): until it
        # does, its counts still hold the stolen shard's records, and the stream would stop before the
        # records of its other shard, dropped with the part, were read again.
        wait_until(
            lambda: _leases_per_consumer(app, "st-steal") == [1, 1] and len(first.consumer.held) == 1, 30, 0.2
        )

        def read_since_checkpoints() -> int:
            states = [*first.consumer.held.values(), *second.consumer.held.values()]
            return sum(state.counts[0] for state in states)

        wait_until(lambda: read_since_checkpoints() == len(inputs), 30)
        app.call("StopStream", {"StreamId": "st-steal"})
        first.join()
        second.join()
        scored = Counter()
        for part in output.glob("part-*.gz"):
            lines = gzip.decompress(part.read_bytes()).decode().splitlines()
            scored.update(tuple(line.split(",")[:2]) for line in lines[1:])
        assert sum(scored.values()) == len(inputs) and set(scored.values()) == {1}, scored.most_common(3)
        described = app.call("GetStream", {"StreamId": "st-steal"})
        assert described["RecordsIn"] == described["RecordsOut"] == len(inputs), described
    finally:
        app.close()
