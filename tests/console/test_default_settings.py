"""The new model form's type: the default settings create four objects at once (a split in two, a model, an
evaluation), so a type the datasource's target cannot train is refused before any is made; opened for a
datasource, the form offers the type its target makes."""

from __future__ import annotations

import re
from typing import Any

from console_helpers import DATASOURCE, Evaluations, login_token


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


def _chosen_type(page: str) -> list[str]:
    """The options selected in the form's model type select."""
    select = re.search(r'<select id="type"[^>]*>(.*?)</select>', page, re.S)
    assert select, page
    return re.findall(r"<option selected>(\w+)</option>", select.group(1))


def test_the_form_opened_for_a_datasource_offers_the_type_its_target_makes(
    admin: Any, more_evaluations: Evaluations
) -> None:
    """From a datasource's "Train a model on this data", the type chosen is the one its target makes (the
    housing's NUMERIC price: REGRESSION; the wine's CATEGORICAL quality: MULTICLASS), not BINARY."""
    for source, expected in (
        ("ds-housing-train", "REGRESSION"),
        ("ds-wine-train", "MULTICLASS"),
        (DATASOURCE, "BINARY"),
    ):
        for mode in ("default", "custom"):
            chosen = _chosen_type(admin.get(f"/console/models/new?mode={mode}&datasource={source}").text)
            assert chosen == [expected], (source, mode, chosen)
    # Opened for no datasource, or one unknown, the form starts at BINARY.
    for query in ("", "?datasource=ds-nope"):
        assert _chosen_type(admin.get(f"/console/models/new{query}").text) == ["BINARY"]
