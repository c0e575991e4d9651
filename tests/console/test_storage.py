"""The storage browser (console/storage.py over service/files.py): listing, download, upload, folders,
delete, copy and move inside the data roots, as the logged-in user; refusals for what the user's groups
or the roots do not allow."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from console_helpers import BOB_PASSWORD, Installation, log_in, login_token


def _token(client: Any) -> str:
    return login_token(client.get("/console/storage").text)


def test_an_admin_browses_uploads_copies_moves_and_deletes(admin: Any, installation: Installation) -> None:
    folder = installation.home / "data" / f"browse-{uuid.uuid4().hex[:6]}"
    token = _token(admin)
    made = admin.post(
        "/console/storage",
        data={"csrf_token": token, "action": "mkdir", "location": str(folder.parent), "name": folder.name},
    )
    assert made.status_code == 200 and folder.is_dir()
    body = b"a,b\n1,2\n" * 1000
    uploaded = admin.post(
        "/console/storage",
        data={"csrf_token": token, "action": "upload", "location": str(folder)},
        files={"file": ("rows.csv", body, "text/csv")},
    )
    assert uploaded.status_code == 200, uploaded.text
    assert (folder / "rows.csv").read_bytes() == body
    listed = admin.get(f"/console/storage?format=json&location={folder}").json()
    assert listed["Location"] == f"{folder}/" and listed["Files"] == [
        {"Location": f"{folder}/rows.csv", "Name": "rows.csv", "Size": len(body)}
    ]
    downloaded = admin.get(f"/console/storage/download?location={folder}/rows.csv")
    assert downloaded.status_code == 200 and downloaded.content == body
    for action, target in (("copy", "copy.csv"), ("move", "moved.csv")):
        done = admin.post(
            "/console/storage",
            data={
                "csrf_token": token,
                "action": action,
                "location": str(folder),
                "file": f"{folder}/rows.csv" if action == "copy" else f"{folder}/copy.csv",
                "target": f"{folder}/{target}",
            },
        )
        assert done.status_code == 200, done.text
    assert sorted(p.name for p in folder.iterdir()) == ["moved.csv", "rows.csv"]
    assert (folder / "moved.csv").read_bytes() == body
    deleted = admin.post(
        "/console/storage",
        data={
            "csrf_token": token,
            "action": "delete",
            "location": str(folder),
            "file": f"{folder}/moved.csv",
        },
    )
    assert deleted.status_code == 200 and not (folder / "moved.csv").exists()


def test_the_home_and_outside_the_roots_are_refused(admin: Any, installation: Installation) -> None:
    for location in (str(installation.home), "/etc", f"{installation.home}/data/../secrets.key"):
        refused = admin.get(f"/console/storage?location={location}")
        assert refused.status_code == 403, location
    secret = admin.get(f"/console/storage/download?location={installation.home}/secrets.key")
    key = (installation.home / "secrets.key").read_text().strip()
    assert secret.status_code == 403 and "own files" in secret.text and key not in secret.text
    token = _token(admin)
    escape = admin.post(
        "/console/storage",
        data={"csrf_token": token, "action": "upload", "location": f"{installation.home}/data"},
        files={"file": ("../metastore.db", b"junk", "application/octet-stream")},
    )
    # The name is cut to its last part: it lands in the data folder, never over the metastore.
    assert escape.status_code == 200
    assert (installation.home / "data" / "metastore.db").read_bytes() == b"junk"
    (installation.home / "data" / "metastore.db").unlink()
    bad_name = admin.post(
        "/console/storage",
        data={"csrf_token": token, "action": "mkdir", "location": f"{installation.home}/data", "name": ".."},
    )
    assert bad_name.status_code == 400 and "must be 1-255 characters" in bad_name.text


def test_a_user_without_storage_grants_is_refused(anonymous: Any, installation: Installation) -> None:
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    refused = anonymous.get(f"/console/storage?location={installation.home / 'data'}")
    assert refused.status_code == 403 and "storage:Read" in refused.text
    sample: Path = installation.sample
    download = anonymous.get(f"/console/storage/download?location={sample}")
    assert download.status_code == 403
