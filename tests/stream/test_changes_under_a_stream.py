"""What changes under a running stream: its model deleted or given a new score threshold, its input
stream deleted. The consumers follow the model as Predict does, and a stop is never silent."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import update
from stream_helpers import Kinesalite, Running, record, wait_until

from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.rows import MLModel, Stream
from raw_models import retyped


def _start(app: EmrML, stream_id: str, name: str) -> None:
    request = {"StreamId": stream_id, "MLModelId": "ml-binary", "Consumers": 0,
               "InputStream": f"kinesis://{name}", "OutputUri": f"kinesis://{name}-scored"}  # fmt: skip
    assert app.call("StartStream", request) == {"StreamId": stream_id, "ConsumersStarted": 0}


def _records_in(app: EmrML, stream_id: str) -> int:
    return app.call("GetStream", {"StreamId": stream_id})["RecordsIn"]


def _failing_consumer(
    app: EmrML, kinesalite: Kinesalite, consumers: list[Running], number: int, deleted: str
) -> Running:
    """Stream ``st-changes-<number>`` of ``changes-<number>`` (its output ``changes-<number>-scored``),
    whose consumer scored 10 records and then failed, the Kinesis stream ``deleted`` gone under it (a
    record more is written when that is the output, for the consumer to find it gone); returns that
    consumer, ended."""
    name = f"changes-{number}"
    kinesalite.create(name, 1)
    kinesalite.create(f"{name}-scored", 1)
    kinesalite.put(name, [(record(i), str(i)) for i in range(10)])
    _start(app, f"st-{name}", name)
    running = Running(app.settings, f"st-{name}")
    consumers.append(running)
    wait_until(lambda: _records_in(app, f"st-{name}") == 10, 30)
    kinesalite.delete(deleted)
    if deleted != name:
        kinesalite.put(name, [(record(i), str(i)) for i in range(10, 15)])
    with pytest.raises(ResourceNotFoundException):
        running.join()
    consumers.remove(running)
    return running


def test_a_stream_whose_model_is_deleted_stops_and_says_why(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("changes-1", 1)
    kinesalite.create("changes-1-scored", 1)
    kinesalite.put("changes-1", [(record(i), str(i)) for i in range(10)])
    _start(stream_app, "st-changes-1", "changes-1")
    consumers.append(Running(stream_app.settings, "st-changes-1"))
    wait_until(lambda: _records_in(stream_app, "st-changes-1") == 10, 30)

    deleted_at = time.time()
    stream_app.call("DeleteMLModel", {"MLModelId": "ml-binary"})
    consumers[-1].join()  # it stops by itself, cleanly
    described = stream_app.call("GetStream", {"StreamId": "st-changes-1"})
    assert described["Status"] == "STOPPED"
    with stream_app.sessions() as session:  # the consumer's stop of the stream is its stop request
        stream = session.get(Stream, "st-changes-1")
        assert stream is not None and stream.stop_requested_at is not None
        assert deleted_at <= stream.stop_requested_at <= described["LastUpdatedAt"]
    assert described["Message"] == "the stream stopped: its MLModel 'ml-binary' is DELETED"
    assert all("Owner" not in lease for lease in described["ShardLeases"])


def test_a_new_score_threshold_applies_to_the_records_scored_after_it(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("changes-2", 1)
    kinesalite.create("changes-2-scored", 1)
    kinesalite.put("changes-2", [(record(i), "before") for i in range(20)])
    _start(stream_app, "st-changes-2", "changes-2")
    running = Running(stream_app.settings, "st-changes-2")
    consumers.append(running)
    wait_until(lambda: _records_in(stream_app, "st-changes-2") == 20, 30)

    # Every score is at least 0: with a threshold of 0 every record is labelled 1, as Predict labels it.
    stream_app.call("UpdateMLModel", {"MLModelId": "ml-binary", "ScoreThreshold": 0.0})
    wait_until(lambda: running.consumer.scorer.predictor.score_threshold == 0.0, 30)
    kinesalite.put("changes-2", [(record(i), "after") for i in range(100, 120)])
    wait_until(lambda: _records_in(stream_app, "st-changes-2") == 40, 30)
    labels: dict[str, set[str]] = {"before": set(), "after": set()}
    for item in kinesalite.read_all("changes-2-scored"):
        output = json.loads(item["Data"])
        labels[output["PartitionKey"]].add(output["Prediction"]["predictedLabel"])
    assert labels == {"before": {"0", "1"}, "after": {"1"}}


def test_a_consumer_whose_input_stream_is_deleted_says_why_it_stopped(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    running = _failing_consumer(stream_app, kinesalite, consumers, 3, deleted="changes-3")
    described = stream_app.call("GetStream", {"StreamId": "st-changes-3"})
    assert described["Consumers"] == 0 and described["RecordsIn"] == 10
    # No consumer reads it any longer: it says so, rather than RUNNING.
    assert described["Status"] == "FAILED"
    assert described["Message"].startswith(
        f"consumer {running.consumer.id} stopped: ResourceNotFoundException"
    )
    assert "changes-3" in described["Message"]
    assert described["Message"].endswith(
        "no consumer is running: `emrml stream start --id st-changes-3` (StartStream) starts consumers again"
    )

    # The cause fixed, a consumer started again: RUNNING, the earlier consumer's failure no longer shown.
    kinesalite.create("changes-3", 1)
    consumers.append(Running(stream_app.settings, "st-changes-3"))
    described = wait_until(
        lambda: (
            (found := stream_app.call("GetStream", {"StreamId": "st-changes-3"}))["Consumers"] == 1 and found
        ),
        30,
    )
    assert described["Status"] == "RUNNING" and "Message" not in described


def test_an_input_stream_deleted_and_created_again_is_read_from_its_start(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("changes-4", 1)
    kinesalite.create("changes-4-scored", 1)
    kinesalite.put("changes-4", [(record(i), "old") for i in range(10)])
    _start(stream_app, "st-changes-4", "changes-4")
    consumers.append(Running(stream_app.settings, "st-changes-4"))
    wait_until(lambda: _records_in(stream_app, "st-changes-4") == 10, 30)
    stream_app.call("StopStream", {"StreamId": "st-changes-4"})
    consumers[-1].join()

    # The same name, the same shard ids; the checkpoints are sequence numbers of the old stream.
    kinesalite.delete("changes-4")
    kinesalite.create("changes-4", 1)
    kinesalite.put("changes-4", [(record(i), "new") for i in range(5)])
    _start(stream_app, "st-changes-4", "changes-4")
    consumers.append(Running(stream_app.settings, "st-changes-4"))
    wait_until(lambda: _records_in(stream_app, "st-changes-4") == 15, 30)
    keys = [json.loads(item["Data"])["PartitionKey"] for item in kinesalite.read_all("changes-4-scored")]
    assert sorted(keys) == ["new"] * 5 + ["old"] * 10
    new = {item["SequenceNumber"] for item in kinesalite.read_all("changes-4")}
    (lease,) = stream_app.call("GetStream", {"StreamId": "st-changes-4"})["ShardLeases"]
    assert lease["Checkpoint"] in new


def test_a_resharded_input_stream_deleted_and_created_again_has_every_shard_read(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("changes-5", 1)
    kinesalite.create("changes-5-scored", 1)
    kinesis = kinesalite.client()
    kinesis.call(
        "split_shard",
        StreamName="changes-5",
        ShardToSplit="shardId-000000000000",
        NewStartingHashKey=str(2**127),
    )
    wait_until(lambda: kinesis.describe("changes-5")["StreamStatus"] == "ACTIVE", 10)
    kinesalite.put("changes-5", [(record(i), f"old-{i}") for i in range(20)])
    _start(stream_app, "st-changes-5", "changes-5")
    consumers.append(Running(stream_app.settings, "st-changes-5"))
    wait_until(lambda: _records_in(stream_app, "st-changes-5") == 20, 30)
    stream_app.call("StopStream", {"StreamId": "st-changes-5"})
    consumers[-1].join()

    # Created again with 3 shards: shardId-000000000000 is open now (its old lease says SHARD_END), and
    # shards 1 and 2 have no parent (their old leases wait for shard 0).
    kinesalite.delete("changes-5")
    kinesalite.create("changes-5", 3)
    kinesalite.put("changes-5", [(record(i), f"new-{i}") for i in range(30)])
    _start(stream_app, "st-changes-5", "changes-5")
    consumers.append(Running(stream_app.settings, "st-changes-5"))
    wait_until(lambda: _records_in(stream_app, "st-changes-5") == 50, 30)
    keys = [json.loads(item["Data"])["PartitionKey"] for item in kinesalite.read_all("changes-5-scored")]
    assert sorted(keys) == sorted([f"old-{i}" for i in range(20)] + [f"new-{i}" for i in range(30)])
    leases = stream_app.call("GetStream", {"StreamId": "st-changes-5"})["ShardLeases"]
    assert all(lease["ParentShardIds"] == [] for lease in leases)


def test_a_stream_whose_consumer_failed_is_started_again_by_start_stream(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], cleanup: None
) -> None:
    """A stream shown FAILED (its consumer ended by an error; the stream itself is still RUNNING) is
    started again by StartStream, as a stopped one is: consumers start, resume from the checkpoints, and
    the stream is RUNNING again. Retried while they run, StartStream starts none."""
    _failing_consumer(stream_app, kinesalite, consumers, 6, deleted="changes-6-scored")
    failed = stream_app.call("GetStream", {"StreamId": "st-changes-6"})
    assert failed["Status"] == "FAILED"

    # The cause fixed (its output stream back), the user starts it again with the same parameters, which
    # GetStream gives.
    kinesalite.create("changes-6-scored", 1)
    request = {"StreamId": "st-changes-6", "MLModelId": "ml-binary", "Consumers": 1,
               "InputStream": "kinesis://changes-6", "OutputUri": "kinesis://changes-6-scored"}  # fmt: skip
    assert {**failed["StartParameters"], "Consumers": 1} == request
    assert stream_app.call("StartStream", request) == {"StreamId": "st-changes-6", "ConsumersStarted": 1}
    described = wait_until(
        lambda: (
            (found := stream_app.call("GetStream", {"StreamId": "st-changes-6"}))["RecordsIn"] == 15 and found
        ),
        60,
        0.3,
    )
    assert described["Status"] == "RUNNING" and "Message" not in described
    assert described["Consumers"] == 1
    scored = [json.loads(item["Data"])["PartitionKey"] for item in kinesalite.read_all("changes-6-scored")]
    assert sorted(scored, key=int) == [str(i) for i in range(10, 15)]
    assert stream_app.call("StartStream", request) == {"StreamId": "st-changes-6", "ConsumersStarted": 0}
    stream_app.call("StopStream", {"StreamId": "st-changes-6"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-changes-6"})["Status"] == "STOPPED", 30)


def test_a_consumer_that_cannot_start_says_why_on_the_stream(
    stream_app: EmrML, kinesalite: Kinesalite, tmp_path: Path
) -> None:
    """A consumer run on a machine without the model's file (consumers on several machines need it at the
    same location) cannot start: the stream, which no consumer ever read, says FAILED and why, rather than
    RUNNING with nobody reading it, and StartStream would start consumers again."""
    kinesalite.create("changes-7", 1)
    kinesalite.create("changes-7-scored", 1)
    _start(stream_app, "st-changes-7", "changes-7")
    gone = tmp_path / "elsewhere" / "model.bin"
    with stream_app.sessions() as session, session.begin():
        session.execute(update(MLModel).where(MLModel.id == "ml-binary").values(artifact_location=str(gone)))
    running = Running(stream_app.settings, "st-changes-7")
    with pytest.raises(InvalidInputException, match="the file does not exist"):
        running.join()
    described = stream_app.call("GetStream", {"StreamId": "st-changes-7"})
    assert described["Status"] == "FAILED" and described["Consumers"] == 0
    assert described["Message"].startswith(f"consumer {running.consumer.id} could not start: InvalidInput")
    assert str(gone) in described["Message"]


def test_a_consumer_does_not_score_with_a_model_file_edited_into_another_type(
    stream_app: EmrML, kinesalite: Kinesalite, tmp_path: Path
) -> None:
    """ml-binary's file rewritten as a REGRESSION model after the stream started: the consumer refuses it,
    naming the model and the difference, and the stream says so. (The edit is made to a copy, given to this
    test's metastore: the file itself is every stream test's.)"""
    kinesalite.create("changes-8", 1)
    kinesalite.create("changes-8-scored", 1)
    _start(stream_app, "st-changes-8", "changes-8")
    artifact = tmp_path / "edited.zip"
    with stream_app.sessions() as session, session.begin():
        shutil.copyfile(session.get(MLModel, "ml-binary").artifact_location, artifact)
        moved = update(MLModel).where(MLModel.id == "ml-binary").values(artifact_location=str(artifact))
        session.execute(moved)
    retyped(artifact, "REGRESSION")
    running = Running(stream_app.settings, "st-changes-8")
    with pytest.raises(InvalidInputException, match="MLModel 'ml-binary': it holds a REGRESSION model"):
        running.join()
    described = stream_app.call("GetStream", {"StreamId": "st-changes-8"})
    assert described["Status"] == "FAILED"
    assert f"the model file {artifact} is not that of MLModel 'ml-binary'" in described["Message"]
