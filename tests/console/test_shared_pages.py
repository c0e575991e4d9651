"""A share link's page is for people outside the installation: it names no user of it."""

from __future__ import annotations

from typing import Any

import pytest
from console_helpers import EVALUATION, MODEL, login_token
from starlette.testclient import TestClient

from emrml.web.server import create_app

PAGES = {"Evaluation": f"/console/evaluations/{EVALUATION}", "MLModel": f"/console/models/{MODEL}"}


@pytest.mark.parametrize("kind", sorted(PAGES))
def test_a_shared_page_leaves_out_who_created_the_object(admin: Any, installation: Any, kind: str) -> None:
    # The shared pages showed "Created by" with the creator's user ARN, and their JSON twins held it.
    page = admin.get(PAGES[kind])
    assert "Created by" in page.text and "arn:aws:iam::" in page.text  # signed in: still shown
    form = {"csrf_token": login_token(page.text), "kind": kind, "object_id": PAGES[kind].rsplit("/", 1)[1]}
    created = admin.post("/console/share?format=json", data={**form, "expires_in": ""})
    assert created.status_code == 200, created.text
    path = created.json()["Url"][created.json()["Url"].index("/console/") :]
    with TestClient(create_app(installation.service), follow_redirects=False) as outsider:
        shown = outsider.get(path)
        twin = outsider.get(path + "?format=json")
    assert shown.status_code == 200 and PAGES[kind].rsplit("/", 1)[1] in shown.text
    assert twin.status_code == 200 and twin.json()
    for text in (shown.text, twin.text):
        assert "Created by" not in text and "CreatedByIamUser" not in text
        assert "arn:aws:iam::" not in text
