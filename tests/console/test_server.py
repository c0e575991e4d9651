"""The console's server side through Starlette's test client: sessions, CSRF, refusals, escaping, errors."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest
from console_helpers import (
    BOB_PASSWORD,
    DATASOURCE,
    EVALUATION,
    MODEL,
    Installation,
    completed_batch_prediction,
    log_in,
    login_token,
    put_stream,
    remove_streams,
)

from emrml.console.thresholds import at_threshold
from emrml.samples import bank_sample_schema
from emrml.service.logins import check_password, hash_password

PAGES = [
    "/console/",
    "/console/datasources",
    "/console/models",
    "/console/evaluations",
    "/console/batch-predictions",
    "/console/jobs",
    "/console/capacity",
    "/console/account",
    "/console/datasources/new",
    "/console/models/new",
    "/console/evaluations/new",
    f"/console/datasources/{DATASOURCE}",
    f"/console/models/{MODEL}",
    f"/console/models/{MODEL}/predict",
    f"/console/evaluations/{EVALUATION}",
]


def test_passwords_are_salted_scrypt() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$32768$8$1$")
    assert check_password("correct horse", first)
    assert not check_password("correct hors", first)
    assert not check_password("x", "garbage")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_and_its_json_twin_refuse_anonymous_requests(anonymous: Any, path: str) -> None:
    page = anonymous.get(path)
    assert page.status_code == 303 and page.headers["location"].startswith("/console/login?next=")
    twin = anonymous.get(path + "?format=json")
    assert twin.status_code == 401 and twin.json() == {"error": "log in first"}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_admin_with_a_json_twin(admin: Any, path: str) -> None:
    page = admin.get(path)
    assert page.status_code == 200, page.text[:500]
    assert "<main" in page.text and 'id="page-data"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    twin = admin.get(path + "?format=json")
    assert twin.status_code == 200 and isinstance(twin.json(), dict)


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


def test_unknown_ids_and_paths_are_404_pages(admin: Any) -> None:
    for path in (
        "/console/evaluations/ev-nope",
        "/console/models/nope",
        "/console/datasources/x",
        "/console/nope",
    ):
        response = admin.get(path)
        assert (
            response.status_code == 404 and "Not found" in response.text and "Traceback" not in response.text
        )
        # The page keeps the menu and the way to log out: a mistyped address is no dead end.
        assert '<nav aria-label="Main">' in response.text and "Log out" in response.text, path


def test_model_and_evaluation_pages_show_the_training_data_alert(admin: Any) -> None:
    for path in (f"/console/models/{MODEL}", f"/console/evaluations/{EVALUATION}"):
        page = admin.get(path)
        assert '<table class="alerts">' in page.text
        assert "No attribute predicts the target by itself" in page.text, path


def test_threshold_form_marks_bad_values_and_saves_good_ones(admin: Any) -> None:
    page = admin.get(f"/console/evaluations/{EVALUATION}")
    token = login_token(page.text)
    for bad in ("1.5", "-0.1", "abc", "nan"):
        response = admin.post(
            f"/console/models/{MODEL}/threshold",
            data={"csrf_token": token, "threshold": bad, "evaluation": EVALUATION},
        )
        assert response.status_code == 400
        assert (
            'aria-invalid="true"' in response.text
            and "The threshold is a number from 0 to 1" in response.text
        )
    saved = admin.post(
        f"/console/models/{MODEL}/threshold",
        data={"csrf_token": token, "threshold": "0.35", "evaluation": EVALUATION},
    )
    assert saved.status_code == 303
    assert admin.get(f"/console/models/{MODEL}?format=json").json()["GetMLModel"]["ScoreThreshold"] == 0.35
    admin.post(
        f"/console/models/{MODEL}/threshold",
        data={"csrf_token": token, "threshold": "0.5", "evaluation": EVALUATION},
    )


def test_threshold_twin_matches_the_stored_table(admin: Any) -> None:
    twin = admin.get(f"/console/evaluations/{EVALUATION}?format=json&threshold=0.3").json()
    metrics = twin["GetEvaluationInsights"]["Insights"]["metrics"]
    at = twin["AtThreshold"]
    assert at == at_threshold(metrics, 0.3)
    assert at["threshold"] == 0.3
    total = sum(metrics["histograms"]["positive"]) + sum(metrics["histograms"]["negative"])
    assert at["truePositives"] + at["falseNegatives"] + at["falsePositives"] + at["trueNegatives"] == total
    # Counts agree with the histograms: scores at or above the cut-off are predicted 1.
    assert at["truePositives"] == sum(metrics["histograms"]["positive"][30:])


def test_html_in_names_and_values_is_escaped(admin: Any, installation: Installation) -> None:
    hostile = installation.home / "data" / "hostile.csv"
    hostile.write_text("name,kind\n<img src=x onerror=alert(1)>,a\nb,<img src=x onerror=alert(2)>\n" * 3)
    schema = json.dumps(
        {
            "version": "1.0",
            "dataFormat": "CSV",
            "dataFileContainsHeader": True,
            "attributes": [
                {"attributeName": "name", "attributeType": "CATEGORICAL"},
                {"attributeName": "kind", "attributeType": "CATEGORICAL"},
            ],
        }
    )
    installation.service.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-hostile",
            "DataSourceName": "<script>alert('x')</script>",
            "DataSpec": {"DataLocationS3": str(hostile), "DataSchema": schema},
            "ComputeStatistics": True,
        },
    )
    installation.service.wait("DataSource", "ds-hostile")
    for path in ("/console/datasources", "/console/datasources/ds-hostile", "/console/"):
        html = admin.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert" in html or "\\u003cscript\\u003e" in html


def test_static_files_have_hashed_names_and_long_cache_lifetimes(admin: Any) -> None:
    html = admin.get("/console/").text
    names = re.findall(r'/console/static/([^"]+)', html)
    assert any(re.fullmatch(r"vendor/d3\.min\.[0-9a-f]{12}\.js", name) for name in names)
    for name in names:
        response = admin.get(f"/console/static/{name}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert admin.get("/console/static/console.js").status_code == 404


def test_list_pages_page_through_describe(admin: Any, installation: Installation) -> None:
    first = admin.get("/console/datasources?format=json&size=1").json()
    assert len(first["Results"]) == 1 and first["NextToken"]
    second = admin.get(
        "/console/datasources", params={"token": first["NextToken"], "format": "json", "size": 1}
    )
    assert second.json()["Results"][0]["DataSourceId"] != first["Results"][0]["DataSourceId"]
    forged = admin.get("/console/datasources?token=forged")
    assert forged.status_code == 200 and "NextToken is not a token" in forged.text
    prefixed = admin.get("/console/datasources?prefix=Bank%20ds-console-bank-e&format=json").json()
    assert [item["DataSourceId"] for item in prefixed["Results"]] == [f"{DATASOURCE}-eval"]


def test_numbers_in_urls_that_python_calls_digits_but_int_refuses_are_not_errors(
    admin: Any, installation: Installation
) -> None:
    # "\u00b2" (superscript two) passes str.isdigit() but not int().
    listed = admin.get("/console/datasources", params={"size": "\u00b2", "format": "json"})
    assert listed.status_code == 200 and listed.json()["Results"]
    completed_batch_prediction(installation, "bp-digits", installation.home / "data" / "digits-out")
    assert admin.get("/console/batch-predictions/bp-digits/files/0").status_code == 200
    missing = admin.get("/console/batch-predictions/bp-digits/files/\u00b2")
    assert missing.status_code == 404 and "has no file" in missing.text


def test_an_evaluation_counts_the_records_without_a_target_as_left_out(
    admin: Any, installation: Installation
) -> None:
    lines = installation.sample.read_text().splitlines()[:301]
    for position in range(1, 301, 3):  # every third record without its target (the last field)
        lines[position] = lines[position].rsplit(",", 1)[0] + ","
    partial = installation.home / "data" / "partial-target.csv"
    partial.write_text("\n".join(lines) + "\n")
    service = installation.service
    spec = {"DataLocationS3": str(partial), "DataSchema": bank_sample_schema().to_json()}
    service.call("CreateDataSourceFromS3", {"DataSourceId": "ds-partial", "DataSpec": spec})
    request = {"EvaluationId": "ev-partial", "MLModelId": MODEL, "EvaluationDataSourceId": "ds-partial"}
    service.call("CreateEvaluation", request)
    assert service.wait("Evaluation", "ev-partial")["Status"] == "COMPLETED"
    page = admin.get("/console/evaluations/ev-partial")
    assert "200 used, 100 left out (no usable target)" in page.text


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


def test_share_links_show_one_dashboard_until_revoked(admin: Any, anonymous_client_factory: Any) -> None:
    page = admin.get(f"/console/evaluations/{EVALUATION}")
    created = admin.post(
        "/console/share",
        data={"csrf_token": login_token(page.text), "kind": "Evaluation", "object_id": EVALUATION},
    )
    assert created.status_code == 200
    url = re.search(r'value="(http[^"]+/console/shared/[^"]+)"', created.text).group(1)
    path = url[url.index("/console/") :]
    outsider = anonymous_client_factory()
    shown = outsider.get(path)
    assert (
        shown.status_code == 200
        and EVALUATION in shown.text
        and 'href="/console/datasources"' not in shown.text
    )
    assert "csrf_token" not in shown.text
    assert outsider.get(path.rsplit("/", 1)[0] + "/not-a-token").status_code == 404
    link_id = admin.get(f"/console/evaluations/{EVALUATION}?format=json")  # the page lists live links
    links = re.findall(
        r'name="revoke" value="([0-9a-f]+)"', admin.get(f"/console/evaluations/{EVALUATION}").text
    )
    assert links and link_id.status_code == 200
    token = login_token(page.text)
    for link in links:
        admin.post(
            "/console/share",
            data={"csrf_token": token, "kind": "Evaluation", "object_id": EVALUATION, "revoke": link},
        )
    assert outsider.get(path).status_code == 404


def test_a_share_link_works_for_the_chosen_time_from_now(
    admin: Any, anonymous_client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import emrml.service.sharing as sharing

    page = admin.get(f"/console/models/{MODEL}")
    assert '<option value="3600">1 hour</option>' in page.text
    form = {"csrf_token": login_token(page.text), "kind": "MLModel", "object_id": MODEL}
    before = time.time()
    created = admin.post("/console/share?format=json", data={**form, "expires_in": "3600"})
    assert created.status_code == 200, created.text
    # An hour from now, not a midnight: a link made at 23:30 for an hour must not end at 00:00.
    assert before + 3600 <= created.json()["ExpiresAt"] <= time.time() + 3600
    path = created.json()["Url"][created.json()["Url"].index("/console/") :]
    outsider = anonymous_client_factory()
    assert outsider.get(path).status_code == 200
    clock = sharing.now
    monkeypatch.setattr(sharing, "now", lambda: clock() + 3550)
    assert outsider.get(path).status_code == 200
    monkeypatch.setattr(sharing, "now", lambda: clock() + 3610)
    assert outsider.get(path).status_code == 404
    forever = admin.post("/console/share?format=json", data={**form, "expires_in": ""})
    assert forever.status_code == 200 and forever.json()["ExpiresAt"] is None
    forged = admin.post("/console/share", data={**form, "expires_in": "2026-12-31"})
    assert forged.status_code == 400 and "none of the lifetimes offered" in forged.text


def test_a_deleted_users_share_links_stay_dead_when_a_user_of_that_name_is_created_again(
    installation: Installation, anonymous_client_factory: Any
) -> None:
    from emrml.service.groups import ADMINS, VIEWERS
    from emrml.service.logins import Logins

    access, logins = installation.service.access, Logins(installation.service.sessions)
    name = f"sharer-{uuid.uuid4().hex[:6]}"
    access.create_user(name, (ADMINS,))  # who may change the evaluation, and so share it
    logins.set_password(name, "sharer-password-1")
    sharer, outsider = anonymous_client_factory(), anonymous_client_factory()
    assert log_in(sharer, name, "sharer-password-1").status_code == 303
    token = login_token(sharer.get(f"/console/evaluations/{EVALUATION}").text)
    form = {"csrf_token": token, "kind": "Evaluation", "object_id": EVALUATION, "expires_in": ""}
    created = sharer.post("/console/share?format=json", data=form)
    assert created.status_code == 200, created.text
    path = created.json()["Url"][created.json()["Url"].index("/console/") :]
    assert outsider.get(path).status_code == 200
    access.delete_user(name)
    assert outsider.get(path).status_code == 404
    # Another person given the freed name later must not bring the first one's links back to life.
    access.create_user(name, (VIEWERS,))
    try:
        assert outsider.get(path).status_code == 404
    finally:
        access.delete_user(name)


@pytest.fixture
def anonymous_client_factory(installation: Installation) -> Any:
    from starlette.testclient import TestClient

    from emrml.web.server import create_app

    clients: list[Any] = []

    def make() -> Any:
        client = TestClient(create_app(installation.service), follow_redirects=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_two_evaluations_side_by_side(admin: Any) -> None:
    twin = admin.get(f"/console/evaluations/compare?a={EVALUATION}&b={EVALUATION}&format=json").json()
    assert [side["GetEvaluation"]["EvaluationId"] for side in twin["Evaluations"]] == [EVALUATION] * 2
    page = admin.get(f"/console/evaluations/compare?a={EVALUATION}")
    assert page.status_code == 200 and page.text.count('class="compare-side"') == 1
    assert admin.get("/console/evaluations/compare?a=ev-nope").status_code == 404


def test_a_tampered_manifest_cannot_make_the_console_serve_other_files(
    admin: Any, installation: Installation, tmp_path: Any
) -> None:
    """The manifest lies in the user's folder: whatever it names, only the batch prediction's own results
    inside the data roots are listed and downloadable."""
    import json

    output = installation.home / "data" / "tamper-out"
    completed_batch_prediction(installation, "bp-tamper", output)
    manifest = output / "batch-prediction" / "bp-tamper.manifest"
    secret = tmp_path / "secret.txt"
    secret.write_text("not-for-the-console-3e1f")
    results = output / "batch-prediction" / "result"
    (results / "link.gz").symlink_to(secret)
    manifest.write_text(
        json.dumps(
            {
                "a": str(secret),
                "b": str(installation.home / "secrets.key"),
                "c": f"{results}/../../../../metastore.db",
                "d": str(results / "link.gz"),
            }
        )
    )
    # link.gz is below the results, but a link to outside the roots: the user may not read it, so it is
    # not offered either.
    listed = admin.get("/console/batch-predictions/bp-tamper?format=json").json()["ResultFiles"]
    assert listed == []
    refused = admin.get("/console/batch-predictions/bp-tamper/files/0")
    assert refused.status_code == 404 and "not-for-the-console" not in refused.text
    # Nested deeper than Python's JSON parser reads: no files, as for any manifest that is not an object.
    manifest.write_text("[" * 50_000 + "]" * 50_000)
    page = admin.get("/console/batch-predictions/bp-tamper?format=json")
    assert page.status_code == 200 and page.json()["ResultFiles"] == []


def test_a_result_linked_to_a_file_its_creator_may_not_read_is_not_downloaded(
    admin: Any, anonymous_client_factory: Any, installation: Installation
) -> None:
    """bob may read and write his batch predictions' outputs in his folder, and nothing else of the data
    roots: a result he replaces with a link to another file of the roots is no result of his, for him or
    anyone."""
    from emrml.service.identity import user_arn

    access = installation.service.access
    output = installation.home / "data" / f"bob-out-{uuid.uuid4().hex[:6]}"
    private = installation.home / "data" / f"private-{uuid.uuid4().hex[:6]}.csv"
    private.write_text("not-for-bob-7c2d\n")
    group = f"batchers-{uuid.uuid4().hex[:6]}"
    access.create_group(group)
    access.add_statement(
        group,
        {"Effect": "Allow", "Action": ["CreateBatchPrediction", "GetBatchPrediction"], "Resource": "*"},
    )
    access.add_statement(
        group, {"Effect": "Allow", "Action": ["storage:Read", "storage:Write"], "Resource": f"{output}/*"}
    )
    access.add_member(group, "bob")
    try:
        batch_id = f"bp-{group}"
        completed_batch_prediction(installation, batch_id, output, user_arn("000000000000", "bob"))
        page = f"/console/batch-predictions/{batch_id}"
        # His own results, where he may write: downloaded, by him and by whoever may read the object.
        bob = anonymous_client_factory()
        assert log_in(bob, "bob", BOB_PASSWORD).status_code == 303
        for client in (bob, admin):
            assert client.get(f"{page}/files/0").status_code == 200
        (result,) = (output / "batch-prediction" / "result").iterdir()
        result.unlink()
        result.symlink_to(private)
        # bob may not read where it leads: it is not offered to him. The admin may read anything, but not as
        # bob's result.
        refused = bob.get(f"{page}/files/0")
        assert refused.status_code == 404 and "not-for-bob" not in refused.text
        refused = admin.get(f"{page}/files/0")
        assert refused.status_code == 403 and "neither read nor write" in refused.text
        assert "not-for-bob" not in refused.text
    finally:
        access.delete_group(group)


def test_the_jobs_page_lists_the_stream_consumers_each_user_may_see(
    admin: Any, installation: Installation
) -> None:
    put_stream(installation.service, "st-console", "RUNNING", name="<b>clicks</b>", running=True)
    try:
        twin = admin.get("/console/jobs?format=json").json()
        (stream,) = [s for s in twin["Streams"] if s["StreamId"] == "st-console"]
        assert (stream["RecordsIn"], stream["RecordsOut"], stream["RecordsFailed"]) == (120, 117, 3)
        assert stream["MillisBehindLatest"] == 1500 and stream["Status"] == "RUNNING"
        assert stream["ModelReadable"] is True  # the rows the page's script adds link the model
        page = admin.get("/console/jobs?kind=Stream").text
        assert "<title>Jobs" in page and page.count("120 / 117 / 3") == 1  # in the page's body, once
        assert "120 / 117 / 3" in page and "&lt;b&gt;clicks&lt;/b&gt;" in page and "<b>clicks" not in page
        assert 'id="jobs"' in page and f'data-id="MLModel/{MODEL}"' not in page  # streams only
        assert admin.get("/console/jobs?status=STOPPED&format=json").json() == {
            "Jobs": [],
            "OlderJobs": False,
            "Streams": [],
        }
        assert "Streams" not in admin.get("/console/jobs?kind=MLModel&format=json").json()
        from starlette.testclient import TestClient

        from emrml.web.server import create_app

        with TestClient(create_app(installation.service), follow_redirects=False) as bob:
            assert log_in(bob, "bob", BOB_PASSWORD).status_code == 303
            assert bob.get("/console/jobs?format=json").json()["Streams"] == []  # not his
    finally:
        remove_streams(installation.service, "st-console")


def test_the_start_notice_says_a_stream_whose_consumers_died_at_start_is_failed(
    admin: Any, installation: Installation
) -> None:
    """After the start button, "no consumer started" said "consumers run it already", also when the
    consumers started had died before they ran and the stream was FAILED."""
    died = "consumer process host:9 ended before it ran (exit code 1)"
    put_stream(installation.service, "st-died", "FAILED", message=died)
    put_stream(installation.service, "st-busy", "RUNNING", running=True)
    try:
        page = admin.get("/console/jobs?kind=Stream&stream=st-died&started=0").text
        notice = re.search(r'<p role="status" id="stream-started">([^<]*)</p>', page)
        assert notice and notice.group(1) == f"Stream st-died: no consumer started; it is FAILED: {died}"
        # A FAILED stream reads as every FAILED object does, says why, and offers to start it again.
        row = re.search(r'<tr data-id="Stream/st-died">.*?</tr>', page, re.DOTALL)
        assert row and '<span class="status status-failed">FAILED</span>' in row.group(0)
        assert f">{died}</td>" in row.group(0) and ">Start again</button>" in row.group(0)
        page = admin.get("/console/jobs?kind=Stream&stream=st-busy&started=0").text
        assert "Stream st-busy: no consumer started, consumers run it already." in page
    finally:
        remove_streams(installation.service, "st-died", "st-busy")


def test_the_capacity_page_plans_and_marks_the_refused_field(admin: Any) -> None:
    query = "nodes=10&disk=800GB&data=3TB"
    page = admin.get(f"/console/capacity?{query}")
    assert page.status_code == 200
    assert "Usable HDFS capacity: 8.00 TB / 3 = 2.67 TB" in page.text and "not enough space" in page.text
    twin = admin.get(f"/console/capacity?{query}&format=json").json()
    assert twin["Plan"]["replication"] == 3 and twin["Plan"]["smallest_nodes"] == 8
    refused = admin.get("/console/capacity?nodes=10&disk=800+furlongs&data=3TB")
    assert refused.status_code == 400
    assert 'id="disk" name="disk" value="800 furlongs" required aria-invalid="true"' in refused.text
    assert "unknown unit" in refused.text
    assert admin.get("/console/capacity").status_code == 200  # the empty form


def test_a_sample_that_is_a_folder_is_the_sample_fields_error(admin: Any, installation: Installation) -> None:
    folder = installation.home / "data"
    refused = admin.get(f"/console/capacity?nodes=10&disk=800GB&data=3TB&sample={folder}")
    assert refused.status_code == 400
    assert f'id="sample" name="sample" value="{folder}" aria-invalid="true"' in refused.text
    error = re.search(r'<p class="error field-error" id="sample-error">([^<]*)</p>', refused.text)
    assert error and "SampleLocation" in error.group(1) and "is a directory" in error.group(1)


def test_the_jobs_page_shows_the_spark_application_and_jobs_a_job_ran_on(
    admin: Any, installation: Installation
) -> None:
    from emrml.service.metastore import MLModel

    def mark(application: str | None, jobs: str | None) -> None:
        with installation.service.sessions() as session, session.begin():
            row = session.get(MLModel, MODEL)
            row.spark_application, row.spark_jobs = application, jobs

    mark("app-20261204060000-0001", "[3, 4, 5]")
    try:
        twin = admin.get("/console/jobs?kind=MLModel&format=json").json()
        (job,) = [j for j in twin["Jobs"] if j["Id"] == MODEL]
        assert job["SparkApplicationId"] == "app-20261204060000-0001" and job["SparkJobIds"] == [3, 4, 5]
        page = admin.get("/console/jobs?kind=MLModel").text
        assert "Spark application <code>app-20261204060000-0001</code>, jobs 3, 4, 5" in page
    finally:
        mark(None, None)
    (job,) = [j for j in admin.get("/console/jobs?format=json").json()["Jobs"] if j["Id"] == MODEL]
    assert job["SparkApplicationId"] is None and job["SparkJobIds"] == []
    # A job in its first step: its application is known, none of its Spark jobs has ended yet, and its
    # Message is what it does now.
    from emrml.service.metastore import now

    def running(message: str | None) -> None:
        with installation.service.sessions() as session, session.begin():
            row = session.get(MLModel, MODEL)
            row.status = "INPROGRESS" if message else "COMPLETED"
            row.progress_message, row.heartbeat_at = message, now()

    mark("app-20261204060000-0002", "[]")
    running("waiting for an executor (12 s; the job fails at 300 s, setting spark_executor_wait_seconds)")
    try:
        page = admin.get("/console/jobs?kind=MLModel").text
        assert "Spark application <code>app-20261204060000-0002</code></td>" in page
        (job,) = [j for j in admin.get("/console/jobs?format=json").json()["Jobs"] if j["Id"] == MODEL]
        assert job["Message"].startswith("waiting for an executor (12 s;")
    finally:
        running(None)
        mark(None, None)


def test_a_datasource_with_numbers_near_the_float_range_renders(
    admin: Any, installation: Installation
) -> None:
    # Its statistics have figures that overflowed (None): the page and its twin still render.
    huge = installation.home / "data" / "huge.csv"
    huge.write_text(
        "x,y\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(["1e200", "-1.7e308", "1.7e308", "3"] * 5))
    )
    attributes = [
        {"attributeName": "x", "attributeType": "NUMERIC"},
        {"attributeName": "y", "attributeType": "BINARY"},
    ]
    schema = {"version": "1.0", "dataFormat": "CSV", "dataFileContainsHeader": True, "attributes": attributes}
    spec = {"DataLocationS3": str(huge), "DataSchema": json.dumps({**schema, "targetAttributeName": "y"})}
    request = {"DataSourceId": "ds-huge", "DataSpec": spec, "ComputeStatistics": True}
    installation.service.call("CreateDataSourceFromS3", request)
    assert installation.service.wait("DataSource", "ds-huge")["Status"] == "COMPLETED"
    page = admin.get("/console/datasources/ds-huge")
    assert page.status_code == 200, page.text[:500]
    twin = admin.get("/console/datasources/ds-huge?format=json")
    assert twin.status_code == 200 and "Infinity" not in twin.text and "NaN" not in twin.text
