"""Where a stream's predictions and dead letters go: a Kinesis stream, or gzip part files in a directory.

A sink takes micro-batches and says when everything it took is durable (``durable``); the consumer
checkpoints a shard only then, so a crash loses no record (it replays, at least once).

* ``KinesisSink``: PutRecords, each output record keyed by its input's partition key; durable as soon as
  PutRecords accepted every record (refused ones are sent again first).
* ``FileSink``: parts ``part-<UTC time>-<consumer>-<n>.gz`` (dead letters: ``dead-letter-…``, so the two
  never take each other's name when one directory holds both) in the directory (local path, ``file://`` or
  any location ``storage.locations`` writes), each written atomically through ``atomic_write``: invisible
  until complete, then renamed into place. Predictions are CSV in the batch prediction format (a header,
  then ``shardId,sequenceNumber,partitionKey,[tag,]`` and the scores); dead letters are JSON lines. A part
  rolls after ``roll_bytes`` of uncompressed output or ``roll_seconds``; its records are durable then.
  A confined stream's sink opens each part under ``checked`` (``service.confinement.checked_here``): the
  part is written, and renamed, in its folder as opened and checked then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from datetime import UTC, datetime
from typing import BinaryIO, Protocol

from emrml.engine.result_lines import line_bytes
from emrml.errors import InvalidInputException
from emrml.storage.gzipped import Compressor, gzip_compressor
from emrml.storage.locations import atomic_write
from emrml.stream.kinesis import SCHEME, Kinesis, stream_name
from emrml.stream.scoring import DeadLetter, MicroBatchScorer, Scored


class Sink(Protocol):
    def predictions(self, scorer: MicroBatchScorer, scored: Scored) -> None: ...

    def dead_letters(self, letters: list[DeadLetter]) -> None: ...

    def durable(self, force: bool = False) -> bool:
        """Make what was written durable if due (or ``force``); whether all of it is durable now."""
        ...

    def discard(self) -> bool:
        """Drop what is not durable yet; whether there was anything to drop."""
        ...

    def close(self) -> None:
        """Drop what is not durable (a consumer that lost its leases, or is failing)."""
        ...


class KinesisSink:
    def __init__(self, kinesis: Kinesis, uri: str) -> None:
        self.kinesis = kinesis
        self.name = stream_name(uri, "output")

    def predictions(self, scorer: MicroBatchScorer, scored: Scored) -> None:
        if scored.records:
            self.kinesis.put_records(self.name, scorer.json_records(scored))

    def dead_letters(self, letters: list[DeadLetter]) -> None:
        if letters:
            self.kinesis.put_records(self.name, [(d.to_json(), d.record.partition_key) for d in letters])

    def durable(self, force: bool = False) -> bool:
        return True

    def discard(self) -> bool:
        return False  # what PutRecords took is out already

    def close(self) -> None:
        pass


class FileSink:
    def __init__(
        self,
        directory: str,
        consumer: str,
        roll_bytes: int,
        roll_seconds: float,
        prefix: str = "part",
        checked: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.directory = directory if directory.endswith("/") else directory + "/"
        self.checked = checked
        self.prefix = prefix
        self.consumer = consumer
        self.roll_bytes = roll_bytes
        self.roll_seconds = roll_seconds
        self.parts = 0
        self._stack: ExitStack | None = None
        self._file: BinaryIO | None = None
        self._compressor: Compressor | None = None
        self._size = 0
        self._opened = 0.0

    def _open(self, header: bytes) -> None:
        self.parts += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        location = f"{self.directory}{self.prefix}-{stamp}-{self.consumer}-{self.parts:06d}.gz"
        self._stack = ExitStack()
        with self.checked():
            self._file = self._stack.enter_context(atomic_write(location))
        self._compressor = gzip_compressor()
        self._size = 0
        self._opened = time.monotonic()
        self._write(header)

    def _write(self, data: bytes | memoryview) -> None:
        assert self._file is not None and self._compressor is not None
        self._file.write(self._compressor.compress(data))
        self._size += len(data)

    def predictions(self, scorer: MicroBatchScorer, scored: Scored) -> None:
        if scored.records:
            if self._file is None:
                self._open(scorer.header)
            self._write(line_bytes(scorer.csv_lines(scored)))

    def dead_letters(self, letters: list[DeadLetter]) -> None:
        if letters:
            if self._file is None:
                self._open(b"")
            self._write(b"".join(letter.to_json() + b"\n" for letter in letters))

    def durable(self, force: bool = False) -> bool:
        if self._file is None:
            return True
        due = self._size >= self.roll_bytes or time.monotonic() - self._opened >= self.roll_seconds
        if not (force or due):
            return False
        assert self._stack is not None and self._compressor is not None
        self._file.write(self._compressor.flush())
        stack, self._stack, self._file = self._stack, None, None
        stack.close()  # renames the part into place
        return True

    def discard(self) -> bool:
        if self._stack is None:
            return False
        stack, self._stack, self._file = self._stack, None, None
        # Leaving the atomic write with an error removes the temporary part.
        stack.__exit__(InvalidInputException, InvalidInputException("abandoned"), None)
        return True

    def close(self) -> None:
        self.discard()


def open_sink(
    uri: str,
    kinesis: Kinesis,
    consumer: str,
    roll_bytes: int,
    roll_seconds: float,
    prefix: str = "part",
    checked: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> Sink:
    """The sink of ``uri``; ``prefix`` names its file parts (``part``, or ``dead-letter``); ``checked``: the
    block each part is opened in (``FileSink``)."""
    if uri.startswith(SCHEME):
        return KinesisSink(kinesis, uri)
    return FileSink(uri, consumer, roll_bytes, roll_seconds, prefix, checked)
