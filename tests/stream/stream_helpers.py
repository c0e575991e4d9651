"""What the stream tests share: the kinesalite wrapper's folder, a client for it, a small trained model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrml.config import Settings
from emrml.errors import ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.stream.consumer import Consumer
from emrml.stream.kinesis import Kinesis
from raw_models import XWY_SCHEMA

KINESALITE = Path(__file__).resolve().parent / "kinesalite"
SCHEMA = json.dumps(XWY_SCHEMA)


def train_binary(app: EmrML, folder: Path) -> None:
    """``ml-binary``: y is 1 for odd x, told apart by its words too."""
    data = folder / "binary.csv"
    data.write_text(
        "x,words,y\n" + "".join(f"{i},{'good day' if i % 2 else 'bad day'},{i % 2}\n" for i in range(300))
    )
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-binary",
            "DataSpec": {"DataLocationS3": str(data), "DataSchema": SCHEMA},
            "ComputeStatistics": True,
        },
    )
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-binary", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-binary"},
    )
    app.jobs.run_pending()
    assert app.call("GetMLModel", {"MLModelId": "ml-binary"})["Status"] == "COMPLETED"


def record(i: int) -> bytes:
    return json.dumps({"x": str(i), "words": "good day" if i % 2 else "bad day"}).encode()


@dataclass
class Kinesalite:
    endpoint: str
    _client: Kinesis | None = field(default=None, init=False, repr=False)

    def client(self) -> Kinesis:
        """The tests' one client (thread-safe, as botocore's are): each new one loads botocore's service
        model again, a few tenths of a second spent many times in every test."""
        if self._client is None:
            self._client = Kinesis(self.endpoint, "us-east-1")
        return self._client

    def create(self, name: str, shards: int) -> None:
        kinesis = self.client()
        kinesis.call("create_stream", StreamName=name, ShardCount=shards)
        wait_until(lambda: kinesis.describe(name)["StreamStatus"] == "ACTIVE", 10)

    def delete(self, name: str) -> None:
        """Delete a stream and wait until it is gone: kinesalite deletes it after answering (DELETING in
        between), and a stream created again under its name before that is refused as existing."""
        kinesis = self.client()
        kinesis.call("delete_stream", StreamName=name)
        wait_until(lambda: not self._exists(name), 10, 0.02)

    def _exists(self, name: str) -> bool:
        try:
            self.client().describe(name)
        except ResourceNotFoundException:
            return False
        return True

    def put(self, name: str, records: list[tuple[bytes, str]]) -> None:
        self.client().put_records(name, records)

    def read_all(self, name: str) -> list[dict[str, Any]]:
        """Every record of every shard of a stream, from the start."""
        kinesis = self.client()
        out: list[dict[str, Any]] = []
        for shard in kinesis.shards(name):
            iterator = kinesis.iterator(name, shard.shard_id, "TRIM_HORIZON")
            while iterator:
                answer = kinesis.call("get_records", ShardIterator=iterator, Limit=10000)
                out.extend(answer["Records"])
                if not answer["Records"]:
                    break
                iterator = answer.get("NextShardIterator")
        return out


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        time.sleep(interval)


class Running:
    """A consumer on a thread of the test process."""

    def __init__(self, settings: Settings, stream_id: str, sessions: Any = None) -> None:
        self.consumer = Consumer(settings, stream_id, sessions=sessions)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.consumer.run()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 30) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the consumer did not stop"
        if self.error is not None:
            raise self.error
