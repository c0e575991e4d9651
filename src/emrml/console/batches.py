"""Batch predictions: the create form, and the result files of a COMPLETED one with download links.

The files are the ones the batch prediction's manifest names (``GetBatchPrediction``'s ``ManifestLocation``),
read only after ``GetBatchPrediction`` succeeded for the user: a user downloads exactly the results of the
batch predictions they may read, and nothing else. Downloads are streamed in blocks, never read whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse

from emrml.console.app import View, Visit
from emrml.console.forms import new_id
from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.storage import locations

BLOCK_BYTES = 1024 * 1024


def new_batch_prediction(visit: Visit) -> View | Response:
    form = {
        "model": visit.field("model", visit.query.get("model", "")),
        "datasource": visit.field("datasource"),
        "output": visit.field("output").strip(),
        "name": visit.field("name"),
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
    for field, says in (
        ("model", "Choose a model."),
        ("datasource", "Choose the data."),
        ("output", "Give an output folder."),
    ):
        if not form[field]:
            errors[field] = says
    if not errors:
        batch_id = new_id("bp")
        request = {
            "BatchPredictionId": batch_id,
            "MLModelId": form["model"],
            "BatchPredictionDataSourceId": form["datasource"],
            "OutputUri": form["output"],
        }
        if form["name"]:
            request["BatchPredictionName"] = form["name"][:1024]
        try:
            visit.call("CreateBatchPrediction", request)
        except InvalidInputException as exc:
            errors["output" if "OutputUri" in exc.message else "general"] = exc.message
        else:
            return visit.redirect(f"batch-predictions/{batch_id}")
    return View("batch_prediction_new.html", data, 400, extra)


def result_files(described: dict[str, Any]) -> list[str]:
    """The result files a COMPLETED batch prediction's manifest names (empty otherwise)."""
    manifest = described.get("ManifestLocation")
    if described.get("Status") != "COMPLETED" or not manifest:
        return []
    try:
        document = json.loads(locations.read_text(manifest, what="ManifestLocation"))
    except (InvalidInputException, ValueError):
        return []
    return [str(path) for path in document.values()] if isinstance(document, dict) else []


def batch_prediction(visit: Visit) -> View:
    described = visit.call("GetBatchPrediction", {"BatchPredictionId": visit.params["entity_id"]})
    files = result_files(described)
    data = {"GetBatchPrediction": described, "ResultFiles": files}
    return View("batch_prediction.html", data, extra={"files": list(enumerate(files))})


def download(visit: Visit) -> Response:
    described = visit.call("GetBatchPrediction", {"BatchPredictionId": visit.params["entity_id"]})
    files = result_files(described)
    index = visit.params["index"]
    if not index.isdigit() or int(index) >= len(files):
        raise ResourceNotFoundException(
            f"batch prediction {described['BatchPredictionId']!r} has no file {index}"
        )
    location = files[int(index)]
    stream = locations.open_binary(location, what="result file")

    def blocks() -> Iterator[bytes]:
        with stream:
            while block := stream.read(BLOCK_BYTES):
                yield block

    name = location.rstrip("/").rsplit("/", 1)[-1].replace('"', "")
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(
        iterate_in_threadpool(blocks()), media_type="application/octet-stream", headers=headers
    )
