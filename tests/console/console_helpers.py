"""What the console tests share besides their fixtures (``conftest.py``): the installation's names, and
logging in through the login form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrml.service.app import EmrML

BOB_PASSWORD = "bob-password-1"
DATASOURCE, MODEL, EVALUATION = "ds-console-bank", "ml-console-bank", "ev-console-bank"


@dataclass
class Installation:
    service: EmrML
    home: Path
    admin_password: str
    sample: Path


@dataclass
class Served:
    url: str
    installation: Installation


@dataclass
class Evaluations:
    multiclass: str
    regression: str


def login_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client: Any, user: str, password: str) -> Any:
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"csrf_token": login_token(page.text), "username": user, "password": password},
    )


def completed_batch_prediction(
    installation: Installation, batch_id: str, output: Path, caller: str | None = None
) -> dict[str, Any]:
    """A batch prediction of the console's model over its evaluation data into ``output``, run to COMPLETED
    (as ``caller``, through the server's door, when given); its GetBatchPrediction."""
    request = {
        "BatchPredictionId": batch_id,
        "MLModelId": MODEL,
        "BatchPredictionDataSourceId": f"{DATASOURCE}-eval",
        "OutputUri": f"{output}/",
    }
    service = installation.service
    if caller is None:
        service.call("CreateBatchPrediction", request)
    else:
        service.call("CreateBatchPrediction", request, caller, remote=True)
    described = service.wait("BatchPrediction", batch_id)
    assert described["Status"] == "COMPLETED", described
    return described
