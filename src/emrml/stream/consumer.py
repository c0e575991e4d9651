"""A stream consumer: holds shard leases, reads their records, scores and writes them, checkpoints.

One consumer is one process with one thread: it goes round its shards, reading each at most 5 times a
second (the Kinesis limit) and less often while a shard is idle; a micro-batch is one GetRecords answer.
Every ``lease_seconds / 3`` it renews its leases, adds the leases of new shards (resharding), takes or
steals leases to balance them (``leases``), reports itself in ``stream_consumers`` and reads the stream's
status: STOPPING makes it finish the batch in hand, make its outputs durable, checkpoint, give its leases
up and exit. SIGTERM and SIGINT (Ctrl-C) do the same.

**Nothing lost.** A shard's checkpoint moves to a sequence number only once every output of the records up
to it is durable. A consumer that dies loses nothing but its unfinished outputs; whoever takes its leases
starts after their checkpoints, so the records since then are scored again: a duplicate looks like the
same input ``(ShardId, SequenceNumber)`` appearing twice in the outputs, at most one micro-batch (or, for
file outputs, one unrolled part) per takeover.

**Order.** A child shard (after a split or merge) is read only when each of its parents is finished
(checkpointed ``SHARD_END``), so the records of a partition key come out in the order they went in.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from emrml.config import Settings
from emrml.core.predict import Predictor
from emrml.errors import AccessDeniedException, AmazonMLError, InvalidInputException
from emrml.service.confinement import checked_here
from emrml.service.metastore import Sessions, now, open_engine, session_factory
from emrml.service.rows import MLModel, Stream, StreamConsumer
from emrml.service.stream_status import settle_stopping
from emrml.service.streams import ConsumerChecks, check_destinations
from emrml.stream.kinesis import MAX_BACKOFF, MIN_READ_INTERVAL, Kinesis, KinesisError, stream_name
from emrml.stream.leases import SHARD_END, Lease, LeaseTable
from emrml.stream.outputs import open_sink
from emrml.stream.scoring import MicroBatchScorer, Record
from emrml.stream.stop_watch import StopWatch

log = logging.getLogger(__name__)
#: Shards are listed again (to find the children of a split or merge) every this many renewals.
SHARD_SYNC_EVERY = 3


@dataclass
class ShardState:
    """What a consumer knows of a shard whose lease it holds."""

    counter: int
    checkpoint: str | None
    parents: tuple[str, ...]
    iterator: str | None = None
    #: The last record read: where to resume when an iterator expires.
    last_read: str | None = None
    #: The last record written (to sinks that may not have made it durable yet).
    pending: str | None = None
    #: The first record written since the last checkpoint: where to read again from if the outputs not yet
    #: durable are dropped (``Consumer._lose``).
    first_pending: str | None = None
    #: Read again from this record (inclusive) at the next iterator: set when those outputs were dropped.
    resume_at: str | None = None
    #: No record will come: the shard is closed and read to its end.
    ended: bool = False
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    millis_behind: int | None = None
    next_read: float = 0.0


def consumer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Consumer:
    """One consumer of stream ``stream_id``; ``run()`` consumes until the stream stops or ``stop()``."""

    def __init__(self, settings: Settings, stream_id: str, *, sessions: Sessions | None = None) -> None:
        self.settings = settings
        self.stream_id = stream_id
        self.id = consumer_id()
        self._engine = None
        if sessions is None:
            self._engine = open_engine(settings.database_url)
            sessions = session_factory(self._engine)
        self.sessions = sessions
        self.lease_seconds = settings.stream_lease_seconds
        self.leases = LeaseTable(sessions, stream_id, self.id, self.lease_seconds)
        self.held: dict[str, ShardState] = {}
        self.finished: set[str] = set()
        self.known: set[str] = set()
        self.valid_until = 0.0
        self._stop = threading.Event()
        self._renewals = 0
        self._records = 0
        self._rate_since = time.monotonic()
        #: Why the consumer ended, when an error ended it (``_record_failure``).
        self._failure: str | None = None
        #: Set once ``run`` is done, its shutdown included (``StopWatch``).
        self._done = threading.Event()

    def stop(self) -> None:
        """Ask the consumer to finish its batch, checkpoint, give its leases up and return (thread-safe)."""
        self._stop.set()

    # --- set-up ------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        with self.sessions() as session:
            stream = session.get(Stream, self.stream_id)
            if stream is None:
                raise InvalidInputException(f"stream {self.stream_id!r} does not exist")
            if stream.status != "RUNNING":
                # It would stop at once, without a word: a stopped stream is started, not run.
                raise InvalidInputException(
                    f"stream {self.stream_id!r} is {stream.status}: consumers run only a RUNNING stream; "
                    f"`emrml stream start --id {self.stream_id}` starts it again"
                )
            model = session.get(MLModel, stream.ml_model_id)
        if model is None or model.status != "COMPLETED" or not model.artifact_location:
            raise InvalidInputException(
                f"stream {self.stream_id!r}: model {stream.ml_model_id!r} is not usable"
            )
        self.stream = stream
        self.checks = ConsumerChecks.of(self.sessions, self.settings)
        check_destinations(self.checks, stream)  # as StartStream: what changed since is refused here
        predictor = Predictor.load(
            Path(model.artifact_location), score_threshold=model.score_threshold, expected=model.expected()
        )
        self.scorer = MicroBatchScorer(predictor, model.id, stream.record_format)
        settings = self.settings
        self.kinesis = Kinesis(settings.kinesis_endpoint_url, settings.kinesis_region)
        self.input = stream_name(stream.input_uri, "input")
        short = self.id.rsplit(":", 1)[-1]
        # A confined stream writes the folders its request named as a confined job writes its results, each
        # part checked in its folder as opened; the default dead-letter folder is emrml's own, in the home.
        named_dead_letter = "DeadLetterUri" in json.loads(stream.request)
        checked = partial(checked_here, settings) if stream.confined else nullcontext
        sinks = (
            (stream.output_uri, "part", checked),
            (stream.dead_letter_uri, "dead-letter", checked if named_dead_letter else nullcontext),
        )
        roll = (settings.stream_roll_bytes, settings.stream_roll_seconds)
        self.output, self.dead_letter = (
            open_sink(uri, self.kinesis, short, *roll, prefix, guard) for uri, prefix, guard in sinks
        )
        moment = now()
        with self.sessions() as session, session.begin():
            session.add(
                StreamConsumer(
                    id=self.id,
                    stream_id=self.stream_id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    started_at=moment,
                    heartbeat_at=moment,
                    status="RUNNING",
                    records_per_second=0.0,
                )
            )
            # What an earlier consumer's failure left on the stream: told by its own row from now on.
            session.execute(
                update(Stream)
                .where(Stream.id == self.stream_id, Stream.status == "RUNNING", Stream.message.is_not(None))
                .values(message=None)
            )

    # --- the loop ----------------------------------------------------------------------------------------

    def run(
        self, on_hung: Callable[[], None] | None = None, on_started: Callable[[], None] | None = None
    ) -> None:
        """Consume until the stream stops or ``stop()``. ``on_hung``: called (on another thread) when the
        consumer, asked to stop, has not ended ``STOP_GRACE_LEASES`` lease times later, once that is
        recorded; a consumer process passes one that ends the process (``StopWatch``). ``on_started``:
        called once the consumer is set up and about to consume (not when it could not start)."""
        try:
            self._prepare()
        except Exception as exc:
            self._record_start_failure(exc)
            raise
        log.info("consumer %s of stream %s started", self.id, self.stream_id)
        if on_started is not None:
            on_started()
        if on_hung is not None:
            watched = StopWatch(
                self.sessions, self.stream_id, self.id, self.lease_seconds, self._stop, self._done
            )
            watch = threading.Thread(target=watched.run, args=(on_hung,), name="emrml-stop-watch")
            watch.daemon = True
            watch.start()
        try:
            self._loop()
        except Exception as exc:
            self._record_failure(exc)
            raise
        finally:
            try:
                self._shutdown()
            finally:
                self._done.set()

    def _loop(self) -> None:
        interval = max(self.lease_seconds / 3, 0.05)
        next_maintenance = 0.0
        while not self._stop.is_set():
            moment = time.monotonic()
            if moment >= next_maintenance or moment >= self.valid_until:
                self._maintain()
                next_maintenance = time.monotonic() + interval
                if self._stop.is_set():
                    break
            worked = False
            if time.monotonic() < self.valid_until:
                for shard_id, state in list(self.held.items()):
                    if self._stop.is_set():
                        break
                    if state.ended or state.next_read > time.monotonic() or not self._parents_done(state):
                        continue
                    try:
                        worked = self._read(shard_id, state) or worked
                    except KinesisError as exc:
                        # Reading failed after the client's retries: this shard waits, the others go on.
                        log.warning("consumer %s: shard %s: %s", self.id, shard_id, exc.message)
                        state.iterator = None
                        state.next_read = time.monotonic() + MAX_BACKOFF
                self._commit()
            if not worked:
                upcoming = [s.next_read for s in self.held.values() if not s.ended] + [next_maintenance]
                self._stop.wait(min(max(min(upcoming) - time.monotonic(), 0.01), 0.5))

    def _parents_done(self, state: ShardState) -> bool:
        # A parent without a lease has left the stream (past its retention): nothing of it is left to read.
        return all(parent in self.finished or parent not in self.known for parent in state.parents)

    def _iterator(self, shard_id: str, state: ShardState) -> str | None:
        if state.resume_at and not state.last_read:
            return self.kinesis.iterator(
                self.input, shard_id, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=state.resume_at
            )
        if state.last_read or (state.checkpoint and state.checkpoint != SHARD_END):
            after = state.last_read or state.checkpoint
            try:
                return self.kinesis.iterator(
                    self.input, shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after
                )
            except KinesisError as exc:
                if exc.code != "InvalidArgumentException":
                    raise
                # A sequence number Kinesis gave is refused only when it "did not come from this stream":
                # the stream was deleted and created again under its name. None of its records was read:
                # they are read from the starting position (the checkpoint moves with the first ones).
                log.warning("consumer %s: shard %s: %s; reading it anew", self.id, shard_id, exc.message)
                state.last_read = state.checkpoint = None
        position = self.stream.starting_position
        if state.parents:
            position = "TRIM_HORIZON"  # a child holds only records written after its parents ended
        elif position == "LATEST" and self.stream.starting_timestamp is not None:
            position = "AT_TIMESTAMP"  # the moment of the first start (``service.streams``)
        if position == "AT_TIMESTAMP":
            timestamp = datetime.fromtimestamp(self.stream.starting_timestamp or 0.0, UTC)
            return self.kinesis.iterator(self.input, shard_id, position, Timestamp=timestamp)
        return self.kinesis.iterator(self.input, shard_id, position)

    def _read(self, shard_id: str, state: ShardState) -> bool:
        """Read, score and write one micro-batch of a shard; whether it had records."""
        if state.iterator is None:
            state.iterator = self._iterator(shard_id, state)
            if state.iterator is None:
                state.ended = True  # the shard is gone
                return False
        try:
            answer = self.kinesis.call(
                "get_records", ShardIterator=state.iterator, Limit=self.settings.stream_batch_records
            )
        except KinesisError as exc:
            if exc.code != "ExpiredIteratorException":
                raise
            state.iterator = None
            return False
        records = [
            Record(
                shard_id,
                item["SequenceNumber"],
                item["PartitionKey"],
                item["Data"],
                item["ApproximateArrivalTimestamp"].timestamp(),
            )
            for item in answer["Records"]
        ]
        state.millis_behind = answer.get("MillisBehindLatest")
        moment = time.monotonic()
        if records:
            scored, dead = self.scorer.score(records)
            self.output.predictions(self.scorer, scored)
            self.dead_letter.dead_letters(dead)
            state.first_pending = state.first_pending or records[0].sequence_number
            state.last_read = state.pending = records[-1].sequence_number
            state.resume_at = None
            state.counts[0] += len(records)
            state.counts[1] += len(scored.records)
            state.counts[2] += len(dead)
            self._records += len(records)
            state.next_read = moment + MIN_READ_INTERVAL
        else:
            state.next_read = moment + max(self.settings.stream_idle_seconds, MIN_READ_INTERVAL)
        # Moved on only once the batch is written: a failure above reads the same records again.
        state.iterator = answer.get("NextShardIterator")
        if state.iterator is None:
            state.ended = True
        return bool(records)

    def _commit(self, force: bool = False) -> None:
        """Checkpoint every shard whose outputs are durable (all are, or none: the sinks are shared)."""
        due = [(s, st) for s, st in self.held.items() if st.pending or st.ended or any(st.counts)]
        if not due:
            return
        if not (self.output.durable(force) & self.dead_letter.durable(force)):
            return
        for shard_id, state in due:
            sequence = SHARD_END if state.ended else state.pending
            if sequence is None:
                continue
            counter = self.leases.checkpoint(
                shard_id,
                state.counter,
                sequence,
                tuple(state.counts),
                state.millis_behind,  # type: ignore[arg-type]
            )
            if counter is None:
                log.warning("consumer %s lost the lease of %s before its checkpoint", self.id, shard_id)
                del self.held[shard_id]
                continue
            state.counter, state.checkpoint, state.pending, state.counts = counter, sequence, None, [0, 0, 0]
            state.first_pending = None
            if state.ended:
                self.finished.add(shard_id)
                self.leases.release(shard_id, counter)
                del self.held[shard_id]

    # --- leases ------------------------------------------------------------------------------------------

    def _maintain(self) -> None:
        """Renew, balance and find new shards; a metastore that does not answer ends the leases' validity
        (``valid_until`` is not moved), so the consumer stops reading before anyone can take over."""
        started = time.monotonic()
        try:
            self._check_status()
            for shard_id, state in list(self.held.items()):
                counter = self.leases.renew(shard_id, state.counter, state.millis_behind)
                if counter is None:
                    log.warning("consumer %s lost the lease of %s", self.id, shard_id)
                    self._lose(shard_id)
                else:
                    state.counter = counter
            if self._renewals % SHARD_SYNC_EVERY == 0 or any(s.ended for s in self.held.values()):
                try:
                    self.leases.add_shards(self.kinesis.shards(self.input))
                except KinesisError as exc:  # Kinesis down a while: the shards known so far go on
                    log.warning("consumer %s cannot list the shards: %s", self.id, exc.message)
            self._renewals += 1
            self._balance(self.leases.leases())
            self._heartbeat()
        except SQLAlchemyError as exc:
            log.warning(
                "consumer %s cannot reach the metastore (%s); its leases lapse",
                self.id,
                exc.__class__.__name__,
            )
            return
        self.valid_until = started + self.lease_seconds / 2

    def _check_status(self) -> None:
        """Stop when the stream is no longer RUNNING, or stop the stream when its model can no longer score
        (deleted: Predict refuses it too); follow a new BINARY cut-off (UpdateMLModel), as Predict does."""
        with self.sessions() as session:
            status = session.scalar(select(Stream.status).where(Stream.id == self.stream_id))
            model = session.execute(
                select(MLModel.status, MLModel.score_threshold).where(MLModel.id == self.stream.ml_model_id)
            ).first()
        try:  # at every renewal: the stream writes no longer than a lease once it may not
            check_destinations(self.checks, self.stream)
        except AccessDeniedException as exc:
            self.valid_until = 0.0  # ``_shutdown`` then drops the outputs not yet durable: none is published
            raise AccessDeniedException(f"{exc.message}; the stream stopped reading and writing") from None
        if status != "RUNNING":
            self._stop.set()
        elif model is None or model.status != "COMPLETED":
            state = "DELETED" if model is None else model.status
            self._halt(f"the stream stopped: its MLModel {self.stream.ml_model_id!r} is {state}")
        elif model.score_threshold is not None and self.scorer.predictor.score_threshold is not None:
            self.scorer.predictor.score_threshold = float(model.score_threshold)

    def _halt(self, message: str) -> None:
        """Stop the stream (every consumer of it) with ``message`` for GetStream."""
        log.warning("consumer %s: %s", self.id, message)
        moment = now()
        with self.sessions() as session, session.begin():
            session.execute(
                update(Stream)
                .where(Stream.id == self.stream_id, Stream.status == "RUNNING")
                .values(status="STOPPING", message=message, last_updated_at=moment, stop_requested_at=moment)
            )
        self._stop.set()

    def _record_start_failure(self, exc: Exception) -> None:
        """Record this consumer FAILED, with why it could not start, on a RUNNING stream: else the stream
        went on saying RUNNING, read by nobody (no consumer of it had ever reported), and StartStream, which
        starts consumers again only for a stream whose consumers ended, would start none."""
        # Not logged here: the error goes up, to the process's own report of it (``emrml.stream``'s log
        # line, the CLI's error line), which said it a second time.
        message = f"consumer {self.id} could not start: {_describe(exc)}"
        moment = now()
        try:
            with self.sessions() as session, session.begin():
                stream = session.get(Stream, self.stream_id)
                if stream is None or stream.status != "RUNNING":
                    return
                session.add(
                    StreamConsumer(
                        id=self.id, stream_id=self.stream_id, host=socket.gethostname(), pid=os.getpid(),
                        started_at=moment, heartbeat_at=moment, status="FAILED", message=message,
                        records_per_second=0.0,
                    )
                )  # fmt: skip
        except SQLAlchemyError as error:
            log.warning("consumer %s cannot record its failure (%s)", self.id, error.__class__.__name__)

    def _record_failure(self, exc: Exception) -> None:
        """Say on the stream why this consumer ended (GetStream's Message), so its stop is not silent."""
        self._failure = f"consumer {self.id} stopped: {_describe(exc)}"
        try:
            with self.sessions() as session, session.begin():
                session.execute(
                    update(Stream)
                    .where(Stream.id == self.stream_id)
                    .values(message=self._failure, last_updated_at=now())
                )
        except SQLAlchemyError as error:
            log.warning("consumer %s cannot record its failure (%s)", self.id, error.__class__.__name__)

    def _balance(self, leases: list[Lease]) -> None:
        self.known = {lease.shard_id for lease in leases}
        self.finished |= {lease.shard_id for lease in leases if lease.finished}
        for lease in leases:
            if lease.shard_id in self.held and lease.owner != self.id:
                self._lose(lease.shard_id)
        if self._stop.is_set():
            return
        for lease in self.leases.to_take(leases):
            counter = self.leases.take(lease)
            if counter is not None:
                log.info("consumer %s took the lease of %s (from %s)", self.id, lease.shard_id, lease.owner)
                self.held[lease.shard_id] = ShardState(counter, lease.checkpoint, lease.parents)

    def _lose(self, shard_id: str) -> None:
        """Forget a shard whose lease another consumer holds now (it stole it to balance, or took it over).

        Its records written since its checkpoint may wait in an output part not yet published: published
        later, they would come twice, since the new owner reads them again from the checkpoint. The parts
        not yet durable are dropped instead, and each shard still held is read again from the first record
        they held of it (nothing of it was checkpointed past that), so every record comes once.
        """
        state = self.held.pop(shard_id)
        if state.first_pending is None:
            return  # nothing of it is waiting in the outputs
        dropped = self.output.discard()
        dropped = self.dead_letter.discard() or dropped
        if not dropped:
            return  # Kinesis outputs: what was written is out; the new owner may repeat one micro-batch
        log.info("consumer %s dropped its unpublished outputs holding records of %s", self.id, shard_id)
        for other in self.held.values():
            if other.first_pending is not None:
                other.resume_at = other.first_pending
                other.iterator = other.last_read = other.pending = other.first_pending = None
                other.counts = [0, 0, 0]
                other.ended = False
                other.next_read = 0.0

    def _heartbeat(self) -> None:
        moment = time.monotonic()
        rate = self._records / max(moment - self._rate_since, 1e-9)
        self._records, self._rate_since = 0, moment
        with self.sessions() as session, session.begin():
            session.execute(
                update(StreamConsumer)
                .where(StreamConsumer.id == self.id)
                .values(heartbeat_at=now(), records_per_second=round(rate, 1))
            )

    # --- stopping ----------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Make outputs durable, checkpoint, give the leases up, and record that this consumer stopped."""
        try:
            try:
                if time.monotonic() < self.valid_until:
                    self._commit(force=True)
            finally:
                self.output.close()
                self.dead_letter.close()
            for shard_id, state in list(self.held.items()):
                self.leases.release(shard_id, state.counter)
            self.held.clear()
            self._record_stop()
        except SQLAlchemyError as exc:
            log.warning("consumer %s stopped without reaching the metastore (%s)", self.id, exc)
        finally:
            if self._engine is not None:
                self._engine.dispose()
        log.info("consumer %s of stream %s stopped", self.id, self.stream_id)

    def _record_stop(self) -> None:
        """STOPPED, or FAILED with the error that ended it (GetStream tells a stream none runs by it)."""
        status = "STOPPED" if self._failure is None else "FAILED"
        with self.sessions() as session, session.begin():
            session.execute(
                update(StreamConsumer)
                .where(StreamConsumer.id == self.id)
                .values(status=status, message=self._failure, heartbeat_at=now(), records_per_second=0.0)
            )
        settle_stopping(self.sessions, self.stream_id, self.lease_seconds)


def _describe(exc: Exception) -> str:
    """``Type: message`` of an error that ended a consumer (emrml's own by its Amazon ML type)."""
    if isinstance(exc, AmazonMLError):
        return f"{exc.type_name}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
