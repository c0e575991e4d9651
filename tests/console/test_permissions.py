"""What the console offers a user it would refuse: every action of a page is asked of the service's access
layer first, and one the user may not take is left out or disabled, saying which permission is missing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import DATASOURCE, Installation, log_in
from starlette.testclient import TestClient

from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.web.server import create_app

VIEWER, VIEWER_PASSWORD = "vera-viewer", "vera-password-1"


@pytest.fixture
def viewer(installation: Installation) -> Iterator[Any]:
    """A client logged in as a member of ``viewers`` (read-only)."""
    service = installation.service
    if VIEWER not in [user.name for user in service.access.identities.list_users()]:
        Identities(service.sessions, installation.home).create_user(VIEWER, ("viewers",))
        Logins(service.sessions).set_password(VIEWER, VIEWER_PASSWORD)
    with TestClient(create_app(service), follow_redirects=False) as client:
        assert log_in(client, VIEWER, VIEWER_PASSWORD).status_code == 303
        yield client


CREATE_LINKS = ("/console/datasources/new", "/console/models/new", "/console/batch-predictions/new")


def test_a_viewer_is_not_offered_to_train_a_model_on_a_datasource(viewer: Any, admin: Any) -> None:
    page = viewer.get(f"/console/datasources/{DATASOURCE}")
    assert page.status_code == 200
    assert "/console/models/new" not in page.text
    note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', page.text)
    assert note and "machinelearning:CreateMLModel" in note.group(1)
    offered = admin.get(f"/console/datasources/{DATASOURCE}")
    assert f"/console/models/new?datasource={DATASOURCE}" in offered.text
    assert 'id="refused-note"' not in offered.text


def test_the_home_and_list_pages_offer_create_buttons_only_to_who_may_create(viewer: Any, admin: Any) -> None:
    pages = ("/console/", "/console/datasources", "/console/models", "/console/batch-predictions")
    for path in pages:
        shown = viewer.get(path)
        assert shown.status_code == 200, path
        assert not [link for link in CREATE_LINKS if link in shown.text], path
        assert 'id="sample-binary"' not in shown.text
    offered = "".join(admin.get(path).text for path in pages)
    assert all(link in offered for link in CREATE_LINKS)
