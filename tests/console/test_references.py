"""A page naming another object (an evaluation's model and data, a model's evaluations, a batch
prediction's model, a list's or the jobs page's rows) links it only when the reader may open it; else it
names it as text, saying so, rather than leading to a refusal."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_helpers import check_accessibility
from console_helpers import (
    DATASOURCE,
    EVALUATION,
    MODEL,
    Installation,
    Served,
    completed_batch_prediction,
    log_in,
)
from sqlalchemy import event
from starlette.testclient import TestClient

from emrml.samples import bank_sample_schema
from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.service.sharing import ShareLinks
from emrml.web.server import create_app

NOTE = "(you may not open it)"
BATCH = "bp-references"


@contextlib.contextmanager
def _granted(installation: Installation, name: str, readable: list[str]) -> Iterator[str]:
    """The user ``name`` (its password yielded), who may list everything but read (Get*) only
    ``readable``."""
    service, access = installation.service, installation.service.access
    group = f"{name}-group"
    Identities(service.sessions, installation.home).create_user(name, ())
    Logins(service.sessions).set_password(name, f"{name}-password-1")
    access.create_group(group)
    access.add_statement(group, {"Effect": "Allow", "Action": ["machinelearning:Describe*"], "Resource": "*"})
    access.add_statement(group, {"Effect": "Allow", "Action": ["machinelearning:Get*"], "Resource": readable})
    access.add_member(group, name)
    try:
        yield f"{name}-password-1"
    finally:
        access.delete_group(group)
        access.delete_user(name)


def _reader(installation: Installation, name: str, readable: list[str]) -> Iterator[Any]:
    """A client logged in as ``name`` (``_granted``)."""
    app = create_app(installation.service)
    with (
        _granted(installation, name, readable) as password,
        TestClient(app, follow_redirects=False) as client,
    ):
        assert log_in(client, name, password).status_code == 303
        yield client


@pytest.fixture
def evaluation_reader(installation: Installation) -> Iterator[Any]:
    """May read evaluations and batch predictions, not models or datasources."""
    yield from _reader(installation, "eve-reader", ["evaluation/*", "batchprediction/*"])


@pytest.fixture
def model_reader(installation: Installation) -> Iterator[Any]:
    """May read models and datasources, not evaluations."""
    yield from _reader(installation, "mo-reader", ["mlmodel/*", "datasource/*"])


@pytest.fixture(scope="module")
def batch(installation: Installation) -> str:
    completed_batch_prediction(installation, BATCH, installation.home / "data" / "references-out")
    return BATCH


def _links(html: str) -> set[str]:
    return set(re.findall(r'href="(/console/[^"?]+)"', html))


def test_an_evaluations_model_and_data_are_links_only_for_who_may_open_them(
    evaluation_reader: Any, admin: Any
) -> None:
    path = f"/console/evaluations/{EVALUATION}"
    shown = evaluation_reader.get(path)
    assert shown.status_code == 200
    assert f"/console/models/{MODEL}" not in _links(shown.text)
    assert f"/console/datasources/{DATASOURCE}-eval" not in _links(shown.text)
    assert f"<code>{MODEL}</code> <small" in shown.text and NOTE in shown.text
    assert evaluation_reader.get(f"/console/models/{MODEL}").status_code == 403  # what the link led to
    offered = admin.get(path).text
    assert {f"/console/models/{MODEL}", f"/console/datasources/{DATASOURCE}-eval"} <= _links(offered)
    assert NOTE not in offered


def test_a_batch_predictions_model_and_data_are_links_only_for_who_may_open_them(
    evaluation_reader: Any, admin: Any, batch: str
) -> None:
    path = f"/console/batch-predictions/{batch}"
    shown = evaluation_reader.get(path)
    assert shown.status_code == 200
    assert not {f"/console/models/{MODEL}", f"/console/datasources/{DATASOURCE}-eval"} & _links(shown.text)
    assert shown.text.count(NOTE) == 2
    offered = admin.get(path).text
    assert {f"/console/models/{MODEL}", f"/console/datasources/{DATASOURCE}-eval"} <= _links(offered)


def test_an_objects_page_names_the_objects_it_refers_to_when_the_reader_may_open_them(
    admin: Any, evaluation_reader: Any, batch: str
) -> None:
    """A model's training data, an evaluation's and a batch prediction's model and data: their names
    (linked, beside their ids) for who may read them; their ids alone, without a name, for who may not."""
    model_link = f'<a href="/console/models/{MODEL}">Bank model</a> <code>{MODEL}</code>'
    data_link = f'<a href="/console/datasources/{DATASOURCE}-eval">Bank {DATASOURCE}-eval</a>'
    for path in (f"/console/evaluations/{EVALUATION}", f"/console/batch-predictions/{batch}"):
        offered = admin.get(path).text
        assert model_link in offered and data_link in offered, path
        hidden = evaluation_reader.get(path).text
        assert "Bank model" not in hidden and f"Bank {DATASOURCE}" not in hidden, path
        # The twin names them as the page does, by the path it links to.
        names = admin.get(path, params={"format": "json"}).json()["ReferenceNames"]
        assert names[f"models/{MODEL}"] == "Bank model", path
        hidden_names = evaluation_reader.get(path, params={"format": "json"}).json()["ReferenceNames"]
        assert "Bank model" not in hidden_names.values(), path
    trained = admin.get(f"/console/models/{MODEL}").text
    assert f'<a href="/console/datasources/{DATASOURCE}">Bank {DATASOURCE}</a>' in trained


def test_a_batch_predictions_heading_shows_its_id_once_when_it_has_no_name(admin: Any, batch: str) -> None:
    heading = re.search(r"<h1>(.*?)</h1>", admin.get(f"/console/batch-predictions/{batch}").text, re.S)
    assert heading and heading.group(1).count(batch) == 1


def test_an_evaluations_and_a_datasources_heading_show_the_id_once_when_unnamed(
    admin: Any, installation: Installation
) -> None:
    spec = {"DataLocationS3": str(installation.sample), "DataSchema": bank_sample_schema().to_json()}
    installation.service.call("CreateDataSourceFromS3", {"DataSourceId": "ds-unnamed", "DataSpec": spec})
    for path, object_id in (
        (f"evaluations/{EVALUATION}", EVALUATION),
        ("datasources/ds-unnamed", "ds-unnamed"),
    ):
        heading = re.search(r"<h1>(.*?)</h1>", admin.get(f"/console/{path}").text, re.S)
        assert heading and heading.group(1).count(object_id) == 1, path
    named = re.search(r"<h1>(.*?)</h1>", admin.get(f"/console/models/{MODEL}").text, re.S)
    assert named and "Bank model" in named.group(1) and f"<code>{MODEL}</code>" in named.group(1)


def test_a_models_evaluations_are_links_only_for_who_may_open_them(model_reader: Any, admin: Any) -> None:
    path = f"/console/models/{MODEL}"
    shown = model_reader.get(path)
    assert shown.status_code == 200
    assert f"/console/evaluations/{EVALUATION}" not in _links(shown.text)
    assert f"/console/datasources/{DATASOURCE}" in _links(shown.text)  # its training data, readable
    assert NOTE in shown.text
    assert f"/console/evaluations/{EVALUATION}" in _links(admin.get(path).text)


def test_list_rows_and_their_columns_link_only_what_the_reader_may_open(evaluation_reader: Any) -> None:
    listed = evaluation_reader.get("/console/evaluations")
    links = _links(listed.text)
    assert f"/console/evaluations/{EVALUATION}" in links
    assert not [link for link in links if link.startswith(("/console/models/", "/console/datasources/"))]
    models = evaluation_reader.get("/console/models")
    assert MODEL in models.text and f"/console/models/{MODEL}" not in _links(models.text)
    by_model = evaluation_reader.get(f"/console/evaluations?model={MODEL}")
    assert by_model.status_code == 200 and f"/console/models/{MODEL}" not in _links(by_model.text)


def test_the_home_and_jobs_pages_link_only_what_the_reader_may_open(evaluation_reader: Any) -> None:
    recent = evaluation_reader.get("/console/?format=json").json()["Recent"]
    jobs = evaluation_reader.get("/console/jobs?format=json").json()["Jobs"]
    for path, evaluation, model in (
        ("/console/", recent["Evaluation"][0]["EvaluationId"], recent["MLModel"][0]["MLModelId"]),
        (
            "/console/jobs",
            *(next(j["Id"] for j in jobs if j["Kind"] == kind) for kind in ("Evaluation", "MLModel")),
        ),
    ):
        shown = evaluation_reader.get(path)
        links = _links(shown.text)
        assert shown.status_code == 200 and f"/console/evaluations/{evaluation}" in links, path
        assert f"/console/models/{model}" not in links and NOTE in shown.text, path
    # The twin says which rows link, for the rows its script adds to a page left open.
    assert {job["Readable"] for job in jobs if job["Kind"] == "Evaluation"} == {True}
    assert {job["Readable"] for job in jobs if job["Kind"] == "MLModel"} == {False}


def test_a_share_links_page_names_other_objects_without_links_or_notes(
    admin: Any, installation: Installation
) -> None:
    page = admin.get(f"/console/evaluations/{EVALUATION}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    form = {"csrf_token": token.group(1), "kind": "Evaluation", "object_id": EVALUATION}
    created = admin.post("/console/share", data=form)
    url = re.search(r'value="(http[^"]+/console/shared/[^"]+)"', created.text)
    link_id = re.search(r'id="share-link-id">([^<]+)<', created.text)
    assert url and link_id
    path = url.group(1)[url.group(1).index("/console/") :]
    try:
        with TestClient(create_app(installation.service), follow_redirects=False) as outsider:
            shown = outsider.get(path)
        assert shown.status_code == 200 and MODEL in shown.text
        assert f"/console/models/{MODEL}" not in _links(shown.text) and NOTE not in shown.text
        # Ids only: the names of what the page refers to are not read as the link's creator.
        assert "Bank model" not in shown.text
    finally:
        # The evaluation is the module's: a live link left on it would show on its page in later tests.
        revoked = admin.post("/console/share", data={**form, "revoke": link_id.group(1)})
        assert revoked.status_code == 303
        with TestClient(create_app(installation.service), follow_redirects=False) as outsider:
            assert outsider.get(path).status_code == 404
        service = installation.service
        links = ShareLinks(service.sessions, service.access).links("Evaluation", EVALUATION)
        assert [link.link_id for link in links if link.revoked_at is None] == []


@pytest.mark.usefixtures("quick_refresh")
def test_a_job_added_to_an_open_jobs_page_links_only_what_the_reader_may_open(
    page: Any, served: Served, axe_source: str
) -> None:
    """The jobs page's script adds the rows of jobs created since it loaded as the template writes them:
    one whose object the reader may list but not open is named without a link (its name's right-to-left
    override shown by code point, as the page shows it)."""
    installation = served.installation
    with _granted(installation, "jo-watcher", ["evaluation/*"]) as password:
        page.goto(served.url + "/console/login")
        page.fill("#username", "jo-watcher")
        page.fill("#password", password)
        page.press("#password", "Enter")
        page.wait_for_url(served.url + "/console/")
        page.goto(f"{served.url}/console/jobs?kind=DataSource")
        page.evaluate("() => { window.sameDocument = true; }")
        source_id = "ds-references-late"
        spec = {"DataLocationS3": str(installation.sample), "DataSchema": bank_sample_schema().to_json()}
        installation.service.call(
            "CreateDataSourceFromS3",
            {"DataSourceId": source_id, "DataSourceName": "late\u202eunreadable", "DataSpec": spec},
        )
        row = page.locator(f'tr[data-id="DataSource/{source_id}"]')
        row.wait_for(timeout=10_000)
        assert page.evaluate("() => window.sameDocument") is True
        assert row.locator("a").count() == 0
        assert row.locator("td").first.inner_text() == f"late[U+202E]unreadable {NOTE}"
        check_accessibility(page, axe_source)


def test_a_model_is_shown_to_who_may_read_it_but_not_list_evaluations(installation: Installation) -> None:
    """Reading a model is not listing evaluations: its page shows the model, saying why no evaluations are
    listed (and the twin says so), rather than refusing the whole page."""
    service, access = installation.service, installation.service.access
    access.create_group("model-only")
    grant = {"Effect": "Allow", "Action": ["machinelearning:GetMLModel*"], "Resource": f"mlmodel/{MODEL}"}
    access.add_statement("model-only", grant)
    Identities(service.sessions, installation.home).create_user("mia-model", ("model-only",))
    Logins(service.sessions).set_password("mia-model", "mia-password-1")
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, "mia-model", "mia-password-1").status_code == 303
            shown = client.get(f"/console/models/{MODEL}")
            assert shown.status_code == 200 and 'id="evaluations-refused"' in shown.text
            assert "machinelearning:DescribeEvaluations" in shown.text
            twin = client.get(f"/console/models/{MODEL}?format=json").json()
            assert twin["Evaluations"] == []
            assert twin["EvaluationsRefused"] == "machinelearning:DescribeEvaluations"
    finally:
        access.delete_user("mia-model")
        access.delete_group("model-only")


def test_list_pages_name_the_objects_their_rows_refer_to_when_the_reader_may_open_them(
    admin: Any, evaluation_reader: Any, batch: str
) -> None:
    """A list's Model, Training data and Evaluation data columns (and the compare page's): names linked,
    beside their ids, as on an object's page (and in the twin's ReferenceNames); ids alone for who may not
    open them."""
    model = (f"models/{MODEL}", "Bank model")
    eval_data = (f"datasources/{DATASOURCE}-eval", f"Bank {DATASOURCE}-eval")
    train_data = (f"datasources/{DATASOURCE}", f"Bank {DATASOURCE}")
    for path, referred in (
        ("/console/evaluations", (model, eval_data)),
        (f"/console/evaluations?model={MODEL}", (model, eval_data)),
        ("/console/batch-predictions", (model,)),
        ("/console/models", (train_data,)),
        (f"/console/evaluations/compare?a={EVALUATION}", (model, eval_data)),
    ):
        shown = admin.get(path).text
        twin = path + ("&" if "?" in path else "?") + "format=json"
        names = admin.get(twin).json()["ReferenceNames"]
        hidden = evaluation_reader.get(path).text
        hidden_names = evaluation_reader.get(twin).json()["ReferenceNames"]
        for target, name in referred:
            assert f'<a href="/console/{target}">{name}</a> <code>{target.split("/")[1]}</code>' in shown, (
                path
            )
            assert names[target] == name, path
            assert f"{name}</a>" not in hidden and f"<td>{name}" not in hidden, path
            assert target not in hidden_names, path


def test_a_lists_reference_names_are_read_in_queries_per_kind_not_per_row(
    admin: Any, installation: Installation
) -> None:
    """Two evaluations of other data: the page of both reads the metastore as often as the page of one."""
    service = installation.service
    service.call(
        "CreateEvaluation",
        {"EvaluationId": "ev-references-train", "MLModelId": MODEL, "EvaluationDataSourceId": DATASOURCE},
    )
    service.wait("Evaluation", "ev-references-train")
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    def statements_of(path: str) -> int:
        """The fewest of three loads: the listener also counts the server's background rereads (keys,
        policies, jobs), which any load may meet, never fewer statements than the page's own."""
        counts = []
        for _ in range(3):
            statements.clear()
            assert admin.get(path).status_code == 200
            counts.append(len(statements))
        return min(counts)

    # Two rows naming two datasources; the first request warms what is remembered across requests.
    both = "/console/evaluations?size=2"
    assert f"Bank {DATASOURCE}<" in admin.get(both).text
    event.listen(service.engine, "before_cursor_execute", count)
    try:
        assert statements_of(both) == statements_of("/console/evaluations?size=1")
    finally:
        event.remove(service.engine, "before_cursor_execute", count)


def test_a_lists_model_filter_naming_no_model_says_so(admin: Any, evaluation_reader: Any) -> None:
    """A mistyped ?model= is not taken for a model hidden from the user: the page says there is none, as
    opening it would; to who may not open models (who is refused whatever the id) it is one it may not
    open, as is a model that exists."""
    for reader, path, missing in (
        (admin, "/console/evaluations?model=ml-nope", True),
        (evaluation_reader, "/console/batch-predictions?model=ml-nope", False),
        (evaluation_reader, f"/console/evaluations?model={MODEL}", False),
    ):
        shown = reader.get(path)
        filter_line = re.search(r'<p id="model-filter">(.*?)</p>', shown.text, re.S)
        assert shown.status_code == 200 and filter_line, path
        assert (NOTE not in filter_line.group(1)) is missing, path
        notice = reader.get(path + "&format=json").json().get("Notice", "")
        assert ("ml-nope" in notice and "does not exist" in notice) is missing, (path, notice)
