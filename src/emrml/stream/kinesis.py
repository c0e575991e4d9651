"""The Kinesis client: botocore's ``kinesis`` client with the back-off the service asks of its readers.

``EMRML_KINESIS_ENDPOINT_URL`` points it at any Kinesis-compatible endpoint; credentials and region come
from the standard AWS chain (environment, shared files, instance roles), the region defaulting to
us-east-1 when none is configured. botocore, not boto3: it is already a dependency of the default install.

Kinesis allows 5 GetRecords calls per second per shard: a shard is read at most once per
``MIN_READ_INTERVAL``, and a throttled or failing call backs off exponentially (with jitter) up to
``MAX_BACKOFF`` seconds before it is retried.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.stream import SCHEME, stream_name  # noqa: F401  (re-exported)

T = TypeVar("T")
#: At most 5 reads per second per shard (the Kinesis limit).
MIN_READ_INTERVAL = 0.2
#: Longest wait between two tries of a throttled or failed call.
MAX_BACKOFF = 5.0
#: Errors worth retrying: throttling and the service's passing troubles.
RETRYABLE = {
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
}
#: PutRecords takes at most 500 records and 5 MiB per call.
PUT_RECORDS_MAX = 500
PUT_BYTES_MAX = 5 * 1024 * 1024


class KinesisError(InvalidInputException):
    """Kinesis refused a request; ``code`` is its error code (``ExpiredIteratorException``...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parents: tuple[str, ...]
    #: Whether the shard is closed (split or merged): its records end at a known sequence number.
    closed: bool


class Kinesis:
    """A Kinesis client with retries; one per process (botocore clients are thread-safe)."""

    def __init__(self, endpoint_url: str | None, region: str | None = None) -> None:
        session = botocore.session.get_session()
        region = region or session.get_config_variable("region") or "us-east-1"
        # Our own back-off handles throttling; botocore's standard mode adds its retries of network errors.
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
        self.client: Any = session.create_client(
            "kinesis", endpoint_url=endpoint_url or None, region_name=region, config=config
        )

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        """One API call, retried with back-off while Kinesis throttles; a missing stream is
        ResourceNotFoundException, any other refusal InvalidInputException."""
        return retrying(lambda: getattr(self.client, operation)(**request))

    def describe(self, name: str) -> dict[str, Any]:
        return self.call("describe_stream_summary", StreamName=name)["StreamDescriptionSummary"]

    def shards(self, name: str) -> list[Shard]:
        """Every shard the stream still holds records of, open and closed."""
        shards, token = [], None
        while True:
            page = (
                self.call("list_shards", NextToken=token)
                if token
                else self.call("list_shards", StreamName=name)
            )
            for shard in page["Shards"]:
                parents = tuple(
                    p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
                )
                closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
                shards.append(Shard(shard["ShardId"], parents, closed))
            token = page.get("NextToken")
            if not token:
                return shards

    def iterator(self, name: str, shard_id: str, position: str, **where: Any) -> str | None:
        """A shard iterator (None when the shard no longer exists: trimmed after its retention)."""
        try:
            answer = self.call(
                "get_shard_iterator", StreamName=name, ShardId=shard_id, ShardIteratorType=position, **where
            )
        except ResourceNotFoundException:
            return None
        return answer["ShardIterator"]

    def put_records(self, name: str, records: list[tuple[bytes, str]]) -> None:
        """Write ``(data, partition key)`` records; the ones Kinesis refuses (throttled) are sent again
        until all are in. Calls hold at most 500 records and 5 MiB."""
        for batch in _put_batches(records):
            pending = [{"Data": data, "PartitionKey": key} for data, key in batch]
            delay = 0.05
            while pending:
                answer = self.call("put_records", StreamName=name, Records=pending)
                if not answer.get("FailedRecordCount"):
                    break
                pending = [
                    entry
                    for entry, result in zip(pending, answer["Records"], strict=True)
                    if "ErrorCode" in result
                ]
                delay = _sleep(delay)


#: The clients ``shared`` built in this process, by (endpoint, region).
_shared: dict[tuple[str | None, str | None], Kinesis] = {}
_shared_lock = threading.Lock()


def shared(endpoint_url: str | None, region: str | None = None) -> Kinesis:
    """The process's client for ``endpoint_url`` and ``region``, built on first use: a client costs
    0.1-0.3 s to build (botocore loads the service model again), too much for every StartStream."""
    key = (endpoint_url or None, region or None)
    client = _shared.get(key)
    if client is None:
        with _shared_lock:
            client = _shared.get(key)
            if client is None:
                client = _shared[key] = Kinesis(endpoint_url, region)
    return client


def _forget_shared() -> None:
    """In a forked child: its parent's clients would share their connection pool's sockets with the parent
    (answers read by the wrong process), and the lock may have been held by a thread that is not there."""
    global _shared_lock
    _shared.clear()
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_shared)


def _put_batches(records: list[tuple[bytes, str]]) -> Iterator[list[tuple[bytes, str]]]:
    batch: list[tuple[bytes, str]] = []
    size = 0
    for data, key in records:
        weight = len(data) + len(key.encode())
        if batch and (len(batch) == PUT_RECORDS_MAX or size + weight > PUT_BYTES_MAX):
            yield batch
            batch, size = [], 0
        batch.append((data, key))
        size += weight
    if batch:
        yield batch


def _sleep(delay: float) -> float:
    """Sleep ``delay`` with jitter; returns the next, doubled delay."""
    time.sleep(delay * (0.5 + random.random() / 2))
    return min(delay * 2, MAX_BACKOFF)


def retrying(action: Callable[[], T], attempts: int = 12) -> T:
    delay = 0.1
    for attempt in range(attempts):
        try:
            return action()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if code == "ResourceNotFoundException":
                raise ResourceNotFoundException(f"Kinesis: {message}") from None
            if code not in RETRYABLE or attempt == attempts - 1:
                raise KinesisError(code, f"Kinesis refused the request: {code}: {message}") from None
        except NoCredentialsError:
            raise InvalidInputException(
                "no AWS credentials for Kinesis: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile"
            ) from None
        except BotoCoreError as exc:
            if attempt == attempts - 1:
                raise InvalidInputException(f"Kinesis cannot be reached: {exc}") from None
        delay = _sleep(delay)
    raise AssertionError("unreachable")
