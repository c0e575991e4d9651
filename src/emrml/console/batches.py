"""Batch predictions: the create form, and the result files of a COMPLETED one with download links.

The files are the ones the batch prediction's manifest names (``GetBatchPrediction``'s ``ManifestLocation``),
read only after ``GetBatchPrediction`` succeeded for the user, only below the batch prediction's output
folder, inside the data roots and, as opened, where its creator may read or write
(``service.confinement.open_output_for_server``): a user downloads exactly the results of the batch
predictions they may read, and nothing else. Downloads are streamed in blocks, never read whole.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from emrml.console.app import View, Visit, download_response
from emrml.console.forms import check_name, create_once, form_id
from emrml.errors import AccessDeniedException, InvalidInputException, ResourceNotFoundException
from emrml.service.confinement import open_output_for_server
from emrml.storage.locations import TEXT_MAX_BYTES


def new_batch_prediction(visit: Visit) -> View | Response:
    form = {
        "model": visit.field("model", visit.query.get("model", "")),
        "datasource": visit.field("datasource"),
        "output": visit.field("output").strip(),
        "name": visit.field("name").strip(),
        "object_id": form_id(visit, "bp"),
    }
    data = {
        "MLModels": visit.call(
            "DescribeMLModels",
            {"FilterVariable": "Status", "EQ": "COMPLETED", "Limit": 100, "SortOrder": "dsc"},
        )["Results"],
        "DataSources": visit.call(
            "DescribeDataSources",
            {"FilterVariable": "Status", "EQ": "COMPLETED", "Limit": 100, "SortOrder": "dsc"},
        )["Results"],
    }
    extra: dict[str, Any] = {"form": form, "errors": {}}
    if visit.form is None:
        return View("batch_prediction_new.html", data, extra=extra)
    errors = extra["errors"]
    status = 400
    for field, says in (
        ("model", "Choose a model."),
        ("datasource", "Choose the data."),
        ("output", "Give an output folder."),
    ):
        if not form[field]:
            errors[field] = says
    check_name(form["name"], errors)
    if not errors:
        request = {
            "BatchPredictionId": form["object_id"],
            "MLModelId": form["model"],
            "BatchPredictionDataSourceId": form["datasource"],
            "OutputUri": form["output"],
        }
        if form["name"]:
            request["BatchPredictionName"] = form["name"]
        try:
            batch_id = create_once(visit, "CreateBatchPrediction", request, "BatchPredictionId")
        except (InvalidInputException, AccessDeniedException) as exc:
            # An output folder outside the data roots, or without the user's storage:Write, is refused (403)
            # but is the field's error all the same.
            field = "output" if "OutputUri" in exc.message or "storage:Write" in exc.message else "general"
            errors[field] = exc.message
            status = 403 if isinstance(exc, AccessDeniedException) else 400
        else:
            return visit.redirect(f"batch-predictions/{batch_id}")
    return View("batch_prediction_new.html", data, status, extra)


def result_files(visit: Visit, described: dict[str, Any]) -> list[str]:
    """The result files a COMPLETED batch prediction's manifest names (empty otherwise): only those below
    its output folder's results, and, as every file the server reads, inside the data roots."""
    manifest = described.get("ManifestLocation")
    if described.get("Status") != "COMPLETED" or not manifest:
        return []
    try:
        with open_output_for_server(
            visit.console.service, manifest, owner=described["CreatedByIamUser"], member="ManifestLocation"
        ) as stream:
            document = json.loads(stream.read(TEXT_MAX_BYTES).decode("utf-8-sig"))
    except (InvalidInputException, AccessDeniedException, ValueError):
        return []
    if not isinstance(document, dict):
        return []
    # The manifest is a file in the user's folder: it may have been edited to name any file at all.
    results = described["OutputUri"] + "batch-prediction/result/"
    named = [str(path) for path in document.values()]
    return [path for path in named if path.startswith(results) and ".." not in path]


def batch_prediction(visit: Visit) -> View:
    described = visit.call("GetBatchPrediction", {"BatchPredictionId": visit.params["entity_id"]})
    files = result_files(visit, described)
    data = {"GetBatchPrediction": described, "ResultFiles": files}
    return View("batch_prediction.html", data, extra={"files": list(enumerate(files))})


def download(visit: Visit) -> Response:
    described = visit.call("GetBatchPrediction", {"BatchPredictionId": visit.params["entity_id"]})
    files = result_files(visit, described)
    index = visit.params["index"]
    if not (index.isascii() and index.isdigit()) or int(index) >= len(files):
        raise ResourceNotFoundException(
            f"batch prediction {described['BatchPredictionId']!r} has no file {index}"
        )
    location = files[int(index)]
    owner = described["CreatedByIamUser"]
    stream = open_output_for_server(visit.console.service, location, owner=owner, member="result file")
    return download_response(stream, location)
