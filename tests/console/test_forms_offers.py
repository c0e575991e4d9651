"""What the console's forms offer and say: hints to the storage browser, paging links, samples, custom
training's notes, actions the user's permissions leave out, empty selects, and forms sent twice that
create one object."""

from __future__ import annotations

import html
import json
import re
from typing import Any

from console_helpers import (
    BOB_PASSWORD,
    DATASOURCE,
    EVALUATION,
    MODEL,
    Installation,
    form_errors,
    log_in,
    login_token,
    page_token,
)
from starlette.testclient import TestClient

from emrml.samples import bank_sample_schema
from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.web.server import create_app


def test_compare_selects_each_sides_own_choice(admin: Any) -> None:
    page = admin.get(f"/console/evaluations/compare?a={EVALUATION}")
    side_a, side_b = re.findall(r'<select id="side-[ab]".*?</select>', page.text, re.S)
    assert f'<option value="{EVALUATION}" selected>' in side_a
    assert "selected" not in side_b
    # The metric and its baseline are two words apart, not "AUC 0.94(baseline 0.5)".
    assert re.search(r"AUC [0-9.]+ \(baseline 0\.5\)", page.text)


def test_the_wizard_points_who_may_read_storage_to_the_storage_browser(admin: Any) -> None:
    shown = admin.get("/console/datasources/new").text
    box = re.search(r'<input id="location"[^>]*>', shown)
    assert box and 'aria-describedby="location-hint"' in box.group(0)
    hint = re.search(r'<p class="hint" id="location-hint">(.*?)</p>', shown)
    assert hint and '<a href="/console/storage">storage browser</a>' in hint.group(1)


def test_the_wizard_points_no_one_without_storage_to_the_storage_browser(anonymous: Any) -> None:
    # bob has no storage grant: no browser to point to.
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    assert 'id="location-hint"' not in anonymous.get("/console/datasources/new").text


def test_the_wizard_starts_from_the_schema_file_beside_the_data(
    admin: Any, installation: Installation
) -> None:
    """As a datasource given no schema reads it: ``<data>.schema`` beside the data is the wizard's schema
    (a class of digits CATEGORICAL, its target chosen), the target typed applied to it; data without one
    gets an inferred schema. The page says which."""
    folder = installation.home / "data" / "beside"
    folder.mkdir(exist_ok=True)
    (folder / "wine.csv").write_text("acidity,color,quality\n7.4,red,5\n7.8,white,6\n")
    attributes = [["acidity", "NUMERIC"], ["color", "CATEGORICAL"], ["quality", "CATEGORICAL"]]
    schema = {
        "version": "1.0",
        "targetAttributeName": "quality",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [{"attributeName": name, "attributeType": kind} for name, kind in attributes],
    }
    (folder / "wine.csv.schema").write_text(json.dumps(schema))
    token = page_token(admin, "/console/datasources/new")
    form = {"csrf_token": token, "step": "infer", "location": str(folder / "wine.csv")}
    read = admin.post("/console/datasources/new?format=json", data=form).json()
    assert read["SchemaLocation"] == f"{folder}/wine.csv.schema"
    assert read["DataSchema"]["targetAttributeName"] == "quality"
    assert [a["attributeType"] for a in read["DataSchema"]["attributes"]] == [kind for _, kind in attributes]
    page = admin.post("/console/datasources/new", data=form).text
    assert f"Read from the schema file beside the data, <code>{folder}/wine.csv.schema</code>" in page
    assert re.search(r'name="target_attribute" value="quality"[^>]* checked', page)
    retargeted = admin.post("/console/datasources/new?format=json", data={**form, "target": "color"}).json()
    assert retargeted["DataSchema"]["targetAttributeName"] == "color"
    # A target the file's attributes lack is said under the target's field, naming the file.
    refused = admin.post("/console/datasources/new?format=json", data={**form, "target": "colour"})
    assert refused.status_code == 400 and list(refused.json()["Errors"]) == ["target"]
    assert (
        f"schema file {folder}/wine.csv.schema targetAttributeName 'colour'"
        in refused.json()["Errors"]["target"]
    )
    (folder / "wine.csv.schema").unlink()
    inferred = admin.post("/console/datasources/new?format=json", data=form).json()
    assert inferred["SchemaLocation"] is None
    assert inferred["DataSchema"]["attributes"][2]["attributeType"] == "NUMERIC"
    assert "Inferred from a sample of the data" in admin.post("/console/datasources/new", data=form).text


def test_the_first_page_link_keeps_the_page_size(admin: Any) -> None:
    token = admin.get("/console/datasources?format=json&size=1").json()["NextToken"]
    second = admin.get(f"/console/datasources?size=1&token={token}")
    first = html.unescape(re.search(r'href="([^"]*)">First page', second.text).group(1))
    assert "size=1" in first and "token" not in first
    assert len(admin.get(first + "&format=json").json()["Results"]) == 1


def test_a_list_pages_back_to_the_page_before(admin: Any) -> None:
    def link(page: str, text: str) -> str | None:
        found = re.search(rf'<a (?:rel="\w+" )?href="([^"]*)">{text}</a>', page)
        return html.unescape(found.group(1)) if found else None

    def ids(address: str) -> list[str]:
        return [item["DataSourceId"] for item in admin.get(address + "&format=json").json()["Results"]]

    first = admin.get("/console/datasources?size=1&sort=oldest")
    second = admin.get(link(first.text, "Next page")).text
    previous = link(second, "Previous page")
    assert previous is not None and "size=1" in previous and "sort=oldest" in previous
    assert ids(previous) == ids("/console/datasources?size=1&sort=oldest")
    # The previous page is the first: one link for it, not two.
    assert link(second, "First page") is None


def test_pages_name_their_icon(anonymous: Any) -> None:
    # Else every browser asks for /favicon.ico, the API's 404, on the first page it opens.
    login = anonymous.get("/console/login").text
    icon = re.search(r'<link rel="icon" href="(/console/static/icon\.[0-9a-f]{12}\.svg)"', login)
    assert icon, "no icon"
    served = anonymous.get(icon.group(1))
    assert served.status_code == 200 and served.headers["content-type"].startswith("image/svg+xml")


def test_a_forms_address_opened_as_a_page_is_a_console_page(admin: Any) -> None:
    for path in ("/console/logout", "/console/share", f"/console/models/{MODEL}/threshold"):
        page = admin.get(path)
        assert page.status_code == 405 and page.headers["allow"] == "POST", path
        assert "Not a page" in page.text and 'href="/console/models"' in page.text, path


def test_a_page_sent_a_form_or_another_method_says_it_is_a_page(admin: Any) -> None:
    token = page_token(admin)
    for method, path in (("POST", "/console/jobs"), ("DELETE", f"/console/models/{MODEL}")):
        page = admin.request(method, path, data={"csrf_token": token} if method == "POST" else None)
        assert page.status_code == 405 and "GET" in page.headers["allow"].split(", "), path
        says = f"{path} is a page: it takes no {method}."
        assert "Not a form" in page.text and says in form_errors(page), path


def test_a_list_says_which_of_two_filters_applies(admin: Any) -> None:
    both = admin.get("/console/datasources?prefix=Bank&status=FAILED")
    assert both.status_code == 200
    says = "One filter at a time: these are the names starting with 'Bank', of any status."
    assert says in form_errors(both)
    assert not form_errors(admin.get("/console/datasources?status=FAILED"))


def test_samples_are_offered_to_those_who_may_read_them(
    anonymous: Any, installation: Installation, tmp_path: Any
) -> None:
    from emrml.console.samples import sample_location
    from emrml.samples import sample_path

    assert sample_location(tmp_path) == sample_path(tmp_path)
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    # bob has no storage grant: his datasources could not read the sample, so no button leads there.
    home = anonymous.get("/console/")
    assert home.status_code == 200 and 'id="sample-binary"' not in home.text
    refused = anonymous.post(
        "/console/samples", data={"csrf_token": login_token(home.text), "sample": "binary"}
    )
    assert refused.status_code == 403 and "storage:Read" in refused.text


def test_admins_are_offered_the_samples(admin: Any) -> None:
    assert 'id="sample-binary"' in admin.get("/console/").text


def test_custom_training_without_a_datasource_says_one_is_needed_first(
    fresh_admin: tuple[Any, Any], admin: Any
) -> None:
    client, _ = fresh_admin
    home = client.get("/console/")
    assert home.status_code == 200 and "mode=custom" not in home.text
    note = re.search(r'<p class="hint" id="custom-needs-datasource">(.*?)</p>', home.text)
    assert note and 'href="/console/datasources/new"' in note.group(1)
    # Who has one is offered the form, and not the note.
    offered = admin.get("/console/").text
    assert "mode=custom" in offered and 'id="custom-needs-datasource"' not in offered


def _custom_training_note(client: Any) -> str:
    home = client.get("/console/")
    assert home.status_code == 200 and "mode=custom" not in home.text
    note = re.search(r'<p class="hint" id="custom-needs-datasource">(.*?)</p>', home.text, re.S)
    assert note, home.text
    return html.unescape(note.group(1))


def test_custom_training_while_the_first_datasource_is_made_links_to_it(fresh_admin: tuple[Any, Any]) -> None:
    """A new user's first datasources (a sample's split), not run yet: the home page does not say there is
    none (which sends the user to create another), but that it is not completed yet, and links to it."""
    client, _ = fresh_admin
    home = client.get("/console/").text
    ran = client.post("/console/samples", data={"csrf_token": login_token(home), "sample": "binary"})
    assert ran.status_code == 303
    listed = client.get("/console/datasources?format=json").json()["Results"]
    assert listed and all(item["Status"] == "PENDING" for item in listed)
    note = _custom_training_note(client)
    assert "none yet" not in note and "not completed yet" in note and "PENDING" in note
    assert re.search(r'href="/console/datasources/ds-[^"]+"', note)
    assert 'href="/console/datasources/new"' not in note


def test_custom_training_without_leave_to_list_datasources_says_so(installation: Installation) -> None:
    """A user who may train models but not list datasources: the note names the missing permission rather
    than saying the user has none."""
    service, name = installation.service, "tess-trainer"
    service.access.create_group(f"{name}-group")
    service.access.add_statement(
        f"{name}-group", {"Effect": "Allow", "Action": "machinelearning:CreateMLModel"}
    )
    Identities(service.sessions, installation.home).create_user(name, (f"{name}-group",))
    Logins(service.sessions).set_password(name, f"{name}-password-1")
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, name, f"{name}-password-1").status_code == 303
            note = _custom_training_note(client)
    finally:
        service.access.delete_user(name)
        service.access.delete_group(f"{name}-group")
    assert "none yet" not in note and "machinelearning:DescribeDataSources" in note
    assert "do not let you list datasources" in note


def test_a_datasource_form_sent_twice_creates_one_datasource(admin: Any, installation: Installation) -> None:
    location = str(installation.sample)
    shown = admin.post(
        "/console/datasources/new",
        data={"csrf_token": page_token(admin), "step": "infer", "location": location},
    )
    object_id = re.search(r'name="object_id" value="(ds-[0-9a-f]+)"', shown.text).group(1)
    # The suggested name has the file's folder: data files are often named alike (data.csv).
    assert f'name="name" value="{installation.sample.parent.name}/{installation.sample.name}"' in shown.text
    # Unless chosen otherwise, a datasource has all the rows: that choice is shown made.
    assert re.search(r'<input type="radio" name="split" value="all" checked>', shown.text)
    form = {
        "csrf_token": page_token(admin),
        "step": "create",
        "location": location,
        "schema": bank_sample_schema().to_json(),
        "name": "sent twice",
        "object_id": object_id,
    }
    # A double click, or Back and send again: one datasource, and both answers lead to it.
    first, again = (admin.post("/console/datasources/new", data=form) for _ in range(2))
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"] == f"/console/datasources/{object_id}"
    named = installation.service.call(
        "DescribeDataSources", {"FilterVariable": "Name", "Prefix": "sent twice", "Limit": 10}
    )["Results"]
    assert [item["DataSourceId"] for item in named] == [object_id]
    # Sent again after a change, it is another datasource.
    changed = admin.post("/console/datasources/new", data={**form, "name": "sent twice, changed"})
    assert changed.status_code == 303 and changed.headers["location"] != first.headers["location"]


def test_model_and_batch_forms_sent_twice_create_one_of_each(admin: Any, installation: Installation) -> None:
    service, made = installation.service, []
    for path, form, kind in (
        (
            "/console/models/new?mode=custom",
            {
                "mode": "custom",
                "datasource": DATASOURCE,
                "type": "BINARY",
                "evaluation": f"{DATASOURCE}-eval",
            },
            "models",
        ),
        ("/console/models/new", {"mode": "default", "datasource": DATASOURCE, "type": "BINARY"}, "models"),
        (
            f"/console/batch-predictions/new?model={MODEL}",
            {"model": MODEL, "datasource": DATASOURCE, "output": f"{installation.home / 'data' / 'twice'}/"},
            "batch-predictions",
        ),
    ):
        shown = admin.get(path).text
        object_id = re.search(r'name="object_id" value="([a-z]+-[0-9a-f]+)"', shown).group(1)
        data = {"csrf_token": login_token(shown), "object_id": object_id, **form}
        first, again = (admin.post(path.split("?")[0], data=data) for _ in range(2))
        assert first.status_code == again.status_code == 303, first.text[-500:]
        assert first.headers["location"] == again.headers["location"] == f"/console/{kind}/{object_id}"
        made.append(object_id)
    # The custom model's evaluation was asked for twice too: one evaluation.
    evaluations = service.call(
        "DescribeEvaluations", {"FilterVariable": "MLModelId", "EQ": made[0], "Limit": 100}
    )["Results"]
    assert len(evaluations) == 1


def test_a_models_actions_the_user_may_not_take_are_disabled_or_left_out_saying_why(
    admin: Any, installation: Installation
) -> None:
    """The model and evaluation pages ask the service which of their actions the user may take: one who
    may only read and predict finds the endpoint and threshold buttons disabled and no batch prediction
    link, with a note naming the permissions; the service still refuses the form if sent anyway."""
    access, name = installation.service.access, "gail"
    Identities(installation.service.sessions, installation.home).create_user(name)
    Logins(installation.service.sessions).set_password(name, "gail-password-1")
    access.create_group("ml-readers")
    reads = [
        "GetMLModel",
        "GetMLModelInsights",
        "DescribeEvaluations",
        "GetEvaluation",
        "GetEvaluationInsights",
    ]
    actions = [f"machinelearning:{operation}" for operation in (*reads, "Predict")]
    access.add_statement("ml-readers", {"Effect": "Allow", "Action": actions, "Resource": "*"})
    access.add_member("ml-readers", name)
    with TestClient(create_app(installation.service), follow_redirects=False) as client:
        assert log_in(client, name, "gail-password-1").status_code == 303
        model = client.get(f"/console/models/{MODEL}")
        evaluation = client.get(f"/console/evaluations/{EVALUATION}")
        refused = client.post(
            f"/console/models/{MODEL}/endpoint",
            data={"csrf_token": login_token(model.text), "action": "create"},
        )
    assert model.status_code == 200 and evaluation.status_code == 200
    button = re.search(r'<button type="submit"[^>]*id="endpoint-button"[^>]*>', model.text)
    assert button and 'disabled aria-describedby="refused-note"' in button.group(0)
    note = re.search(r'<p class="hint" id="refused-note">([^<]*)</p>', model.text)
    assert note and "machinelearning:CreateBatchPrediction" in note.group(1)
    assert "RealtimeEndpoint" in note.group(1) and "Predict," not in note.group(1)
    assert f"/console/models/{MODEL}/predict" in model.text
    assert "/console/batch-predictions/new" not in model.text
    save = re.search(r'<button type="submit" id="save-threshold"[^>]*>', evaluation.text)
    assert save and "disabled" in save.group(0)
    assert "machinelearning:UpdateMLModel" in evaluation.text
    assert refused.status_code == 403
    # One who may: the same pages offer everything, with no note.
    for page in (admin.get(f"/console/models/{MODEL}"), admin.get(f"/console/evaluations/{EVALUATION}")):
        assert (
            page.status_code == 200 and 'id="refused-note"' not in page.text and " disabled" not in page.text
        )
    assert "/console/batch-predictions/new" in admin.get(f"/console/models/{MODEL}").text


def test_a_select_with_nothing_to_choose_says_so(anonymous: Any) -> None:
    """bob has no datasource or model of his own: the custom training form and the batch prediction form
    say that there is none to choose yet, beside (and describing) their empty selects."""
    assert log_in(anonymous, "bob", BOB_PASSWORD).status_code == 303
    for path, fields in (
        ("/console/models/new?mode=custom", ("datasource",)),
        ("/console/batch-predictions/new", ("model", "datasource")),
    ):
        page = anonymous.get(path).text
        for field in fields:
            select = re.search(rf'<select id="{field}"[^>]*>(.*?)</select>', page, re.S)
            assert select and select.group(1).count("<option") == 1, (path, field)  # the placeholder only
            assert f'aria-describedby="{field}-none"' in select.group(0), (path, field)
            assert re.search(rf'<p class="hint" id="{field}-none">There is no COMPLETED', page), (path, field)
