"""A form asking for an output folder offers where the user may write: a new user granted storage in one
folder finds it filled in and named, and can send the form as it stands."""

from __future__ import annotations

import re
from typing import Any

from console_helpers import BOB_PASSWORD, DATASOURCE, MODEL, Installation, log_in
from starlette.testclient import TestClient

from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.web.server import create_app


def test_the_batch_prediction_form_offers_the_folder_the_user_may_write(installation: Installation) -> None:
    service, access, name = installation.service, installation.service.access, "oli-output"
    folder = f"{(installation.home / 'data').resolve()}/oli-results/"
    access.create_group(f"{name}-group")
    allowed = ["machinelearning:Get*", "machinelearning:Describe*", "machinelearning:CreateBatchPrediction"]
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": allowed, "Resource": "*"})
    grant = {"Effect": "Allow", "Action": ["storage:Read", "storage:Write"], "Resource": f"{folder}*"}
    access.add_statement(f"{name}-group", grant)
    Identities(service.sessions, installation.home).create_user(name, (f"{name}-group",))
    Logins(service.sessions).set_password(name, f"{name}-password-1")
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, name, f"{name}-password-1").status_code == 303
            shown = client.get(f"/console/batch-predictions/new?model={MODEL}").text
            output = re.search(r'<input id="output" name="output" value="([^"]*)"([^>]*)>', shown)
            assert output and output.group(1) == folder
            assert 'aria-describedby="output-hint"' in output.group(2)
            hint = re.search(r'<p class="hint" id="output-hint">(.*?)</p>', shown)
            assert hint and f"<code>{folder}</code>" in hint.group(1)
            twin = client.get(f"/console/batch-predictions/new?model={MODEL}&format=json").json()
            assert twin["WritableFolders"] == [folder]
            token = re.search(r'name="csrf_token" value="([^"]+)"', shown)
            object_id = re.search(r'name="object_id" value="([^"]+)"', shown)
            assert token and object_id
            sent = client.post(
                "/console/batch-predictions/new",
                data={
                    "csrf_token": token.group(1),
                    "object_id": object_id.group(1),
                    "model": MODEL,
                    "datasource": f"{DATASOURCE}-eval",
                    "output": output.group(1),
                },
            )
            assert sent.status_code == 303, sent.text
            batch_id = sent.headers["location"].rsplit("/", 1)[-1]
            assert service.wait("BatchPrediction", batch_id)["Status"] == "COMPLETED"
    finally:
        access.delete_user(name)
        access.delete_group(f"{name}-group")


def test_the_batch_prediction_form_names_no_folder_to_who_may_write_none(anonymous: Any) -> None:
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    shown = anonymous.get("/console/batch-predictions/new").text
    assert '<input id="output" name="output" value="">' in shown and 'id="output-hint"' not in shown
    assert anonymous.get("/console/batch-predictions/new?format=json").json()["WritableFolders"] == []


def test_an_output_folder_with_a_denied_part_is_not_offered(installation: Installation) -> None:
    # A batch prediction writes below its output folder: one where a Deny covers a part is refused by
    # CreateBatchPrediction, so the form offering it would lead only to that refusal.
    service, access, name = installation.service, installation.service.access, "pia-output"
    folder = f"{(installation.home / 'data').resolve()}/pia-results/"
    access.create_group(f"{name}-group")
    allowed = ["machinelearning:Get*", "machinelearning:Describe*", "machinelearning:CreateBatchPrediction"]
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": allowed, "Resource": "*"})
    grant = {
        "Effect": "Allow",
        "Action": ["storage:Write"],
        "Resource": [f"{folder}*", f"{folder}kept/mine/*"],
    }
    access.add_statement(f"{name}-group", grant)
    deny = {"Effect": "Deny", "Action": ["storage:Write"], "Resource": f"{folder}kept/*"}
    access.add_statement(f"{name}-group", deny)
    Identities(service.sessions, installation.home).create_user(name, (f"{name}-group",))
    Logins(service.sessions).set_password(name, f"{name}-password-1")
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, name, f"{name}-password-1").status_code == 303
            twin = client.get(f"/console/batch-predictions/new?model={MODEL}&format=json").json()
            assert twin["WritableFolders"] == []
    finally:
        access.delete_user(name)
        access.delete_group(f"{name}-group")
