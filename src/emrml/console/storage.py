"""The storage browser: the data roots and S3 prefixes a user may read, a page at a time; download,
upload, new folder, delete, copy and move. Every action is ``service.files``'s, as the logged-in user, so
storage grants and the data roots decide (a user without storage access sees a refusal)."""

from __future__ import annotations

import os
from typing import Any

from starlette.datastructures import UploadFile
from starlette.responses import Response

from emrml.console.app import View, Visit, download_response
from emrml.console.objects import refused_create
from emrml.console.paging import pager
from emrml.core.surrogates import is_text
from emrml.errors import AccessDeniedException, AmazonMLError, InvalidInputException
from emrml.service import files
from emrml.storage.locations import Folder


def _parent(location: str) -> str | None:
    trimmed = location.rstrip("/")
    head, separator, _ = trimmed.rpartition("/")
    if not separator or head in ("", "s3:/"):
        return None
    return head + "/"


def storage(visit: Visit) -> View | Response:
    service = visit.console.service
    roots = [str(root) for root in service.settings.data_roots]
    # Offered as starting points: the data roots the user may read, and the folders its storage:Read grants
    # start at (a user granted one folder of a root is not sent to the root, to be refused there).
    readable_roots = [root for root in roots if files.may(service, visit.arn, root)]
    granted = [
        folder
        for folder in service.access.storage_folders(visit.arn)
        if folder not in readable_roots and files.may(service, visit.arn, folder)
    ]
    starts = readable_roots + granted or roots
    location = visit.field("location") or visit.query.get("location") or (starts[0] if starts else "")
    errors: dict[str, str] = {}
    done, action = "", ""
    if visit.form is not None:
        action = visit.field("action")
        try:
            done = _act(visit, action, location)
        except AmazonMLError as exc:
            errors[action or "general"] = exc.message
    folder, token, notice = location.strip(), visit.query.get("token") or None, ""
    listed, status = Folder([], [], None), 400 if errors else 200
    unmade = False
    try:
        folder = files.folder_location(location)
        listed, notice = _listing(visit, folder, token)
    except InvalidInputException as exc:
        # A data root not made yet (a new home's data/) is an empty folder to upload into, not an error:
        # the first upload or new folder creates it.
        unmade = _unmade_root(folder, roots)
        if not unmade:
            errors["location"] = exc.message
            status = 400
    except AmazonMLError as exc:
        # Said beside the location field, which stays to open another (a user granted only some folders
        # lands on the first data root): an error page would leave no way on.
        errors["location"] = exc.message
        status = 403 if isinstance(exc, AccessDeniedException) else 400
    listed, unshown = _shown(listed)
    if notice or "location" in errors:
        token = None
    top = "location" in errors or folder.rstrip("/") in [r.rstrip("/") for r in roots]
    data: dict[str, Any] = {
        "Location": folder,
        # No way up out of a data root: above it everything is refused.
        "Parent": None if top else _parent(folder),
        "Roots": readable_roots,
        "Granted": granted,
        "Folders": listed.folders,
        "Files": [
            {"Location": f.uri, "Name": f.uri.rsplit("/", 1)[-1], "Size": f.size} for f in listed.files
        ],
        "NextToken": listed.next_token,
    }
    if notice:
        data["Notice"] = notice
    if unshown:
        data["Unshown"] = unshown
    if "location" in errors:
        title = "Refused" if status == 403 else "InvalidInputException"
        data["error"] = {"status": status, "title": title, "message": errors["location"]}
    if data["Parent"] and not files.may(service, visit.arn, data["Parent"]):
        data["Parent"] = None  # a way up only to a folder the user may open
    entries = [*listed.folders, *(f.uri for f in listed.files)]
    granted_write = "location" not in errors and files.may(service, visit.arn, folder, write=True)
    on_disk = files.server_may_write(folder)
    # What the page offers, for the twin's reader too: changes here need both the grant and the disk.
    data["MayChange"] = granted_write and on_disk
    if granted_write and not on_disk:
        data["ReadOnlyOnServer"] = True
    extra = {
        # Folders linked and files offered for download only where the user may read them (a Deny of one
        # file or subfolder of a granted folder): its name is shown, saying so.
        "openable": {entry for entry in entries if files.may(service, visit.arn, entry)},
        "errors": errors,
        # Upload, new folder, move and delete are offered to who may write here (copy: to anywhere), where
        # the server can write on disk: a read-only data root would refuse them all, whatever the grants.
        "writable": data["MayChange"],
        # A file the user may read is a datasource's data in one click (the wizard opened at its location),
        # for who may create datasources.
        "creates_datasources": not refused_create(visit, "DataSource"),
        "disk_read_only": data.get("ReadOnlyOnServer", False),
        "done": done,
        # A refused copy or move: its row's field keeps the location typed, to correct rather than retype.
        "tried": {"file": visit.field("file"), "target": visit.field("target"), "action": action}
        if action in errors and action in ("copy", "move")
        else None,
        "unmade": unmade,
        "notice": notice,
        "unshown": unshown,
        "pager": pager(visit, "storage", {"location": folder}, token, listed.next_token),
    }
    return View("storage.html", data, status, extra)


def writable_folders(visit: Visit) -> list[str]:
    """Where the user may write, as the storage browser starts: the data roots its grants let it change,
    then the folders its storage:Write grants start at; each one the server can write on disk too. What
    a form asking for an output folder offers (a new user otherwise has to guess)."""
    service = visit.console.service
    roots = [files.folder_location(str(root)) for root in service.settings.data_roots]
    granted = [files.folder_location(f) for f in service.access.storage_folders(visit.arn, "storage:Write")]
    return [
        folder
        for folder in dict.fromkeys(roots + granted)
        if files.may(service, visit.arn, folder, write=True, below=True) and files.server_may_write(folder)
    ]


def _unmade_root(folder: str, roots: list[str]) -> bool:
    """Whether ``folder`` is a local data root whose directory does not exist (yet)."""
    local = not folder.startswith("s3://")
    return local and folder.rstrip("/") in [r.rstrip("/") for r in roots] and not os.path.lexists(folder)


def _shown(listed: Folder) -> tuple[Folder, int]:
    """``listed`` without the entries whose names are not UTF-8 (bytes a file system allows, decoded with
    surrogate escapes), and how many were left out: no page or twin can carry such a name, nor could a
    link or form send it back, and one of them made the whole folder's page fail."""
    folders = [folder for folder in listed.folders if is_text(folder)]
    kept = [file for file in listed.files if is_text(file.uri)]
    unshown = len(listed.folders) - len(folders) + len(listed.files) - len(kept)
    return Folder(folders, kept, listed.next_token), unshown


def _listing(visit: Visit, folder: str, token: str | None) -> tuple[Folder, str]:
    """The page ``token`` of the folder, and a notice when the token was refused (then the first page)."""
    service = visit.console.service
    try:
        return files.list_folder(service, visit.arn, folder, token), ""
    except InvalidInputException as exc:
        if token is None:
            raise
        # A stale or forged page token: the folder's first page, saying why (as the list pages do).
        return files.list_folder(service, visit.arn, folder, None), exc.message


def _act(visit: Visit, action: str, location: str) -> str:
    service, caller = visit.console.service, visit.arn
    if action == "upload":
        upload = visit.form.get("file") if visit.form is not None else None
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInputException("choose a file to upload")
        name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1]
        replace = visit.field("replace") == "on"
        return "Uploaded " + files.upload(service, caller, location, name, upload.file, replace=replace)
    if action == "mkdir":
        return "Created " + files.make_folder(service, caller, location, visit.field("name").strip())
    if action == "delete":
        files.delete(service, caller, visit.field("file"))
        return "Deleted " + visit.field("file")
    if action in ("copy", "move"):
        source, target = visit.field("file"), visit.field("target").strip()
        files.copy(service, caller, source, target, move=action == "move")
        return f"{'Moved' if action == 'move' else 'Copied'} {source} to {target}"
    raise InvalidInputException(f"unknown action {action!r}")


def download(visit: Visit) -> Response:
    location = visit.query.get("location", "")
    return download_response(files.open_file(visit.console.service, visit.arn, location), location)
