"""The create-evaluation form: a COMPLETED model evaluated on a COMPLETED datasource, as the Amazon ML
console's "Evaluate" on a model. The evaluation's job waits for nothing: both are ready, so the page it
leads to follows the evaluation's status until it ends."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from emrml.console.app import View, Visit
from emrml.console.choices import choices
from emrml.console.forms import check_name, create_once, form_id
from emrml.errors import AccessDeniedException, InvalidInputException


def refused_evaluation(visit: Visit) -> dict[str, str]:
    """``CreateEvaluation`` and what it does when the user may not evaluate at all (the form says so and
    its button is disabled); empty when the user may."""
    if visit.console.service.access.may(visit.user, "machinelearning:CreateEvaluation"):
        return {}
    return {"CreateEvaluation": "create evaluations"}


def new_evaluation(visit: Visit) -> View | Response:
    form = {
        "model": visit.field("model", visit.query.get("model", "")),
        "datasource": visit.field("datasource"),
        "name": visit.field("name").strip(),
        "object_id": form_id(visit, "ev"),
    }
    data = {
        "MLModels": choices(visit, "MLModel", form["model"]),
        "DataSources": choices(visit, "DataSource", form["datasource"]),
    }
    extra: dict[str, Any] = {"form": form, "errors": {}, "refused": refused_evaluation(visit)}
    if visit.form is None:
        return View("evaluation_new.html", data, extra=extra)
    errors = extra["errors"]
    for field, says in (("model", "Choose a model."), ("datasource", "Choose the data to evaluate it on.")):
        if not form[field]:
            errors[field] = says
    check_name(form["name"], errors)
    status = 400
    if not errors:
        request = {
            "EvaluationId": form["object_id"],
            "MLModelId": form["model"],
            "EvaluationDataSourceId": form["datasource"],
        }
        if form["name"]:
            request["EvaluationName"] = form["name"]
        try:
            evaluation_id = create_once(visit, "CreateEvaluation", request, "EvaluationId")
        except (InvalidInputException, AccessDeniedException) as exc:
            # Said beside the field the service names (a datasource of another schema, a model not ready).
            message = exc.message
            field = (
                "datasource"
                if "EvaluationDataSourceId" in message or "DataSource" in message
                else "model"
                if "MLModel" in message
                else "general"
            )
            errors[field] = message
            status = 403 if isinstance(exc, AccessDeniedException) else 400
        else:
            return visit.redirect(f"evaluations/{evaluation_id}")
    return View("evaluation_new.html", data, status, extra)
