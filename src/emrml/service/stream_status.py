"""A stream's status as its consumers make it: which of them are live, what GetStream says of a RUNNING
stream none of them runs any longer, and when a STOPPING stream is STOPPED (or FAILED). Read by the stream
operations (``service.streams``) and by the consumer processes themselves (``emrml.stream``), which settle
their stream as the last of them stops."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, select

from emrml.service.metastore import Sessions, now
from emrml.service.rows import Stream, StreamConsumer


def live_consumers(session: Any, stream_id: str, lease_seconds: float) -> list[StreamConsumer]:
    """Consumers of a stream that are running and reported within two lease times."""
    horizon = now() - 2 * lease_seconds
    return list(
        session.scalars(
            select(StreamConsumer).where(
                StreamConsumer.stream_id == stream_id,
                StreamConsumer.status == "RUNNING",
                StreamConsumer.heartbeat_at >= horizon,
            )
        )
    )


#: How many failed, and how many silent, consumers a stream's message names (the others are counted): a
#: stream of many consumers that all failed alike would otherwise say the same thing dozens of times.
NAMED_CONSUMERS = 3


@dataclasses.dataclass(frozen=True)
class Run:
    """What a stream's status and message need of the consumers of its run (StartStream removes those of
    earlier runs), read in a few rows whatever their number (``run_of``): a run gathers a row for every
    consumer that joined it, each ``emrml stream run`` and each restart of one that a supervisor brings
    back after a failure, and nothing bounds those."""

    #: Consumers FAILED with a message, and the messages of the last ``NAMED_CONSUMERS`` of them to start,
    #: the last first.
    failed: int
    failures: list[str]
    #: Consumers still recorded RUNNING, and the ``NAMED_CONSUMERS`` of them that reported last.
    running: int
    latest_running: list[StreamConsumer]
    #: The consumer that started last; None: the run has none (yet).
    last: StreamConsumer | None


def run_of(session: Any, stream_id: str) -> Run:
    """The stream's ``Run``: its counts in one aggregate query, then at most ``NAMED_CONSUMERS`` rows of
    each kind the message names."""
    of_run = StreamConsumer.stream_id == stream_id
    has_failure = and_(StreamConsumer.status == "FAILED", StreamConsumer.message != "")  # NULL: none
    is_running = StreamConsumer.status == "RUNNING"
    consumers, failed, running = session.execute(
        select(
            func.count(),
            func.sum(case((has_failure, 1), else_=0)),
            func.sum(case((is_running, 1), else_=0)),
        ).where(of_run)
    ).one()
    if not consumers:
        return Run(0, [], 0, [], None)
    newest = StreamConsumer.started_at.desc()
    failures = session.scalars(
        select(StreamConsumer.message).where(of_run, has_failure).order_by(newest).limit(NAMED_CONSUMERS)
    )
    latest_running = session.scalars(
        select(StreamConsumer)
        .where(of_run, is_running)
        .order_by(StreamConsumer.heartbeat_at.desc(), newest)
        .limit(NAMED_CONSUMERS)
    )
    last = session.scalars(select(StreamConsumer).where(of_run).order_by(newest).limit(1)).first()
    # SUM is a DECIMAL on MariaDB.
    return Run(int(failed), list(failures), int(running), list(latest_running), last)


def silent(consumers: list[StreamConsumer], count: int, after: str) -> str:
    """What a stream's message says of ``count`` consumers that went silent — still recorded RUNNING, they
    stopped reporting: a frozen or hung process, one killed, or its machine gone — naming those of
    ``consumers`` that reported last (up to ``NAMED_CONSUMERS``), each with its pid, host and last report,
    counting the others, ``after`` said of them."""
    ordered = sorted(consumers, key=lambda consumer: consumer.heartbeat_at, reverse=True)
    said = [
        f"consumer {consumer.id} (pid {consumer.pid} on {consumer.host}) stopped reporting at "
        + datetime.fromtimestamp(consumer.heartbeat_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for consumer in ordered[:NAMED_CONSUMERS]
    ]
    if count > NAMED_CONSUMERS:
        said.append(f"{count - NAMED_CONSUMERS} more consumers stopped reporting")
    return f"{', '.join(said)} {after}"


def _processes(count: int) -> str:
    """Why consumers still recorded RUNNING went silent, said of one or of several."""
    return (
        "its process is frozen, hangs or died" if count == 1 else "their processes are frozen, hang or died"
    )


def consumers_gone(session: Any, stream: Stream, live: list[StreamConsumer]) -> tuple[str, str] | None:
    """The status and message GetStream gives a RUNNING stream that no consumer runs any longer, or None;
    ``live``: its live consumers (``live_consumers``).

    A consumer that ends by an error records it (FAILED); one killed, frozen, or whose machine went, just
    stops reporting: either way the stream, RUNNING in the metastore, is read by nobody, and saying RUNNING
    would hide that. Every consumer of the run counts, not only the last started: one that stopped cleanly
    after an older one froze leaves the stream FAILED, naming the frozen one. A stream none of whose
    consumers has started yet (``Consumers`` 0, consumers to join from other machines) is RUNNING: nothing
    ended. A consumer that starts makes it RUNNING again."""
    if stream.status != "RUNNING" or live:
        return None
    run = run_of(session, stream.id)
    if run.last is None:
        return None
    restart = f"`emrml stream start --id {stream.id}` (StartStream) starts consumers again"
    if run.failed or run.running:
        told = "no consumer is running: "
        if run.running:
            told += silent(run.latest_running, run.running, f"without stopping: {_processes(run.running)}")
            told += "; "
        failed = run.failures
        if run.failed > NAMED_CONSUMERS:
            failed = [*failed, f"{run.failed - NAMED_CONSUMERS} more consumers failed"]
        return "FAILED", "; ".join([*failed, told + restart])
    when = datetime.fromtimestamp(run.last.heartbeat_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "RUNNING",
        f"no consumer is running: consumer {run.last.id}, the last, stopped at {when}; {restart}",
    )


def settle_stopping(sessions: Sessions, stream_id: str, lease_seconds: float) -> None:
    """A STOPPING stream without live consumers is STOPPED, or FAILED when a consumer that ran as it was
    asked to stop went silent instead (a frozen or hung process, one killed): it neither checkpointed nor
    gave its leases up, and saying STOPPED would hide that; the stream's message then says so after what it
    said already. "Ran" is judged at the stop request's own time
    (``stop_requested_at``): the stream's ``last_updated_at`` moves later with each consumer's failure
    message, and a consumer that froze more than two lease times before such a message would be missed."""
    with sessions() as session, session.begin():
        if live_consumers(session, stream_id, lease_seconds):
            return
        stream = session.get(Stream, stream_id)
        if stream is None or stream.status != "STOPPING":
            return
        # Every way to STOPPING records it, and the migration that added it filled it for the streams then
        # STOPPING; ``last_updated_at`` only keeps the type whole.
        asked = stream.stop_requested_at if stream.stop_requested_at is not None else stream.last_updated_at
        gone = list(
            session.scalars(
                select(StreamConsumer).where(
                    StreamConsumer.stream_id == stream_id,
                    StreamConsumer.status == "RUNNING",
                    StreamConsumer.heartbeat_at >= asked - 2 * lease_seconds,
                )
            )
        )
        stream.status, stream.last_updated_at = "FAILED" if gone else "STOPPED", now()
        if gone:
            told = silent(
                gone,
                len(gone),
                f"instead of stopping: {_processes(len(gone))} (the records after the last "
                f"checkpoints are read again at the next start); `emrml stream start --id {stream_id}` "
                "(StartStream) starts the stream again",
            )
            # What the stream said already stays first: why it stopped (its model deleted), or another
            # consumer's failure.
            stream.message = f"{stream.message}; {told}" if stream.message else told
