"""The create-evaluation form: a COMPLETED model evaluated on a COMPLETED datasource, reached from the
model's page and the evaluations' list; refusals beside their fields, the fields kept; a user who may not
evaluate is not offered it; datasources that cannot evaluate the chosen model are marked, with why."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from browser_helpers import sign_in
from console_helpers import DATASOURCE, MODEL, Installation, Served, log_in, login_token
from sqlalchemy import update
from starlette.testclient import TestClient
from test_permissions import VIEWER, VIEWER_PASSWORD, ensure_viewer

from emrml.samples import bank_sample_schema
from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.service.rows import DataSource
from emrml.web.server import create_app

#: The bank data without a target, and with another attribute than the model's ``y`` as its target.
UNTARGETED, LOAN_TARGET = "ds-console-untargeted", "ds-console-loan-target"


def _form(client: Any, query: str = "") -> tuple[str, str, str]:
    """The form as shown: its page, CSRF token and object id."""
    shown = client.get(f"/console/evaluations/new{query}").text
    object_id = re.search(r'name="object_id" value="(ev-[0-9a-f]{12})"', shown)
    assert object_id
    return shown, login_token(shown), object_id.group(1)


def test_a_model_is_evaluated_from_its_page(admin: Any, installation: Installation) -> None:
    model_page = admin.get(f"/console/models/{MODEL}").text
    link = re.search(
        r'<a class="button secondary" href="([^"]+)" id="evaluate-link">Evaluate</a>', model_page
    )
    assert link and link.group(1) == f"/console/evaluations/new?model={MODEL}"
    assert 'href="/console/evaluations/new"' in admin.get("/console/evaluations").text
    shown, token, object_id = _form(admin, f"?model={MODEL}")
    assert re.search(rf'<option value="{MODEL}" selected>', shown)
    twin = admin.get(f"/console/evaluations/new?model={MODEL}&format=json").json()
    assert MODEL in [m["MLModelId"] for m in twin["MLModels"]]
    assert f"{DATASOURCE}-eval" in [d["DataSourceId"] for d in twin["DataSources"]]
    sent = admin.post(
        "/console/evaluations/new",
        data={
            "csrf_token": token,
            "object_id": object_id,
            "model": MODEL,
            "datasource": f"{DATASOURCE}-eval",
            "name": "Held-out bank rows",
        },
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"/console/evaluations/{object_id}"
    described = installation.service.wait("Evaluation", object_id)
    assert described["Status"] == "COMPLETED" and described["Name"] == "Held-out bank rows"
    assert described["MLModelId"] == MODEL and described["EvaluationDataSourceId"] == f"{DATASOURCE}-eval"


def test_a_refused_evaluation_keeps_the_form_and_says_why_beside_the_field(admin: Any) -> None:
    _, token, object_id = _form(admin)
    empty = admin.post(
        "/console/evaluations/new", data={"csrf_token": token, "object_id": object_id, "name": "kept"}
    )
    assert empty.status_code == 400
    assert 'id="model-error">Choose a model.' in empty.text
    assert 'id="datasource-error">Choose the data to evaluate it on.' in empty.text
    assert 'id="name" name="name" value="kept"' in empty.text
    twin = admin.post(
        "/console/evaluations/new?format=json",
        data={"csrf_token": token, "object_id": object_id, "model": MODEL},
    ).json()
    assert list(twin["Errors"]) == ["datasource"]
    unknown = admin.post(
        "/console/evaluations/new",
        data={"csrf_token": token, "object_id": object_id, "model": MODEL, "datasource": "ds-nowhere"},
    )
    assert unknown.status_code == 400
    error = re.search(r'<p class="error field-error" id="datasource-error">([^<]*)</p>', unknown.text)
    assert error and "ds-nowhere" in error.group(1)
    assert re.search(rf'<option value="{MODEL}" selected>', unknown.text)


def test_a_viewer_is_not_offered_to_evaluate(installation: Installation) -> None:
    ensure_viewer(installation)
    with TestClient(create_app(installation.service), follow_redirects=False) as viewer:
        assert log_in(viewer, VIEWER, VIEWER_PASSWORD).status_code == 303
        assert 'id="evaluate-link"' not in viewer.get(f"/console/models/{MODEL}").text
        assert "/console/evaluations/new" not in viewer.get("/console/evaluations").text
        shown, _, _ = _form(viewer)
        note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', shown)
        assert note and "machinelearning:CreateEvaluation" in note.group(1)
        assert '<button type="submit" disabled aria-describedby="refused-note">Evaluate</button>' in shown


@pytest.fixture(scope="module")
def other_targets(installation: Installation) -> None:
    """``UNTARGETED`` and ``LOAN_TARGET``, COMPLETED."""
    schema = json.loads(bank_sample_schema().to_json())
    for source_id, target in ((UNTARGETED, None), (LOAN_TARGET, "loan")):
        schema["targetAttributeName"] = target
        spec = {"DataLocationS3": str(installation.sample), "DataSchema": json.dumps(schema)}
        installation.service.call("CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSpec": spec})
        assert installation.service.wait("DataSource", source_id)["Status"] == "COMPLETED"


def _option(html: str, source_id: str) -> str:
    found = re.search(rf'<option value="{source_id}"[^>]*>[^<]*</option>', html)
    assert found, source_id
    return found.group(0)


NO_TARGET = "not usable: it has no target attribute"
LOAN = "not usable: its target is loan, the model predicts y"


def test_datasources_that_cannot_evaluate_the_model_are_marked_with_why(
    admin: Any, other_targets: None
) -> None:
    shown, token, object_id = _form(admin, f"?model={MODEL}")
    assert "disabled" in _option(shown, UNTARGETED) and NO_TARGET in _option(shown, UNTARGETED)
    assert "disabled" in _option(shown, LOAN_TARGET) and LOAN in _option(shown, LOAN_TARGET)
    usable = _option(shown, f"{DATASOURCE}-eval")
    assert "disabled" not in usable and "not usable" not in usable
    twin = admin.get(f"/console/evaluations/new?model={MODEL}&format=json").json()
    assert twin["UnusableDataSources"][UNTARGETED] == NO_TARGET
    assert twin["UnusableDataSources"][LOAN_TARGET] == LOAN
    assert f"{DATASOURCE}-eval" not in twin["UnusableDataSources"]
    assert twin["DataSourceTargets"][UNTARGETED] is None and twin["MLModelTargets"][MODEL] == "y"
    # Sent all the same (an old page, a script), the service refuses it: its words beside the field, the
    # datasource still chosen.
    sent = admin.post(
        "/console/evaluations/new",
        data={"csrf_token": token, "object_id": object_id, "model": MODEL, "datasource": UNTARGETED},
    )
    assert sent.status_code == 400
    error = re.search(r'<p class="error field-error" id="datasource-error">([^<]*)</p>', sent.text)
    assert error and "has no targetAttributeName" in error.group(1)
    chosen = _option(sent.text, UNTARGETED)
    assert "selected" in chosen and "disabled" not in chosen and NO_TARGET in chosen
    # No model chosen yet: nothing is marked.
    assert " — not usable" not in _form(admin)[0]


def test_choosing_a_model_marks_the_datasources_it_cannot_use(
    page: Any, served: Served, other_targets: None
) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/evaluations/new")
    untargeted = page.locator(f'#datasource option[value="{UNTARGETED}"]')
    assert untargeted.is_enabled() and NO_TARGET not in untargeted.inner_text()
    page.select_option("#model", MODEL)
    assert untargeted.is_disabled() and NO_TARGET in untargeted.inner_text()
    loan = page.locator(f'#datasource option[value="{LOAN_TARGET}"]')
    assert loan.is_disabled() and LOAN in loan.inner_text()
    usable = page.locator(f'#datasource option[value="{DATASOURCE}-eval"]')
    assert usable.is_enabled() and "not usable" not in usable.inner_text()
    page.select_option("#model", "")
    assert untargeted.is_enabled() and NO_TARGET not in untargeted.inner_text()


def _give(service: Any, source_id: str, owner: str) -> None:
    """Make ``owner`` the creator of the datasource ``source_id``."""
    with service.sessions() as session, session.begin():
        session.execute(update(DataSource).where(DataSource.id == source_id).values(created_by=owner))


def test_the_form_lists_a_users_own_objects_and_their_targets_in_calls_that_do_not_grow_with_them(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each object's target comes with the Describe* answer listing it: the form asks nothing more of each
    object it lists, and lists only what the user may see (the installation's objects are another user's)."""
    service = installation.service
    name, password = "ulla-user", "ulla-password-1"
    Identities(service.sessions, installation.home).create_user(name, ("users",))
    Logins(service.sessions).set_password(name, password)
    arn = service.access.user_arn(name)
    schema = json.loads(bank_sample_schema().to_json())
    targets = {"ds-ulla-y": "y", "ds-ulla-none": None, "ds-ulla-loan": "loan"}
    called: list[str] = []
    call = service.call

    def counted(operation: str, *args: Any, **kwargs: Any) -> Any:
        called.append(operation)
        return call(operation, *args, **kwargs)

    def form_calls(client: Any) -> tuple[dict[str, Any], list[str]]:
        called.clear()
        monkeypatch.setattr(service, "call", counted)
        try:
            return client.get("/console/evaluations/new?format=json").json(), list(called)
        finally:
            monkeypatch.setattr(service, "call", call)

    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, name, password).status_code == 303
            shown: list[tuple[dict[str, Any], list[str]]] = []
            for count, (source_id, target) in enumerate(targets.items(), 1):
                schema["targetAttributeName"] = target
                spec = {"DataLocationS3": str(installation.sample), "DataSchema": json.dumps(schema)}
                service.call("CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSpec": spec})
                assert service.wait("DataSource", source_id)["Status"] == "COMPLETED"
                _give(service, source_id, arn)  # created as the root, which may read the sample
                if count in (1, len(targets)):
                    shown.append(form_calls(client))
        (one, calls_for_one), (three, calls_for_three) = shown
        assert [source["DataSourceId"] for source in one["DataSources"]] == ["ds-ulla-y"]
        assert {source["DataSourceId"] for source in three["DataSources"]} == set(targets)
        assert three["DataSourceTargets"] == targets
        assert one["MLModels"] == three["MLModels"] == [] and three["MLModelTargets"] == {}
        assert calls_for_one == calls_for_three
        assert not [operation for operation in calls_for_three if operation.startswith("Get")]
    finally:
        for source_id in targets:
            service.call("DeleteDataSource", {"DataSourceId": source_id})
        service.access.delete_user(name)
