"""The operation registry and what every Amazon ML operation shares: ids, idempotent creation, lookups.

An operation is a plain function ``(app, request) -> response`` over the API's own JSON shapes, registered
under its Amazon ML name. The HTTP protocol, the CLI and the console all call ``EmrML.call(name, request)``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select, update

from emrml.errors import (
    MAX_OBJECT_MESSAGE,
    IdempotentParameterMismatchException,
    InvalidInputException,
    ResourceNotFoundException,
    shortened,
)
from emrml.service.metastore import now
from emrml.service.tables import ENTITY_TABLES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from emrml.service.app import EmrML

Request = dict[str, Any]
Response = dict[str, Any]
Operation = Callable[["EmrML", Request], Response]
OPERATIONS: dict[str, Operation] = {}
#: The name of every operation ``registered`` holds: what the API answers (``web.protocol``) before the
#: operations' modules are imported, which a server does with its first request other than Predict (Predict
#: has its own path, ``predicting.serve_predict``, on the tables alone).
NAMES = frozenset(
    {
        "AddTags",
        "CreateBatchPrediction",
        "CreateDataSourceFromRDS",
        "CreateDataSourceFromRedshift",
        "CreateDataSourceFromS3",
        "CreateEvaluation",
        "CreateMLModel",
        "CreateRealtimeEndpoint",
        "DeleteBatchPrediction",
        "DeleteDataSource",
        "DeleteEvaluation",
        "DeleteMLModel",
        "DeleteRealtimeEndpoint",
        "DeleteTags",
        "DescribeBatchPredictions",
        "DescribeDataSources",
        "DescribeEvaluations",
        "DescribeMLModels",
        "DescribeStreams",
        "DescribeTags",
        "GetBatchPrediction",
        "GetDataSource",
        "GetDataSourceStatistics",
        "GetEvaluation",
        "GetEvaluationInsights",
        "GetMLModel",
        "GetMLModelInputs",
        "GetMLModelInsights",
        "GetStream",
        "InferDataSchema",
        "PlanCapacity",
        "Predict",
        "StartStream",
        "StopStream",
        "UpdateBatchPrediction",
        "UpdateDataSource",
        "UpdateEvaluation",
        "UpdateMLModel",
    }
)
#: The modules that register the operations (with ``operation``), beside this one.
_MODULES = (
    "batch_predictions",
    "capacity",
    "datasources",
    "describe",
    "endpoints",
    "evaluations",
    "models",
    "predicting",
    "streams",
    "tags",
)
_imported = False

#: The id member of each entity kind in requests and responses.
ID_MEMBER = {
    "DataSource": "DataSourceId",
    "MLModel": "MLModelId",
    "Evaluation": "EvaluationId",
    "BatchPrediction": "BatchPredictionId",
}

#: The kind of object each Create* operation makes.
CREATE_OPERATIONS = {
    "CreateDataSourceFromS3": "DataSource",
    "CreateDataSourceFromRDS": "DataSource",
    "CreateDataSourceFromRedshift": "DataSource",
    "CreateMLModel": "MLModel",
    "CreateEvaluation": "Evaluation",
    "CreateBatchPrediction": "BatchPrediction",
}

E = TypeVar("E")


def operation(name: str) -> Callable[[Operation], Operation]:
    def register(function: Operation) -> Operation:
        OPERATIONS[name] = function
        return function

    return register


def registered() -> dict[str, Operation]:
    """Every operation by name, their modules imported by the first call (with the ORM they use)."""
    global _imported
    if not _imported:
        for module in _MODULES:  # (threads asking at once each import them: Python's import lock waits)
            importlib.import_module(f"emrml.service.{module}")
        _imported = True
    return OPERATIONS


def entity_classes() -> dict[str, type[Any]]:
    """The ORM's classes of the entities by kind (``rows.ENTITY_CLASSES``), imported with the first use."""
    from emrml.service.rows import ENTITY_CLASSES

    return ENTITY_CLASSES


def canonical(request: Request) -> str:
    return json.dumps(request, sort_keys=True, separators=(",", ":"))


#: The ARN of the user whose request is running (set by ``EmrML.call``); None means the account's root.
CALLER: ContextVar[str | None] = ContextVar("emrml_caller", default=None)


#: Whether the running request arrived through ``emrml serve`` (the HTTP API or the console; set by
#: ``EmrML.call``): its local locations are confined to the data roots (``service.confinement``).
REMOTE: ContextVar[bool] = ContextVar("emrml_remote", default=False)


@contextmanager
def running_as(caller: str | None, *, remote: bool) -> Iterator[None]:
    """Set ``CALLER`` and ``REMOTE`` for the block: what a request through ``EmrML.call`` runs under."""
    caller_token, remote_token = CALLER.set(caller), REMOTE.set(remote)
    try:
        yield
    finally:
        REMOTE.reset(remote_token)
        CALLER.reset(caller_token)


def created_by(app: EmrML) -> str:
    return CALLER.get() or f"arn:aws:iam::{app.settings.account_id}:root"


def find(session: Session, kind: str, entity_id: str) -> Any:
    """The entity or ResourceNotFoundException (Get/Update/Delete/Tags calls)."""
    entity = session.get(entity_classes()[kind], entity_id)
    if entity is None:
        raise ResourceNotFoundException(f"{kind} {entity_id!r} does not exist")
    return entity


def find_live(session: Session, kind: str, entity_id: str) -> Any:
    """The entity, which must not be DELETED (Update calls, tag changes)."""
    entity = find(session, kind, entity_id)
    if entity.status == "DELETED":
        raise InvalidInputException(f"{kind} {entity_id!r} is DELETED and cannot be changed")
    return entity


def lock_row(session: Session, kind: str, entity_id: str) -> None:
    """Make concurrent changes of one object wait for each other: AddTags counting the tags before adding
    its own, UpdateMLModel checking there is no endpoint before changing the threshold the endpoint serves
    with, CreateRealtimeEndpoint reading that threshold, DeleteRealtimeEndpoint removing an endpoint still
    being created.

    An UPDATE that changes nothing, as the transaction's first statement: it takes SQLite's write lock or
    the row's lock on PostgreSQL and MariaDB, before MariaDB's first read fixes the transaction's snapshot
    (which would otherwise not show what the other call committed while this one waited).
    """
    table = ENTITY_TABLES[kind]
    session.execute(update(table).where(table.c.id == entity_id).values(id=table.c.id))


def usable(session: Session, kind: str, entity_id: str, member: str) -> Any:
    """An object a Create* call refers to: it must exist, not be DELETED and not have FAILED."""
    entity = session.get(entity_classes()[kind], entity_id)
    if entity is None:
        raise InvalidInputException(f"{member} {entity_id!r}: no such {kind}")
    if entity.status == "DELETED":
        raise InvalidInputException(f"{member} {entity_id!r}: the {kind} is DELETED and cannot be used")
    if entity.status == "FAILED":
        raise InvalidInputException(f"{member} {entity_id!r} is FAILED: {entity.message}")
    return entity


def _same_request(kind: str, existing: Any, request: Request) -> None:
    """A Create* naming an existing id must repeat its parameters exactly (spec 4.4)."""
    if existing.request != canonical(request):
        raise IdempotentParameterMismatchException(
            f"{kind} {existing.id!r} already exists with different parameters"
        )


def reused_id(app: EmrML, operation_name: str, request: Request) -> Response | None:
    """The answer to a Create* whose id exists, or None when the id is new (or the call no Create*).

    Spec 4.4's check comes before any other: a safe retry answers at once, and a reused id with other
    parameters is IdempotentParameterMismatchException, whatever else may be wrong with the new request.
    """
    kind = CREATE_OPERATIONS.get(operation_name)
    entity_id = request.get(ID_MEMBER[kind]) if kind else None
    if kind is None or not isinstance(entity_id, str):
        return None
    table = ENTITY_TABLES[kind]
    with app.engine.connect() as connection:
        existing = connection.execute(
            select(table.c.id, table.c.request).where(table.c.id == entity_id)
        ).first()
    if existing is None:
        return None
    # Stored requests hold a digest in place of a database password: the retry is compared the same way.
    from emrml.service.credentials import seal  # the key file is read only by retries of SQL datasources

    _same_request(kind, existing, seal(app.settings, operation_name, request)[0])
    return {ID_MEMBER[kind]: entity_id}


def create_entity(session: Session, kind: str, request: Request, **columns: Any) -> tuple[Any, bool]:
    """Insert a PENDING entity for a Create* request; returns (entity, created).

    Repeating a Create with the same id and identical parameters is a safe retry (created False, nothing new
    happens); any difference is IdempotentParameterMismatchException (spec 4.4). ``reused_id`` answers most
    repeats before the request is validated; this covers a Create that committed since. (Of two Creates that
    both find the id free, the one whose insert fails is answered by ``EmrML.call`` as a retry.)
    """
    entity_id = request[ID_MEMBER[kind]]
    table = entity_classes()[kind]
    existing = session.get(table, entity_id)
    if existing is not None:
        _same_request(kind, existing, request)
        return existing, False
    moment = now()
    entity = table(
        id=entity_id,
        status="PENDING",
        created_at=moment,
        last_updated_at=moment,
        request=canonical(request),
        progress=0.0,
        attempts=0,
        tries=0,
        confined=REMOTE.get(),
        **columns,
    )
    session.add(entity)
    return entity, True


#: The longest schema or recipe the API model allows (its DataSchema and Recipe shapes), in characters.
MAX_DOCUMENT = 131071


def document_member(text: str) -> str:
    """A stored schema or recipe as Get* answers it: indented for reading, unless that makes it longer than
    the API model allows (a request's may be 131,071 characters without the indentation, and its non-ASCII
    names are \\u escapes when stored); then the same JSON without the indentation, nor escapes."""
    if len(text) <= MAX_DOCUMENT:
        return text
    return json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))


def timing_members(entity: Any) -> Response:
    """Members shared by every entity's description (spec 4.1), without the ones that have no value."""
    members: Response = {
        "CreatedByIamUser": entity.created_by,
        "CreatedAt": entity.created_at,
        "LastUpdatedAt": entity.last_updated_at,
        "Status": entity.status,
    }
    if entity.name is not None:
        members["Name"] = entity.name
    if entity.message:
        # A job's message may quote its data at length (a header's names): kept whole in the metastore,
        # answered within the API's bound.
        members["Message"] = shortened(entity.message, MAX_OBJECT_MESSAGE)
    if entity.started_at is not None and entity.status != "PENDING":
        members["StartedAt"] = entity.started_at
    if entity.finished_at is not None and entity.status in ("COMPLETED", "FAILED"):
        members["FinishedAt"] = entity.finished_at
    if entity.status == "INPROGRESS" or (entity.status == "FAILED" and entity.started_at is not None):
        # Not an Amazon ML member (boto3 ignores it): the job's progress in percent for the CLI and console;
        # a FAILED job's tells how far it got (none for one that failed before it ran: its input failed).
        members["Progress"] = round(100 * entity.progress, 1)
    if entity.status == "INPROGRESS" and entity.progress_message:
        # Nor this one: what the running job does now (a step, or what it waits for: a Spark job without an
        # executor says so), which only the CLI's progress bar showed.
        members["ProgressMessage"] = entity.progress_message
    if entity.spark_application:
        # Not Amazon ML members either: where the job ran on the Spark engine, for the jobs browser.
        members["SparkApplicationId"] = entity.spark_application
        members["SparkJobIds"] = json.loads(entity.spark_jobs or "[]")
    return members


def result_members(entity: Any) -> Response:
    """What models, evaluations and batch predictions report of their job: the data read, the CPU spent."""
    members: Response = {}
    if entity.input_data_location:
        members["InputDataLocationS3"] = entity.input_data_location
    if entity.status == "COMPLETED" and entity.compute_time is not None:
        members["ComputeTime"] = entity.compute_time
    return members


@contextmanager
def deleting(app: EmrML, kind: str, entity_id: str) -> Iterator[Any]:
    """Mark the object DELETED, in a transaction the caller may add to (yields the entity); then remove
    what an earlier attempt of its job left, when the job was queued again after it.

    An attempt that ends without recording its outcome (its server stopping, its worker killed) leaves what
    it published for the next attempt to replace. Deleted while queued again, the job never runs again and
    no attempt completes: what the earlier one published must go, as a job's results go when its object
    is deleted while it runs (``worker.settle_deleted``). Once DELETED, no attempt can publish anything
    again (every step is fenced by the row being INPROGRESS), so the removal comes after the commit."""
    with app.sessions() as session, session.begin():
        entity = find(session, kind, entity_id)
        queued_again = entity.status == "PENDING" and entity.attempts > 0
        if entity.status != "DELETED":
            entity.status = "DELETED"
            entity.last_updated_at = now()
        yield entity
    if queued_again:
        from emrml.service.worker import discard_results  # the job side loads with its first use

        discard_results(app.settings, kind, entity)


#: The name member of each entity kind in Create* and Update* requests.
NAME_MEMBER = {
    "DataSource": "DataSourceName",
    "MLModel": "MLModelName",
    "Evaluation": "EvaluationName",
    "BatchPrediction": "BatchPredictionName",
}


def register_lifecycle(kind: str) -> None:
    """Register ``Update<kind>``, a rename (spec 4.5), and ``Delete<kind>``: the object is marked DELETED
    and stays visible to Get. (Models have their own: a threshold to update, an endpoint to unmount.)"""
    id_member = ID_MEMBER[kind]

    def update(app: EmrML, request: Request) -> Response:
        with app.sessions() as session, session.begin():
            entity = find_live(session, kind, request[id_member])
            if entity.name != request[NAME_MEMBER[kind]]:  # the same name again changes nothing
                entity.name = request[NAME_MEMBER[kind]]
                entity.last_updated_at = now()
        return {id_member: request[id_member]}

    def delete(app: EmrML, request: Request) -> Response:
        with deleting(app, kind, request[id_member]):
            pass
        return {id_member: request[id_member]}

    operation(f"Update{kind}")(update)
    operation(f"Delete{kind}")(delete)
