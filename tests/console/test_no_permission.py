"""The console of a user no group grants anything (or only Predict): every page and its JSON twin answer
with a refusal naming the permission, or an empty list — never a 500, never another user's objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import DATASOURCE, EVALUATION, MODEL, Installation, log_in
from starlette.testclient import TestClient

from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.web.server import create_app

#: The console's pages, with the objects of the installation named where a page takes one.
PAGES = (
    "/console/",
    "/console/account",
    "/console/datasources",
    "/console/models",
    "/console/evaluations",
    "/console/batch-predictions",
    f"/console/evaluations?model={MODEL}",
    "/console/datasources/new",
    "/console/models/new",
    "/console/batch-predictions/new",
    f"/console/datasources/{DATASOURCE}",
    f"/console/models/{MODEL}",
    f"/console/models/{MODEL}/predict",
    f"/console/evaluations/{EVALUATION}",
    f"/console/evaluations/compare?a={EVALUATION}",
    "/console/jobs",
    "/console/capacity",
    "/console/capacity?nodes=3&disk=800GB&data=1TB",
    "/console/storage",
    "/console/users",
    "/console/groups",
)
#: The installation's object names (conftest.py), which no page may show this user.
NAMES = ("Bank model", f"Bank {DATASOURCE}")


def _client(installation: Installation, name: str, groups: tuple[str, ...]) -> Iterator[Any]:
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
def nobody(installation: Installation) -> Iterator[Any]:
    yield from _client(installation, "nora-nobody", ())


@pytest.fixture
def predictor(installation: Installation) -> Iterator[Any]:
    yield from _client(installation, "pia-predictor", ("predictors",))


def _answers(client: Any) -> Iterator[tuple[str, Any]]:
    for path in PAGES:
        twin = path + ("&" if "?" in path else "?") + "format=json"
        yield path, client.get(path)
        yield twin, client.get(twin)


@pytest.mark.parametrize("who", ["nobody", "predictor"])
def test_every_page_refuses_or_lists_nothing_to_a_user_without_permissions(
    who: str, request: pytest.FixtureRequest
) -> None:
    client = request.getfixturevalue(who)
    for path, answer in _answers(client):
        assert answer.status_code in (200, 403), (path, answer.status_code)
        assert not [name for name in NAMES if name in answer.text], path
        if answer.status_code == 403:
            # A refusal says which permission is missing, on the page and in its twin.
            assert re.search(r"(machinelearning|storage|iam):\w+", answer.text), path


@pytest.mark.parametrize("who", ["nobody", "predictor"])
def test_the_home_and_jobs_pages_are_not_refused_for_what_the_user_may_not_list(
    who: str, request: pytest.FixtureRequest
) -> None:
    """Home is where logging in leads: a user who may list nothing gets it, saying so, not a 403."""
    client = request.getfixturevalue(who)
    home = client.get("/console/")
    assert home.status_code == 200 and 'id="nothing-listed"' in home.text
    assert client.get("/console/?format=json").json() == {"Recent": {}}
    jobs = client.get("/console/jobs?format=json")
    assert jobs.status_code == 200 and jobs.json()["Jobs"] == [] and jobs.json()["Streams"] == []
    assert "No jobs." in client.get("/console/jobs").text


def test_a_user_who_may_list_models_only_gets_them_on_the_home_and_jobs_pages(
    installation: Installation,
) -> None:
    access = installation.service.access
    access.create_group("model-listers")
    grant = {"Effect": "Allow", "Action": ["machinelearning:DescribeMLModels"], "Resource": "*"}
    access.add_statement("model-listers", grant)
    try:
        for client in _client(installation, "lou-lister", ("model-listers",)):
            home = client.get("/console/?format=json")
            assert home.status_code == 200 and list(home.json()["Recent"]) == ["MLModel"]
            jobs = client.get("/console/jobs?format=json").json()["Jobs"]
            assert {job["Kind"] for job in jobs} == {"MLModel"} and MODEL in {job["Id"] for job in jobs}
            # Listed, not readable: named without a link.
            assert f'href="/console/models/{MODEL}"' not in client.get("/console/jobs").text
    finally:
        access.delete_group("model-listers")


def test_the_capacity_planner_says_who_may_not_plan_and_refuses_with_a_403(nobody: Any, admin: Any) -> None:
    form = nobody.get("/console/capacity")
    note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', form.text)
    assert form.status_code == 200 and note and "machinelearning:PlanCapacity" in note.group(1)
    assert 'disabled aria-describedby="refused-note">Plan</button>' in form.text
    assert 'id="refused-note"' not in admin.get("/console/capacity").text
    refused = nobody.get("/console/capacity?nodes=3&disk=800GB&data=1TB&format=json")
    assert refused.status_code == 403
    assert "machinelearning:PlanCapacity" in refused.json()["Errors"]["general"]


#: The menu's pages that a user may be refused: the lists (Describe*) and the storage browser.
MENU = {
    "/console/datasources": "machinelearning:DescribeDataSources",
    "/console/models": "machinelearning:DescribeMLModels",
    "/console/evaluations": "machinelearning:DescribeEvaluations",
    "/console/batch-predictions": "machinelearning:DescribeBatchPredictions",
    "/console/storage": "storage:Read",
}


def _menu(client: Any) -> set[str]:
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', client.get("/console/").text, re.DOTALL)
    assert nav
    return set(re.findall(r'href="([^"]+)"', nav.group(1)))


@pytest.mark.parametrize("who", ["nobody", "predictor", "admin"])
def test_the_menu_offers_only_the_pages_the_user_may_open(who: str, request: pytest.FixtureRequest) -> None:
    """A predictor's menu has no list it would be refused, a user without storage grants no storage
    browser; every page the menu offers opens."""
    client = request.getfixturevalue(who)
    offered = _menu(client)
    assert {"/console/", "/console/jobs", "/console/capacity"} <= offered
    expected = set(MENU) if who == "admin" else set()
    assert {path for path in MENU if path in offered} == expected
    for path in offered:
        assert client.get(path).status_code == 200, path
