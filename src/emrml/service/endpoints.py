"""Real-time predictions (spec 10): CreateRealtimeEndpoint, DeleteRealtimeEndpoint and Predict.

An endpoint is a state of its model's metastore row (``endpoint_*`` columns: NONE → UPDATING → READY or
FAILED) plus the model loaded in the memory of each serving process (``service.mounted``). Its
``EndpointUrl``, the address boto3 sends ``Predict`` to (spec 1.3), is the ``Settings.public_url`` of the
process asked (``service.models.endpoint_url``).

``Predict`` is latency-critical: ``EmrML.call`` runs it through :func:`serve_predict`, which checks the
request by hand instead of with the generic validator, and it reads no database row unless the model is
not loaded yet or was last checked a second ago; a record's size is bounded from its length, and only a
record near the limit is serialized to measure it.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from emrml.errors import AmazonMLError, InvalidInputException
from emrml.service.metastore import MLModel, now
from emrml.service.models import endpoint_info, endpoint_url
from emrml.service.mounted import EndpointState, normalized_url
from emrml.service.operations import Request, Response, find, lock_row, operation
from emrml.service.validation import validate_request

if TYPE_CHECKING:
    from emrml.service.app import EmrML

#: The EntityId shape of the API model (pattern and 1..64 length) and VipURL's maximum length.
_ENTITY_ID = re.compile(r"[a-zA-Z0-9_.-]{1,64}")
_MAX_URL = 2048
# JSON spends at most 6 bytes on a character (a \u escape; UTF-8 takes at most 4) and 6 on an entry's quotes,
# colon and comma.
_BYTES_PER_CHARACTER = 6
_BYTES_PER_ENTRY = 6


def serve_predict(app: EmrML, request: Any, caller: str | None = None) -> Response:
    """Predict as ``EmrML.call`` runs it: ``predict(app, validate_request("Predict", request))``, with a
    hand-written check of a well-formed request's three members in place of the generic validator.

    A request of exactly the three members with valid types and lengths is served at once; any other goes
    through ``validate_request``, so the errors are the generic validator's own.
    """
    if type(request) is dict and len(request) == 3:
        model_id = request.get("MLModelId")
        record = request.get("Record")
        endpoint = request.get("PredictEndpoint")
        if (
            type(model_id) is str
            and _ENTITY_ID.fullmatch(model_id) is not None
            and type(endpoint) is str
            and len(endpoint) <= _MAX_URL
            and type(record) is dict
        ):
            try:
                # Joining is the quickest test that every key and value is a string, and sizes the record;
                # one join of both costs a sixth less than a join of each.
                characters = len("".join([*record, *record.values()]))
            except TypeError:
                pass
            else:
                return predict_checked(app, model_id, record, endpoint, characters, caller)
    return predict(app, validate_request("Predict", request), caller)


@operation("Predict")
def predict(app: EmrML, request: Request, caller: str | None = None) -> Response:
    record = request["Record"]
    characters = sum(map(len, record)) + sum(map(len, record.values()))
    return predict_checked(app, request["MLModelId"], record, request["PredictEndpoint"], characters, caller)


def predict_checked(
    app: EmrML,
    model_id: str,
    record: dict[str, str],
    endpoint: str,
    characters: int,
    caller: str | None = None,
) -> Response:
    """Predict on a request whose members have been checked; ``characters`` is the length of the record's
    keys and values together; ``caller`` the ARN of the user asking (None: the account's root)."""
    mounted, settings = app.mounted, app.settings
    try:
        mount = mounted.get(model_id)
    except AmazonMLError:
        # Why the model cannot answer is said only to a caller who may predict with it.
        app.access.authorize(caller, "Predict", {"MLModelId": model_id})
        raise
    if caller is not None:
        app.access.check_predict(caller, model_id, mount.owner)
    # The usual request names the public URL exactly, which needs no normalizing.
    if settings.predict_endpoint_check == "strict" and endpoint != settings.public_url:
        url = endpoint_url(app)
        if normalized_url(endpoint) != url:
            raise InvalidInputException(
                f"PredictEndpoint {endpoint!r} is not the EndpointUrl of MLModel {model_id!r} ({url!r})"
            )
    limit = settings.max_record_bytes
    if _BYTES_PER_CHARACTER * characters + _BYTES_PER_ENTRY * len(record) + 2 > limit and (
        len(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()) > limit
    ):
        raise InvalidInputException(f"Record is larger than {limit} bytes as JSON")
    mounted.admit(mount)
    assert mount.predictor is not None  # get() returns only loaded models
    return {"Prediction": mount.predictor.predict_strings(record)}


def _state(entity: MLModel) -> EndpointState:
    return EndpointState(
        entity.status,
        entity.endpoint_status,
        entity.endpoint_created_at,
        entity.peak_requests_per_second,
        entity.artifact_location,
        entity.score_threshold,
        entity.message,
        entity.created_by,
    )


def _response(app: EmrML, entity: MLModel) -> Response:
    return {"MLModelId": entity.id, "RealtimeEndpointInfo": endpoint_info(entity, endpoint_url(app))}


@operation("CreateRealtimeEndpoint")
def create_realtime_endpoint(app: EmrML, request: Request) -> Response:
    """UPDATING while the model loads into this process, then READY — or FAILED with the model's
    ``Message`` saying why. On a READY endpoint, returns its info unchanged; a FAILED or UPDATING one (whose
    creator may have died) is created again."""
    model_id = request["MLModelId"]
    with app.sessions() as session, session.begin():
        # Locked so that an UpdateMLModel changing the threshold is wholly before or after this.
        lock_row(session, "MLModel", model_id)
        entity = find(session, "MLModel", model_id)
        if entity.status != "COMPLETED":
            reason = f": {entity.message}" if entity.status == "FAILED" and entity.message else ""
            raise InvalidInputException(
                f"MLModel {model_id!r} is {entity.status}{reason}; "
                "only a COMPLETED model can have a real-time endpoint"
            )
        if entity.endpoint_status == "READY":
            return _response(app, entity)
        created = now()
        entity.endpoint_status = "UPDATING"
        entity.endpoint_created_at = created
        entity.peak_requests_per_second = app.settings.peak_requests_per_second
        entity.message = None
        entity.last_updated_at = created
        state = _state(entity)
    try:
        app.mounted.load(model_id, state)
        status, message = "READY", None
    except InvalidInputException as exc:
        status, message = "FAILED", f"the real-time endpoint could not load the model: {exc.message}"
    with app.sessions() as session, session.begin():
        # Only our own creation is finished: another process may have deleted or re-created it meanwhile.
        session.execute(
            update(MLModel)
            .where(
                MLModel.id == model_id,
                MLModel.endpoint_status == "UPDATING",
                MLModel.endpoint_created_at == created,
            )
            .values(endpoint_status=status, message=message, last_updated_at=now())
        )
        entity = find(session, "MLModel", model_id)
    if entity.endpoint_status != "READY" or entity.endpoint_created_at != created:
        app.mounted.unmount(model_id)
    return _response(app, entity)


@operation("DeleteRealtimeEndpoint")
def delete_realtime_endpoint(app: EmrML, request: Request) -> Response:
    """The endpoint goes at once (NONE); deleting a model's absent endpoint is not an error."""
    model_id = request["MLModelId"]
    with app.sessions() as session, session.begin():
        # Locked so that a CreateRealtimeEndpoint under way is wholly before this (its endpoint goes too).
        lock_row(session, "MLModel", model_id)
        entity = find(session, "MLModel", model_id)
        if entity.endpoint_status != "NONE":
            if entity.endpoint_status == "FAILED":
                entity.message = None  # the message told why the endpoint failed
            entity.endpoint_status = "NONE"
            entity.endpoint_created_at = None
            entity.peak_requests_per_second = 0
            entity.last_updated_at = now()
    app.mounted.unmount(model_id)
    return _response(app, entity)
