"""Deleting an object from its page: a button asking first, offered only to who may delete the object;
the object is then DELETED and the page leads to its kind's list."""

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
