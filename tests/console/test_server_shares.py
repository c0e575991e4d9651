"""The console's share links (lifetimes, revocation, deleted users) and the batch prediction results it
lets users download: only the prediction's own results, inside what its creator may read."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
from console_helpers import (
    BOB_PASSWORD,
    EVALUATION,
    MODEL,
    Installation,
    completed_batch_prediction,
    log_in,
    login_token,
)


def test_share_links_show_one_dashboard_until_revoked(admin: Any, anonymous_client_factory: Any) -> None:
    page = admin.get(f"/console/evaluations/{EVALUATION}")
    created = admin.post(
        "/console/share",
        data={"csrf_token": login_token(page.text), "kind": "Evaluation", "object_id": EVALUATION},
    )
    assert created.status_code == 200
    url = re.search(r'value="(http[^"]+/console/shared/[^"]+)"', created.text).group(1)
    path = url[url.index("/console/") :]
    outsider = anonymous_client_factory()
    shown = outsider.get(path)
    assert (
        shown.status_code == 200
        and EVALUATION in shown.text
        and 'href="/console/datasources"' not in shown.text
    )
    assert "csrf_token" not in shown.text
    assert outsider.get(path.rsplit("/", 1)[0] + "/not-a-token").status_code == 404
    link_id = admin.get(f"/console/evaluations/{EVALUATION}?format=json")  # the page lists live links
    links = re.findall(
        r'name="revoke" value="([0-9a-f]+)"', admin.get(f"/console/evaluations/{EVALUATION}").text
    )
    assert links and link_id.status_code == 200
    token = login_token(page.text)
    for link in links:
        admin.post(
            "/console/share",
            data={"csrf_token": token, "kind": "Evaluation", "object_id": EVALUATION, "revoke": link},
        )
    assert outsider.get(path).status_code == 404


def test_a_share_link_works_for_the_chosen_time_from_now(
    admin: Any, anonymous_client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import emrml.service.sharing as sharing

    page = admin.get(f"/console/models/{MODEL}")
    assert '<option value="3600">1 hour</option>' in page.text
    form = {"csrf_token": login_token(page.text), "kind": "MLModel", "object_id": MODEL}
    before = time.time()
    created = admin.post("/console/share?format=json", data={**form, "expires_in": "3600"})
    assert created.status_code == 200, created.text
    # An hour from now, not a midnight: a link made at 23:30 for an hour must not end at 00:00.
    assert before + 3600 <= created.json()["ExpiresAt"] <= time.time() + 3600
    path = created.json()["Url"][created.json()["Url"].index("/console/") :]
    outsider = anonymous_client_factory()
    assert outsider.get(path).status_code == 200
    clock = sharing.now
    monkeypatch.setattr(sharing, "now", lambda: clock() + 3550)
    assert outsider.get(path).status_code == 200
    monkeypatch.setattr(sharing, "now", lambda: clock() + 3610)
    assert outsider.get(path).status_code == 404
    forever = admin.post("/console/share?format=json", data={**form, "expires_in": ""})
    assert forever.status_code == 200 and forever.json()["ExpiresAt"] is None
    forged = admin.post("/console/share", data={**form, "expires_in": "2026-12-31"})
    assert forged.status_code == 400 and "none of the lifetimes offered" in forged.text


def test_a_deleted_users_share_links_stay_dead_when_a_user_of_that_name_is_created_again(
    installation: Installation, anonymous_client_factory: Any
) -> None:
    from emrml.service.groups import ADMINS, VIEWERS
    from emrml.service.logins import Logins

    access, logins = installation.service.access, Logins(installation.service.sessions)
    name = f"sharer-{uuid.uuid4().hex[:6]}"
    access.create_user(name, (ADMINS,))  # who may change the evaluation, and so share it
    logins.set_password(name, "sharer-password-1")
    sharer, outsider = anonymous_client_factory(), anonymous_client_factory()
    assert log_in(sharer, name, "sharer-password-1").status_code == 303
    token = login_token(sharer.get(f"/console/evaluations/{EVALUATION}").text)
    form = {"csrf_token": token, "kind": "Evaluation", "object_id": EVALUATION, "expires_in": ""}
    created = sharer.post("/console/share?format=json", data=form)
    assert created.status_code == 200, created.text
    path = created.json()["Url"][created.json()["Url"].index("/console/") :]
    assert outsider.get(path).status_code == 200
    access.delete_user(name)
    assert outsider.get(path).status_code == 404
    # Another person given the freed name later must not bring the first one's links back to life.
    access.create_user(name, (VIEWERS,))
    try:
        assert outsider.get(path).status_code == 404
    finally:
        access.delete_user(name)


@pytest.fixture
def anonymous_client_factory(installation: Installation) -> Any:
    from starlette.testclient import TestClient

    from emrml.web.server import create_app

    clients: list[Any] = []

    def make() -> Any:
        client = TestClient(create_app(installation.service), follow_redirects=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_a_tampered_manifest_cannot_make_the_console_serve_other_files(
    admin: Any, installation: Installation, tmp_path: Any
) -> None:
    """The manifest lies in the user's folder: whatever it names, only the batch prediction's own results
    inside the data roots are listed and downloadable."""

    import json

    output = installation.home / "data" / "tamper-out"
    completed_batch_prediction(installation, "bp-tamper", output)
    manifest = output / "batch-prediction" / "bp-tamper.manifest"
    secret = tmp_path / "secret.txt"
    secret.write_text("not-for-the-console-3e1f")
    results = output / "batch-prediction" / "result"
    (results / "link.gz").symlink_to(secret)
    manifest.write_text(
        json.dumps(
            {
                "a": str(secret),
                "b": str(installation.home / "secrets.key"),
                "c": f"{results}/../../../../metastore.db",
                "d": str(results / "link.gz"),
            }
        )
    )
    # link.gz is below the results, but a link to outside the roots: the user may not read it, so it is
    # not offered either.
    listed = admin.get("/console/batch-predictions/bp-tamper?format=json").json()["ResultFiles"]
    assert listed == []
    refused = admin.get("/console/batch-predictions/bp-tamper/files/0")
    assert refused.status_code == 404 and "not-for-the-console" not in refused.text
    # Nested deeper than Python's JSON parser reads: no files, as for any manifest that is not an object.
    manifest.write_text("[" * 50_000 + "]" * 50_000)
    page = admin.get("/console/batch-predictions/bp-tamper?format=json")
    assert page.status_code == 200 and page.json()["ResultFiles"] == []


def test_a_result_linked_to_a_file_its_creator_may_not_read_is_not_downloaded(
    admin: Any, anonymous_client_factory: Any, installation: Installation
) -> None:
    """bob may read and write his batch predictions' outputs in his folder, and nothing else of the data
    roots: a result he replaces with a link to another file of the roots is no result of his, for him or
    anyone."""
    from emrml.service.identity import user_arn

    access = installation.service.access
    output = installation.home / "data" / f"bob-out-{uuid.uuid4().hex[:6]}"
    private = installation.home / "data" / f"private-{uuid.uuid4().hex[:6]}.csv"
    private.write_text("not-for-bob-7c2d\n")
    group = f"batchers-{uuid.uuid4().hex[:6]}"
    access.create_group(group)
    access.add_statement(
        group,
        {"Effect": "Allow", "Action": ["CreateBatchPrediction", "GetBatchPrediction"], "Resource": "*"},
    )
    access.add_statement(
        group, {"Effect": "Allow", "Action": ["storage:Read", "storage:Write"], "Resource": f"{output}/*"}
    )
    access.add_member(group, "bob")
    try:
        batch_id = f"bp-{group}"
        completed_batch_prediction(installation, batch_id, output, user_arn("000000000000", "bob"))
        page = f"/console/batch-predictions/{batch_id}"
        # His own results, where he may write: downloaded, by him and by whoever may read the object.
        bob = anonymous_client_factory()
        assert log_in(bob, "bob", BOB_PASSWORD).status_code == 303
        for client in (bob, admin):
            assert client.get(f"{page}/files/0").status_code == 200
        (result,) = (output / "batch-prediction" / "result").iterdir()
        result.unlink()
        result.symlink_to(private)
        # bob may not read where it leads: it is not offered to him. The admin may read anything, but not as
        # bob's result.
        refused = bob.get(f"{page}/files/0")
        assert refused.status_code == 404 and "not-for-bob" not in refused.text
        refused = admin.get(f"{page}/files/0")
        assert refused.status_code == 403 and "neither read nor write" in refused.text
        assert "not-for-bob" not in refused.text
    finally:
        access.delete_group(group)
