"""Real-time predictions (spec 10): CreateRealtimeEndpoint, DeleteRealtimeEndpoint and Predict.

An endpoint is a state of its model's metastore row (``endpoint_*`` columns: NONE → UPDATING → READY or
FAILED) plus the model loaded in the memory of each serving process (``service.mounted``). Its
``EndpointUrl``, the address boto3 sends ``Predict`` to (spec 1.3), is the ``Settings.public_url`` of the
process asked (``service.mounted.endpoint_url``).

``Predict`` itself is ``service.predicting``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import update

from emrml.errors import InvalidInputException
from emrml.service.metastore import now
from emrml.service.models import endpoint_info
from emrml.service.mounted import EndpointState, endpoint_url
from emrml.service.operations import Request, Response, find, lock_row, operation
from emrml.service.rows import MLModel

if TYPE_CHECKING:
    from emrml.service.app import EmrML


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
