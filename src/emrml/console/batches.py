"""Batch predictions: the create form, and the result files of a COMPLETED one with download links.

The files are the ones the batch prediction's manifest names (``GetBatchPrediction``'s ``ManifestLocation``),
read only after ``GetBatchPrediction`` succeeded for the user, only below the batch prediction's output
folder and inside the data roots. The manifest and every result file are read as the user, through the
storage browser's door (``service.files``): reading the batch prediction is not reading its output, which
needs the user's own ``storage:Read`` there, as in the storage browser. A user downloads exactly the
results they may read, and nothing else. Downloads are streamed in blocks, never read whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, BinaryIO

from starlette.responses import Response

from emrml.console.app import View, Visit, download_response
from emrml.console.choices import choices
from emrml.console.deleting import deletes
from emrml.console.forms import check_name, create_once, form_id
from emrml.console.numbers import whole
from emrml.console.objects import readable_names, reference_names, referred, refused_create
from emrml.console.storage import writable_folders
from emrml.errors import AccessDeniedException, InvalidInputException, ResourceNotFoundException
from emrml.service import files
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
        "MLModels": choices(visit, "MLModel", form["model"]),
        "DataSources": choices(visit, "DataSource", form["datasource"]),
    }
    writable = writable_folders(visit)
    data["WritableFolders"] = writable  # the twin's reader is offered the same folders as the hint
    if visit.form is None and not form["output"] and writable:
        form["output"] = writable[0]  # where the user may write: a new user need not guess a folder
    extra: dict[str, Any] = {
        "form": form,
        "errors": {},
        "refused": refused_create(visit, "BatchPrediction"),
        "writable": writable,
    }
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


@dataclass(frozen=True)
class Results:
    """The result files of a batch prediction the user may download, or why there are none to offer."""

    files: list[str]
    refusal: str = ""


def result_files(visit: Visit, described: dict[str, Any]) -> Results:
    """The result files a COMPLETED batch prediction's manifest names (none otherwise): only those below
    its output folder's results that the user may read, and, as every file the server reads, inside the
    data roots. ``refusal``: why the user may not read its manifest (its output folder)."""
    manifest = described.get("ManifestLocation")
    if described.get("Status") != "COMPLETED" or not manifest:
        return Results([])
    service = visit.console.service
    try:
        with _open_output(visit, described, manifest, "ManifestLocation") as stream:
            document = json.loads(stream.read(TEXT_MAX_BYTES).decode("utf-8-sig"))
    except AccessDeniedException as exc:
        return Results([], exc.message)
    except (InvalidInputException, ValueError, RecursionError):  # RecursionError: edited to nest deeply
        return Results([])
    if not isinstance(document, dict):
        return Results([])
    # The manifest is a file in the user's folder: it may have been edited to name any file at all.
    results = described["OutputUri"] + "batch-prediction/result/"
    named = [str(path) for path in document.values()]
    below = [path for path in named if path.startswith(results) and ".." not in path]
    return Results([path for path in below if files.may(service, visit.arn, path)])


def _open_output(visit: Visit, described: dict[str, Any], location: str, member: str) -> BinaryIO:
    """A file the batch prediction's job wrote, opened as the user (who must be allowed to read it), and
    only where, as opened, its creator may read or write: the folder is the creator's to change, and a
    result replaced by a link to another file must not be handed out as a result
    (``confinement.open_output_for_server``)."""
    with files.acting(visit.arn):
        return open_output_for_server(
            visit.console.service, location, owner=described["CreatedByIamUser"], member=member
        )


def batch_prediction(visit: Visit) -> View:
    described = visit.call("GetBatchPrediction", {"BatchPredictionId": visit.params["entity_id"]})
    found = result_files(visit, described)
    data = {"GetBatchPrediction": described, "ResultFiles": found.files}
    if found.refusal:
        data["ResultFilesRefused"] = found.refusal
    shown = readable_names(visit, referred(described))
    # The names of what the page refers to, by console path: in the twin too, as the page shows them.
    data["ReferenceNames"] = reference_names(referred(described), shown)
    extra = {"files": list(enumerate(found.files)), "readable": set(shown), "names": data["ReferenceNames"]}
    # The output folder opens in the storage browser, to who may read it there: the results beside the
    # manifest, the folder the user chose, without typing its location again.
    output = described.get("OutputUri") or ""
    extra["browse_output"] = bool(output) and files.may(visit.console.service, visit.arn, output)
    extra |= deletes(visit, "batch-predictions", described["BatchPredictionId"], described.get("Status"))
    return View("batch_prediction.html", data, extra=extra)


def download(visit: Visit) -> Response:
    described = visit.call("GetBatchPrediction", {"BatchPredictionId": visit.params["entity_id"]})
    found = result_files(visit, described)
    index = visit.params["index"]
    if found.refusal:
        raise AccessDeniedException(found.refusal)
    number = whole(index)  # ASCII digits, no more than int() reads: else no file's index
    if number is None or number >= len(found.files):
        raise ResourceNotFoundException(
            f"batch prediction {described['BatchPredictionId']!r} has no file {index}"
        )
    location = found.files[number]
    opened = _open_output(visit, described, location, "result file")
    return download_response(files.for_download(visit.console.service, opened, location), location)
