"""The pages that show objects: the home page, a list per kind (paged by Describe*), a detail page per kind.

The kinds share one list page, driven by ``KINDS``; each detail page gathers the Get* operations of its
object (and the insights behind its charts).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from emrml.console.app import View, Visit
from emrml.console.choices import choices
from emrml.console.deleting import deletes
from emrml.console.numbers import whole
from emrml.console.paging import pager
from emrml.console.thresholds import at_threshold, threshold_error, typed_threshold
from emrml.errors import AccessDeniedException, InvalidInputException, ResourceNotFoundException

PAGE_SIZE = 25
STATUSES = ("PENDING", "INPROGRESS", "COMPLETED", "FAILED")
SORTS = {"newest": ("CreatedAt", "dsc"), "oldest": ("CreatedAt", "asc"), "name": ("Name", "asc")}


@dataclass(frozen=True)
class Kind:
    """One kind of object as the console lists it."""

    kind: str
    path: str
    title: str
    id_member: str
    describe: str
    #: Columns of its list beside id, name, status and creation time: (member, heading).
    columns: tuple[tuple[str, str], ...]


KINDS = {
    kind.path: kind
    for kind in (
        Kind(
            "DataSource",
            "datasources",
            "Datasources",
            "DataSourceId",
            "DescribeDataSources",
            (("TotalRecordCount", "Records"), ("DataLocationS3", "Location")),
        ),
        Kind(
            "MLModel",
            "models",
            "ML models",
            "MLModelId",
            "DescribeMLModels",
            (("MLModelType", "Type"), ("TrainingDataSourceId", "Training data")),
        ),
        Kind(
            "Evaluation",
            "evaluations",
            "Evaluations",
            "EvaluationId",
            "DescribeEvaluations",
            (("MLModelId", "Model"), ("EvaluationDataSourceId", "Evaluation data")),
        ),
        Kind(
            "BatchPrediction",
            "batch-predictions",
            "Batch predictions",
            "BatchPredictionId",
            "DescribeBatchPredictions",
            (("MLModelId", "Model"), ("OutputUri", "Output")),
        ),
    )
}
BY_KIND = {kind.kind: kind for kind in KINDS.values()}
#: The list columns that are locations (a path or URI: one long word), which wrap anywhere to fit the box.
LOCATIONS = ("DataLocationS3", "OutputUri")
#: The members naming another object, by the kind of what they name (a list's columns, a page's fields).
REFERENCES = {
    "MLModelId": "MLModel",
    "TrainingDataSourceId": "DataSource",
    "EvaluationDataSourceId": "DataSource",
    "BatchPredictionDataSourceId": "DataSource",
}


#: How many of its newest evaluations a model's page lists; the evaluations list (``?model=``) has them all.
MODEL_EVALUATIONS = 20
#: The kinds whose list filters by model (``?model=``: a model page's "All evaluations of this model").
BY_MODEL = ("Evaluation", "BatchPrediction")


def listable(visit: Visit) -> list[Kind]:
    """The kinds the user may list (``Describe*``): the home and jobs pages show those, so that a user who
    may list some kinds (or none: a predictor) is not refused the whole page."""
    access = visit.console.service.access
    return [kind for kind in KINDS.values() if access.may(visit.user, f"machinelearning:{kind.describe}")]


def describe_request(query: dict[str, str], by_model: bool = False) -> dict[str, Any]:
    """The Describe* request of a list page's query: one filter (the model, when ``by_model``; else the
    name prefix or status), sort, page (``size`` objects, 1 to 100, default ``PAGE_SIZE``)."""
    # ``numbers.whole``: int() refuses past 4,300 digits, which a page size in a URL must not make a 500.
    size = whole(query.get("size", ""))
    limit = PAGE_SIZE if size is None else min(100, max(1, size))
    sort = SORTS.get(query.get("sort", "newest"), SORTS["newest"])
    request: dict[str, Any] = {"Limit": limit, "SortOrder": sort[1]}
    prefix, status = query.get("prefix", "").strip(), query.get("status", "")
    model = query.get("model", "").strip() if by_model else ""
    if model:
        request.update(FilterVariable="MLModelId", EQ=model)
    elif prefix:
        request.update(FilterVariable="Name", Prefix=prefix)
    elif status in STATUSES:
        request.update(FilterVariable="Status", EQ=status)
    elif sort[0] == "Name":
        request.update(FilterVariable="Name", Prefix="")
    else:
        request["FilterVariable"] = "CreatedAt"
        request["GE"] = "0"
    if query.get("token"):
        request["NextToken"] = query["token"]
    return request


def list_page(path: str):
    kind = KINDS[path]

    by_model = kind.kind in BY_MODEL

    def show(visit: Visit) -> View:
        query = visit.query
        try:
            result = visit.call(kind.describe, describe_request(query, by_model))
        except InvalidInputException as exc:
            # A stale or forged page token: start again from the first page, saying why.
            query = {k: v for k, v in query.items() if k != "token"}
            result = visit.call(kind.describe, describe_request(query, by_model))
            result["Notice"] = exc.message
        data = {"kind": kind.kind, "Results": result["Results"], "NextToken": result.get("NextToken")}
        notices = [result["Notice"]] if "Notice" in result else []
        model = query.get("model", "").strip() if by_model else ""
        if model and (query.get("prefix", "").strip() or query.get("status") in STATUSES):
            notices.append(f"One filter at a time: these are all of model {model!r}, of any name and status.")
        elif query.get("prefix", "").strip() and query.get("status") in STATUSES:
            # Describe* filters on one variable: the list must not look filtered by both.
            notices.append(
                f"One filter at a time: these are the names starting with {query['prefix'].strip()!r}, "
                "of any status."
            )
        if notices:
            # The twin's reader learns too that its token was refused or a filter left out.
            data["Notice"] = " ".join(notices)
        kept = {name: query.get(name) for name in ("model", "prefix", "status", "sort", "size")}
        extra = {
            "kind": kind,
            "query": query,
            "pager": pager(visit, kind.path, kept, query.get("token"), result.get("NextToken")),
            "statuses": STATUSES,
            "sorts": list(SORTS),
            "notice": data.get("Notice", ""),
            "offered": creatable(visit),
            # Who may not use the default settings (no storage to split the data) is sent to the custom ones.
            "model_mode": "" if kind.kind != "MLModel" or not refused_default_model(visit) else "custom",
            "model": model,
            "references": {member: BY_KIND[REFERENCES[member]].path for member in REFERENCES},
            "locations": LOCATIONS,
        }
        # The rows' references by name as on an object's page, read with the links in one query per kind.
        referring = [("MLModel", model), *(ref for item in result["Results"] for ref in referred(item))]
        shown = readable_names(visit, [*_named(kind.kind, result["Results"]), ("MLModel", model)])
        extra["readable"] = set(shown)
        data["ReferenceNames"] = extra["names"] = reference_names(referring, shown)
        if model and f"models/{model}" not in shown:
            # A model the filter names but the user may not open: said as the service answers opening it
            # (no such model, or a refusal), so that a mistyped id is not taken for a hidden model.
            try:
                visit.call("GetMLModel", {"MLModelId": model})
            except (ResourceNotFoundException, InvalidInputException) as exc:
                extra["model_missing"] = True
                data["Notice"] = extra["notice"] = " ".join([*notices, exc.message])
            except AccessDeniedException:
                pass
        return View("list.html", data, extra=extra)

    return show


def _completed_datasource(visit: Visit) -> list[dict[str, Any]]:
    """The user's newest COMPLETED datasource, if it may list one (what the custom training form offers)."""
    request = {"FilterVariable": "Status", "EQ": "COMPLETED", "Limit": 1, "SortOrder": "dsc"}
    try:
        found: list[dict[str, Any]] = visit.call("DescribeDataSources", request)["Results"]
    except AccessDeniedException:
        return []
    return found


def home(visit: Visit) -> View:
    """The latest objects of each kind and what to do next."""
    kinds = {kind.path: kind for kind in listable(visit)}
    recent = {
        kind.kind: visit.call(
            kind.describe, {"Limit": 5, "SortOrder": "dsc", "FilterVariable": "CreatedAt", "GE": "0"}
        )["Results"]
        for kind in kinds.values()
    }
    from emrml.console.samples import SAMPLES, may_run

    offered = creatable(visit)
    # A sample is a datasource split, a model and its evaluation: offered to who may train a model on it.
    samples = SAMPLES if "MLModel" in offered and may_run(visit) else {}
    shown = [reference for kind, items in recent.items() for reference in _named(kind, items)]
    extra = {
        "kinds": kinds,
        "samples": samples,
        "offered": offered,
        "readable": readable(visit, shown),
        "default_model": not refused_default_model(visit),
        # Said when the buttons leave it out: a new user without a storage grant otherwise finds no way to
        # begin, and no reason why. Only to who may create datasources but lacks the storage: one who
        # never creates them (a predictor, a viewer) has nothing missing to be told about.
        "refused_datasource": refused_storage(visit, "DataSource"),
    }
    # Custom training chooses among COMPLETED datasources: with none to choose, the page says why rather
    # than offering a form with an empty select: none yet, the user's newest still being made (which
    # "none yet" would send the user to create again), or none the user may list.
    extra["custom_model"] = "MLModel" in offered and bool(_completed_datasource(visit))
    unfinished = [
        item for item in recent.get("DataSource", []) if item.get("Status") in ("PENDING", "INPROGRESS")
    ]
    extra["unfinished_datasource"] = unfinished[0] if unfinished else None
    # Who may predict but not list the models (a predictor) opens a model's predict page by its id.
    access = visit.console.service.access
    extra["predicts_by_id"] = "models" not in kinds and access.may(visit.user, "machinelearning:Predict")
    return View("home.html", {"Recent": recent}, extra=extra)


def part(visit: Visit, data: dict[str, Any], operation: str, request: dict[str, Any]) -> dict[str, Any]:
    """A part of an object's page read by its own operation (statistics, insights), put in ``data`` under
    the operation's name. A user who may read the object but not that part gets the page without it:
    ``data`` then says, under ``<operation>Refused``, which permission is missing (the page's note where
    the part would be), and the part is empty."""
    try:
        answer = visit.call(operation, request)
    except AccessDeniedException:
        data[f"{operation}Refused"] = f"machinelearning:{operation}"
        return {}
    data[operation] = answer
    return answer


def datasource(visit: Visit) -> View:
    source_id = visit.params["entity_id"]
    described = visit.call("GetDataSource", {"DataSourceId": source_id, "Verbose": True})
    schema = _json(described.get("DataSourceSchema"))
    data = {"GetDataSource": described}
    part(visit, data, "GetDataSourceStatistics", {"DataSourceId": source_id})
    refused = refused_actions(visit, DATASOURCE_ACTIONS, {"TrainingDataSourceId": source_id})
    # Who may not use the default settings (no storage to split the data) is sent to the custom ones.
    model_mode = "custom" if refused_default_model(visit) else ""
    extra = {"schema": schema, "refused": refused, "model_mode": model_mode}
    extra |= deletes(visit, "datasources", source_id, described.get("Status"))
    return View("datasource.html", data, extra=extra)


def model(visit: Visit) -> View:
    model_id = visit.params["entity_id"]
    described = visit.call("GetMLModel", {"MLModelId": model_id, "Verbose": True})
    data: dict[str, Any] = {"GetMLModel": described}
    part(visit, data, "GetMLModelInsights", {"MLModelId": model_id})
    access = visit.console.service.access
    # Reading a model is not listing evaluations: who may not list them gets the model, saying so.
    lists_evaluations = access.may(visit.user, "machinelearning:DescribeEvaluations")
    listed: dict[str, Any] = {"Results": []}
    if lists_evaluations:
        listed = visit.call(
            "DescribeEvaluations",
            {"FilterVariable": "MLModelId", "EQ": model_id, "Limit": MODEL_EVALUATIONS, "SortOrder": "dsc"},
        )
    data["Evaluations"] = listed["Results"]
    if not lists_evaluations:
        data["EvaluationsRefused"] = "machinelearning:DescribeEvaluations"
    extra = {
        "more_evaluations": bool(listed.get("NextToken")),
        "recipe": described.get("Recipe"),
        **_sharing(visit, "MLModel", model_id),
        "refused": refused_actions(visit, MODEL_ACTIONS, {"MLModelId": model_id})
        # A batch prediction writes its results: without any storage:Write its form could only fail.
        | {
            action: does
            for action, does in refused_create(visit, "BatchPrediction").items()
            if action.startswith("storage:")
        },
        "lists_batch_predictions": access.may(visit.user, "machinelearning:DescribeBatchPredictions"),
        # Evaluated again on other data from its page, by who may (no note for who may not: nothing lost).
        "evaluates": access.allowed(visit.arn, "CreateEvaluation", {"MLModelId": model_id}),
        **deletes(visit, "models", model_id, described.get("Status")),
    }
    shown = readable_names(visit, _named("Evaluation", listed["Results"], described))
    extra["readable"] = set(shown)
    # The names of what the page refers to, by console path: in the twin too, as the page shows them.
    data["ReferenceNames"] = extra["names"] = reference_names(referred(described), shown)
    return View("model.html", data, extra=extra)


def evaluation(visit: Visit, threshold: float | None = None) -> View:
    """An evaluation; a BINARY one at ``?threshold=`` (or ``threshold``: a save that failed shows the
    counts at the threshold it tried), else at the model's. A ``?threshold=`` out of range is the threshold
    field's error (400), the counts at the model's."""
    evaluation_id = visit.params["entity_id"]
    described = visit.call("GetEvaluation", {"EvaluationId": evaluation_id})
    data: dict[str, Any] = {"GetEvaluation": described}
    insights = part(visit, data, "GetEvaluationInsights", {"EvaluationId": evaluation_id})
    metrics = (insights.get("Insights") or {}).get("metrics") or {}
    extra: dict[str, Any] = {
        **_sharing(visit, "Evaluation", evaluation_id),
        "saved": "saved" in visit.query,
        "refused": refused_actions(visit, THRESHOLD_ACTIONS, {"MLModelId": described.get("MLModelId")}),
        "endpoint_on": insights.get("MLModelEndpointStatus", "NONE") != "NONE",
        **deletes(visit, "evaluations", evaluation_id, described.get("Status")),
    }
    shown = readable_names(visit, referred(described))
    extra["readable"] = set(shown)
    # The names of what the page refers to, by console path: in the twin too, as the page shows them.
    data["ReferenceNames"] = extra["names"] = reference_names(referred(described), shown)
    if insights.get("MLModelType") == "BINARY" and "thresholdTable" in metrics:
        chosen = insights.get("ScoreThreshold", metrics.get("threshold", 0.5))
        asked = visit.query.get("threshold")
        if threshold is not None:
            chosen = threshold
        elif asked is not None:
            typed = typed_threshold(asked)
            if typed is None:
                extra["errors"] = {"threshold": threshold_error(asked)}
                extra["threshold_text"] = asked
                chosen = insights.get("ScoreThreshold", 0.5)
            else:
                chosen = typed
        data["AtThreshold"] = at_threshold(metrics, chosen)
    return View("evaluation.html", data, 400 if extra.get("errors") else 200, extra=extra)


#: The operations behind a model page's actions, by action, with what each is called in the page's note.
MODEL_ACTIONS = {
    "CreateRealtimeEndpoint": "turn the real-time endpoint on",
    "DeleteRealtimeEndpoint": "turn the real-time endpoint off",
    "Predict": "predict a record",
    "CreateBatchPrediction": "start a batch prediction",
}
#: The operation behind a datasource page's "Train a model on this data".
DATASOURCE_ACTIONS = {"CreateMLModel": "train a model on it"}
#: The operation behind an evaluation page's "Save as the model's threshold".
THRESHOLD_ACTIONS = {"UpdateMLModel": "save the model's threshold"}


#: The kinds the home and list pages offer to create, by the operation their form runs.
CREATES = {
    "DataSource": "CreateDataSourceFromS3",
    "MLModel": "CreateMLModel",
    "BatchPrediction": "CreateBatchPrediction",
}


#: What the create forms call creating each kind, in their note to a user who may not.
CREATE_DOES = {
    "DataSource": "create datasources",
    "MLModel": "train models",
    "BatchPrediction": "create batch predictions",
}


#: The storage a create form needs besides its operation, and what it is for: a datasource reads its data,
#: a batch prediction writes its results (``storage:`` grants; without any, the form could only fail).
CREATE_STORAGE = {
    "DataSource": ("storage:Read", "read data"),
    "BatchPrediction": ("storage:Write", "write batch prediction results"),
}


def refused_create(visit: Visit, kind: str) -> dict[str, str]:
    """What the user may not do at all (``Access.may``: allowed on nothing) of what creating ``kind`` needs,
    by operation (or ``storage:`` action): what it does. The form then says so and its button is disabled;
    empty when the user may."""
    access = visit.console.service.access
    refused = {}
    if not access.may(visit.user, f"machinelearning:{CREATES[kind]}"):
        refused[CREATES[kind]] = CREATE_DOES[kind]
    if kind in CREATE_STORAGE:
        action, does = CREATE_STORAGE[kind]
        if not access.may(visit.user, action):
            refused[action] = does
    return refused


def refused_storage(visit: Visit, kind: str) -> dict[str, str]:
    """``refused_create`` of ``kind`` when only its storage is missing: the user may run its operation;
    empty otherwise (it may not create ``kind`` at all, or may)."""
    refused = refused_create(visit, kind)
    return {} if CREATES[kind] in refused else refused


def refused_default_model(visit: Visit) -> dict[str, str]:
    """``refused_create`` of the default settings, which make more than the model: the two datasources of
    the split (reading the data) and the evaluation. Custom settings need the model's alone."""
    refused = refused_create(visit, "MLModel") | refused_create(visit, "DataSource")
    if not visit.console.service.access.may(visit.user, "machinelearning:CreateEvaluation"):
        refused["CreateEvaluation"] = "evaluate models"
    return refused


def creatable(visit: Visit) -> set[str]:
    """The kinds of ``CREATES`` the user may create (``refused_create`` empty), so that a create button
    is not offered to who could only be refused."""
    return {kind for kind in CREATES if not refused_create(visit, kind)}


def refused_actions(visit: Visit, actions: dict[str, str], request: dict[str, Any]) -> dict[str, str]:
    """Those of ``actions`` (operation: what it does) the service would refuse this user with ``request``,
    as the service's access layer decides: the page disables or leaves them out, saying why."""
    access = visit.console.service.access
    return {
        operation: does
        for operation, does in actions.items()
        if not access.allowed(visit.arn, operation, request)
    }


def readable_names(visit: Visit, references: Iterable[tuple[str, Any]]) -> dict[str, str | None]:
    """The console paths (``models/ml-1``) of those ``references`` (kind, id) the user may open, with their
    names (None for one without): a page links another object only then, naming it, else shows its id as
    text (the template's ``ref``). One query per kind, however many rows the page has."""
    wanted: dict[str, set[str]] = {}
    for kind, object_id in references:
        if isinstance(object_id, str) and object_id:
            wanted.setdefault(kind, set()).add(object_id)
    access = visit.console.service.access
    return {
        f"{BY_KIND[kind].path}/{object_id}": name
        for kind, ids in wanted.items()
        for object_id, name in access.readable_names(visit.arn, kind, ids).items()
    }


def readable(visit: Visit, references: Iterable[tuple[str, Any]]) -> set[str]:
    """The paths of ``readable_names``, for a page that shows its references' ids only."""
    return set(readable_names(visit, references))


def reference_names(references: Iterable[tuple[str, Any]], shown: dict[str, str | None]) -> dict[str, str]:
    """The names of those ``references`` (kind, id) the user may open (``shown``, of ``readable_names``), by
    console path: a page names what it refers to beside its id (the template's ``ref`` ``names``), and its
    twin too (``ReferenceNames``)."""
    paths = {f"{BY_KIND[kind].path}/{object_id}" for kind, object_id in references}
    return {path: name for path, name in shown.items() if path in paths and name}


def _named(kind: str, items: Iterable[dict[str, Any]], *referring: dict[str, Any]) -> list[tuple[str, Any]]:
    """The objects ``items`` (of ``kind``) are, and those they and ``referring`` name (``REFERENCES``),
    as ``readable`` takes them."""
    named: list[tuple[str, Any]] = []
    for item in items:
        named.append((kind, item.get(BY_KIND[kind].id_member)))
        named.extend(referred(item))
    for item in referring:
        named.extend(referred(item))
    return named


def referred(item: dict[str, Any]) -> list[tuple[str, Any]]:
    """The objects ``item`` names (``REFERENCES``), as ``readable`` takes them."""
    return [(target, item.get(member)) for member, target in REFERENCES.items() if item.get(member)]


def _sharing(visit: Visit, kind: str, object_id: str) -> dict[str, Any]:
    """The share section of an object's page: whether the user may create links (``shares``), and the live
    links it may revoke (every one when it may create them, else its own), as ``service.sharing`` allows."""
    shares = visit.console.shares
    may_share = shares.may_share(visit.user, kind, object_id)
    links = [
        link
        for link in shares.links(kind, object_id)
        if link.revoked_at is None and (may_share or link.created_by == visit.user)
    ]
    return {"shares": may_share, "links": links}


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def compare(visit: Visit) -> View:
    """Two evaluations side by side (``?a=ID&b=ID``), e.g. two models on the same datasource."""
    chosen = [visit.query.get(side, "") for side in ("a", "b")]
    sides = []
    for evaluation_id in chosen:
        if not evaluation_id:
            continue
        side = {"GetEvaluation": visit.call("GetEvaluation", {"EvaluationId": evaluation_id})}
        part(visit, side, "GetEvaluationInsights", {"EvaluationId": evaluation_id})
        sides.append(side)
    offered = choices(visit, "Evaluation", *chosen)
    described = [side["GetEvaluation"] for side in sides]
    shown = readable_names(visit, _named("Evaluation", described))
    data = {"Evaluations": sides}
    # The sides' models and data by name, as on an evaluation's page.
    data["ReferenceNames"] = reference_names([ref for item in described for ref in referred(item)], shown)
    extra = {"choices": offered, "chosen": chosen, "readable": set(shown), "names": data["ReferenceNames"]}
    return View("compare.html", data, extra=extra)
