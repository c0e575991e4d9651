"""Each page's JSON twin (``?format=json``) tells what its page tells: a refused form field or query value
comes with its message, by field, beside the data, as the page shows it beside the field."""

from __future__ import annotations

from typing import Any

from console_helpers import DATASOURCE, EVALUATION, login_token


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
