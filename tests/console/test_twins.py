"""Each page's JSON twin (``?format=json``) tells what its page tells: a refused form field or query value
comes with its message, by field, beside the data, as the page shows it beside the field; lists page
through everything they filter."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from console_helpers import DATASOURCE, EVALUATION, MODEL, Installation, login_token

from emrml.console import jobs, objects


def test_a_refused_query_value_is_in_the_twin_with_its_field(admin: Any) -> None:
    planned = admin.get("/console/capacity?nodes=10&disk=800+furlongs&data=3TB&format=json")
    assert planned.status_code == 400 and "unknown unit" in planned.json()["Errors"]["disk"]
    shown = admin.get(f"/console/evaluations/{EVALUATION}?threshold=abc&format=json")
    assert shown.status_code == 400
    assert shown.json()["Errors"] == {"threshold": "The threshold is a number from 0 to 1 (got 'abc')."}
    assert shown.json()["AtThreshold"]["threshold"] == 0.5  # the model's, as the page shows
    page = admin.get(f"/console/evaluations/{EVALUATION}?threshold=abc")
    assert page.status_code == 400 and 'aria-invalid="true"' in page.text
    fine = admin.get(f"/console/evaluations/{EVALUATION}?threshold=0.3&format=json")
    assert fine.status_code == 200 and "Errors" not in fine.json()


def test_a_refused_form_sent_to_the_twin_says_which_field(admin: Any) -> None:
    token = login_token(admin.get("/console/models/new").text)
    form = {"mode": "custom", "datasource": DATASOURCE, "type": "BINARY", "passes": "many"}
    refused = admin.post("/console/models/new?format=json", data=form, headers={"x-csrf-token": token})
    assert refused.status_code == 400
    assert refused.json()["Errors"] == {"passes": "Give a whole number of passes from 1 to 100 (got 'many')."}


def test_a_twins_redirect_leads_to_the_twin_of_the_page(admin: Any) -> None:
    """A form sent to the twin that succeeds, and a page that sends on, answer 303 to the next page's twin:
    a script following the redirect reads JSON, not that page's HTML."""
    token = login_token(admin.get(f"/console/evaluations/{EVALUATION}").text)
    form = {"threshold": "0.5", "evaluation": EVALUATION}  # the model's threshold as it was
    saved = admin.post(
        f"/console/models/{MODEL}/threshold?format=json", data=form, headers={"x-csrf-token": token}
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"/console/evaluations/{EVALUATION}?saved=1&format=json"
    followed = admin.get(saved.headers["location"])
    assert followed.json()["GetEvaluation"]["EvaluationId"] == EVALUATION
    sent_on = admin.get(f"/console/predict?model={MODEL}&format=json")
    assert sent_on.status_code == 303
    assert sent_on.headers["location"] == f"/console/models/{MODEL}/predict?format=json"
    assert admin.get(sent_on.headers["location"]).json()["GetMLModelInputs"]["MLModelId"] == MODEL
    # The page's own form still leads to the page.
    page = admin.post(f"/console/models/{MODEL}/threshold", data={**form, "csrf_token": token})
    assert page.headers["location"] == f"/console/evaluations/{EVALUATION}?saved=1"


def test_a_models_evaluations_and_batch_predictions_are_listed_by_model(
    admin: Any, installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model page lists its newest evaluations and links to the list of all of them (paged, the filter
    kept from page to page), and to its batch predictions."""
    service = installation.service
    request = {"EvaluationId": "ev-by-model", "MLModelId": MODEL, "EvaluationDataSourceId": DATASOURCE}
    service.call("CreateEvaluation", request)
    service.wait("Evaluation", "ev-by-model")
    monkeypatch.setattr(objects, "MODEL_EVALUATIONS", 1)
    page = admin.get(f"/console/models/{MODEL}").text
    assert f'href="/console/evaluations?model={MODEL}">All evaluations of this model' in page
    assert f'href="/console/batch-predictions?model={MODEL}"' in page
    seen: list[str] = []
    address = f"/console/evaluations?model={MODEL}&size=1"
    while True:
        listed, twin = admin.get(address), admin.get(address + "&format=json").json()
        seen += [item["EvaluationId"] for item in twin["Results"]]
        assert {item["MLModelId"] for item in twin["Results"]} == {MODEL}
        following = re.search(r'<a rel="next" href="([^"]+)"', listed.text)
        if not following:
            break
        address = html.unescape(following.group(1))
        assert f"model={MODEL}" in address
    assert {EVALUATION, "ev-by-model"} <= set(seen) and len(seen) == len(set(seen))
    assert 'id="model-filter"' in listed.text
    batches = admin.get(f"/console/batch-predictions?model={MODEL}&format=json").json()["Results"]
    assert all(item["MLModelId"] == MODEL for item in batches)


def test_the_jobs_page_says_when_older_jobs_are_left_out(admin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "JOBS_PER_KIND", 1)
    shown = admin.get("/console/jobs")
    twin = admin.get("/console/jobs?format=json").json()
    assert len(twin["Jobs"]) <= 2 and twin["OlderJobs"] is True
    note = re.search(r'<p class="hint" id="more-jobs">(.*?)</p>', shown.text, re.S)
    assert note and 'href="/console/datasources"' in note.group(1)
    monkeypatch.setattr(jobs, "JOBS_PER_KIND", 100)  # more than the installation has of any kind
    assert 'id="more-jobs"' not in admin.get("/console/jobs").text
    assert admin.get("/console/jobs?format=json").json()["OlderJobs"] is False


def test_a_lists_twin_says_why_its_token_or_a_filter_was_left_out(admin: Any) -> None:
    forged = admin.get("/console/datasources?token=forged&format=json").json()
    assert "NextToken is not a token" in forged["Notice"] and forged["Results"]
    both = admin.get("/console/datasources?prefix=Bank&status=COMPLETED&format=json").json()
    assert both["Notice"].startswith("One filter at a time")
    assert "Notice" not in admin.get("/console/datasources?format=json").json()


def test_a_folders_twin_says_why_its_token_was_left_out(admin: Any, installation: Installation) -> None:
    folder = installation.home / "data"
    forged = admin.get(f"/console/storage?location={folder}/&token=forged&format=json").json()
    assert "forged" in forged["Notice"] and forged["Location"] == f"{folder}/"
