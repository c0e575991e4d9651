"""The default model settings create four objects at once (a split in two, a model, an evaluation): a
model type the datasource's target cannot train is refused by the form, before any of them is made."""

from __future__ import annotations

from typing import Any

from console_helpers import DATASOURCE, login_token


def _listed(client: Any) -> dict[str, list[str]]:
    return {
        path: [item[member] for item in client.get(f"/console/{path}?format=json&size=100").json()["Results"]]
        for path, member in (("datasources", "DataSourceId"), ("models", "MLModelId"))
    }


def test_a_model_type_the_target_cannot_train_is_refused_before_anything_is_made(admin: Any) -> None:
    before = _listed(admin)
    token = login_token(admin.get("/console/models/new").text)
    form = {"csrf_token": token, "mode": "default", "datasource": DATASOURCE, "type": "REGRESSION"}
    refused = admin.post("/console/models/new", data=form)
    assert refused.status_code == 400
    assert 'aria-invalid="true" aria-describedby="type-error"' in refused.text
    twin = admin.post("/console/models/new?format=json", data=form, headers={"x-csrf-token": token})
    message = twin.json()["Errors"]["type"]
    assert "a REGRESSION model needs a NUMERIC target" in message and "'y' is BINARY" in message
    assert "makes a BINARY model" in message
    assert _listed(admin) == before
