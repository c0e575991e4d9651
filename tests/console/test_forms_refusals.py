"""The console's forms given what a user may type or a client may forge: every refusal is a 4xx page with
the message beside the form (never a 500), and what was typed is still there to correct."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from console_helpers import DATASOURCE, EVALUATION, MODEL, Installation, form_errors, log_in, page_token
from starlette.testclient import TestClient

from emrml.console import objects
from emrml.samples import bank_sample_schema
from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.web.server import create_app


def test_a_failing_page_answers_the_consoles_500_page(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An exception that reached the server made it close the connection after its 500; behind the API
    # server's proxy, the next request on that pooled connection (anyone's) then got a 503.
    from starlette.testclient import TestClient

    def broken(visit: Any) -> Any:
        raise RuntimeError("a bug in a page")

    monkeypatch.setattr(objects, "home", broken)
    with TestClient(create_app(installation.service), follow_redirects=False) as client:
        assert log_in(client, "admin", installation.admin_password).status_code == 303
        page = client.get("/console/")
        assert page.status_code == 500 and "Internal error" in page.text
        assert "a bug in a page" not in page.text and 'href="/console/models"' in page.text
        twin = client.get("/console/?format=json")
        assert twin.status_code == 500 and twin.json()["error"]["title"] == "Internal error"
        assert client.get("/console/models").status_code == 200


FORGED_SCHEMAS = [
    '{"attributes": 5}',
    "[]",
    '{"attributes": [1, 2]}',
    '{"attributes": [{"attributeName": "a"}]}',
    '{"attributes": [{"attributeName": {"a": 1}, "attributeType": "NUMERIC"}]}',
    '{"attributes": [{"attributeName": ["a"], "attributeType": "NUMERIC"}]}',
    '{"attributes": [{"attributeName": 5, "attributeType": "NUMERIC"}]}',
    "[" * 100_000 + "]" * 100_000,  # past the depth Python's JSON parser reads
]


@pytest.mark.parametrize("schema", FORGED_SCHEMAS)
def test_a_forged_wizard_schema_is_refused(admin: Any, installation: Installation, schema: str) -> None:
    refused = admin.post(
        "/console/datasources/new",
        data={
            "csrf_token": page_token(admin),
            "step": "create",
            "location": str(installation.sample),
            "schema": schema,
        },
    )
    assert refused.status_code == 400
    assert "the form's schema is damaged: start the wizard again" in form_errors(refused)


def test_a_pasted_record_is_kept_and_a_huge_one_refused(admin: Any) -> None:
    path = f"/console/models/{MODEL}/predict"
    token = page_token(admin, path)
    bad = admin.post(path, data={"csrf_token": token, "pasted": '{"age": 41,'})
    assert bad.status_code == 400 and any("not valid JSON" in e for e in form_errors(bad))
    # The message points into the text: the text is still in the box to correct.
    assert "{&#34;age&#34;: 41,</textarea>" in bad.text
    twice = admin.post(path, data={"csrf_token": token, "pasted": '{"age": "41", "age": "42"}'})
    assert twice.status_code == 400 and any(
        "the pasted record names 'age' twice" in e for e in form_errors(twice)
    )
    # A field past the csv module's default limit (128 Ki) is read, as in JSON; the line is then refused
    # for what it is: one value where the model reads several.
    huge = admin.post(path, data={"csrf_token": token, "pasted": "x" * 200_000})
    assert huge.status_code == 400 and any("the pasted CSV line has 1 values" in e for e in form_errors(huge))
    # A JSON array is not read as a CSV line of bracketed values: it is not a record.
    listed = admin.post(path, data={"csrf_token": token, "pasted": '["41", "student"]'})
    assert listed.status_code == 400 and any("is a JSON array" in e for e in form_errors(listed))
    # Nested deeper than Python's JSON parser reads: refused as a CSV line of one value, not a 500.
    deep = admin.post(path, data={"csrf_token": token, "pasted": "[" * 100_000 + "]" * 100_000})
    assert deep.status_code == 400 and any("the pasted CSV line has 1 values" in e for e in form_errors(deep))


def test_group_forms_refuse_forged_values_with_a_message(admin: Any) -> None:
    path = "/console/groups/users"
    token = page_token(admin, path)
    for form, says in (
        ({"action": "remove-statement", "sid": "abc"}, "statement number 'abc' is not a whole number"),
        ({"action": "remove-statement", "sid": ""}, "statement number '' is not a whole number"),
        # Past the 4,300 digits int() reads (a bare ValueError, a 500, before).
        ({"action": "remove-statement", "sid": "9" * 5000}, "has 5,000 digits, far past any statement's"),
        ({"action": "remove-statement", "sid": "0" * 5000 + "99"}, "group 'users' has no statement 99"),
        ({"action": "bogus"}, "unknown action 'bogus'"),
        ({"action": "delete"}, "built-in"),
    ):
        refused = admin.post(path, data={"csrf_token": token, **form})
        assert refused.status_code == 400, form
        assert any(says in e for e in form_errors(refused)), (form, form_errors(refused))


def test_an_unknown_user_action_says_so(admin: Any) -> None:
    refused = admin.post("/console/users/bob", data={"csrf_token": page_token(admin), "action": "bogus"})
    assert refused.status_code == 400 and "unknown action 'bogus'" in form_errors(refused)


def test_revoking_names_the_links_own_object(admin: Any) -> None:
    # Reading the object named in the form is the permission check: a link of another object named
    # with it was revoked before the mismatch was noticed.
    token = page_token(admin, f"/console/models/{MODEL}")
    admin.post("/console/share", data={"csrf_token": token, "kind": "MLModel", "object_id": MODEL})
    links = re.findall(r'name="revoke" value="([0-9a-f]+)"', admin.get(f"/console/models/{MODEL}").text)
    assert links
    refused = admin.post(
        "/console/share",
        data={"csrf_token": token, "kind": "Evaluation", "object_id": EVALUATION, "revoke": links[-1]},
    )
    assert refused.status_code == 404
    assert links[-1] in admin.get(f"/console/models/{MODEL}").text
    revoked = admin.post(
        "/console/share",
        data={"csrf_token": token, "kind": "MLModel", "object_id": MODEL, "revoke": links[-1]},
    )
    assert revoked.status_code == 303 and links[-1] not in admin.get(f"/console/models/{MODEL}").text


def _model_ids(admin: Any) -> list[str]:
    # Ids only: a model an earlier test of the shared installation created may finish meanwhile.
    listed = admin.get("/console/models?format=json&size=100").json()["Results"]
    return [model["MLModelId"] for model in listed]


def test_a_refused_evaluation_datasource_creates_no_model(admin: Any) -> None:
    before = _model_ids(admin)
    refused = admin.post(
        "/console/models/new",
        data={
            "csrf_token": page_token(admin),
            "mode": "custom",
            "datasource": DATASOURCE,
            "type": "BINARY",
            "evaluation": "ds-nope",
        },
    )
    assert refused.status_code == 400 and 'id="evaluation-error"' in refused.text
    assert _model_ids(admin) == before


def test_a_name_of_spaces_is_no_name(admin: Any, installation: Installation) -> None:
    token = page_token(admin)
    inferred = admin.post(
        "/console/datasources/new",
        data={"csrf_token": token, "step": "infer", "location": str(installation.sample), "target": "y"},
    )
    schema = html.unescape(re.search(r'name="schema" value="([^"]*)"', inferred.text).group(1))
    created = admin.post(
        "/console/datasources/new",
        data={
            "csrf_token": token,
            "step": "create",
            "location": str(installation.sample),
            "schema": schema,
            "target_attribute": "y",
            "name": "   ",
        },
    )
    assert created.status_code == 303, form_errors(created)
    described = admin.get(created.headers["location"] + "?format=json").json()["GetDataSource"]
    assert not described.get("Name")


def test_a_target_or_row_id_that_is_no_column_is_that_fields_error(
    admin: Any, installation: Installation
) -> None:
    """InferDataSchema's errors naming TargetAttributeName or RowId are shown under, and focus, the target
    or row id field, not the location (whose data was read)."""
    token = page_token(admin)
    location = str(installation.sample)
    for sent, field in (
        ({"target": "nope"}, "target"),
        ({"row_id": "nope"}, "row_id"),
        ({"target": "y", "row_id": "y"}, "row_id"),
    ):
        page = admin.post(
            "/console/datasources/new",
            data={"csrf_token": token, "step": "infer", "location": location, **sent},
        )
        assert page.status_code == 400, sent
        assert f'id="{field}-error"' in page.text and 'id="location-error"' not in page.text, sent
        focused = re.findall(r'<input id="([^"]+)"[^>]*autofocus', page.text)
        assert focused == [field], sent
        assert f'value="{sent[field]}"' in page.text  # what was typed stays, to correct
    # A row id that is a column is the schema's row id, the target too.
    inferred = admin.post(
        "/console/datasources/new",
        data={"csrf_token": token, "step": "infer", "location": location, "target": "y", "row_id": "age"},
    )
    schema = json.loads(html.unescape(re.search(r'name="schema" value="([^"]*)"', inferred.text).group(1)))
    assert (schema["targetAttributeName"], schema["rowId"]) == ("y", "age")


def test_a_location_outside_the_data_roots_is_the_fields_error(admin: Any) -> None:
    token = page_token(admin)
    wizard = admin.post(
        "/console/datasources/new", data={"csrf_token": token, "step": "infer", "location": "/etc/passwd"}
    )
    assert wizard.status_code == 403 and 'id="location-error"' in wizard.text
    assert 'value="/etc/passwd"' in wizard.text and "outside the data roots" in wizard.text
    batch = admin.post(
        "/console/batch-predictions/new",
        data={"csrf_token": token, "model": MODEL, "datasource": DATASOURCE, "output": "/etc/out/"},
    )
    assert batch.status_code == 403 and 'id="output-error"' in batch.text
    assert 'value="/etc/out/"' in batch.text
    # The refused field, the only one, has the focus (the location field of the wizard too).
    for sent, field in ((wizard, "location"), (batch, "output")):
        box = re.search(rf'<input id="{field}"[^>]*>', sent.text)
        assert box and "autofocus" in box.group(0) and sent.text.count("autofocus") == 1, field


def test_a_refused_threshold_save_shows_the_counts_at_the_tried_threshold(
    admin: Any, installation: Installation
) -> None:
    service = installation.service
    endpoint = service.call("GetMLModel", {"MLModelId": MODEL})["EndpointInfo"]
    had_endpoint = endpoint["EndpointStatus"] == "READY"
    if not had_endpoint:
        service.call("CreateRealtimeEndpoint", {"MLModelId": MODEL})
    try:
        # A model with an endpoint keeps its threshold: the save is refused, the page shows 0.42 anyway.
        refused = admin.post(
            f"/console/models/{MODEL}/threshold",
            data={"csrf_token": page_token(admin), "threshold": "0.42", "evaluation": EVALUATION},
        )
    finally:
        if not had_endpoint:
            service.call("DeleteRealtimeEndpoint", {"MLModelId": MODEL})
    assert refused.status_code == 400 and 'id="threshold-error"' in refused.text
    data = json.loads(html.unescape(re.search(r'id="page-data">(.*?)</script>', refused.text, re.S).group(1)))
    assert data["AtThreshold"]["threshold"] == 0.42
    assert 'data-at="threshold">0.42<' in refused.text and 'value="0.42"' in refused.text


def test_a_nul_in_a_location_or_a_huge_whole_number_is_the_fields_error(
    admin: Any, installation: Installation
) -> None:
    token = page_token(admin)
    data = installation.home / "data"
    for path, form, field in (
        ("/console/datasources/new", {"step": "infer", "location": f"{data}/a\x00b.csv"}, "location"),
        (
            "/console/batch-predictions/new",
            {"model": MODEL, "datasource": DATASOURCE, "output": f"{data}/out\x00/"},
            "output",
        ),
        (
            "/console/models/new",
            {"mode": "custom", "datasource": DATASOURCE, "type": "BINARY", "passes": "9" * 400},
            "passes",
        ),
    ):
        page = admin.post(path, data={"csrf_token": token, **form})
        assert page.status_code == 400, (path, page.text[-600:])
        assert f'id="{field}-error"' in page.text and "\x00" not in page.text, path
    for response in (
        admin.get("/console/storage", params={"location": "\x00"}),
        admin.get("/console/storage", params={"location": f"{data}/a\x00b"}),
        admin.get("/console/storage/download", params={"location": f"{data}/a\x00b.csv"}),
        admin.post(
            "/console/storage",
            data={"csrf_token": token, "action": "delete", "location": str(data), "file": f"{data}/\x00"},
        ),
    ):
        assert response.status_code == 400 and "NUL character" in response.text
        # The field shows what was typed less the NUL the error names, which would be sent again.
        assert "\x00" not in response.text


def test_an_output_folder_without_storage_write_is_the_fields_error(installation: Installation) -> None:
    access, name = installation.service.access, "frank"
    Identities(installation.service.sessions, installation.home).create_user(name)
    Logins(installation.service.sessions).set_password(name, "frank-password-1")
    access.create_group("ml-everything")
    access.add_statement("ml-everything", {"Effect": "Allow", "Action": "machinelearning:*", "Resource": "*"})
    access.add_member("ml-everything", name)
    with TestClient(create_app(installation.service), follow_redirects=False) as client:
        assert log_in(client, name, "frank-password-1").status_code == 303
        output = f"{installation.home / 'data' / 'frank-out'}/"
        form = {"model": MODEL, "datasource": DATASOURCE, "output": output}
        batch = client.post(
            "/console/batch-predictions/new",
            data={"csrf_token": page_token(client, "/console/batch-predictions/new"), **form},
        )
    assert batch.status_code == 403 and 'id="output-error"' in batch.text
    assert "storage:Write" in batch.text and 'aria-invalid="true"' in batch.text


def test_a_name_too_long_is_refused_beside_it_not_cut_short(admin: Any, installation: Installation) -> None:
    token, name = page_token(admin), "n" * 1025

    def created() -> list[tuple[str, str | None]]:
        # Ids and names only: an object an earlier test created may finish meanwhile.
        return [
            (found[key], found.get("Name"))
            for operation, key in (
                ("DescribeDataSources", "DataSourceId"),
                ("DescribeMLModels", "MLModelId"),
                ("DescribeBatchPredictions", "BatchPredictionId"),
            )
            for found in installation.service.call(operation, {"Limit": 100})["Results"]
        ]

    before = created()
    for path, form in (
        (
            "/console/datasources/new",
            {
                "step": "create",
                "location": str(installation.sample),
                "schema": bank_sample_schema().to_json(),
                "name": name,
            },
        ),
        ("/console/models/new", {"mode": "custom", "datasource": DATASOURCE, "type": "BINARY", "name": name}),
        (
            "/console/models/new",
            {"mode": "default", "datasource": DATASOURCE, "type": "BINARY", "name": name},
        ),
        (
            "/console/batch-predictions/new",
            {"model": MODEL, "datasource": DATASOURCE, "output": "/tmp/out/", "name": name},
        ),
    ):
        page = admin.post(path, data={"csrf_token": token, **form})
        assert page.status_code == 400 and 'id="name-error"' in page.text, path
        assert "at most 1,024 characters (this one has 1,025)" in page.text
        assert f'value="{name}"' in page.text
    assert created() == before  # nothing made under a name cut short


def test_a_viewer_is_refused_the_threshold_save_beside_it(installation: Installation) -> None:
    name = "gina-viewer"
    Identities(installation.service.sessions, installation.home).create_user(name, ("viewers",))
    Logins(installation.service.sessions).set_password(name, "gina-password-1")
    before = installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"]
    with TestClient(create_app(installation.service), follow_redirects=False) as client:
        assert log_in(client, name, "gina-password-1").status_code == 303
        token = page_token(client, f"/console/evaluations/{EVALUATION}")
        refused = client.post(
            f"/console/models/{MODEL}/threshold",
            data={"csrf_token": token, "threshold": "0.37", "evaluation": EVALUATION},
        )
    assert refused.status_code == 403 and 'id="threshold-error"' in refused.text
    assert "UpdateMLModel" in refused.text and 'value="0.37"' in refused.text
    assert installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"] == before
