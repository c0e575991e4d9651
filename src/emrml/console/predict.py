"""The predict page: a record typed in a form generated from the model's input attributes, or pasted, sent
to the model's real-time endpoint, which the page turns on for who may (the record kept)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from starlette.responses import Response

from emrml.console.app import View, Visit
from emrml.console.forms import refusal_status
from emrml.console.objects import readable, refused_actions
from emrml.core.record_values import json_record
from emrml.core.schema import record_fields
from emrml.errors import AmazonMLError, InvalidInputException

ENDPOINT_ACTIONS = {"create": "CreateRealtimeEndpoint", "delete": "DeleteRealtimeEndpoint"}


def endpoint(visit: Visit) -> View | Response:
    """The endpoint turned on or off; back to the model's page, or to the predict page it was turned on
    from (``back=predict``), whose form sent its record along: shown again, to predict with."""
    model_id = visit.params["entity_id"]
    action = visit.field("action")
    if action not in ENDPOINT_ACTIONS:
        raise InvalidInputException(f"action {action!r} is create or delete")
    visit.call(ENDPOINT_ACTIONS[action], {"MLModelId": model_id})
    if visit.field("back") == "predict":
        return predict(visit, answer=False)
    return visit.redirect(f"models/{model_id}")


#: The operation behind the predict page's button.
PREDICT_ACTIONS = {"Predict": "predict with this model"}
#: The operation that turns the endpoint on, which the predict page offers (beside Predict) to who may.
TURN_ON = {"CreateRealtimeEndpoint": "turn the real-time endpoint on"}


def predict(visit: Visit, answer: bool = True) -> View:
    """A record from the form generated from the model's input attributes, or pasted as JSON or one CSV
    line. The form is GetMLModelInputs, which whoever may Predict with the model may read: a user who may
    predict but not read the model gets the form, and the model's name only a user who may read it.
    Without ``answer`` the record sent is shown as typed, unread (the endpoint was just turned on)."""
    model_id = visit.params["entity_id"]
    inputs = visit.call("GetMLModelInputs", {"MLModelId": model_id})
    attributes = inputs["Attributes"]
    data: dict[str, Any] = {"GetMLModelInputs": inputs}
    shown = readable(visit, [("MLModel", model_id)])
    if f"models/{model_id}" in shown:
        data["Name"] = visit.call("GetMLModel", {"MLModelId": model_id}).get("Name")
    request = {"MLModelId": model_id}
    extra: dict[str, Any] = {
        "attributes": attributes,
        "errors": {},
        "values": {},
        "readable": shown,
        "refused": refused_actions(visit, PREDICT_ACTIONS, request),
        # An endpoint that is off: the page says to turn it on only to who may, from the model's page.
        "turns_on": f"models/{model_id}" in shown and not refused_actions(visit, TURN_ON, request),
    }
    if visit.form is None:
        return View("predict.html", data, extra=extra)
    pasted = visit.field("pasted").strip()
    extra["pasted"] = pasted
    typed = {
        a["attributeName"]: visit.field(f"a-{index}")
        for index, a in enumerate(attributes)
        if visit.field(f"a-{index}") != ""
    }
    if not answer:
        extra["values"] = typed
        return View("predict.html", data, extra=extra)
    try:
        record = _pasted_record(pasted, attributes) if pasted else typed
    except InvalidInputException as exc:
        extra["errors"]["pasted"] = exc.message
        return View("predict.html", data, 400, extra)
    extra["values"] = record
    endpoint_url = inputs["EndpointInfo"].get("EndpointUrl")
    if not endpoint_url:
        extra["errors"]["general"] = "Turn the model's real-time endpoint on first."
        return View("predict.html", data, 400, extra)
    started = time.perf_counter()
    try:
        answer = visit.call(
            "Predict", {"MLModelId": model_id, "Record": record, "PredictEndpoint": endpoint_url}
        )
    except AmazonMLError as exc:
        extra["errors"]["general"] = exc.message
        return View("predict.html", data, refusal_status(exc), extra)
    data["Record"] = record
    data["Prediction"] = answer["Prediction"]
    data["LatencyMilliseconds"] = round((time.perf_counter() - started) * 1000, 2)
    return View("predict.html", data, extra=extra)


def predict_with(visit: Visit) -> Response:
    """The home page's "Predict with a model" (``?model=ID``), for a user who may predict but not list the
    models: that model's predict page, which says whether the user may use it."""
    model_id = visit.query.get("model", "").strip()
    if not model_id:
        raise InvalidInputException("give the id of the model to predict with")
    return visit.redirect(f"models/{quote(model_id, safe='')}/predict")


def _json_array(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except (ValueError, RecursionError):  # nested thousands deep: then refused as a CSV line
        return False


def _pasted_record(text: str, attributes: list[dict[str, Any]]) -> dict[str, str]:
    """A JSON object of strings, or one CSV line in the order of the model's input attributes."""
    if text.startswith("{"):
        return json_record(text, "the pasted record")
    if text.startswith("[") and _json_array(text):
        # Else read as a CSV line, and refused for its count of values: not what is wrong with it.
        raise InvalidInputException(
            "the pasted record is a JSON array: give a JSON object of attribute names and values, or one "
            "CSV line"
        )
    try:
        values = record_fields(text)
    except ValueError as exc:
        raise InvalidInputException(f"the pasted record: {exc}") from None
    names = [a["attributeName"] for a in attributes]
    if len(values) != len(names):
        raise InvalidInputException(
            f"the pasted CSV line has {len(values)} values; the model reads {len(names)} attributes "
            f"({', '.join(names)})"
        )
    return {name: value for name, value in zip(names, values, strict=True) if value != ""}
