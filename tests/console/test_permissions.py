"""What the console offers a user it would refuse: every action of a page is asked of the service's access
layer first, and one the user may not take is left out or disabled, saying which permission is missing."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import check_accessibility
from console_helpers import (
    BOB_PASSWORD,
    DATASOURCE,
    EVALUATION,
    MODEL,
    Installation,
    Served,
    completed_batch_prediction,
    log_in,
    login_token,
)
from starlette.testclient import TestClient

from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.web.server import create_app

VIEWER, VIEWER_PASSWORD = "vera-viewer", "vera-password-1"


def ensure_viewer(installation: Installation) -> None:
    """``VIEWER``, a member of ``viewers`` (read-only)."""
    service = installation.service
    if VIEWER not in [user.name for user in service.access.identities.list_users()]:
        Identities(service.sessions, installation.home).create_user(VIEWER, ("viewers",))
        Logins(service.sessions).set_password(VIEWER, VIEWER_PASSWORD)


@pytest.fixture
def viewer(installation: Installation) -> Iterator[Any]:
    """A client logged in as ``VIEWER``."""
    ensure_viewer(installation)
    with TestClient(create_app(installation.service), follow_redirects=False) as client:
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


def _browse_as_viewer(tab: Any, served: Served) -> None:
    ensure_viewer(served.installation)
    tab.set_default_timeout(20_000)
    tab.goto(served.url + "/console/login")
    tab.fill("#username", VIEWER)
    tab.fill("#password", VIEWER_PASSWORD)
    tab.press("#password", "Enter")
    tab.wait_for_url(served.url + "/console/")
    tab.goto(f"{served.url}/console/evaluations/{EVALUATION}")


def test_enter_in_the_threshold_box_of_who_may_not_save_shows_the_counts_and_says_not_saved(
    page: Any, served: Served, axe_source: str
) -> None:
    """The save button is disabled for a viewer: Enter in the box shows the counts at the typed value in
    place (focus stays in the box) and says that nothing was saved; the box is described by the note."""
    before = served.installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"]
    _browse_as_viewer(page, served)
    page.wait_for_selector("html[data-charts=drawn]")
    address = page.url
    page.fill("#threshold", "0.37")
    page.press("#threshold", "Enter")
    assert page.locator("#threshold-status").inner_text() == "Counts shown at 0.37; not saved."
    assert page.url == address and page.evaluate("() => document.activeElement.id") == "threshold"
    assert page.locator('[data-at="threshold"]').inner_text() == "0.37"
    assert "refused-note" in (page.get_attribute("#threshold", "aria-describedby") or "")
    assert "machinelearning:UpdateMLModel" in page.locator("#refused-note").inner_text()
    check_accessibility(page, axe_source)
    assert served.installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"] == before


def test_enter_in_the_threshold_box_shows_the_counts_without_javascript_too(
    browser: Any, served: Served
) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        tab = context.new_page()
        _browse_as_viewer(tab, served)
        tab.fill("#threshold", "0.37")
        tab.press("#threshold", "Enter")
        tab.wait_for_url(re.compile(r".*threshold=0\.37.*"))
        assert tab.locator('[data-at="threshold"]').inner_text() == "0.37"
        assert tab.input_value("#threshold") == "0.37"
    finally:
        context.close()


def test_batch_prediction_results_are_offered_only_to_who_may_read_its_output(
    viewer: Any, admin: Any, installation: Installation
) -> None:
    """Reading a batch prediction is not reading its output folder: a viewer without ``storage:Read``
    there gets no result links (a note says why) and no download; granted it, the viewer gets both."""
    service, batch_id = installation.service, "bp-permissions"
    output = installation.home / "data" / "permissions-out"
    completed_batch_prediction(installation, batch_id, output)
    path = f"/console/batch-predictions/{batch_id}"

    page, twin = viewer.get(path), viewer.get(path + "?format=json").json()
    assert page.status_code == 200 and f"{path}/files/" not in page.text
    assert 'id="output-folder"' not in page.text  # nor a way into the folder it may not read
    note = re.search(r'id="results-refused">([^<]*)</p>', page.text)
    assert note and "storage:Read" in note.group(1)
    assert twin["ResultFiles"] == [] and "storage:Read" in twin["ResultFilesRefused"]
    refused = viewer.get(f"{path}/files/0")
    assert refused.status_code == 403 and "storage:Read" in refused.text
    assert f"{path}/files/0" in admin.get(path).text and admin.get(f"{path}/files/0").status_code == 200

    access = service.access
    access.create_group("permissions-out-readers")
    grant = {"Effect": "Allow", "Action": ["storage:Read"], "Resource": [f"{output.resolve()}/*"]}
    access.add_statement("permissions-out-readers", grant)
    access.add_member("permissions-out-readers", VIEWER)
    try:
        granted = viewer.get(path)
        assert f"{path}/files/0" in granted.text and 'id="results-refused"' not in granted.text
        assert viewer.get(f"{path}/files/0").status_code == 200
        # The output folder opens in the storage browser, which lists the results' folder.
        link = re.search(r'<a href="([^"]+)" id="output-folder">', granted.text)
        assert link and link.group(1).startswith("/console/storage?location=")
        opened = viewer.get(html.unescape(link.group(1)))
        assert opened.status_code == 200 and "batch-prediction/" in opened.text
    finally:
        access.delete_group("permissions-out-readers")


def test_the_storage_browser_offers_changes_only_to_who_may_write_there(
    viewer: Any, admin: Any, installation: Installation
) -> None:
    folder = installation.home / "data" / "read-only"
    folder.mkdir(exist_ok=True)
    (folder / "kept.csv").write_text("a\n1\n")
    access = installation.service.access
    access.create_group("read-only-readers")
    grant = {"Effect": "Allow", "Action": ["storage:Read"], "Resource": [f"{folder.resolve()}/*"]}
    access.add_statement("read-only-readers", grant)
    access.add_member("read-only-readers", VIEWER)
    try:
        shown = viewer.get(f"/console/storage?location={folder}/")
        assert shown.status_code == 200 and "kept.csv" in shown.text
        assert 'value="delete"' not in shown.text and 'value="move"' not in shown.text
        assert 'value="upload"' not in shown.text and 'value="mkdir"' not in shown.text
        note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', shown.text)
        assert note and "storage:Write" in note.group(1)
        offered = admin.get(f"/console/storage?location={folder}/").text
        assert all(f'value="{action}"' in offered for action in ("delete", "move", "upload", "mkdir"))
        assert 'id="refused-note"' not in offered
        # A file is a datasource's data in one click for who may create datasources, not for a viewer.
        link = re.search(r'<a href="([^"]+)" class="datasource-link">', offered)
        assert link and "datasource-link" not in shown.text
        wizard = admin.get(html.unescape(link.group(1)))
        assert wizard.status_code == 200
        assert f'id="location" name="location" value="{folder}/kept.csv"' in wizard.text
    finally:
        access.delete_group("read-only-readers")


def test_the_create_forms_say_so_to_who_may_not_create(viewer: Any, admin: Any) -> None:
    forms = {
        "/console/models/new": "machinelearning:CreateMLModel",
        "/console/batch-predictions/new": "machinelearning:CreateBatchPrediction",
    }
    for path, operation in forms.items():
        shown = viewer.get(path)
        note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', shown.text)
        assert shown.status_code == 200 and note and operation in note.group(1), path
        button = re.search(r'<button type="submit"[^>]*>', shown.text.split('id="refused-note"')[1])
        assert button and 'disabled aria-describedby="refused-note"' in button.group(0), path
        assert 'id="refused-note"' not in admin.get(path).text
    wizard = viewer.post(
        "/console/datasources/new", data={"csrf_token": login_token(viewer.get("/console/").text)}
    )
    assert "machinelearning:CreateDataSourceFromS3" in wizard.text


def test_the_forms_that_need_storage_are_offered_only_with_a_storage_grant(
    anonymous: Any, installation: Installation
) -> None:
    """A member of users may create datasources and batch predictions of its own but has no storage until a
    group grants it: the data cannot be read nor the results written, so neither is offered, and the forms
    say which permission is missing; granted it, both are offered."""
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    forms = {"/console/datasources/new": "storage:Read", "/console/batch-predictions/new": "storage:Write"}
    # Where each is offered: the home page and its kind's list.
    offering = {
        "/console/datasources/new": "/console/",
        "/console/batch-predictions/new": "/console/batch-predictions",
    }

    def offered() -> set[str]:
        return {path for path, page in offering.items() if path in anonymous.get(page).text}

    home = anonymous.get("/console/").text
    # Training is offered once there is a datasource to train on, which bob cannot create yet.
    assert offered() == set() and 'id="custom-needs-datasource"' in home
    # The home page says why it offers no datasource, which a new user would start with.
    note = re.search(r'<p class="hint" id="create-refused">([^<]*)</p>', home)
    assert note and "storage:Read" in note.group(1)
    for path, action in forms.items():
        shown = anonymous.get(path)
        note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', shown.text)
        assert note and action in note.group(1) and "machinelearning:" not in note.group(1), path
        assert 'disabled aria-describedby="refused-note"' in shown.text, path
    access = installation.service.access
    access.create_group("bob-storage")
    folder = f"{(installation.home / 'data').resolve()}/*"
    grant = {"Effect": "Allow", "Action": ["storage:Read", "storage:Write"], "Resource": [folder]}
    access.add_statement("bob-storage", grant)
    access.add_member("bob-storage", "bob")
    try:
        assert offered() == set(forms) and 'id="create-refused"' not in anonymous.get("/console/").text
        for path in forms:
            assert 'id="refused-note"' not in anonymous.get(path).text, path
    finally:
        access.delete_group("bob-storage")


def test_no_threshold_save_is_offered_while_the_models_endpoint_serves(
    admin: Any, installation: Installation
) -> None:
    """UpdateMLModel refuses a threshold while the model has a real-time endpoint: the evaluation page
    then offers no save (saying why) and still shows the counts at a typed threshold."""
    service = installation.service
    service.call("CreateRealtimeEndpoint", {"MLModelId": MODEL})
    try:
        page = admin.get(f"/console/evaluations/{EVALUATION}")
        note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', page.text)
        assert page.status_code == 200 and note and "real-time endpoint is on" in note.group(1)
        assert 'id="save-threshold" disabled aria-describedby="refused-note"' in page.text
        assert 'data-saves="no"' in page.text and 'method="get"' in page.text
        shown = admin.get(f"/console/evaluations/{EVALUATION}?threshold=0.4&format=json")
        assert shown.status_code == 200 and shown.json()["AtThreshold"]["threshold"] == 0.4
    finally:
        service.call("DeleteRealtimeEndpoint", {"MLModelId": MODEL})
    offered = admin.get(f"/console/evaluations/{EVALUATION}").text
    assert 'data-saves="yes"' in offered and 'id="refused-note"' not in offered


def test_a_models_batch_prediction_is_offered_only_with_somewhere_to_write_its_results(
    installation: Installation,
) -> None:
    service, access, name = installation.service, installation.service.access, "bea-batcher"
    access.create_group(f"{name}-group")
    allowed = ["machinelearning:Get*", "machinelearning:Describe*", "machinelearning:CreateBatchPrediction"]
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": allowed, "Resource": "*"})
    Identities(service.sessions, installation.home).create_user(name, (f"{name}-group",))
    Logins(service.sessions).set_password(name, f"{name}-password-1")
    path, form = f"/console/models/{MODEL}", f"/console/batch-predictions/new?model={MODEL}"
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, name, f"{name}-password-1").status_code == 303
            page = client.get(path).text
            note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', page)
            assert form not in html.unescape(page)
            assert note and "storage:Write on any location" in note.group(1)
            grant = {"Effect": "Allow", "Action": "storage:Write", "Resource": "/srv/out/*"}
            access.add_statement(f"{name}-group", grant)
            page = client.get(path).text
            assert form in html.unescape(page) and "storage:Write" not in page
    finally:
        access.delete_user(name)
        access.delete_group(f"{name}-group")


def test_the_default_model_settings_are_offered_only_with_the_storage_they_read(
    anonymous: Any, installation: Installation
) -> None:
    """The default settings split the data into two datasources (reading it) and evaluate: a member of
    users without storage is sent to the custom settings, and the default form says what is missing."""
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    home = anonymous.get("/console/").text
    # Without a datasource of his own, the home page says one is needed before the custom settings.
    assert 'id="custom-needs-datasource"' in home and 'href="/console/models/new"' not in home
    listed = anonymous.get("/console/models").text
    assert 'href="/console/models/new?mode=custom">Train a model' in listed
    default = anonymous.get("/console/models/new").text
    note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', default)
    assert note and "storage:Read" in note.group(1) and "CreateMLModel" not in note.group(1)
    assert '<button type="submit" disabled aria-describedby="refused-note">Train</button>' in default
    assert 'id="refused-note"' not in anonymous.get("/console/models/new?mode=custom").text


def test_another_users_object_pages_are_not_found_as_pages_of_no_object_are(
    installation: Installation,
) -> None:
    # bob (of ``users``) may read only his own objects; the installation's were created by the root.
    with TestClient(create_app(installation.service), follow_redirects=False) as bob:
        assert log_in(bob, "bob", BOB_PASSWORD).status_code == 303
        for kind, taken in (("datasources", DATASOURCE), ("models", MODEL), ("evaluations", EVALUATION)):
            nope = f"{kind[:2]}-nope-{taken[::-1]}"
            for suffix in ("", "?format=json"):
                shown = bob.get(f"/console/{kind}/{taken}{suffix}")
                missing = bob.get(f"/console/{kind}/{nope}{suffix}")
                assert shown.status_code == missing.status_code == 404, (kind, suffix, shown.text[:300])
                assert shown.text.replace(taken, nope) == missing.text


def _share_form(client: Any, kind: str, object_id: str, **fields: str) -> dict[str, str]:
    path = f"/console/{'evaluations' if kind == 'Evaluation' else 'models'}/{object_id}"
    token = login_token(client.get(path).text)
    return {"csrf_token": token, "kind": kind, "object_id": object_id, "expires_in": "", **fields}


def test_share_links_are_created_by_who_may_change_the_object_and_revoked_by_them_or_their_creator(
    installation: Installation, viewer: Any, admin: Any
) -> None:
    import uuid

    from emrml.errors import AccessDeniedException, ResourceNotFoundException
    from emrml.service.sharing import ShareLinks

    service = installation.service
    shares = ShareLinks(service.sessions, service.access)
    page = f"/console/evaluations/{EVALUATION}"
    # A viewer reads the evaluation but may not change it: no share button, and a forged form is refused.
    assert "Create a share link" not in viewer.get(page).text
    refused = viewer.post("/console/share", data=_share_form(viewer, "Evaluation", EVALUATION))
    assert refused.status_code == 403 and "machinelearning:UpdateEvaluation" in refused.text
    with pytest.raises(AccessDeniedException, match="UpdateEvaluation"):
        shares.share(VIEWER, "Evaluation", EVALUATION, None)
    # bob may not even read it: it is not found, as the service answers him.
    with pytest.raises(ResourceNotFoundException, match="does not exist"):
        shares.share("bob", "Evaluation", EVALUATION, None)
    # The admin's link: the viewer neither sees it nor revokes it.
    created = admin.post("/console/share?format=json", data=_share_form(admin, "Evaluation", EVALUATION))
    assert created.status_code == 200, created.text
    link_id = created.json()["LinkId"]
    assert link_id not in viewer.get(page).text and link_id in admin.get(page).text
    revoke = _share_form(viewer, "Evaluation", EVALUATION, revoke=link_id)
    assert viewer.post("/console/share", data=revoke).status_code == 403
    assert shares.shared(created.json()["Url"].rsplit("/", 1)[1]) is not None
    # A group granting UpdateEvaluation on it lets the viewer share; once the grant is gone, the link it
    # made it may still revoke (only that one).
    group = f"sharers-{uuid.uuid4().hex[:6]}"
    service.access.create_group(group)
    service.access.add_statement(
        group, {"Effect": "Allow", "Action": "UpdateEvaluation", "Resource": f"evaluation/{EVALUATION}"}
    )
    service.access.add_member(group, VIEWER)
    try:
        assert "Create a share link" in viewer.get(page).text
        own = viewer.post("/console/share?format=json", data=_share_form(viewer, "Evaluation", EVALUATION))
        assert own.status_code == 200, own.text
    finally:
        service.access.delete_group(group)
    shown = viewer.get(page).text
    assert "Create a share link" not in shown and own.json()["LinkId"] in shown and link_id not in shown
    revoke = _share_form(viewer, "Evaluation", EVALUATION, revoke=own.json()["LinkId"])
    assert viewer.post("/console/share", data=revoke).status_code == 303
    assert shares.shared(own.json()["Url"].rsplit("/", 1)[1]) is None
    admin.post("/console/share", data=_share_form(admin, "Evaluation", EVALUATION, revoke=link_id))
    assert shares.shared(created.json()["Url"].rsplit("/", 1)[1]) is None
