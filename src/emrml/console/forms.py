"""The pages that create things: the datasource wizard, new models (default or custom settings), and the
score threshold (the predict page and the real-time endpoint are console.predict's).

Each is an Amazon ML operation (or a few) called as the logged-in user; an operation's refusal is shown
beside the form field it concerns.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from starlette.responses import Response

from emrml.console.app import View, Visit
from emrml.console.choices import choices
from emrml.console.numbers import decimal, whole
from emrml.console.objects import refused_create, refused_default_model
from emrml.console.thresholds import threshold_error, typed_threshold
from emrml.errors import (
    AccessDeniedException,
    AmazonMLError,
    IdempotentParameterMismatchException,
    InvalidInputException,
    ResourceNotFoundException,
)

ATTRIBUTE_TYPES = ("NUMERIC", "CATEGORICAL", "TEXT", "BINARY")
MODEL_TYPES = ("BINARY", "MULTICLASS", "REGRESSION")
SHUFFLE_TYPES = ("auto", "none")
#: The default model's split, as the Amazon ML console made it: a random 70 % to train, the rest to evaluate.
DEFAULT_TRAIN_PERCENT = 70


#: Amazon ML's longest object name.
NAME_MAX = 1024


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def form_id(visit: Visit, prefix: str) -> str:
    """The id a create form was given when shown, or a new one. The same form sent twice (a double click,
    Back and send again) then names one object: Create* is idempotent for one id and the same parameters."""
    given = visit.field("object_id")
    return given if re.fullmatch(rf"{prefix}-[0-9a-f]{{12}}", given) else new_id(prefix)


def create_once(visit: Visit, operation: str, request: dict[str, Any], member: str) -> str:
    """Run ``operation``, whose ``request[member]`` is a ``form_id``; returns the id created. When the form
    was sent again after a change, its id names the object the first sending made: the change is another
    object, with a new id."""
    try:
        visit.call(operation, request)
    except IdempotentParameterMismatchException:
        request[member] = new_id(request[member].split("-", 1)[0])
        visit.call(operation, request)
    return str(request[member])


def check_name(name: str, errors: dict[str, str]) -> None:
    """A typed name too long for Amazon ML is the name field's error (never cut short unseen)."""
    if len(name) > NAME_MAX:
        errors["name"] = f"A name has at most {NAME_MAX:,} characters (this one has {len(name):,})."


def _split(begin: int, end: int, strategy: str, seed: str, complement: bool = False) -> str:
    splitting: dict[str, Any] = {"percentBegin": begin, "percentEnd": end, "strategy": strategy}
    if strategy == "random":
        splitting["strategyParams"] = {"randomSeed": seed}
    if complement:
        splitting["complement"] = True
    return json.dumps({"splitting": splitting})


# ---------------------------------------------------------------------------------------------- datasources


def new_datasource(visit: Visit) -> View | Response:
    """A wizard in two steps: a location (its schema is inferred), then the schema as an editable table."""
    view = (
        _infer_step(visit) if visit.form is None or visit.field("step") != "create" else _create_step(visit)
    )
    if isinstance(view, View):
        view.extra["refused"] = refused_create(visit, "DataSource")
    return view


#: The location step's fields by the InferDataSchema member they give: an error naming a member is shown
#: under (and focuses) its field; any other error is the location's (the data read there).
INFER_FIELDS = {"target": "TargetAttributeName", "row_id": "RowId"}


#: How the schema file beside the data names the location step's fields, in its errors.
BESIDE_KEYS = {"target": "targetAttributeName", "row_id": "rowId"}


def _infer_field(message: str, form: dict[str, str]) -> str:
    """The field an InferDataSchema error is about: the member it starts with (an attribute that is not a
    column), the row id for one given the target's attribute too, a field typed that the schema file beside
    the data refuses (it names the file), else the location."""
    from emrml.core.schema import shown_name

    for field, member in INFER_FIELDS.items():
        if message.startswith(f"{member} "):
            return field
    if "is also the rowId" in message:
        return "row_id"
    typed = [
        field
        for field, key in BESIDE_KEYS.items()
        if form[field] and f"{key} {shown_name(form[field])}" in message
    ]
    return typed[0] if typed else "location"


def _infer_step(visit: Visit) -> View:
    location = visit.field("location", visit.query.get("location", "")).strip()
    form = {
        "location": location,
        "target": visit.field("target").strip(),
        "row_id": visit.field("row_id").strip(),
    }
    if visit.form is None or not location:
        errors = {"location": "Give the data's location."} if visit.form is not None else {}
        return View(
            "datasource_new.html",
            {"step": "location"},
            400 if errors else 200,
            {"form": form, "errors": errors},
        )
    # The schema file beside the data, when there is one, as a datasource given no schema reads it (the
    # shared datasets' data.csv.schema): inferred, wine_quality's class was NUMERIC.
    request: dict[str, Any] = {"DataLocationS3": location, "UseSchemaBeside": True}
    for field, member in INFER_FIELDS.items():
        if form[field]:
            request[member] = form[field]
    try:
        inferred = visit.call("InferDataSchema", request)
        schema = json.loads(inferred["DataSchema"])
    except (InvalidInputException, AccessDeniedException) as exc:
        # A location outside the data roots is refused (403) but is the field's error all the same.
        return View(
            "datasource_new.html",
            {"step": "location"},
            refusal_status(exc),
            {"form": form, "errors": {_infer_field(exc.message, form): exc.message}},
        )
    form["name"] = _suggested_name(location)
    form["object_id"] = new_id("ds")
    data = {"step": "schema", "DataSchema": schema, "SchemaLocation": inferred.get("SchemaLocation")}
    return View("datasource_new.html", data, extra=_schema_extra(form))


def _suggested_name(location: str) -> str:
    """The datasource's name the form suggests: the location's file or folder with the folder holding it,
    since data files are often named alike (``bank_marketing/data.csv``, ``wine_quality/data.csv``)."""
    parts = [part for part in location.rstrip("/").split("/") if part and not part.endswith(":")]
    return "/".join(parts[-2:])


def refusal_status(exc: AmazonMLError) -> int:
    """A form refused by an operation: 403 for an authorization's refusal, else 400."""
    return 403 if isinstance(exc, AccessDeniedException) else 400


def _schema_extra(form: dict[str, Any], errors: dict[str, str] | None = None) -> dict[str, Any]:
    return {"form": form, "errors": errors or {}, "attribute_types": ATTRIBUTE_TYPES}


def _edited_schema(visit: Visit) -> dict[str, Any]:
    """The schema as the table's fields left it: types, target, row id, excluded attributes."""
    damaged = InvalidInputException("the form's schema is damaged: start the wizard again")
    try:
        schema = json.loads(visit.field("schema"))
        attributes = schema["attributes"]
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: nested thousands deep
        raise damaged from None
    if not isinstance(attributes, list) or not all(isinstance(a, dict) for a in attributes):
        raise damaged
    excluded = set(visit.form.getlist("excluded")) if visit.form is not None else set()
    for index, attribute in enumerate(attributes):
        chosen = visit.field(f"type-{index}", attribute.get("attributeType", ""))
        # A name that is no text (an object, a list) was never inferred, and cannot be looked up below.
        if chosen not in ATTRIBUTE_TYPES or not isinstance(attribute.get("attributeName"), str):
            raise damaged
        attribute["attributeType"] = chosen
    names = [attribute.get("attributeName") for attribute in attributes]
    target, row_id = visit.field("target_attribute"), visit.field("row_id")
    schema["targetAttributeName"] = target if target in names else None
    schema["rowId"] = row_id if row_id in names else None
    schema["excludedAttributeNames"] = [name for name in names if name in excluded]
    return schema


def _create_step(visit: Visit) -> View | Response:
    form = {
        "location": visit.field("location"),
        # Stripped: a name of spaces only is refused by the operation, and means no name.
        "name": visit.field("name").strip(),
        "split": visit.field("split", "all"),
        "percent": visit.field("percent", str(DEFAULT_TRAIN_PERCENT)),
        "strategy": visit.field("strategy", "random"),
        "statistics": visit.field("statistics") == "on",
        "object_id": form_id(visit, "ds"),
    }
    errors: dict[str, str] = {}
    status = 400
    try:
        schema = _edited_schema(visit)
    except InvalidInputException as exc:
        return View(
            "datasource_new.html",
            {"step": "location"},
            400,
            {"form": form, "errors": {"location": exc.message}},
        )
    rearrangement = None
    check_name(form["name"], errors)
    if form["split"] in ("train", "evaluate"):
        percent = whole(form["percent"])
        if percent is None or not 1 <= percent <= 99:
            errors["percent"] = (
                f"The training share is a whole percentage from 1 to 99 (got {form['percent']!r})."
            )
        else:
            if form["strategy"] not in ("random", "sequential"):
                errors["strategy"] = "The split is random or sequential."
            rearrangement = _split(
                0, percent, form["strategy"], form["location"], form["split"] == "evaluate"
            )
    if not errors:
        spec: dict[str, Any] = {"DataLocationS3": form["location"], "DataSchema": json.dumps(schema)}
        if rearrangement:
            spec["DataRearrangement"] = rearrangement
        request = {
            "DataSourceId": form["object_id"],
            "DataSpec": spec,
            "ComputeStatistics": form["statistics"],
        }
        if form["name"]:
            request["DataSourceName"] = form["name"]
        try:
            source_id = create_once(visit, "CreateDataSourceFromS3", request, "DataSourceId")
        except (InvalidInputException, AccessDeniedException) as exc:
            field = "percent" if "Rearrangement" in exc.message else "schema"
            errors[field], status = exc.message, refusal_status(exc)
        else:
            return visit.redirect(f"datasources/{source_id}")
    return View(
        "datasource_new.html", {"step": "schema", "DataSchema": schema}, status, _schema_extra(form, errors)
    )


# ---------------------------------------------------------------------------------------------- models


def new_model(visit: Visit) -> View | Response:
    """Default settings (one form: data and type) or custom settings (recipe, parameters, evaluation)."""
    mode = visit.field("mode", visit.query.get("mode", "default"))
    mode = mode if mode in ("default", "custom") else "default"
    form = {
        "mode": mode,
        "datasource": visit.field("datasource", visit.query.get("datasource", "")),
        "type": (
            visit.field("type", "BINARY")
            if visit.form is not None
            else _target_model_type(visit, visit.query.get("datasource", ""))
        ),
        "name": visit.field("name").strip(),
        "recipe": visit.field("recipe"),
        "passes": visit.field("passes", "10"),
        "shuffle": visit.field("shuffle", "auto"),
        "l1": visit.field("l1", "0"),
        "l2": visit.field("l2", "1e-6"),
        "size": visit.field("size", "100"),
        "evaluation": visit.field("evaluation"),
        "object_id": form_id(visit, "ml"),
    }
    extra = {
        "form": form,
        "errors": {},
        "model_types": MODEL_TYPES,
        "shuffle_types": SHUFFLE_TYPES,
        "refused": refused_default_model(visit) if mode == "default" else refused_create(visit, "MLModel"),
    }
    data = {"DataSources": choices(visit, "DataSource", form["datasource"], form["evaluation"])}
    if visit.form is None:
        return View("model_new.html", data, extra=extra)
    errors: dict[str, str] = extra["errors"]
    if form["type"] not in MODEL_TYPES:
        errors["type"] = "Choose BINARY, MULTICLASS or REGRESSION."
    if not form["datasource"]:
        errors["datasource"] = "Choose the training data."
    check_name(form["name"], errors)
    if errors:
        return View("model_new.html", data, 400, extra)
    try:
        model_id = (_default_model if mode == "default" else _custom_model)(visit, form, errors)
    except AmazonMLError as exc:
        errors.setdefault("general", exc.message)
        model_id = None
    if model_id is None:
        return View("model_new.html", data, 400, extra)
    return visit.redirect(f"models/{model_id}")


def _target_model_type(visit: Visit, datasource_id: str) -> str:
    """The model type made by the target of the datasource the form is opened for (its page's "Train a
    model on this data"): a NUMERIC target is not offered a BINARY model. BINARY when none is known."""
    from emrml.core.model import TARGET_TYPES
    from emrml.core.schema import parse_schema

    if not datasource_id:
        return "BINARY"
    try:
        text = visit.call("GetDataSource", {"DataSourceId": datasource_id, "Verbose": True}).get(
            "DataSourceSchema"
        )
        schema = parse_schema(text) if text else None
    except AmazonMLError:
        return "BINARY"  # not the user's, or unknown: sending the form says so
    if schema is None or schema.target is None:
        return "BINARY"
    target = schema.attribute(schema.target).type
    return next((kind for kind, needed in TARGET_TYPES.items() if needed == target), "BINARY")


def _default_model(visit: Visit, form: dict[str, Any], errors: dict[str, str]) -> str | None:
    from emrml.core.model import check_target
    from emrml.core.schema import parse_schema

    source = visit.call("GetDataSource", {"DataSourceId": form["datasource"], "Verbose": True})
    if not source.get("DataSourceSchema"):
        errors["datasource"] = "This datasource has no schema yet: wait until it is COMPLETED."
        return None
    try:
        # The split's datasources are new, so the service could refuse the model type only in the model's
        # job, once all four objects were made: the form checks it against this datasource's target now.
        check_target(parse_schema(source["DataSourceSchema"]), form["type"], what="this datasource")
    except InvalidInputException as exc:
        errors["type"] = exc.message
        return None
    label = form["name"] or source.get("Name") or source["DataSourceId"]
    location, schema = source["DataLocationS3"], source["DataSourceSchema"]
    try:
        try:
            return default_model(visit, location, schema, form["type"], label, form["object_id"][3:])
        except IdempotentParameterMismatchException:
            # The form sent again after a change (see create_once): other objects, under a new key.
            return default_model(visit, location, schema, form["type"], label, new_id("x")[2:])
    except InvalidInputException as exc:
        errors["type"] = exc.message
        return None


def default_model(visit: Visit, location: str, schema: str, model_type: str, label: str, key: str) -> str:
    """The default settings of the Amazon ML console: a 70/30 random split of the data, a model trained on
    the 70 % with the suggested recipe, and its evaluation on the 30 % queued at once (its job waits for the
    model, so it appears by itself when training completes). ``key`` names the objects (``ml-KEY``, ...)
    and seeds the split: the same key again is a safe retry."""
    ids = {"training": f"ds-{key}-train", "evaluation": f"ds-{key}-eval"}
    for part, complement in (("training", False), ("evaluation", True)):
        spec = {
            "DataLocationS3": location,
            "DataSchema": schema,
            "DataRearrangement": _split(0, DEFAULT_TRAIN_PERCENT, "random", key, complement),
        }
        share = DEFAULT_TRAIN_PERCENT if part == "training" else 100 - DEFAULT_TRAIN_PERCENT
        visit.call(
            "CreateDataSourceFromS3",
            {
                "DataSourceId": ids[part],
                "DataSourceName": f"{label}: {part} {share} %"[:1024],
                "DataSpec": spec,
                "ComputeStatistics": part == "training",
            },
        )
    model_id = f"ml-{key}"
    visit.call(
        "CreateMLModel",
        {
            "MLModelId": model_id,
            "MLModelName": label[:1024],
            "MLModelType": model_type,
            "TrainingDataSourceId": ids["training"],
        },
    )
    visit.call(
        "CreateEvaluation",
        {
            "EvaluationId": f"ev-{key}",
            "EvaluationName": f"{label}: evaluation"[:1024],
            "MLModelId": model_id,
            "EvaluationDataSourceId": ids["evaluation"],
        },
    )
    return model_id


def _custom_model(visit: Visit, form: dict[str, Any], errors: dict[str, str]) -> str | None:
    parameters: dict[str, str] = {"sgd.shuffleType": form["shuffle"]}
    checks = (
        ("passes", "sgd.maxPasses", whole, 1, 100, "a whole number of passes from 1 to 100"),
        ("l1", "sgd.l1RegularizationAmount", decimal, 0.0, 1.0, "a number from 0 to 1"),
        ("l2", "sgd.l2RegularizationAmount", decimal, 0.0, 1.0, "a number from 0 to 1"),
        ("size", "sgd.maxMLModelSizeInBytes", decimal, 0.1, 2048, "a size in MiB from 0.1 to 2048"),
    )
    for field, key, read, low, high, says in checks:
        value = read(form[field])
        if value is None or not low <= value <= high:
            errors[field] = f"Give {says} (got {form[field]!r})."
            continue
        parameters[key] = str(int(value * 1024 * 1024)) if field == "size" else str(value)
    if form["shuffle"] not in SHUFFLE_TYPES:
        errors["shuffle"] = "Shuffle is auto or none."
    if form["evaluation"]:
        # Checked first: a refused evaluation after CreateMLModel left a model the page said was not made.
        try:
            evaluation_source = visit.call("GetDataSource", {"DataSourceId": form["evaluation"]})
        except (InvalidInputException, AccessDeniedException, ResourceNotFoundException) as exc:
            errors["evaluation"] = exc.message
        else:
            if evaluation_source.get("Status") in ("FAILED", "DELETED"):
                errors["evaluation"] = (
                    f"DataSource {form['evaluation']!r} is {evaluation_source['Status']}: choose another"
                )
    if errors:
        return None
    request: dict[str, Any] = {
        "MLModelId": form["object_id"],
        "MLModelType": form["type"],
        "TrainingDataSourceId": form["datasource"],
        "Parameters": parameters,
    }
    if form["name"]:
        request["MLModelName"] = form["name"]
    if form["recipe"].strip():
        request["Recipe"] = form["recipe"]
    try:
        model_id = create_once(visit, "CreateMLModel", request, "MLModelId")
    except InvalidInputException as exc:
        message = exc.message
        field = "recipe" if "ecipe" in message or "line" in message else "general"
        if "Parameters" in message or "sgd." in message:
            field = "general"
        errors[field] = message
        return None
    if form["evaluation"]:
        evaluation = {
            "EvaluationId": "ev-" + model_id.split("-", 1)[1],
            "MLModelId": model_id,
            "EvaluationDataSourceId": form["evaluation"],
        }
        create_once(visit, "CreateEvaluation", evaluation, "EvaluationId")
    return model_id


# ---------------------------------------------------------------------------------------------- model actions


def save_threshold(visit: Visit) -> View | Response:
    """UpdateMLModel's ScoreThreshold; back to the evaluation it was chosen on."""
    model_id = visit.params["entity_id"]
    back = visit.field("evaluation")
    text = visit.field("threshold")
    tried, status = None, 400
    threshold = typed_threshold(text)
    if threshold is None:
        error = threshold_error(text)
    else:
        tried = threshold
        try:
            visit.call("UpdateMLModel", {"MLModelId": model_id, "ScoreThreshold": threshold})
        except (InvalidInputException, AccessDeniedException) as exc:
            # A user who may read the evaluation but not change the model (a viewer) is told beside the
            # threshold, which stays where it was moved to.
            error, status = exc.message, refusal_status(exc)
        else:
            return visit.redirect(f"evaluations/{back}?saved=1" if back else f"models/{model_id}")
    if back:
        from emrml.console.objects import evaluation

        visit.request.scope["path_params"] = {"entity_id": back}
        # The counts at the threshold that was typed, beside it, not at the model's unchanged one.
        view = evaluation(visit, threshold=tried)
        view.status, view.extra["errors"], view.extra["threshold_text"] = status, {"threshold": error}, text
        return view
    raise InvalidInputException(error)
