"""The console's logins and sessions through Starlette's test client: scrypt passwords, hardened cookies,
CSRF, throttled logins and password changes, tampered cookies."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from console_helpers import BOB_PASSWORD, EVALUATION, MODEL, Installation, log_in, login_token

from emrml.service.logins import check_password, hash_password


def test_passwords_are_salted_scrypt() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$32768$8$1$")
    assert check_password("correct horse", first)
    assert not check_password("correct hors", first)
    assert not check_password("x", "garbage")


def test_login_sets_a_hardened_cookie_and_logout_ends_the_session(
    anonymous: Any, installation: Installation
) -> None:
    response = log_in(anonymous, "admin", installation.admin_password)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "emrml_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    token = anonymous.cookies.get("emrml_session")
    home = anonymous.get("/console/")
    assert home.status_code == 200 and ">admin<" in home.text
    assert anonymous.post("/console/logout", data={"csrf_token": login_token(home.text)}).status_code == 303
    assert anonymous.get("/console/").status_code == 303
    # The old cookie is worth nothing once logged out (sessions are server-side).
    anonymous.cookies.set("emrml_session", token, path="/console/")
    assert anonymous.get("/console/?format=json").status_code == 401


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(anonymous: Any) -> None:
    for user in ("admin", "nobody"):
        response = log_in(anonymous, user, "wrong password")
        assert response.status_code == 401
        assert "Wrong user name or password." in response.text
        assert "emrml_session" not in anonymous.cookies


def test_a_refused_login_keeps_the_user_name_and_focuses_the_password(anonymous: Any) -> None:
    refused = log_in(anonymous, "admin", "wrong password")
    assert refused.status_code == 401
    fields = dict(re.findall(r'<input id="(username|password)"([^>]*)>', refused.text))
    assert 'value="admin"' in fields["username"] and "autofocus" not in fields["username"]
    assert "autofocus" in fields["password"] and "wrong password" not in refused.text
    fresh = dict(re.findall(r'<input id="(username|password)"([^>]*)>', anonymous.get("/console/login").text))
    assert 'value=""' in fresh["username"] and "autofocus" in fresh["username"]


def test_a_login_without_its_csrf_cookie_is_refused(anonymous: Any, installation: Installation) -> None:
    page = anonymous.get("/console/login")
    anonymous.cookies.clear()
    response = anonymous.post(
        "/console/login",
        data={
            "csrf_token": login_token(page.text),
            "username": "admin",
            "password": installation.admin_password,
        },
    )
    assert response.status_code == 403 and "emrml_session" not in anonymous.cookies


def test_a_login_csrf_token_outside_ascii_is_refused_as_a_wrong_one(
    anonymous: Any, installation: Installation
) -> None:
    form = {"username": "admin", "password": installation.admin_password}
    token = login_token(anonymous.get("/console/login").text)
    refused = anonymous.post("/console/login", data={**form, "csrf_token": token + "\u00e9"})
    assert refused.status_code == 403 and "The form expired" in refused.text
    # The cookie's token too: a header's bytes are Latin-1, any of them a character.
    anonymous.cookies.clear()
    cookie = {"cookie": b"emrml_login_csrf=\xe9"}
    refused = anonymous.post("/console/login", data={**form, "csrf_token": token}, headers=cookie)
    assert refused.status_code == 403 and "emrml_session" not in anonymous.cookies


def test_the_login_form_answers_429_when_throttled(installation: Installation) -> None:
    from starlette.testclient import TestClient

    from emrml.web.server import create_app

    with TestClient(create_app(installation.service), follow_redirects=False) as client:
        for _ in range(5):
            assert log_in(client, "bob", "not the password").status_code == 401
        refused = log_in(client, "bob", BOB_PASSWORD)
        assert refused.status_code == 429 and "Too many failed logins" in refused.text
        assert int(refused.headers["retry-after"]) > 0


def test_state_changes_need_the_session_csrf_token(admin: Any) -> None:
    form = {"threshold": "0.4", "evaluation": EVALUATION}
    refused = admin.post(f"/console/models/{MODEL}/threshold", data=form)
    assert refused.status_code == 403 and "CSRF" in refused.text
    refused = admin.post(f"/console/models/{MODEL}/threshold", data={**form, "csrf_token": "forged"})
    assert refused.status_code == 403
    described = admin.get(f"/console/models/{MODEL}?format=json").json()["GetMLModel"]
    assert described["ScoreThreshold"] == 0.5


def test_a_tampered_session_cookie_logs_out(admin: Any) -> None:
    token = admin.cookies.get("emrml_session")
    admin.cookies.clear()
    admin.cookies.set(
        "emrml_session", token[:-2] + ("AA" if not token.endswith("AA") else "BB"), path="/console/"
    )
    assert admin.get("/console/").status_code == 303


def test_password_change_asks_for_the_current_one(anonymous: Any, installation: Installation) -> None:
    from emrml.service.identity import Identities
    from emrml.service.logins import Logins

    Identities(installation.service.sessions, installation.home).create_user("carol")
    Logins(installation.service.sessions).set_password("carol", "carol-password")
    assert log_in(anonymous, "carol", "carol-password").status_code == 303
    token = login_token(anonymous.get("/console/account").text)
    wrong = anonymous.post(
        "/console/account",
        data={"csrf_token": token, "current": "nope", "new": "n3w-password", "again": "n3w-password"},
    )
    assert wrong.status_code == 400 and "not your current password" in wrong.text
    # The field to correct is described by its error and has the focus, as in every form.
    assert re.search(r'<input id="current"[^>]*aria-describedby="current-error" autofocus>', wrong.text)
    short = anonymous.post(
        "/console/account",
        data={"csrf_token": token, "current": "carol-password", "new": "short", "again": "short"},
    )
    assert short.status_code == 400 and "8 to 1024 characters" in short.text
    done = anonymous.post(
        "/console/account",
        data={
            "csrf_token": token,
            "current": "carol-password",
            "new": "n3w-password",
            "again": "n3w-password",
        },
    )
    assert done.status_code == 303
    assert anonymous.get("/console/").status_code == 303  # the change ended the session
    assert log_in(anonymous, "carol", "carol-password").status_code == 401
    assert log_in(anonymous, "carol", "n3w-password").status_code == 303


def test_wrong_current_passwords_are_throttled_as_logins_are(
    anonymous: Any, installation: Installation
) -> None:
    from emrml.service.identity import Identities
    from emrml.service.logins import MAX_FAILURES, Logins

    Identities(installation.service.sessions, installation.home).create_user("dave")
    Logins(installation.service.sessions).set_password("dave", "dave-password")
    assert log_in(anonymous, "dave", "dave-password").status_code == 303
    token = login_token(anonymous.get("/console/account").text)

    def change(current: str) -> Any:
        form = {"csrf_token": token, "current": current, "new": "n3w-password", "again": "n3w-password"}
        return anonymous.post("/console/account", data=form)

    for attempt in range(MAX_FAILURES):
        wrong = change(f"guess-{attempt}")
        assert wrong.status_code == 400 and "not your current password" in wrong.text
    # Even the right password now waits: guessing through an open session is as slow as at the login form.
    throttled = change("dave-password")
    assert throttled.status_code == 429 and "Too many failed logins" in throttled.text
    assert int(throttled.headers["retry-after"]) > 0
    assert 'aria-invalid="true"' in throttled.text
    assert Logins(installation.service.sessions).verify("dave", "dave-password")
    # The failures count for the login form too (same user, same client).
    anonymous.cookies.clear()
    assert log_in(anonymous, "dave", "dave-password").status_code == 429


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/console/\\..\\..\\evil.example",
        "/\t/evil.example/",
        "javascript:alert(1)",
        "/console\\/evil.example",
    ],
)
def test_the_login_pages_next_never_leads_off_the_console(admin: Any, target: str) -> None:
    # Browsers read a backslash as a slash and drop tabs and line breaks from a URL: '/\evil.example'
    # and '/<TAB>/evil.example' lead to another site as '//evil.example' does.
    location = admin.get("/console/login", params={"next": target}).headers["location"]
    assert location.startswith("/console/") and not re.search(r"[\\\s]", location), location
    assert urlsplit(location.replace("\\", "/")).netloc == ""


def test_the_login_leads_on_only_to_a_page_of_the_console(admin: Any) -> None:
    """``next`` is a path of the console, as the browser will resolve it: not another site, nor a path whose
    dot segments (however spelt) lead out of the console."""
    for target in (
        "https://elsewhere.example/",
        "//elsewhere.example/",
        "/console/../metrics",
        "/console/..\\metrics",
        "/console/%2e%2e/metrics",
        "/console/.%2E/x",
        "/console/.\t./x",
    ):
        sent = admin.get("/console/login", params={"next": target})
        assert sent.status_code == 303 and sent.headers["location"] == "/console/", target
    kept = admin.get("/console/login", params={"next": "/console/models?prefix=a..b"})
    assert kept.headers["location"] == "/console/models?prefix=a..b"
