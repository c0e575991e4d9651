"""One consumer against a real Kinesis API server: every record scored once, checkpoints, stop and
resume, dead letters with their reasons, refusals before anything starts."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import Kinesalite, Running, record, wait_until

from emrml.config import Settings
from emrml.core.predict import Predictor
from emrml.core.record_values import json_record
from emrml.errors import (
    AccessDeniedException,
    IdempotentParameterMismatchException,
    InvalidInputException,
    ResourceNotFoundException,
)
from emrml.service.app import EmrML


def _start(app: EmrML, stream_id: str, **members: object) -> None:
    request = {"StreamId": stream_id, "MLModelId": "ml-binary", "Consumers": 0, **members}
    assert app.call("StartStream", request) == {"StreamId": stream_id, "ConsumersStarted": 0}


def _outputs(kinesalite: Kinesalite, name: str) -> list[dict]:
    return [json.loads(item["Data"]) for item in kinesalite.read_all(name)]


def test_every_record_is_scored_as_batch_prediction_scores_it(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], tmp_path: Path
) -> None:
    kinesalite.create("clicks-1", 2)
    kinesalite.create("clicks-1-scored", 1)
    inputs = [(record(i), f"key-{i % 7}") for i in range(150)]
    inputs += [
        (f"{i},{'good day' if i % 2 else 'bad day'}".encode(), f"key-{i % 7}") for i in range(150, 200)
    ]
    kinesalite.put("clicks-1", inputs)
    _start(stream_app, "st-1", InputStream="kinesis://clicks-1", OutputUri="kinesis://clicks-1-scored")
    consumers.append(Running(stream_app.settings, "st-1"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-1"})["RecordsIn"] == 200, 30)

    outputs = _outputs(kinesalite, "clicks-1-scored")
    sent = {(item["ShardId"], item["SequenceNumber"]) for item in outputs}
    assert len(outputs) == len(sent) == 200
    source = {(r["SequenceNumber"]): r for r in kinesalite.read_all("clicks-1")}
    predictor = Predictor.load(_artifact(stream_app))
    right = 0
    for item in outputs:
        original = source[item["SequenceNumber"]]
        assert item["PartitionKey"] == original["PartitionKey"]
        assert item["MLModelId"] == "ml-binary"
        data = original["Data"].decode()
        values = (
            json.loads(data)
            if data.startswith("{")
            else dict(zip(["x", "words"], data.split(","), strict=True))
        )
        expected = predictor.predict(values)
        assert item["Prediction"]["predictedLabel"] == expected["predictedLabel"]
        label = expected["predictedLabel"]
        assert item["Prediction"]["predictedScores"][label] == pytest.approx(
            expected["predictedScores"][label], abs=1e-9
        )
        right += item["Prediction"]["predictedLabel"] == str(int(values["x"]) % 2)
    assert right >= 190  # the model learned the rule: the answers are right, not merely equal

    described = stream_app.call("GetStream", {"StreamId": "st-1"})
    assert described["RecordsOut"] == 200 and described["RecordsFailed"] == 0
    checkpoints = {lease["ShardId"]: lease.get("Checkpoint") for lease in described["ShardLeases"]}
    last = {}
    for item in outputs:
        last[item["ShardId"]] = max(last.get(item["ShardId"], 0), int(item["SequenceNumber"]))
    assert {shard: int(seq) for shard, seq in checkpoints.items()} == last

    stream_app.call("StopStream", {"StreamId": "st-1"})
    consumers[0].join()
    assert stream_app.call("GetStream", {"StreamId": "st-1"})["Status"] == "STOPPED"


def _artifact(app: EmrML) -> Path:
    from emrml.service.rows import MLModel

    with app.sessions() as session:
        return Path(session.get(MLModel, "ml-binary").artifact_location)


def test_stop_then_start_resumes_from_the_checkpoints(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("clicks-2", 2)
    kinesalite.create("clicks-2-scored", 1)
    kinesalite.put("clicks-2", [(record(i), str(i)) for i in range(60)])
    _start(stream_app, "st-2", InputStream="kinesis://clicks-2", OutputUri="kinesis://clicks-2-scored")
    consumers.append(Running(stream_app.settings, "st-2"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-2"})["RecordsIn"] == 60, 30)
    stream_app.call("StopStream", {"StreamId": "st-2"})
    consumers[-1].join()
    described = stream_app.call("GetStream", {"StreamId": "st-2"})
    assert described["Status"] == "STOPPED" and described["Consumers"] == 0
    assert all("Owner" not in lease for lease in described["ShardLeases"])  # given up on stopping

    kinesalite.put("clicks-2", [(record(i), str(i)) for i in range(60, 100)])
    _start(stream_app, "st-2", InputStream="kinesis://clicks-2", OutputUri="kinesis://clicks-2-scored")
    assert stream_app.call("GetStream", {"StreamId": "st-2"})["Status"] == "RUNNING"
    consumers.append(Running(stream_app.settings, "st-2"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-2"})["RecordsIn"] == 100, 30)
    source = {item["SequenceNumber"]: json.loads(item["Data"]) for item in kinesalite.read_all("clicks-2")}
    outputs = _outputs(kinesalite, "clicks-2-scored")
    assert sorted(int(source[output["SequenceNumber"]]["x"]) for output in outputs) == list(range(100))


def test_unreadable_records_go_to_the_dead_letter_output_with_the_reason(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], tmp_path: Path
) -> None:
    kinesalite.create("clicks-3", 1)
    kinesalite.create("clicks-3-scored", 1)
    bad = {
        b"x" * 1_000_100: "over the 1000000-byte (1 MB) limit",
        b"\xff\xfe{}": "not valid UTF-8 (byte 0)",
        b'["1", "good day"]': "the JSON is not an object but an array",
        b'{"x": [1]}': "Record: the value of 'x' is a list",
        b'{"x": "1"': "invalid JSON",
        b"1,good day,1,extra": "the CSV line has 4 fields; the model's schema has 3 (or 2 without the target",
    }
    # A producer's numbers and booleans are values, read as `emrml predict --record` reads them.
    numbers = b'{"x": 7, "words": true}'
    records = [(record(0), "a"), *[(data, "b") for data in bad], (b"5,good day", "c"), (b"6,bad day,0", "c")]
    records.append((numbers, "d"))
    kinesalite.put("clicks-3", records)
    dead_letters = tmp_path / "dead"
    _start(
        stream_app,
        "st-3",
        InputStream="kinesis://clicks-3",
        OutputUri="kinesis://clicks-3-scored",
        DeadLetterUri=str(dead_letters),
    )
    consumers.append(Running(stream_app.settings, "st-3"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-3"})["RecordsIn"] == len(records), 30)
    described = stream_app.call("GetStream", {"StreamId": "st-3"})
    assert (described["RecordsOut"], described["RecordsFailed"]) == (4, len(bad))
    outputs = _outputs(kinesalite, "clicks-3-scored")
    assert len(outputs) == 4
    [scored] = [output["Prediction"] for output in outputs if output["PartitionKey"] == "d"]
    expected = Predictor.load(_artifact(stream_app)).predict(json_record(numbers.decode(), "--record"))
    label = expected["predictedLabel"]
    assert scored["predictedLabel"] == label
    assert scored["predictedScores"][label] == pytest.approx(expected["predictedScores"][label], abs=1e-9)
    letters = [
        json.loads(line)
        for part in sorted(dead_letters.glob("dead-letter-*.gz"))
        for line in gzip.decompress(part.read_bytes()).splitlines()
    ]
    assert len(letters) == len(bad)
    for letter in letters:
        data = base64.b64decode(letter["Data"])
        assert bad[data] in letter["Reason"], letter["Reason"]
        assert letter["PartitionKey"] == "b"


def test_predictions_and_dead_letters_in_one_directory_keep_every_part(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], tmp_path: Path
) -> None:
    kinesalite.create("clicks-one-dir", 1)
    kinesalite.put("clicks-one-dir", [(record(i), "good") for i in range(5)] + [(b"[]", "bad")] * 3)
    folder = tmp_path / "everything"
    _start(stream_app, "st-one-dir", InputStream="kinesis://clicks-one-dir", OutputUri=str(folder),
           DeadLetterUri=str(folder))  # fmt: skip
    consumers.append(Running(stream_app.settings, "st-one-dir"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-one-dir"})["RecordsIn"] == 8, 30)
    stream_app.call("StopStream", {"StreamId": "st-one-dir"})
    consumers[-1].join()
    # One micro-batch wrote a predictions part and a dead-letter part in the same second.
    predictions = [gzip.decompress(p.read_bytes()).decode() for p in sorted(folder.glob("part-*.gz"))]
    letters = [gzip.decompress(p.read_bytes()).decode() for p in sorted(folder.glob("dead-letter-*.gz"))]
    assert sum(len(text.splitlines()) - 1 for text in predictions) == 5  # each part has a header
    assert [json.loads(line)["PartitionKey"] for text in letters for line in text.splitlines()] == ["bad"] * 3


def test_bad_starts_are_refused_before_anything_starts(stream_app: EmrML, kinesalite: Kinesalite) -> None:
    kinesalite.create("clicks-4", 1)
    base = {"StreamId": "st-4", "MLModelId": "ml-binary", "Consumers": 0, "InputStream": "kinesis://clicks-4"}
    cases = [
        ({"MLModelId": "ml-nothing"}, "no such MLModel"),
        ({"MLModelId": "ds-binary"}, "no such MLModel"),
        ({"InputStream": "kinesis://no-such-stream"}, "does not exist"),
        ({"InputStream": "clicks-4"}, "must be kinesis://NAME"),
        ({"OutputUri": "kinesis://no-such-output"}, "does not exist"),
        ({"OutputUri": "ftp://somewhere/"}, "use a local path"),
        ({"StartingPosition": "AT_SEQUENCE"}, "StartingPosition must be one of"),
        ({"StartingPosition": "AT_TIMESTAMP"}, r"required with StartingPosition AT_TIMESTAMP$"),
        *(
            ({"StartingPosition": "AT_TIMESTAMP", "StartingTimestamp": bad}, r"StartingTimestamp .*got")
            for bad in (float("nan"), float("inf"), -1.0, "1700000000")
        ),
        *(
            ({"StartingTimestamp": 1700000000, **position}, f"StartingPosition is {name}$")
            for position, name in (({}, "TRIM_HORIZON"), ({"StartingPosition": "LATEST"}, "LATEST"))
        ),
        ({"RecordFormat": "xml"}, "RecordFormat must be one of"),
        ({"Consumers": 1000}, "Consumers must be"),
        ({"StreamId": "bad id!"}, "StreamId 'bad id!' does not match the pattern"),
        *(({"StreamId": dots}, f"StreamId '{re.escape(dots)}' is not allowed") for dots in (".", "..")),
        ({"MLModelId": "ml/binary"}, "MLModelId 'ml/binary' does not match the pattern"),
        ({"MLModelId": "m" * 65}, "MLModelId must have at most 64 characters"),
    ]
    for change, message in cases:
        request = {**base, "OutputUri": "kinesis://clicks-4", **change}
        with pytest.raises(InvalidInputException, match=message):
            stream_app.call("StartStream", request)
    stream_app.call(
        "CreateMLModel",
        {"MLModelId": "ml-pending", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-binary"},
    )
    with pytest.raises(InvalidInputException, match="is PENDING; a stream needs a COMPLETED model"):
        stream_app.call("StartStream", {**base, "MLModelId": "ml-pending", "OutputUri": "kinesis://clicks-4"})
    assert stream_app.call("DescribeStreams", {})["Results"] == []
    with pytest.raises(ResourceNotFoundException):
        stream_app.call("GetStream", {"StreamId": "st-4"})
    with pytest.raises(ResourceNotFoundException):
        stream_app.call("StopStream", {"StreamId": "st-4"})
    stream_app.call("StartStream", {**base, "OutputUri": "kinesis://clicks-4"})
    with pytest.raises(IdempotentParameterMismatchException):
        stream_app.call("StartStream", {**base, "OutputUri": str(Path("/tmp/elsewhere"))})


def test_predictions_and_dead_letters_as_parts_on_s3(
    stream_settings: Settings, kinesalite: Kinesalite, consumers: list[Running], s3: Any
) -> None:
    import dataclasses

    settings = dataclasses.replace(stream_settings, s3_endpoint_url=s3.endpoint_url, s3_sse="AES256")
    app = EmrML(settings)
    try:
        kinesalite.create("clicks-s3", 1)
        records = [(record(i), f"key-{i}") for i in range(40)] + [(b'{"x": "1"', "bad")]
        kinesalite.put("clicks-s3", records)
        _start(
            app,
            "st-s3",
            InputStream="kinesis://clicks-s3",
            OutputUri=s3.uri("scored/"),
            DeadLetterUri=s3.uri("dead/"),
        )
        consumers.append(Running(settings, "st-s3"))
        wait_until(lambda: app.call("GetStream", {"StreamId": "st-s3"})["RecordsIn"] == len(records), 30)
        app.call("StopStream", {"StreamId": "st-s3"})
        consumers[0].join()
        parts = s3.list_keys("scored/")
        assert parts and all(key.rsplit("/", 1)[1].startswith("part-") for key in parts)
        head = s3.client.head_object(Bucket=s3.bucket, Key=parts[0])
        assert head["ServerSideEncryption"] == "AES256"
        lines = [line for key in parts for line in gzip.decompress(s3.get(key)).decode().splitlines()]
        rows = [line for line in lines if not line.startswith("shardId,")]
        assert len(rows) == 40 and {row.split(",")[2] for row in rows} == {f"key-{i}" for i in range(40)}
        (dead,) = [json.loads(gzip.decompress(s3.get(key))) for key in s3.list_keys("dead/")]
        assert dead["PartitionKey"] == "bad" and "invalid JSON" in dead["Reason"]
    finally:
        app.close()


def _lease_has_read(app: EmrML, stream_id: str) -> bool:
    """Whether the consumer holds the shard's lease and has read it once (its lag is known)."""
    leases = app.call("GetStream", {"StreamId": stream_id})["ShardLeases"]
    return bool(leases) and all(lease.get("MillisBehindLatest") is not None for lease in leases)


def test_latest_scores_only_what_arrives_after_the_start(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("clicks-latest", 1)
    kinesalite.create("clicks-latest-scored", 1)
    kinesalite.put("clicks-latest", [(record(i), "before") for i in range(20)])
    _start(stream_app, "st-latest", InputStream="kinesis://clicks-latest",
           OutputUri="kinesis://clicks-latest-scored", StartingPosition="LATEST")  # fmt: skip
    consumers.append(Running(stream_app.settings, "st-latest"))
    wait_until(lambda: _lease_has_read(stream_app, "st-latest"), 30)
    kinesalite.put("clicks-latest", [(record(i), "after") for i in range(100, 110)])
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-latest"})["RecordsIn"] == 10, 30)
    assert {item["PartitionKey"] for item in _outputs(kinesalite, "clicks-latest-scored")} == {"after"}


def test_latest_loses_nothing_written_after_the_start_before_a_consumer_reads_or_across_a_restart(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("clicks-latest-2", 1)
    kinesalite.create("clicks-latest-2-scored", 1)
    kinesalite.put("clicks-latest-2", [(record(i), "before") for i in range(5)])
    start = {"InputStream": "kinesis://clicks-latest-2", "OutputUri": "kinesis://clicks-latest-2-scored",
             "StartingPosition": "LATEST"}  # fmt: skip
    _start(stream_app, "st-latest-2", **start)
    # Started, but no consumer yet (``--consumers 0``, consumers joining from other machines).
    kinesalite.put("clicks-latest-2", [(record(i), "waiting") for i in range(100, 104)])
    consumers.append(Running(stream_app.settings, "st-latest-2"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-latest-2"})["RecordsIn"] == 4, 30)
    stream_app.call("StopStream", {"StreamId": "st-latest-2"})
    consumers[-1].join()
    kinesalite.put("clicks-latest-2", [(record(i), "stopped") for i in range(200, 203)])
    _start(stream_app, "st-latest-2", **start)
    consumers.append(Running(stream_app.settings, "st-latest-2"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-latest-2"})["RecordsIn"] == 7, 30)
    keys = [item["PartitionKey"] for item in _outputs(kinesalite, "clicks-latest-2-scored")]
    assert sorted(keys) == ["stopped"] * 3 + ["waiting"] * 4


def test_a_latest_stream_stopped_before_any_record_came_scores_what_came_while_it_was_stopped(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("clicks-latest-3", 1)
    kinesalite.create("clicks-latest-3-scored", 1)
    start = {"InputStream": "kinesis://clicks-latest-3", "OutputUri": "kinesis://clicks-latest-3-scored",
             "StartingPosition": "LATEST"}  # fmt: skip
    _start(stream_app, "st-latest-3", **start)
    consumers.append(Running(stream_app.settings, "st-latest-3"))
    wait_until(lambda: _lease_has_read(stream_app, "st-latest-3"), 30)
    stream_app.call("StopStream", {"StreamId": "st-latest-3"})
    consumers[-1].join()
    kinesalite.put("clicks-latest-3", [(record(i), "stopped") for i in range(3)])
    _start(stream_app, "st-latest-3", **start)
    consumers.append(Running(stream_app.settings, "st-latest-3"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-latest-3"})["RecordsIn"] == 3, 30)
    assert [item["PartitionKey"] for item in _outputs(kinesalite, "clicks-latest-3-scored")] == [
        "stopped"
    ] * 3


def test_at_timestamp_scores_what_arrived_from_that_moment(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    import time

    kinesalite.create("clicks-time", 1)
    kinesalite.create("clicks-time-scored", 1)
    kinesalite.put("clicks-time", [(record(i), "early") for i in range(15)])
    time.sleep(1.2)  # arrival times are kept to the millisecond: a clear gap between the two groups
    moment = time.time()
    time.sleep(0.2)
    kinesalite.put("clicks-time", [(record(i), "late") for i in range(100, 108)])
    _start(stream_app, "st-time", InputStream="kinesis://clicks-time", OutputUri="kinesis://clicks-time-scored",
           StartingPosition="AT_TIMESTAMP", StartingTimestamp=moment)  # fmt: skip
    consumers.append(Running(stream_app.settings, "st-time"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-time"})["RecordsIn"] == 8, 30)
    assert {item["PartitionKey"] for item in _outputs(kinesalite, "clicks-time-scored")} == {"late"}


def test_a_model_without_its_model_file_is_refused_before_anything_starts(
    stream_app: EmrML, kinesalite: Kinesalite
) -> None:
    kinesalite.create("clicks-nofile", 1)
    artifact = _artifact(stream_app)
    hidden = artifact.with_name(artifact.name + ".away")
    artifact.rename(hidden)
    try:
        stream = "kinesis://clicks-nofile"
        request = {"StreamId": "st-nofile", "MLModelId": "ml-binary", "Consumers": 0,
                   "InputStream": stream, "OutputUri": stream}  # fmt: skip
        with pytest.raises(InvalidInputException, match="has no schema or model file to score with"):
            stream_app.call("StartStream", request)
        assert stream_app.call("DescribeStreams", {})["Results"] == []
    finally:
        hidden.rename(artifact)


def test_a_user_reads_and_writes_kinesis_streams_only_where_storage_is_granted(
    stream_app: EmrML, kinesalite: Kinesalite
) -> None:
    # Kinesis streams are storage: without a grant a user could read any stream the server's credentials
    # can (copying it to a stream or file of theirs) and write into any other.
    kinesalite.create("payroll", 1)
    kinesalite.create("mine-scored", 1)
    access = stream_app.access
    access.create_user("mallory", ("users",))
    access.create_group("streamers")
    access.add_member("streamers", "mallory")
    access.add_statement("streamers", {"Effect": "Allow", "Action": ["StartStream"], "Resource": ["*"]})
    caller = f"arn:aws:iam::{stream_app.settings.account_id}:user/mallory"
    base = {"StreamId": "st-grants", "MLModelId": "ml-binary", "Consumers": 0}

    def refusal(**members: str) -> str:
        with pytest.raises(AccessDeniedException) as refused:
            stream_app.call("StartStream", {**base, **members}, caller=caller, remote=True)
        return refused.value.message

    read = refusal(InputStream="kinesis://payroll", OutputUri="kinesis://mine-scored")
    assert read.endswith("storage:Read on resource: kinesis://payroll"), read
    # Refused before the stream is looked up: a missing stream is refused the same way.
    missing = refusal(InputStream="kinesis://no-such-stream", OutputUri="kinesis://mine-scored")
    assert missing.endswith("storage:Read on resource: kinesis://no-such-stream"), missing
    access.add_statement(
        "streamers", {"Effect": "Allow", "Action": ["storage:Read"], "Resource": ["kinesis://payroll"]}
    )
    write = refusal(InputStream="kinesis://payroll", OutputUri="kinesis://mine-scored")
    assert write.endswith("storage:Write on resource: kinesis://mine-scored"), write
    access.add_statement(
        "streamers", {"Effect": "Allow", "Action": ["storage:Write"], "Resource": ["kinesis://mine-*"]}
    )
    dead = refusal(
        InputStream="kinesis://payroll", OutputUri="kinesis://mine-scored", DeadLetterUri="kinesis://payroll"
    )
    assert dead.endswith("storage:Write on resource: kinesis://payroll"), dead
    assert stream_app.call("DescribeStreams", {})["Results"] == []
    started = stream_app.call(
        "StartStream",
        {**base, "InputStream": "kinesis://payroll", "OutputUri": "kinesis://mine-scored"},
        caller=caller,
        remote=True,
    )
    assert started == {"StreamId": "st-grants", "ConsumersStarted": 0}
