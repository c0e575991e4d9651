"""Stream scoring operations (extensions of the Amazon ML API): StartStream, StopStream, GetStream,
DescribeStreams. The consumers themselves are processes of their own (``emrml.stream``).

``StartStream`` checks everything it can before anything starts — the model (COMPLETED, with its schema
and artifact), the input stream and a Kinesis output stream exist, the output directories are locations
emrml writes — records the stream RUNNING and spawns ``Consumers`` consumer processes on this machine
(more can join from any machine sharing the metastore: ``emrml stream run ID``). Starting a STOPPED
stream again with the same parameters resumes it from its checkpoints, as does starting a RUNNING one
whose consumers all ended (it shows FAILED): a start of a stream consumers run starts none. Nor does the
second of two starts at the same time: each claims the stream as it read it (``_claim``), and one finds
its reading out of date.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from emrml.errors import (
    IdempotentParameterMismatchException,
    InternalServerException,
    InvalidInputException,
    ResourceNotFoundException,
)
from emrml.service.access import Access
from emrml.service.batch_predictions import check_output_uri
from emrml.service.confinement import Authorizing, check_location
from emrml.service.metastore import Sessions, fenced_update, now, snapshot
from emrml.service.operations import (
    CALLER,
    REMOTE,
    Request,
    Response,
    canonical,
    created_by,
    operation,
    running_as,
)
from emrml.service.rows import MLModel, Stream, StreamConsumer, StreamLease
from emrml.service.stream_processes import Spawned, await_started, record_not_running, spawn_consumer
from emrml.service.stream_status import consumers_gone, live_consumers, settle_stopping
from emrml.service.validation import EXTENSION_MEMBERS, optional_string, require_id, require_string
from emrml.stream import FORMATS, SCHEME, stream_name

if TYPE_CHECKING:
    from emrml.config import Settings
    from emrml.service.app import EmrML
    from emrml.stream.kinesis import Kinesis

log = logging.getLogger(__name__)

POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
MAX_CONSUMERS = 64
#: Ids valid in the API that StartStream refuses to new streams: the stream's default dead-letter folder is
#: named after its id (``_folder_name``).
_DOTS = (".", "..")
#: The members a stream's start is recorded with: StartStream's, but Consumers (a count for this start).
_RECORDED_MEMBERS = frozenset(EXTENSION_MEMBERS["StartStream"]) - {"Consumers"}


def start_parameters(stream: Stream) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters the stream was started with that start it again, and those StartStream now refuses:
    members it does not read, recorded by a stream started before it refused them. Those never did
    anything (where a stream starts is in its own columns), so they are left out rather than make the
    stream one that no request can start again (``_start`` drops them from its row, saying so)."""
    recorded = json.loads(stream.request)
    kept = {member: value for member, value in recorded.items() if member in _RECORDED_MEMBERS}
    unread = {member: value for member, value in recorded.items() if member not in _RECORDED_MEMBERS}
    return kept, unread


def _consumers_gone(app: EmrML, session: Any, stream: Stream) -> bool:
    """Whether no consumer runs a RUNNING stream any longer (it shows FAILED, or RUNNING with a message
    saying so): StartStream starts consumers again then, as for a STOPPED stream. One whose consumers have
    not reported yet (just started, or ``Consumers`` 0) is not: a retried StartStream starts no more."""
    live = live_consumers(session, stream.id, app.settings.stream_lease_seconds)
    return consumers_gone(session, stream, live) is not None


def _stream_id(request: Request) -> str:
    return require_id(request, "StreamId")


def _model(app: EmrML, model_id: str) -> MLModel:
    """The model a stream scores with: COMPLETED, with its schema and artifact."""
    with app.sessions() as session:
        model = session.get(MLModel, model_id)
    if model is None or model.status == "DELETED":
        raise InvalidInputException(f"MLModelId {model_id!r}: no such MLModel")
    if model.status != "COMPLETED":
        raise InvalidInputException(
            f"MLModelId {model_id!r} is {model.status}; a stream needs a COMPLETED model"
        )
    if not model.data_schema or not model.artifact_location or not os.path.isfile(model.artifact_location):
        raise InvalidInputException(f"MLModelId {model_id!r} has no schema or model file to score with")
    return model


def _kinesis_stream(app: EmrML, kinesis: Kinesis, uri: str, member: str, *, write: bool) -> dict[str, Any]:
    """The stream's summary (DescribeStreamSummary), once the caller may use it and it is ACTIVE."""
    name = stream_name(uri, member)
    # A Kinesis stream is storage, as an S3 location is: reading it (InputStream) needs storage:Read on
    # kinesis://NAME and writing it (a Kinesis OutputUri or DeadLetterUri) storage:Write, checked before
    # the stream is looked up so that a refusal tells nothing of which streams exist.
    check_location(app, uri, member=member, write=write)
    try:
        summary = kinesis.describe(name)
    except ResourceNotFoundException:
        raise InvalidInputException(f"{member} '{uri}': the Kinesis stream {name!r} does not exist") from None
    status = summary["StreamStatus"]
    if status not in ("ACTIVE", "UPDATING"):
        raise InvalidInputException(f"{member} '{uri}': the Kinesis stream {name!r} is {status}")
    return summary


def _destination(app: EmrML, kinesis: Kinesis, uri: str, member: str) -> str:
    if uri.startswith(SCHEME):
        _kinesis_stream(app, kinesis, uri, member, write=True)
        return uri
    try:
        folder = check_output_uri(uri)
    except InvalidInputException as exc:
        raise InvalidInputException(exc.message.replace("OutputUri", member)) from None
    check_location(app, folder, member=member, write=True, below=True)
    return folder


@dataclasses.dataclass(frozen=True)
class ConsumerChecks:
    """What ``check_destinations`` uses, in a consumer process (which has no EmrML)."""

    access: Access
    settings: Settings

    @classmethod
    def of(cls, sessions: Sessions, settings: Settings) -> ConsumerChecks:
        return cls(Access(sessions, settings), settings)


def check_destinations(app: Authorizing, stream: Stream) -> None:
    """StartStream's checks of the stream's locations (``check_location``), made again by each consumer as
    it starts and as it renews its leases: its creator's ``storage:Read`` on its input and ``storage:Write``
    on its output and the dead-letter location its request named, which a change to their policy or groups
    may have taken back since; and, for a confined stream, those folders as they are now (one swapped for a
    symbolic link out of the data roots is refused before anything is written there). Raises
    AccessDeniedException naming the location."""
    members = [("OutputUri", stream.output_uri)]
    if "DeadLetterUri" in json.loads(stream.request):  # the default one is emrml's own, in its home
        members.append(("DeadLetterUri", stream.dead_letter_uri))
    with running_as(stream.created_by, remote=stream.confined):
        check_location(app, stream.input_uri, member="InputStream")
        for member, uri in members:
            check_location(app, uri, member=member, write=True, below=not uri.startswith(SCHEME))


def kinesis_client(settings: Settings) -> Kinesis:
    """The process's client for the settings' endpoint and region (``kinesis.shared``)."""
    from emrml.stream import kinesis  # botocore: imported by the operations that use it

    return kinesis.shared(settings.kinesis_endpoint_url, settings.kinesis_region)


@operation("StartStream")
def start_stream(app: EmrML, request: Request) -> Response:
    stream_id = _stream_id(request)
    consumers = request.get("Consumers", 1)
    if isinstance(consumers, bool) or not isinstance(consumers, int) or not 0 <= consumers <= MAX_CONSUMERS:
        raise InvalidInputException(f"Consumers must be an integer from 0 to {MAX_CONSUMERS}")
    parameters = {key: value for key, value in request.items() if key != "Consumers"}
    # Answered here, before the checks of its model and streams; a start that passes is decided again where
    # it claims the stream (``_start``).
    reading = _read(app, stream_id, parameters)
    if reading is None:
        return {"StreamId": stream_id, "ConsumersStarted": 0}
    if reading.status is None and stream_id in _DOTS:
        raise InvalidInputException(f"StreamId {stream_id!r} is not allowed: use a name that is not . or ..")
    # A stream started through the server stays confined (its folders were named by a remote caller, who
    # may swap them for links): started again from the CLI, its locations are checked as confined.
    confined = REMOTE.get() or reading.confined
    with running_as(CALLER.get(), remote=confined):
        return _start(app, request, stream_id, consumers, parameters, new=reading.status is None)


def _start(
    app: EmrML, request: Request, stream_id: str, consumers: int, parameters: dict[str, Any], *, new: bool
) -> Response:
    model = _model(app, require_id(request, "MLModelId"))
    position = optional_string(request, "StartingPosition") or "TRIM_HORIZON"
    if position not in POSITIONS:
        raise InvalidInputException(
            f"StartingPosition must be one of {', '.join(POSITIONS)} (got {position!r})"
        )
    timestamp = request.get("StartingTimestamp")
    if position == "AT_TIMESTAMP" and (
        isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not 0 <= timestamp < math.inf
    ):
        got = "" if timestamp is None else f" (got {json.dumps(timestamp)})"
        raise InvalidInputException(
            "StartingTimestamp (epoch seconds, 0 or more) is required with StartingPosition "
            f"AT_TIMESTAMP{got}"
        )
    if new and timestamp is not None and position != "AT_TIMESTAMP":
        # Ignored, it would start the shards elsewhere than the caller meant. (Streams started before this
        # check may hold one: they start again as they were started.)
        raise InvalidInputException(
            f"StartingTimestamp is for StartingPosition AT_TIMESTAMP; StartingPosition is {position}"
        )
    record_format = optional_string(request, "RecordFormat") or "auto"
    if record_format not in FORMATS:
        raise InvalidInputException(
            f"RecordFormat must be one of {', '.join(FORMATS)} (got {record_format!r})"
        )
    kinesis = kinesis_client(app.settings)
    input_uri = require_string(request, "InputStream")
    input_summary = _kinesis_stream(app, kinesis, input_uri, "InputStream", write=False)
    output = _destination(app, kinesis, require_string(request, "OutputUri"), "OutputUri")
    # The default dead-letter folder is emrml's own (in the home), not one the request names.
    dead_letter = optional_string(request, "DeadLetterUri")
    dead_letter = (
        _destination(app, kinesis, dead_letter, "DeadLetterUri")
        if dead_letter
        else check_output_uri(str(app.settings.home / "streams" / _folder_name(stream_id) / "dead-letter"))
    )
    moment = now()
    row = {
        "id": stream_id, "name": optional_string(request, "StreamName"), "status": "RUNNING",
        "created_by": created_by(app), "created_at": moment, "last_updated_at": moment,
        "request": canonical(parameters), "ml_model_id": model.id, "input_uri": input_uri,
        "output_uri": output, "dead_letter_uri": dead_letter, "starting_position": position,
        "starting_timestamp": _starting_moment(position, timestamp, moment), "record_format": record_format,
        "confined": REMOTE.get(), "start_generation": 0,
    }  # fmt: skip
    # Decided from the stream as it is now, not as ``start_stream`` found it: another start may have
    # started its consumers since, or created it.
    for _ in range(CLAIM_TRIES):
        reading = _read(app, stream_id, parameters)
        if reading is None:  # consumers run it: another start of it started them meanwhile
            return {"StreamId": stream_id, "ConsumersStarted": 0}
        if _claim(app, reading, row, moment):
            break
    else:
        raise InternalServerException(
            f"stream {stream_id!r} changed {CLAIM_TRIES} times as StartStream was starting it (other "
            "StartStream or StopStream calls of it at the same time): try again"
        )
    # A shard is read by one consumer at a time: consumers beyond the open shards would only wait, each a
    # process holding the model, so no more than that start here (on other machines, more may join).
    started = min(consumers, max(int(input_summary.get("OpenShardCount") or 0), 1))
    spawned: list[Spawned] = []
    for _ in range(started):
        try:
            spawned.append(spawn_consumer(app.settings, stream_id))
        except OSError as exc:  # no interpreter to run (sys.executable gone), no process left to fork
            where = f" ({exc.filename})" if exc.filename else ""
            reason = f"a consumer process could not be started: {exc.strerror or exc}{where}"
            record_not_running(app.sessions, stream_id, 0, reason)
            break
    died = await_started(app.sessions, stream_id, spawned)
    return {"StreamId": stream_id, "ConsumersStarted": len(spawned) - died}


#: How many times a start reads its stream again when another start or stop changed it before its claim.
CLAIM_TRIES = 5


@dataclasses.dataclass(frozen=True)
class _Reading:
    """What a start read of its stream, which its claim holds to (``_claim``)."""

    #: None: there was no such stream (the start creates it).
    status: str | None
    generation: int
    #: Started through the server before (``start_stream``).
    confined: bool


def _read(app: EmrML, stream_id: str, parameters: dict[str, Any]) -> _Reading | None:
    """The stream as it is now, for a start to claim; None when consumers run it (a start starts none).
    Read in a ``snapshot``, its consumers and its row agreeing, and in no transaction that writes: on
    SQLite a transaction that read before another process wrote could not write afterwards."""
    with snapshot(app.sessions) as session:
        stream = session.get(Stream, stream_id)
        if stream is None:
            return _Reading(None, 0, confined=False)
        # (In ``_start``: created by another start since this one found no stream.)
        if canonical(start_parameters(stream)[0]) != canonical(parameters):
            raise IdempotentParameterMismatchException(
                f"stream {stream_id!r} already exists with different parameters"
            )
        if stream.status == "RUNNING" and not _consumers_gone(app, session, stream):
            return None
        return _Reading(stream.status, stream.start_generation, stream.confined)


def _claim(app: EmrML, reading: _Reading, row: dict[str, Any], moment: float) -> bool:
    """Record the stream RUNNING, started now, if it is still as ``reading`` found it; False when another
    start (or a stop) changed it since, and it must be read again.

    The claim is a compare-and-set (``fenced_update``) on the status and the start generation read, which
    it raises: of two starts that read the stream alike, the second's update finds no row (PostgreSQL and
    MariaDB make it wait for the first's commit and compare what that wrote). In the same transaction the
    consumers of the earlier run that are gone are removed, so a start that reads the stream afterwards
    finds a run none of whose consumers has reported yet, which is not gone: it starts none."""
    stream_id = row["id"]
    if reading.status is None:
        # Another start that created it meanwhile fails this insert on the stream's key: ``EmrML.call`` runs
        # the start again, which finds the stream.
        with app.sessions() as session, session.begin():
            session.add(Stream(**row))
        return True
    with app.sessions() as session, session.begin():
        claimed = fenced_update(
            session,
            Stream,
            [
                Stream.id == stream_id,
                Stream.status == reading.status,
                Stream.start_generation == reading.generation,
            ],
            {
                "status": "RUNNING",
                "message": None,
                "last_updated_at": moment,
                "start_generation": reading.generation + 1,
            },
        )
        if not claimed:
            return False
        existing = session.get_one(Stream, stream_id)  # its row is this transaction's now
        kept, unread = start_parameters(existing)
        if unread:  # logged with their values: the row keeps only what StartStream takes
            log.warning(
                "stream %s: StartStream does not take %s, dropped from its start parameters as it starts "
                "again",
                stream_id,
                json.dumps(unread),
            )
            existing.request = canonical(kept)
        dead_letter = row["dead_letter_uri"]
        if stream_id in _DOTS and "DeadLetterUri" not in kept and existing.dead_letter_uri != dead_letter:
            # Its default folder was the streams' folder's or the home's ``dead-letter``.
            log.warning(
                "stream %s: its dead letters now go to %s (its folder %s lies outside its own); those "
                "written there before are left where they are",
                stream_id,
                dead_letter,
                existing.dead_letter_uri,
            )
            existing.dead_letter_uri = dead_letter
        # Started through the server once, it stays confined (``start_stream``).
        existing.confined = existing.confined or row["confined"]
        # The consumers of its earlier run that are gone: the last of them is not this run's (a consumer
        # that died before the stop, or the one whose failure is why the stream is started again, would
        # have the stream say FAILED until one of those started now reports).
        live = {
            consumer.id for consumer in live_consumers(session, stream_id, app.settings.stream_lease_seconds)
        }
        session.execute(
            delete(StreamConsumer).where(
                StreamConsumer.stream_id == stream_id, StreamConsumer.id.not_in(live)
            )
        )
    return True


def _folder_name(stream_id: str) -> str:
    """The name of the stream's own folder in ``<home>/streams``: its id, but "." and ".." (streams
    recorded before StartStream refused them to new streams), which would name the streams' folder itself
    or the home, with their dots escaped."""
    return stream_id.replace(".", "%2E") if stream_id in _DOTS else stream_id


def _starting_moment(position: str, timestamp: Any, moment: float) -> float | None:
    """Where a shard without a checkpoint starts, in time. LATEST is pinned to the first start: a shard
    read from "whatever is latest when a consumer gets to it" would skip the records written before a
    consumer started (``--consumers 0``), while it waited for a lease, or while the stream was stopped
    before any record came, as a restarted consumer has no checkpoint to resume from then."""
    if position == "AT_TIMESTAMP":
        return float(timestamp)
    return moment if position == "LATEST" else None


@operation("StopStream")
def stop_stream(app: EmrML, request: Request) -> Response:
    """Ask the consumers to finish their batch, checkpoint and exit; STOPPED once none is left."""
    stream_id = _stream_id(request)
    moment = now()
    with app.sessions() as session, session.begin():
        _find(session, stream_id)
        session.execute(
            update(Stream)
            .where(Stream.id == stream_id, Stream.status == "RUNNING")
            .values(status="STOPPING", last_updated_at=moment, stop_requested_at=moment)
        )
    settle_stopping(app.sessions, stream_id, app.settings.stream_lease_seconds)
    return {"StreamId": stream_id}


def _find(session: Any, stream_id: str) -> Stream:
    stream = session.get(Stream, stream_id)
    if stream is None:
        raise ResourceNotFoundException(f"stream {stream_id!r} does not exist")
    return stream


def lag(lease: StreamLease, consumers: list[StreamConsumer]) -> int | None:
    """How far behind its shard's latest record the lease's owner read, as it last reported: unknown
    (None) once no live consumer holds the lease, since the shard may have grown since."""
    if lease.owner not in {consumer.id for consumer in consumers}:
        return None
    return lease.millis_behind_latest


def _summary(
    stream: Stream, leases: list[StreamLease], consumers: list[StreamConsumer], gone: tuple[str, str] | None
) -> Response:
    """``consumers``: the live ones; ``gone``: what ``consumers_gone`` says of the stream."""
    lags = [value for lease in leases if (value := lag(lease, consumers)) is not None]
    status, message = gone or (stream.status, stream.message)
    members: Response = {
        "StreamId": stream.id,
        "MLModelId": stream.ml_model_id,
        "InputStream": stream.input_uri,
        "OutputUri": stream.output_uri,
        "DeadLetterUri": stream.dead_letter_uri,
        "StartingPosition": stream.starting_position,
        "RecordFormat": stream.record_format,
        "Status": status,
        "CreatedByIamUser": stream.created_by,
        "CreatedAt": stream.created_at,
        "LastUpdatedAt": stream.last_updated_at,
        "Consumers": len(consumers),
        "Shards": len(leases),
        "RecordsIn": sum(lease.records_in for lease in leases),
        "RecordsOut": sum(lease.records_out for lease in leases),
        "RecordsFailed": sum(lease.records_failed for lease in leases),
        "RecordsPerSecond": round(sum(c.records_per_second for c in consumers), 1),
    }
    if lags:
        members["MillisBehindLatest"] = max(lags)
    if stream.name is not None:
        members["Name"] = stream.name
    if message:
        members["Message"] = message
    return members


def _load(
    app: EmrML, session: Any, stream: Stream
) -> tuple[list[StreamLease], list[StreamConsumer], tuple[str, str] | None]:
    """The stream's leases, its live consumers and what ``consumers_gone`` says of it, read in ``session``,
    a ``snapshot``, so that they agree. A consumer that starts adds its row and clears the earlier failure
    from the stream in one transaction; reads each of the latest commit paired the stream's message with
    consumers it did not go with, or missed the new consumer among the live ones and then found it among
    the run's (``run_of``): a stream just started showed FAILED, its consumer having "stopped reporting"."""
    leases = list(
        session.scalars(
            select(StreamLease).where(StreamLease.stream_id == stream.id).order_by(StreamLease.shard_id)
        )
    )
    live = live_consumers(session, stream.id, app.settings.stream_lease_seconds)
    return leases, live, consumers_gone(session, stream, live)


@operation("GetStream")
def get_stream(app: EmrML, request: Request) -> Response:
    """The stream's totals, each shard's lease and checkpoint, its live consumers, and the parameters it
    was started with."""
    stream_id = _stream_id(request)
    settle_stopping(app.sessions, stream_id, app.settings.stream_lease_seconds)
    with snapshot(app.sessions) as session:
        stream = _find(session, stream_id)
        leases, consumers, gone = _load(app, session, stream)
    members = _summary(stream, leases, consumers, gone)
    # What StartStream was given (but Consumers): the same parameters start the stream again.
    members["StartParameters"] = start_parameters(stream)[0]
    members["ShardLeases"] = [
        {
            key: value
            for key, value in {
                "ShardId": lease.shard_id,
                "ParentShardIds": json.loads(lease.parents),
                "Owner": lease.owner,
                "Checkpoint": lease.checkpoint,
                "CheckpointedAt": lease.checkpointed_at,
                "MillisBehindLatest": lag(lease, consumers),
                "RecordsIn": lease.records_in,
                "RecordsOut": lease.records_out,
                "RecordsFailed": lease.records_failed,
                "OwnerSwitches": lease.owner_switches,
            }.items()
            if value is not None
        }
        for lease in leases
    ]
    members["ConsumerProcesses"] = [
        {
            "ConsumerId": consumer.id,
            "Host": consumer.host,
            "Pid": consumer.pid,
            "StartedAt": consumer.started_at,
            "LastHeartbeatAt": consumer.heartbeat_at,
            "RecordsPerSecond": consumer.records_per_second,
            "Leases": sum(1 for lease in leases if lease.owner == consumer.id),
        }
        for consumer in consumers
    ]
    return members


@operation("DescribeStreams")
def describe_streams(app: EmrML, request: Request) -> Response:
    with app.sessions() as session:
        streams = list(session.scalars(select(Stream).order_by(Stream.created_at)))
    for stream in streams:
        if stream.status == "STOPPING":
            settle_stopping(app.sessions, stream.id, app.settings.stream_lease_seconds)
    results = []
    query = select(Stream).order_by(Stream.created_at)
    visible = app.access.visible("DescribeStreams", "Stream")
    if visible is not None:
        query = query.where(visible)
    with snapshot(app.sessions) as session:
        for stream in session.scalars(query):
            results.append(_summary(stream, *_load(app, session, stream)))
    return {"Results": results}
