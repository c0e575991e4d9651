"""An object's page is its Get* and parts read by operations of their own (a datasource's statistics, a
model's and an evaluation's insights): a user who may read the object but not a part gets the page with
what it may see and a note where the part would be, and the twin says which permission is missing."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import (
    DATASOURCE,
    EVALUATION,
    MODEL,
    Installation,
    completed_batch_prediction,
    log_in,
)
from starlette.testclient import TestClient

from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.web.server import create_app

#: The Get* of each kind, and nothing else (no statistics, no insights, no listing).
KINDS = ("DataSource", "MLModel", "Evaluation", "BatchPrediction")
SUMMARIES = [f"machinelearning:Get{kind}" for kind in KINDS]
BATCH = "bp-page-parts"


@contextlib.contextmanager
def _user(installation: Installation, name: str, actions: list[str]) -> Iterator[Any]:
    """A client logged in as ``name``, whose one group allows ``actions`` on everything."""
    service, access = installation.service, installation.service.access
    Identities(service.sessions, installation.home).create_user(name, ())
    Logins(service.sessions).set_password(name, f"{name}-password-1")
    access.create_group(f"{name}-group")
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": actions, "Resource": "*"})
    access.add_member(f"{name}-group", name)
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, name, f"{name}-password-1").status_code == 303
            yield client
    finally:
        access.delete_group(f"{name}-group")
        access.delete_user(name)


@pytest.fixture
def summary_reader(installation: Installation) -> Iterator[Any]:
    with _user(installation, "sam-summary", SUMMARIES) as client:
        yield client


def _note(html: str, note_id: str) -> str:
    found = re.search(rf'<p class="hint" id="{note_id}">([^<]*)</p>', html)
    assert found, note_id
    return found.group(1)


@pytest.mark.parametrize(
    ("path", "part", "note_id", "shown"),
    [
        (f"/console/datasources/{DATASOURCE}", "GetDataSourceStatistics", "statistics-refused", DATASOURCE),
        (f"/console/models/{MODEL}", "GetMLModelInsights", "insights-refused", "Training parameters"),
        (f"/console/evaluations/{EVALUATION}", "GetEvaluationInsights", "insights-refused", "BinaryAUC"),
    ],
)
def test_a_page_shows_its_summary_and_says_which_part_needs_which_permission(
    summary_reader: Any, admin: Any, path: str, part: str, note_id: str, shown: str
) -> None:
    page = summary_reader.get(path)
    assert page.status_code == 200 and shown in page.text
    assert f"machinelearning:{part}" in _note(page.text, note_id)
    twin = summary_reader.get(path + "?format=json")
    assert twin.status_code == 200
    assert part not in twin.json() and twin.json()[f"{part}Refused"] == f"machinelearning:{part}"
    # Who may read the part gets it, and no note.
    full = admin.get(path)
    assert f'id="{note_id}"' not in full.text and part in admin.get(path + "?format=json").json()


def test_an_evaluation_without_its_insights_still_shows_its_performance(summary_reader: Any) -> None:
    twin = summary_reader.get(f"/console/evaluations/{EVALUATION}?format=json").json()
    auc = twin["GetEvaluation"]["PerformanceMetrics"]["Properties"]["BinaryAUC"]
    page = summary_reader.get(f"/console/evaluations/{EVALUATION}").text
    assert f"<dt>BinaryAUC</dt><dd>{auc}</dd>" in page
    assert "AtThreshold" not in twin and 'id="threshold"' not in page


def test_comparing_evaluations_without_their_insights_or_the_list(summary_reader: Any) -> None:
    """The compare page needs neither the insights (each side says so) nor DescribeEvaluations (its
    selects then offer the evaluations chosen)."""
    path = f"/console/evaluations/compare?a={EVALUATION}"
    page = summary_reader.get(path)
    assert page.status_code == 200 and "machinelearning:GetEvaluationInsights" in page.text
    assert f'<option value="{EVALUATION}" selected>' in page.text
    side = summary_reader.get(path + "&format=json").json()["Evaluations"][0]
    assert side["GetEvaluationInsightsRefused"] == "machinelearning:GetEvaluationInsights"


def test_a_batch_prediction_page_needs_only_its_summary(
    summary_reader: Any, installation: Installation
) -> None:
    completed_batch_prediction(installation, BATCH, installation.home / "data" / "page-parts-out")
    page = summary_reader.get(f"/console/batch-predictions/{BATCH}")
    assert page.status_code == 200 and 'id="results-refused"' in page.text
    assert summary_reader.get(f"/console/batch-predictions/{BATCH}?format=json").status_code == 200
