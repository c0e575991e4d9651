"""The storage browser (console/storage.py over service/files.py): listing, download, upload, folders,
delete, copy and move inside the data roots, as the logged-in user; refusals for what the user's groups
or the roots do not allow."""

from __future__ import annotations

import html
import os
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from console_helpers import BOB_PASSWORD, Installation, log_in, login_token
from starlette.testclient import TestClient

from emrml.errors import AccessDeniedException
from emrml.samples import bank_sample_schema
from emrml.service import files
from emrml.service.identity import Identities, user_arn
from emrml.service.logins import Logins
from emrml.web.server import create_app


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
    # Sized as the other pages size data (7.8 KiB, 4.6 MiB), not as a run of digits to count.
    assert "<td>7.8 KiB</td>" in admin.get(f"/console/storage?location={folder}").text
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


def test_a_file_is_replaced_only_when_asked(admin: Any, installation: Installation) -> None:
    """An upload, copy or move onto a file that exists (a datasource's data, say) is refused, both files
    kept, unless the upload asks to replace it."""
    folder = installation.home / "data" / f"kept-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "data.csv").write_bytes(b"precious\n")
    (folder / "other.csv").write_bytes(b"other\n")
    token = _token(admin)
    form = {"csrf_token": token, "action": "upload", "location": str(folder)}
    sent = admin.post("/console/storage?format=json", data=form, files={"file": ("data.csv", b"new\n")})
    assert sent.status_code == 400
    assert sent.json()["Errors"]["upload"] == (
        f"'{folder}/data.csv' already exists: give another location, or delete that file first"
    )
    for action in ("copy", "move"):
        moved = {"csrf_token": token, "action": action, "location": str(folder)}
        refused = admin.post(
            "/console/storage?format=json",
            data={**moved, "file": f"{folder}/other.csv", "target": f"{folder}/data.csv"},
        )
        assert refused.status_code == 400 and "already exists" in refused.json()["Errors"][action]
    assert (folder / "data.csv").read_bytes() == b"precious\n" and (folder / "other.csv").exists()
    page = admin.get(f"/console/storage?location={folder}").text
    assert '<input type="checkbox" name="replace"> Replace a file of the same name here' in page
    replaced = admin.post(
        "/console/storage", data={**form, "replace": "on"}, files={"file": ("data.csv", b"new\n")}
    )
    assert replaced.status_code == 200 and (folder / "data.csv").read_bytes() == b"new\n"


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
    assert bad_name.status_code == 400 and "must be one path part" in bad_name.text


def test_a_user_without_storage_grants_is_refused(anonymous: Any, installation: Installation) -> None:
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    refused = anonymous.get(f"/console/storage?location={installation.home / 'data'}")
    assert refused.status_code == 403 and "storage:Read" in refused.text
    sample: Path = installation.sample
    download = anonymous.get(f"/console/storage/download?location={sample}")
    assert download.status_code == 403


def _folder_with(installation: Installation, name: str, body: bytes) -> Path:
    folder = installation.home / "data" / f"edge-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / name).write_bytes(body)
    return folder


def test_a_name_is_limited_in_bytes_before_anything_is_made(admin: Any, installation: Installation) -> None:
    """A name's limit counts UTF-8 bytes (a CJK character takes 3), said at once, naming the limit: not
    "cannot write" from the file system once the upload had been taken."""
    folder = installation.home / "data" / f"names-{uuid.uuid4().hex[:6]}"
    token = _token(admin)
    longest = "\u6587" * (files.NAME_MAX_BYTES // 3)
    for name, status in ((longest + "\u6587", 400), ("\u6587" * 86, 400), (longest, 200)):
        sent = admin.post(
            "/console/storage?format=json",
            data={"csrf_token": token, "action": "upload", "location": str(folder)},
            files={"file": (name, b"a\n1\n", "text/csv")},
        )
        assert sent.status_code == status, (len(name), sent.text)
        if status == 400:
            expected = f"is {len(name) * 3} bytes in UTF-8: a name has at most {files.NAME_MAX_BYTES} bytes"
            assert expected in sent.json()["Errors"]["upload"]
            assert not (folder / name).exists()
    assert (folder / longest).read_bytes() == b"a\n1\n"
    made = admin.post(
        "/console/storage?format=json",
        data={"csrf_token": token, "action": "mkdir", "location": str(folder), "name": "\u00e9" * 117},
    )
    assert made.status_code == 400 and "is 234 bytes in UTF-8" in made.json()["Errors"]["mkdir"]
    copy = {"csrf_token": token, "action": "copy", "location": str(folder), "file": str(folder / longest)}
    too_long = f"{folder}/{longest}\u6587"
    copied = admin.post("/console/storage?format=json", data={**copy, "target": too_long})
    assert copied.status_code == 400 and "target's file name" in copied.json()["Errors"]["copy"]
    assert sorted(os.listdir(folder)) == [longest]


def test_moving_a_file_onto_itself_keeps_it(admin: Any, installation: Installation) -> None:
    # The move form's target starts as the file's own location: "Move" clicked without changing it (or
    # naming the same file another way) must not copy the file onto itself and then delete it.
    folder = _folder_with(installation, "keep.csv", b"a,b\n1,2\n")
    token = _token(admin)
    for target in (f"{folder}/keep.csv", f"file://{folder}/keep.csv", f"{folder}/./keep.csv"):
        moved = admin.post(
            "/console/storage",
            data={
                "csrf_token": token,
                "action": "move",
                "location": str(folder),
                "file": f"{folder}/keep.csv",
                "target": target,
            },
        )
        assert moved.status_code == 400 and "same file" in moved.text, target
        assert (folder / "keep.csv").read_bytes() == b"a,b\n1,2\n", target
    # A copy onto itself changes nothing either, and says so.
    copied = admin.post(
        "/console/storage",
        data={
            "csrf_token": token,
            "action": "copy",
            "location": str(folder),
            "file": f"{folder}/keep.csv",
            "target": f"{folder}/keep.csv",
        },
    )
    assert copied.status_code == 400 and (folder / "keep.csv").read_bytes() == b"a,b\n1,2\n"


def test_an_error_shows_once_beside_its_own_form(admin: Any, installation: Installation) -> None:
    # errors['copy'] in a template is the dict's copy method when the error is another action's.
    refused = admin.post(
        "/console/storage",
        data={"csrf_token": _token(admin), "action": "mkdir", "location": f"{installation.home}/data"},
    )
    assert refused.status_code == 400
    assert "built-in method" not in refused.text
    assert refused.text.count('class="error field-error"') == 1 and 'id="mkdir-error"' in refused.text


def test_a_forged_page_token_starts_again_from_the_first_page(admin: Any, installation: Installation) -> None:
    folder = _folder_with(installation, "one.csv", b"1\n")
    for token in ("garbage", "-1", "%C2%B2"):  # the last is "\u00b2": a digit to isdigit(), not to int()
        page = admin.get(f"/console/storage?format=json&location={folder}&token={token}")
        assert page.status_code == 200, page.text
        assert [f["Name"] for f in page.json()["Files"]] == ["one.csv"]
        html = admin.get(f"/console/storage?location={folder}&token={token}")
        assert html.status_code == 200 and "not a page token" in html.text


def test_files_with_any_unicode_name_download(admin: Any, installation: Installation) -> None:
    # Header values are Latin-1: the name travels as RFC 6266's filename* (UTF-8), with an ASCII fallback.
    folder = _folder_with(installation, "日本 €.csv", b"x\n")
    downloaded = admin.get(f"/console/storage/download?location={folder}/日本 €.csv")
    assert downloaded.status_code == 200 and downloaded.content == b"x\n"
    disposition = downloaded.headers["content-disposition"]
    assert "filename*=UTF-8''%E6%97%A5%E6%9C%AC%20%E2%82%AC.csv" in disposition
    assert disposition.isascii()


def test_names_that_reorder_or_hide_their_characters_show_them(
    admin: Any, installation: Installation
) -> None:
    # A bidirectional override makes "report\u202eslx.exe" read "reportexe.xls", and a zero-width space
    # makes two names look alike: the page shows each such character as its code point.
    name = "report\u202eslx\u200b.exe"
    folder = _folder_with(installation, name, b"x\n")
    page = admin.get("/console/storage", params={"location": str(folder)})
    shown = "report[U+202E]slx[U+200B].exe"
    assert page.status_code == 200 and f"download>{shown}</a>" in page.text
    assert f'data-confirm="Delete {folder}/{shown}? This cannot be undone."' in page.text
    # The forms keep the name as it is, to send it back: deleting the file deletes that file.
    assert f'<input type="hidden" name="file" value="{folder}/{name}">' in page.text
    assert "\u202e" not in re.sub(r' value="[^"]*"', "", page.text)
    deleted = admin.post(
        "/console/storage",
        data={
            "csrf_token": _token(admin),
            "action": "delete",
            "location": str(folder),
            "file": f"{folder}/{name}",
        },
    )
    assert deleted.status_code == 200 and f"Deleted {folder}/{shown}" in deleted.text
    assert not (folder / name).exists()
    # The twin is data, not a display: the name as it is.
    assert admin.get(f"/console/storage?format=json&location={folder}").json()["Files"] == []


def test_a_folder_holding_names_that_are_not_utf8_still_lists(admin: Any, installation: Installation) -> None:
    # A file system name is bytes: one that is not UTF-8 decodes with surrogate escapes, which neither the
    # page nor its twin can encode (the page was a 500). The others list; the page says how many are not.
    folder = _folder_with(installation, "plain.csv", b"1\n")
    with open(os.fsencode(folder) + b"/latin-\xe9.csv", "wb") as odd:
        odd.write(b"2\n")
    os.mkdir(os.fsencode(folder) + b"/dir-\xff")
    twin = admin.get(f"/console/storage?format=json&location={folder}")
    assert twin.status_code == 200, twin.text
    assert [f["Name"] for f in twin.json()["Files"]] == ["plain.csv"] and twin.json()["Folders"] == []
    assert twin.json()["Unshown"] == 2
    page = admin.get(f"/console/storage?location={folder}")
    assert page.status_code == 200 and "Not shown: 2 of this folder" in page.text and "plain.csv" in page.text


def _link(page: str, text: str) -> str | None:
    found = re.search(rf'<a (?:rel="\w+" )?href="([^"]*)">{text}</a>', page)
    return html.unescape(found.group(1)) if found else None


def test_a_folder_pages_forward_and_back(admin: Any, installation: Installation) -> None:
    folder = installation.home / "data" / f"pages-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    for number in range(250):  # three pages of 100
        (folder / f"f{number:03}.csv").write_bytes(b"1\n")
    first = admin.get(f"/console/storage?location={folder}")
    assert _link(first.text, "Previous page") is None and _link(first.text, "First page") is None
    pages = [first.text]
    for _ in range(2):
        following = _link(pages[-1], "Next page")
        assert following is not None
        pages.append(admin.get(following).text)
    assert _link(pages[-1], "Next page") is None and "f249.csv" in pages[-1]
    for expected in ("f100.csv", "f000.csv"):
        previous = _link(pages[-1], "Previous page")
        assert previous is not None
        pages.append(admin.get(previous).text)
        assert f">{expected}</a>" in pages[-1]
    # Back on the first page: nothing before it, and "Next page" still leads on.
    assert _link(pages[-1], "Previous page") is None
    assert ">f100.csv</a>" in admin.get(_link(pages[-1], "Next page")).text


def _swapped_after_the_check(monkeypatch: Any, folder: Path, outside: Path) -> None:
    """The folder becomes a symbolic link out of the data roots right after its location passed the
    check: what a local user racing the server could do."""
    checked = files.check_location

    def check_then_swap(app: Any, location: str, **kwargs: Any) -> None:
        checked(app, location, **kwargs)
        if location.startswith(str(folder)) and not folder.is_symlink():
            folder.rename(folder.with_name(folder.name + "-real"))
            folder.symlink_to(outside, target_is_directory=True)

    monkeypatch.setattr(files, "check_location", check_then_swap)


def test_a_folder_swapped_for_a_link_after_the_check_is_not_used(
    admin: Any, installation: Installation, tmp_path: Path, monkeypatch: Any
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.csv").write_bytes(b"keep me\n")
    (outside / "secret-name.csv").write_bytes(b"s\n")
    source = _folder_with(installation, "source.csv", b"copied\n")
    token = _token(admin)
    actions = {
        "delete": {"file": "{folder}/victim.csv"},
        "upload": {},
        "mkdir": {"name": "made"},
        "copy": {"file": f"{source}/source.csv", "target": "{folder}/copied.csv"},
    }
    for action, fields in actions.items():
        folder = _folder_with(installation, "victim.csv", b"mine\n")
        with monkeypatch.context() as patch:
            _swapped_after_the_check(patch, folder, outside)
            form = {name: value.format(folder=folder) for name, value in fields.items()}
            admin.post(
                "/console/storage",
                data={"csrf_token": token, "action": action, "location": str(folder), **form},
                files={"file": ("uploaded.csv", b"x\n", "text/csv")} if action == "upload" else None,
            )
        assert folder.is_symlink(), action  # the race happened
        assert sorted(p.name for p in outside.iterdir()) == ["secret-name.csv", "victim.csv"], action
        assert (outside / "victim.csv").read_bytes() == b"keep me\n", action
    folder = _folder_with(installation, "mine.csv", b"mine\n")
    with monkeypatch.context() as patch:
        _swapped_after_the_check(patch, folder, outside)
        listed = admin.get(f"/console/storage?format=json&location={folder}")
    assert listed.status_code == 403 and "secret-name" not in listed.text


def test_a_grant_of_a_folders_contents_covers_the_folder_and_a_deny_its_spellings(
    anonymous: Any, installation: Installation
) -> None:
    access, tag = installation.service.access, uuid.uuid4().hex[:6]
    granted = installation.home / "data" / f"granted-{tag}"
    (granted / "private").mkdir(parents=True)
    (granted / "open.csv").write_bytes(b"a\n1\n")
    (granted / "private" / "secret.csv").write_bytes(b"a\n42\n")
    user, group = f"erin-{tag}", f"readers-{tag}"
    Identities(installation.service.sessions, installation.home).create_user(user)
    Logins(installation.service.sessions).set_password(user, "erin-password-1")
    access.create_group(group)
    access.add_statement(group, {"Effect": "Allow", "Action": "storage:Read", "Resource": f"{granted}/*"})
    access.add_statement(
        group, {"Effect": "Deny", "Action": "storage:Read", "Resource": f"{granted}/private/*"}
    )
    access.add_member(group, user)
    assert log_in(anonymous, user, "erin-password-1").status_code == 303
    # The folder the grant is about opens, with or without its slash.
    for location in (f"{granted}/", str(granted)):
        listed = anonymous.get("/console/storage", params={"location": location, "format": "json"})
        assert listed.status_code == 200, listed.text
        assert [f["Name"] for f in listed.json()["Files"]] == ["open.csv"]
    # The denied folder's names stay hidden, however it is spelled.
    for location in (f"{granted}/private/", f"{granted}/private", f"{granted}/private/../private"):
        refused = anonymous.get("/console/storage", params={"location": location})
        assert refused.status_code == 403 and "secret.csv" not in refused.text, location
    # Granted one folder of a data root, the user lands in it, offered it and not the root it may not read.
    landing = anonymous.get("/console/storage")
    assert landing.status_code == 200 and "open.csv" in landing.text
    twin = anonymous.get("/console/storage?format=json").json()
    assert twin["Location"] == f"{granted}/" and twin["Roots"] == [] and twin["Granted"] == [f"{granted}/"]
    links = re.findall(r'href="/console/storage\?location=([^"&]+)"', landing.text)
    offered = {unquote(link) for link in links}
    # Not its parent ("..": the data root) nor its denied subfolder, named as one the user may not open.
    assert offered == {f"{granted}/"}
    assert "private/ <small" in landing.text and "(you may not open it)" in landing.text
    # Nor may a datasource read it whole: the folder without its slash was not denied.
    spec = {"DataLocationS3": f"{granted}/private", "DataSchema": bank_sample_schema().to_json()}
    with pytest.raises(AccessDeniedException, match="storage:Read"):
        installation.service.call(
            "CreateDataSourceFromS3",
            {"DataSourceId": f"ds-private-{tag}", "DataSpec": spec},
            user_arn(installation.service.settings.account_id, user),
            remote=True,
        )


def test_a_folder_that_cannot_be_listed_leaves_the_location_field_to_open_another(
    admin: Any, installation: Installation
) -> None:
    data = installation.home / "data"
    for location, status, says in (
        (f"{data}/no-such-folder", 400, "does not exist"),
        ("relative/path", 400, "must be an absolute path"),
        (f"{installation.sample}", 400, "is not a directory"),
        ("/etc", 403, "outside the data roots"),
    ):
        page = admin.get("/console/storage", params={"location": location})
        assert page.status_code == status, location
        assert 'id="location-error"' in page.text and says in html.unescape(page.text), location
        assert 'aria-invalid="true"' in page.text and 'id="entries"' not in page.text
        twin = admin.get("/console/storage", params={"location": location, "format": "json"})
        assert twin.status_code == status and says in twin.json()["error"]["message"]
    # A user without any storage grant lands on the first data root: refused, with the field still there.
    with TestClient(create_app(installation.service), follow_redirects=False) as bob:
        assert log_in(bob, "bob", BOB_PASSWORD).status_code == 303
        landing = bob.get("/console/storage")
    assert landing.status_code == 403 and "storage:Read" in landing.text
    assert '<input id="location" name="location"' in landing.text


def test_a_new_homes_storage_page_opens_its_empty_data_folder(fresh_admin: tuple[Any, Path]) -> None:
    """A new home's data folder (the default data root) does not exist until something is written there:
    the storage browser's first page shows it empty, with the upload form that makes it, not an error."""
    client, home = fresh_admin
    page = client.get("/console/storage")
    assert page.status_code == 200, page.text
    assert "Empty." in page.text and "unmade-note" in page.text and "Upload a file here" in page.text
    form = {"csrf_token": login_token(page.text), "action": "upload", "location": f"{home}/data/"}
    sent = client.post("/console/storage", data=form, files={"file": ("first.csv", b"a\n1\n")})
    assert sent.status_code == 200 and (home / "data" / "first.csv").read_bytes() == b"a\n1\n"
    # Elsewhere a missing folder is still said to be missing.
    missing = client.get("/console/storage", params={"location": f"{home}/data/none/"})
    assert missing.status_code == 400 and "does not exist" in missing.text


def test_a_folder_the_server_cannot_write_offers_no_change(
    admin: Any, installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data root mounted read-only (simulated: the tests run as root, whom a mode does not stop, and a
    read-only mount needs a namespace of its own) refuses every change on disk whatever the grants: the
    browser offers none there, saying why, and still offers download and copy."""
    folder = installation.home / "data" / f"read-only-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "kept.csv").write_text("a,b\n1,2\n")
    real_access = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        if mode & os.W_OK and Path(path).resolve() == folder.resolve():
            return False
        return real_access(path, mode, **kwargs)

    location = f"{folder}/"
    monkeypatch.setattr(os, "access", access)
    shown = admin.get("/console/storage", params={"location": location}).text
    note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', shown)
    assert note and "read-only on its disk" in note.group(1) and "permissions" not in note.group(1)
    assert 'value="move"' not in shown and 'value="delete"' not in shown
    assert 'value="upload"' not in shown and 'value="mkdir"' not in shown
    assert 'value="copy"' in shown and "kept.csv" in shown
    twin = admin.get("/console/storage", params={"location": location, "format": "json"}).json()
    assert (twin["MayChange"], twin["ReadOnlyOnServer"]) == (False, True)
    monkeypatch.undo()
    twin = admin.get("/console/storage", params={"location": location, "format": "json"}).json()
    assert twin["MayChange"] is True and "ReadOnlyOnServer" not in twin
    writable = admin.get("/console/storage", params={"location": location}).text
    assert (
        'value="delete"' in writable and 'value="upload"' in writable and 'id="refused-note"' not in writable
    )


def test_a_refused_copy_keeps_the_typed_location_in_its_rows_field(
    admin: Any, installation: Installation
) -> None:
    folder = _folder_with(installation, "kept.csv", b"a,b\n1,2\n")
    typed = f"{installation.home}/elsewhere/copied.csv"  # outside the data roots
    refused = admin.post(
        "/console/storage",
        data={
            "csrf_token": _token(admin),
            "action": "copy",
            "location": str(folder),
            "file": f"{folder}/kept.csv",
            "target": typed,
        },
    )
    assert refused.status_code in (400, 403)
    field = re.search(r'<input id="target-1" name="target" value="([^"]*)"([^>]*)>', refused.text)
    assert field and field.group(1) == typed
    assert 'aria-invalid="true"' in field.group(2) and 'aria-describedby="copy-error"' in field.group(2)
    assert 'id="copy-error"' in refused.text
    # Shown again without the refusal, the field starts as the file's own location.
    shown = admin.get(f"/console/storage?location={folder}").text
    again = re.search(r'<input id="target-1" name="target" value="([^"]*)"([^>]*)>', shown)
    assert again and again.group(1) == f"{folder}/kept.csv" and "aria-invalid" not in again.group(2)
