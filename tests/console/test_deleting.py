"""Deleting an object from its page, or cancelling its running job from the jobs page: a button asking
first, offered only to who may delete the object; the object is then DELETED and the page leads to its
kind's list (or back to the jobs page)."""

from __future__ import annotations

import re
from typing import Any

from console_helpers import (
    DATASOURCE,
    EVALUATION,
    MODEL,
    Installation,
    completed_batch_prediction,
    log_in,
    login_token,
)
from starlette.testclient import TestClient
from test_permissions import VIEWER, VIEWER_PASSWORD, ensure_viewer

from emrml.samples import bank_sample_schema
from emrml.web.server import create_app

#: The delete form of a page: its action and its button.
FORM = re.compile(r'<form method="post" action="([^"]+)" class="inline" id="delete-form">(.*?)</form>', re.S)


def test_a_datasource_is_deleted_from_its_page_after_a_question(
    admin: Any, installation: Installation
) -> None:
    service = installation.service
    spec = {"DataLocationS3": str(installation.sample), "DataSchema": bank_sample_schema().to_json()}
    service.call(
        "CreateDataSourceFromS3",
        {"DataSourceId": "ds-to-delete", "DataSourceName": "Doomed", "DataSpec": spec},
    )
    page = admin.get("/console/datasources/ds-to-delete").text
    form = FORM.search(page)
    assert form and form.group(1) == "/console/datasources/ds-to-delete/delete"
    assert 'data-confirm="Delete datasource Doomed?' in form.group(2)
    deleted = admin.post(form.group(1), data={"csrf_token": login_token(page)})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/console/datasources"
    assert service.call("GetDataSource", {"DataSourceId": "ds-to-delete"})["Status"] == "DELETED"
    # A DELETED object's page offers no delete.
    assert not FORM.search(admin.get("/console/datasources/ds-to-delete").text)


def test_every_kinds_page_offers_its_delete(admin: Any, installation: Installation) -> None:
    completed_batch_prediction(installation, "bp-deletable", installation.home / "data" / "deletable-out")
    for path in (
        f"datasources/{DATASOURCE}",
        f"models/{MODEL}",
        f"evaluations/{EVALUATION}",
        "batch-predictions/bp-deletable",
    ):
        form = FORM.search(admin.get(f"/console/{path}").text)
        assert form and form.group(1) == f"/console/{path}/delete", path


def test_a_viewer_is_offered_no_delete_and_is_refused_one(installation: Installation) -> None:
    ensure_viewer(installation)
    with TestClient(create_app(installation.service), follow_redirects=False) as viewer:
        assert log_in(viewer, VIEWER, VIEWER_PASSWORD).status_code == 303
        page = viewer.get(f"/console/models/{MODEL}").text
        assert not FORM.search(page)
        refused = viewer.post(f"/console/models/{MODEL}/delete", data={"csrf_token": login_token(page)})
        assert refused.status_code == 403
    assert installation.service.call("GetMLModel", {"MLModelId": MODEL})["Status"] == "COMPLETED"


#: The cancel form of a jobs page's row: its action, its fields and button.
CANCEL = '<td data-field="Cancel"><form method="post" action="([^"]+)" class="inline">(.*?)</form>'


def test_a_running_job_is_cancelled_from_the_jobs_page(admin: Any, installation: Installation) -> None:
    """A job still to end offers Cancel, to who may delete its object: the object is DELETED (its job
    stops) and the jobs page comes back; an ended job offers none, nor does a viewer's page."""
    service = installation.service
    spec = {"DataLocationS3": str(installation.sample), "DataSchema": bank_sample_schema().to_json()}
    # No job runs beside the test client: the datasource stays PENDING.
    request = {"DataSourceId": "ds-to-cancel", "DataSourceName": "<b>Doomed</b>", "DataSpec": spec}
    service.call("CreateDataSourceFromS3", request)
    page = admin.get("/console/jobs").text
    row = re.search(r'<tr data-id="DataSource/ds-to-cancel">(.*?)</tr>', page, re.S)
    assert row, page
    form = re.search(CANCEL, row.group(1), re.S)
    assert form and form.group(1) == "/console/datasources/ds-to-cancel/delete"
    assert 'name="back" value="jobs"' in form.group(2)
    assert 'data-confirm="Cancel the job of &lt;b&gt;Doomed&lt;/b&gt;?' in form.group(2)
    ended = re.search(rf'<tr data-id="DataSource/{DATASOURCE}">(.*?)</tr>', page, re.S)
    assert ended and '<td data-field="Cancel"></td>' in ended.group(1)
    # The twin says it too, for the rows the page's script adds.
    twin = {job["Id"]: job["Cancels"] for job in admin.get("/console/jobs?format=json").json()["Jobs"]}
    assert twin["ds-to-cancel"] == "datasources/ds-to-cancel/delete" and twin[DATASOURCE] is None
    ensure_viewer(installation)
    with TestClient(create_app(service), follow_redirects=False) as viewer:
        assert log_in(viewer, VIEWER, VIEWER_PASSWORD).status_code == 303
        seen = viewer.get("/console/jobs").text
        assert 'data-id="DataSource/ds-to-cancel"' in seen and not re.search(CANCEL, seen, re.S)
    cancelled = admin.post(form.group(1), data={"csrf_token": login_token(page), "back": "jobs"})
    assert cancelled.status_code == 303 and cancelled.headers["location"] == "/console/jobs"
    assert service.call("GetDataSource", {"DataSourceId": "ds-to-cancel"})["Status"] == "DELETED"
