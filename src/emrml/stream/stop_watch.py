"""The watch over a consumer asked to stop: one stuck (a call that never returns) would keep the stream
STOPPING, or have it read STOPPED while it still runs, for good; given ``STOP_GRACE_LEASES`` lease times
to end, it is recorded FAILED and its process ended."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from emrml.service.metastore import Sessions, now
from emrml.service.rows import Stream, StreamConsumer
from emrml.service.stream_status import settle_stopping

# The consumer's own logger: what it says of a stop comes out as the consumer's, as before.
log = logging.getLogger("emrml.stream.consumer")
#: Lease times a consumer asked to stop (the stream STOPPING, SIGTERM) has to end before its process is
#: ended (``Consumer.run``'s ``on_hung``).
STOP_GRACE_LEASES = 3


@dataclass
class StopWatch:
    """Watches consumer ``consumer_id`` of stream ``stream_id``, on a thread of its own (``run``)."""

    sessions: Sessions
    stream_id: str
    consumer_id: str
    lease_seconds: float
    #: Set when the consumer is asked to stop (``Consumer.stop``).
    stop: threading.Event
    #: Set once the consumer's ``run`` is done, its shutdown included.
    done: threading.Event

    def run(self, on_hung: Callable[[], None]) -> None:
        """Once the consumer is asked to stop (the stream no longer RUNNING, read here since a stuck loop
        reads nothing; or ``stop``), give it ``STOP_GRACE_LEASES`` lease times to end, reporting it live
        meanwhile (the stream stays STOPPING while it ends), then record it FAILED, the stream saying why,
        and call ``on_hung``. Its outputs not yet durable are lost, its records read again from their
        checkpoints at the next start: nothing is lost."""
        every = max(self.lease_seconds / 3, 0.05)
        grace = STOP_GRACE_LEASES * self.lease_seconds
        asked: float | None = None
        while not self.done.wait(every):
            try:
                if asked is None:
                    if self.stop.is_set() or self._stream_status() != "RUNNING":
                        asked = time.monotonic()
                    continue
                if time.monotonic() - asked < grace:
                    self._heartbeat_only()
                    continue
            except SQLAlchemyError as exc:
                log.warning(
                    "consumer %s: cannot reach the metastore (%s)", self.consumer_id, exc.__class__.__name__
                )
                continue
            if self.done.is_set():
                return
            self._record_hung(grace)
            on_hung()
            return

    def _stream_status(self) -> str | None:
        with self.sessions() as session:
            return session.scalar(select(Stream.status).where(Stream.id == self.stream_id))

    def _heartbeat_only(self) -> None:
        with self.sessions() as session, session.begin():
            session.execute(
                update(StreamConsumer)
                .where(StreamConsumer.id == self.consumer_id, StreamConsumer.status == "RUNNING")
                .values(heartbeat_at=now())
            )

    def _record_hung(self, grace: float) -> None:
        """Record the consumer FAILED for not ending ``grace`` seconds after it was asked to, and say so on
        the stream (a stopping one is then STOPPED); never raises (the process ends next)."""
        message = (
            f"consumer {self.consumer_id} did not stop within {grace:g} s of being asked to: its process was "
            "ended (the records after its checkpoints are read again at the next start)"
        )
        log.error("%s", message)
        moment = now()
        try:
            with self.sessions() as session, session.begin():
                session.execute(
                    update(StreamConsumer)
                    .where(StreamConsumer.id == self.consumer_id)
                    .values(status="FAILED", message=message, heartbeat_at=moment, records_per_second=0.0)
                )
                session.execute(
                    update(Stream)
                    .where(Stream.id == self.stream_id)
                    .values(message=message, last_updated_at=moment)
                )
            settle_stopping(self.sessions, self.stream_id, self.lease_seconds)
        except SQLAlchemyError as exc:
            log.warning(
                "consumer %s cannot record that it hung (%s)", self.consumer_id, exc.__class__.__name__
            )
