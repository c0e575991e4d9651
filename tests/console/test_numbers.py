"""A number typed into a console form or query is read as the API reads numbers: ASCII digits (and for
decimals a sign, a point and an exponent), nothing else. Python's spellings (``1_0``, other scripts' digits,
``inf``) are the field's error, named by field, never a value the user did not type. Whitespace around the
number is left out, as the API strips its ``sgd.*`` parameters."""

from __future__ import annotations

from typing import Any

import pytest
from console_helpers import DATASOURCE, EVALUATION, MODEL, Installation, login_token

from emrml.samples import bank_sample_schema

#: Spellings that ``int()`` or ``float()`` read as a number and the console must not.
PYTHON_SPELLINGS = ["1_0", "٣", "7 7", "\u2007" + "٥"]
#: Whitespace around a number, which the API's ``sgd.*`` parameters strip too: the number all the same.
SURROUNDED = [" 7 ", "7\n", "\t7", "\u2007" + "7"]


def _send(admin: Any, path: str, form: dict[str, str]) -> Any:
    token = login_token(admin.get("/console/account").text)
    return admin.post(path + "?format=json", data=form, headers={"x-csrf-token": token})


@pytest.mark.parametrize("typed", [*PYTHON_SPELLINGS, "1e1", "10.0"])
def test_a_custom_models_passes_are_ascii_digits_only(admin: Any, typed: str) -> None:
    form = {"mode": "custom", "datasource": DATASOURCE, "type": "BINARY", "passes": typed}
    refused = _send(admin, "/console/models/new", form)
    assert refused.status_code == 400
    assert refused.json()["Errors"] == {
        "passes": f"Give a whole number of passes from 1 to 100 (got {typed!r})."
    }


#: Decimal fields' spellings: in the field's range as ``float()`` reads them, or no finite number.
DECIMAL_SPELLINGS = [
    *(("l1", typed) for typed in ("0_1", "٠.١", "0. 1", "nan")),
    *(("size", typed) for typed in ("1_0", "٣", "7 7", "inf", "1e999")),
]


@pytest.mark.parametrize(("field", "typed"), DECIMAL_SPELLINGS)
def test_a_custom_models_decimal_fields_refuse_python_spellings(admin: Any, field: str, typed: str) -> None:
    form = {"mode": "custom", "datasource": DATASOURCE, "type": "BINARY", field: typed}
    refused = _send(admin, "/console/models/new", form)
    assert refused.status_code == 400
    errors = refused.json()["Errors"]
    assert list(errors) == [field] and errors[field].endswith(f"(got {typed!r}).")


@pytest.mark.parametrize("typed", PYTHON_SPELLINGS)
def test_a_datasource_splits_percentage_is_ascii_digits_only(
    admin: Any, installation: Installation, typed: str
) -> None:
    form = {
        "step": "create",
        "location": str(installation.sample),
        "schema": bank_sample_schema().to_json(),
        "split": "train",
        "percent": typed,
    }
    refused = _send(admin, "/console/datasources/new", form)
    assert refused.status_code == 400
    assert refused.json()["Errors"] == {
        "percent": f"The training share is a whole percentage from 1 to 99 (got {typed!r})."
    }


@pytest.mark.parametrize("typed", ["0_1", "٠.٥", "nan", ".5_0", "0. 5"])
def test_a_threshold_is_a_plain_decimal(admin: Any, installation: Installation, typed: str) -> None:
    before = installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"]
    saved = _send(admin, f"/console/models/{MODEL}/threshold", {"threshold": typed, "evaluation": EVALUATION})
    message = f"The threshold is a number from 0 to 1 (got {typed!r})."
    assert saved.status_code == 400 and saved.json()["Errors"] == {"threshold": message}
    assert installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"] == before
    shown = admin.get(f"/console/evaluations/{EVALUATION}", params={"threshold": typed, "format": "json"})
    assert shown.status_code == 400 and shown.json()["Errors"] == {"threshold": message}
    fine = admin.get(f"/console/evaluations/{EVALUATION}", params={"threshold": "5e-1", "format": "json"})
    assert fine.status_code == 200 and fine.json()["AtThreshold"]["threshold"] == 0.5


@pytest.mark.parametrize("typed", PYTHON_SPELLINGS)
def test_capacity_nodes_are_ascii_digits_only(admin: Any, typed: str) -> None:
    query = {"nodes": typed, "disk": "800GB", "data": "3TB", "format": "json"}
    refused = admin.get("/console/capacity", params=query)
    assert refused.status_code == 400
    assert refused.json()["Errors"] == {"nodes": f"Nodes must be a positive integer (got {typed!r})"}
    planned = admin.get("/console/capacity", params={**query, "nodes": "10"})
    assert planned.status_code == 200 and "Plan" in planned.json()


@pytest.mark.parametrize("around", SURROUNDED)
def test_whitespace_around_a_number_is_left_out_as_the_api_strips_parameters(
    admin: Any, installation: Installation, around: str
) -> None:
    """Each number field takes its number with whitespace around it: only the field given a bad value
    (beside it in the same form) is refused, and a query's value is used."""
    for field, typed, bad in (
        ("passes", "7", "l1"),
        ("l1", "0.1", "passes"),
        ("l2", "1e-6", "passes"),
        ("size", "7", "passes"),
    ):
        form = {"mode": "custom", "datasource": DATASOURCE, "type": "BINARY", bad: "many"}
        form[field] = around.replace("7", typed)
        refused = _send(admin, "/console/models/new", form)
        assert refused.status_code == 400 and list(refused.json()["Errors"]) == [bad], (field, around)
    split = {
        "step": "create",
        "location": str(installation.sample),
        "schema": bank_sample_schema().to_json(),
        "split": "train",
        "percent": around,
        "strategy": "bogus",
    }
    refused = _send(admin, "/console/datasources/new", split)
    assert refused.status_code == 400 and list(refused.json()["Errors"]) == ["strategy"]
    threshold = around.replace("7", "0.37")
    shown = admin.get(f"/console/evaluations/{EVALUATION}", params={"threshold": threshold, "format": "json"})
    assert shown.status_code == 200 and shown.json()["AtThreshold"]["threshold"] == 0.37
    query = {"nodes": around, "disk": "800GB", "data": "3TB", "format": "json"}
    planned = admin.get("/console/capacity", params=query)
    assert planned.status_code == 200 and "Plan" in planned.json()
