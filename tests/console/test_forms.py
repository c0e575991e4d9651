"""The console's forms given what a user may type or a client may forge: every refusal is a 4xx page with
the message beside the form (never a 500), and what was typed is still there to correct."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from console_helpers import MODEL, Installation, log_in, login_token

from emrml.console import objects
from emrml.web.server import create_app


def _token(client: Any, path: str = "/console/account") -> str:
    return login_token(client.get(path).text)


def _errors(page: Any) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'class="error[^"]*"[^>]*>([^<]*)<', page.text)]


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
]


@pytest.mark.parametrize("schema", FORGED_SCHEMAS)
def test_a_forged_wizard_schema_is_refused(admin: Any, installation: Installation, schema: str) -> None:
    refused = admin.post(
        "/console/datasources/new",
        data={
            "csrf_token": _token(admin),
            "step": "create",
            "location": str(installation.sample),
            "schema": schema,
        },
    )
    assert refused.status_code == 400
    assert "the form's schema is damaged: start the wizard again" in _errors(refused)


def test_a_pasted_record_is_kept_and_a_huge_one_refused(admin: Any) -> None:
    path = f"/console/models/{MODEL}/predict"
    token = _token(admin, path)
    bad = admin.post(path, data={"csrf_token": token, "pasted": '{"age": 41,'})
    assert bad.status_code == 400 and any("not valid JSON" in e for e in _errors(bad))
    # The message points into the text: the text is still in the box to correct.
    assert "{&#34;age&#34;: 41,</textarea>" in bad.text
    huge = admin.post(path, data={"csrf_token": token, "pasted": "x" * 200_000})
    assert huge.status_code == 400 and any("cannot be read" in e for e in _errors(huge))


def test_group_forms_refuse_forged_values_with_a_message(admin: Any) -> None:
    path = "/console/groups/users"
    token = _token(admin, path)
    for form, says in (
        ({"action": "remove-statement", "sid": "abc"}, "statement number 'abc' is not a whole number"),
        ({"action": "remove-statement", "sid": ""}, "statement number '' is not a whole number"),
        ({"action": "bogus"}, "unknown action 'bogus'"),
        ({"action": "delete"}, "built-in"),
    ):
        refused = admin.post(path, data={"csrf_token": token, **form})
        assert refused.status_code == 400, form
        assert any(says in e for e in _errors(refused)), (form, _errors(refused))


def test_an_unknown_user_action_says_so(admin: Any) -> None:
    refused = admin.post("/console/users/bob", data={"csrf_token": _token(admin), "action": "bogus"})
    assert refused.status_code == 400 and "unknown action 'bogus'" in _errors(refused)
