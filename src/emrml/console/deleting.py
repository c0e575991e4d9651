"""Deleting a datasource, model, evaluation or batch prediction from its page, as the Amazon ML console
does: a button asking first (``data-confirm``), offered to who the service would let delete that object;
then the list of its kind. The object is marked DELETED by the service (its running job stops): the jobs
page's Cancel is this, back to the jobs page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from emrml.console.app import Visit

#: By console path: the Delete operation and the member naming the object.
DELETES = {
    "datasources": ("DeleteDataSource", "DataSourceId"),
    "models": ("DeleteMLModel", "MLModelId"),
    "evaluations": ("DeleteEvaluation", "EvaluationId"),
    "batch-predictions": ("DeleteBatchPrediction", "BatchPredictionId"),
}


def deletes(visit: Visit, path: str, object_id: str, status: str | None) -> dict[str, Any]:
    """The page's ``deletes``: where its delete form posts, or nothing when the object is already DELETED
    or the user may not delete it."""
    operation, member = DELETES[path]
    allowed = visit.console.service.access.allowed(visit.arn, operation, {member: object_id})
    return {"deletes": f"{path}/{object_id}/delete" if allowed and status != "DELETED" else None}


def deleter(path: str) -> Callable[[Visit], Response]:
    operation, member = DELETES[path]

    def delete(visit: Visit) -> Response:
        visit.call(operation, {member: visit.params["entity_id"]})
        # A job cancelled from the jobs page goes back there, to the jobs still running.
        return visit.redirect("jobs" if visit.field("back") == "jobs" else path)

    return delete
