"""Predicting in the console with only the permission to predict: the form is built from GetMLModelInputs,
which whoever may Predict with a model (or read it) may call, and which tells nothing else of the model."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import BOB_PASSWORD, MODEL, Installation, log_in, login_token
from starlette.testclient import TestClient

from emrml.errors import AccessDeniedException
from emrml.samples import bank_sample_schema
from emrml.service.identity import Identities, user_arn
from emrml.service.logins import Logins
from emrml.web.server import create_app

PAGE = f"/console/models/{MODEL}/predict"
#: The predict page's record form, its action.
RECORD_FORM = r'<form method="post" action="([^"]+)" class="stack" id="record">'
#: What the model's page shows and the predict form must not: its name, recipe, parameters, training data.
HIDDEN = ("Bank model", "Recipe", "TrainingParameters", "TrainingDataSourceId", "ds-console-bank", "Schema")


@pytest.fixture
def endpoint(installation: Installation) -> Iterator[str]:
    """The model's real-time endpoint, on for the test (off again after: a model with an endpoint keeps
    its threshold, which other tests change)."""
    service = installation.service
    info = service.call("CreateRealtimeEndpoint", {"MLModelId": MODEL})["RealtimeEndpointInfo"]
    assert info["EndpointStatus"] == "READY", info
    yield info["EndpointUrl"]
    service.call("DeleteRealtimeEndpoint", {"MLModelId": MODEL})


def _user(installation: Installation, name: str, groups: tuple[str, ...]) -> Iterator[Any]:
    service = installation.service
    Identities(service.sessions, installation.home).create_user(name, groups)
    Logins(service.sessions).set_password(name, f"{name}-password-1")
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, name, f"{name}-password-1").status_code == 303
            yield client
    finally:
        service.access.delete_user(name)


@pytest.fixture
def predictor(installation: Installation) -> Iterator[Any]:
    """May Predict with any model (the built-in ``predictors``), nothing else."""
    yield from _user(installation, "paul-predictor", ("predictors",))


@pytest.fixture
def nobody(installation: Installation) -> Iterator[Any]:
    yield from _user(installation, "ned-nobody", ())


@pytest.fixture
def viewer(installation: Installation) -> Iterator[Any]:
    """May read everything (the built-in ``viewers``), not Predict."""
    yield from _user(installation, "val-viewer", ("viewers",))


def _inputs() -> list[dict[str, str]]:
    schema = bank_sample_schema()
    return [{"attributeName": a.name, "attributeType": a.type.value} for a in schema.input_attributes]


def test_who_may_only_predict_gets_the_form_and_a_prediction(predictor: Any, endpoint: str) -> None:
    page = predictor.get(PAGE)
    assert page.status_code == 200
    labels = re.findall(r'<label for="a-\d+">([^<]+) <small>(\w+)</small>', page.text)
    assert labels == [(a["attributeName"], a["attributeType"]) for a in _inputs()]
    assert 'id="refused-note"' not in page.text and 'id="endpoint-off"' not in page.text
    twin = predictor.get(PAGE + "?format=json").json()
    assert twin == {
        "GetMLModelInputs": {
            "MLModelId": MODEL,
            "MLModelType": "BINARY",
            "Status": "COMPLETED",
            "Attributes": _inputs(),
            "EndpointInfo": twin["GetMLModelInputs"]["EndpointInfo"],
        }
    }
    assert twin["GetMLModelInputs"]["EndpointInfo"]["EndpointUrl"] == endpoint
    for shown in (page.text, str(twin)):
        assert not [hidden for hidden in HIDDEN if hidden in shown]
    # The model's own page stays closed to this user, and is not linked.
    assert predictor.get(f"/console/models/{MODEL}").status_code == 403
    assert f'href="/console/models/{MODEL}"' not in page.text

    token = login_token(page.text)
    predicted = predictor.post(PAGE, data={"csrf_token": token, "a-0": "41", "a-1": "student"})
    assert predicted.status_code == 200, predicted.text
    label = re.search(r'<strong id="predicted-label">([01])</strong>', predicted.text)
    assert label and 'id="latency"' in predicted.text
    pasted = predictor.post(
        PAGE + "?format=json", data={"pasted": '{"age": "41"}'}, headers={"x-csrf-token": token}
    )
    assert pasted.status_code == 200 and pasted.json()["Prediction"]["predictedLabel"] in ("0", "1")
    assert not [hidden for hidden in HIDDEN if hidden in pasted.text]


def test_who_may_neither_predict_nor_read_the_model_is_refused(
    nobody: Any, predictor: Any, endpoint: str
) -> None:
    for path in (PAGE, PAGE + "?format=json"):
        refused = nobody.get(path)
        assert refused.status_code == 403 and "machinelearning:GetMLModelInputs" in refused.text
        assert "attributeName" not in refused.text and 'name="a-0"' not in refused.text
    token = login_token(nobody.get("/console/").text)
    sent = nobody.post(PAGE, data={"csrf_token": token, "a-0": "41"})
    assert sent.status_code == 403 and 'id="predicted-label"' not in sent.text
    # An unknown model is not found, for who may predict with any model.
    assert predictor.get("/console/models/ml-no-such/predict").status_code == 404


def test_who_may_read_but_not_predict_gets_the_form_with_its_button_disabled(
    viewer: Any, endpoint: str
) -> None:
    page = viewer.get(PAGE)
    assert page.status_code == 200 and "Bank model" in page.text  # the name: this user may read the model
    assert f'href="/console/models/{MODEL}"' in page.text
    note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', page.text)
    assert note and "machinelearning:Predict" in note.group(1)
    assert '<button type="submit" disabled aria-describedby="refused-note">Predict</button>' in page.text
    sent = viewer.post(PAGE, data={"csrf_token": login_token(page.text), "a-0": "41"})
    assert sent.status_code == 403 and "machinelearning:Predict" in sent.text


def test_the_inputs_are_decided_in_the_service_for_every_door(installation: Installation) -> None:
    """GetMLModelInputs through ``EmrML.call`` (the API's and the CLI's door too): Predict or GetMLModel on
    the model grants it, an explicit Deny of it refuses it whatever else allows."""
    service, access = installation.service, installation.service.access
    access.create_group("inputs-denied")
    access.add_statement("inputs-denied", {"Effect": "Allow", "Action": "Predict", "Resource": "*"})
    access.add_statement(
        "inputs-denied", {"Effect": "Deny", "Action": "GetMLModelInputs", "Resource": f"mlmodel/{MODEL}"}
    )
    for name, groups in (("ivy-inputs", ("predictors",)), ("ian-denied", ("inputs-denied",)), ("ina", ())):
        access.create_user(name, groups)
    request = {"MLModelId": MODEL}
    try:
        arn = user_arn(service.settings.account_id, "ivy-inputs")
        answered = service.call("GetMLModelInputs", request, arn, remote=True)
        assert answered["Attributes"] == _inputs() and "Name" not in answered
        with pytest.raises(AccessDeniedException, match="GetMLModel on resource"):
            service.call("GetMLModel", request, arn, remote=True)
        for refused in ("ian-denied", "ina"):
            arn = user_arn(service.settings.account_id, refused)
            with pytest.raises(AccessDeniedException, match=f"GetMLModelInputs on resource: mlmodel/{MODEL}"):
                service.call("GetMLModelInputs", request, arn, remote=True)
    finally:
        for name in ("ivy-inputs", "ian-denied", "ina"):
            access.delete_user(name)
        access.delete_group("inputs-denied")


def test_who_may_predict_but_not_list_models_opens_a_predict_page_by_its_id(
    predictor: Any, nobody: Any, admin: Any
) -> None:
    home = predictor.get("/console/")
    assert 'action="/console/predict"' in home.text and 'id="predict-model"' in home.text
    opened = predictor.get("/console/predict", params={"model": f" {MODEL} "})
    assert opened.status_code == 303 and opened.headers["location"] == PAGE
    odd = predictor.get("/console/predict", params={"model": "a/b?c"})
    assert odd.headers["location"] == "/console/models/a%2Fb%3Fc/predict"
    assert predictor.get("/console/predict").status_code == 400
    # Who lists the models opens their pages from the lists; who may not predict is offered nothing.
    for other in (admin, nobody):
        assert 'id="predict-model"' not in other.get("/console/").text


def test_an_endpoint_that_is_off_is_turned_on_by_who_may(viewer: Any, admin: Any) -> None:
    """Without an endpoint the page says how it gets one: from the model's page (a link) for who may turn
    it on, else by asking (a viewer may read the model, not turn its endpoint on)."""
    says = {
        client: re.search(r'<p class="error" id="endpoint-off">(.*?)</p>', client.get(PAGE).text)
        for client in (viewer, admin)
    }
    model_page = f"""turn it on below, or from <a href="/console/models/{MODEL}">the model's page</a>"""
    assert says[admin] and model_page in says[admin].group(1)
    assert says[viewer] and "ask the model's owner or an administrator" in says[viewer].group(1)


def test_the_endpoint_is_turned_on_from_the_predict_page_which_then_predicts(
    viewer: Any, admin: Any, installation: Installation
) -> None:
    """Who may turn the endpoint on does so on the predict page itself, from the record's form: the page
    comes back with the record typed so far (not predicted yet), the endpoint on. A viewer is offered no
    such button. The button names its action: another is refused, changing nothing."""
    assert 'id="endpoint-on"' not in viewer.get(PAGE).text
    shown = admin.get(PAGE).text
    action = f"/console/models/{MODEL}/endpoint"
    form = re.search(RECORD_FORM + r"(.*?)</form>", shown, re.S)
    assert form and form.group(1) == PAGE
    button = re.search(r'<button type="submit" [^>]*id="endpoint-on" formaction="([^"]+)" name="action" '
                       r'value="(\w+)">', form.group(2))  # fmt: skip
    assert button and button.groups() == (action, "create")
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
    assert fields["back"] == "predict"
    # Typed before turning the endpoint on: a field of the form, and a pasted line being written.
    typed = {**fields, "a-0": "41", "a-2": "married", "pasted": '{"age": "4'}
    odd = admin.post(action, data={**typed, "action": "switch"})
    assert odd.status_code == 400 and "create or delete" in odd.text
    service = installation.service
    assert service.call("GetMLModel", {"MLModelId": MODEL})["EndpointInfo"]["EndpointStatus"] == "NONE"
    try:
        turned = admin.post(action, data={**typed, "action": "create"})
        assert turned.status_code == 200, turned.text
        assert 'id="endpoint-off"' not in turned.text and 'id="endpoint-on"' not in turned.text
        assert 'id="a-0" name="a-0" value="41"' in turned.text
        assert 'id="a-2" name="a-2" value="married"' in turned.text
        assert ">{&#34;age&#34;: &#34;4</textarea>" in turned.text
        assert 'id="prediction"' not in turned.text and 'id="pasted-error"' not in turned.text
        # Its form predicts at the predict page's address, not the endpoint's it is shown at.
        again = re.search(RECORD_FORM, turned.text)
        assert again and again.group(1) == PAGE
        assert service.call("GetMLModel", {"MLModelId": MODEL})["EndpointInfo"]["EndpointStatus"] == "READY"
        predicted = admin.post(PAGE, data={"csrf_token": fields["csrf_token"], "a-0": "41"})
        assert predicted.status_code == 200 and 'id="prediction"' in predicted.text
    finally:
        service.call("DeleteRealtimeEndpoint", {"MLModelId": MODEL})


def test_the_home_page_tells_of_missing_storage_only_who_would_create_datasources(
    predictor: Any, viewer: Any, anonymous: Any
) -> None:
    """The home page's note on the storage a datasource reads is for who may create datasources but has
    no storage grant (a member of users without one); a predictor or a viewer never creates them."""
    for client in (predictor, viewer):
        home = client.get("/console/")
        assert home.status_code == 200 and 'id="create-refused"' not in home.text
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    note = re.search(r'<p class="hint" id="create-refused">([^<]*)</p>', anonymous.get("/console/").text)
    assert note and "storage:Read" in note.group(1)
