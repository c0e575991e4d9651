"""Whole flows in the browser: a default model whose evaluation appears by itself, live jobs, predictions,
batch predictions with download, share links, the multiclass and regression charts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from browser_helpers import check_accessibility, screenshot, sign_in
from console_helpers import DATASOURCE, EVALUATION, MODEL, Evaluations, Served

from emrml.samples import bank_sample_schema, write_bank_sample


@pytest.mark.usefixtures("quick_refresh")
def test_default_model_gets_its_evaluation_by_itself(page: Any, served: Served, axe_source: str) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/models/new?datasource={DATASOURCE}")
    page.select_option("#type", "BINARY")
    page.fill("#name", "Default bank")
    page.click("form button:has-text('Train')")
    page.wait_for_url(re.compile(r".*/console/models/ml-[0-9a-f]+$"))
    model_id = page.url.rsplit("/", 1)[1]
    # The page reloads itself while the model or its evaluation runs; the evaluation was never asked for.
    page.wait_for_selector("li[data-status=COMPLETED] a[href*='/console/evaluations/']", timeout=180_000)
    check_accessibility(page, axe_source)
    evaluations = served.installation.service.call(
        "DescribeEvaluations", {"FilterVariable": "MLModelId", "EQ": model_id}
    )["Results"]
    assert len(evaluations) == 1 and evaluations[0]["Status"] == "COMPLETED"
    training = served.installation.service.call("GetMLModel", {"MLModelId": model_id})["TrainingDataSourceId"]
    split = served.installation.service.call("GetDataSource", {"DataSourceId": training})["DataRearrangement"]
    assert '"percentEnd": 70' in split and '"random"' in split
    evaluated = served.installation.service.call(
        "GetDataSource", {"DataSourceId": evaluations[0]["EvaluationDataSourceId"]}
    )["DataRearrangement"]
    assert '"complement": true' in evaluated


def test_custom_model_shows_recipe_errors_at_the_editor(page: Any, served: Served) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/models/new?mode=custom&datasource={DATASOURCE}")
    page.fill("#recipe", '{"groups": {}, "assignments": {}, "outputs": ["no_such_attribute"]}')
    page.fill("#passes", "0")
    page.click("form button:has-text('Train')")
    assert "whole number of passes" in page.locator("#passes-error").inner_text()
    page.fill("#passes", "3")
    page.fill("#recipe", '{"groups": {}, "assignments": {}, "outputs": ["no_such_attribute"]}')
    page.click("form button:has-text('Train')")
    error = page.locator("#recipe-error").inner_text()
    assert "no_such_attribute" in error
    assert page.locator("#recipe").get_attribute("aria-invalid") == "true"


@pytest.mark.usefixtures("quick_refresh")
def test_jobs_page_shows_progress_change_without_reloading(
    page: Any, served: Served, axe_source: str
) -> None:
    big = write_bank_sample(served.installation.home / "data" / "big.csv", 150_000)
    sign_in(page, served)
    page.goto(f"{served.url}/console/jobs?kind=DataSource")
    page.evaluate("() => { window.sameDocument = true; }")
    served.installation.service.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-console-big",
            "DataSpec": {"DataLocationS3": str(big), "DataSchema": bank_sample_schema().to_json()},
            "ComputeStatistics": True,
        },
    )
    served_scheduler_wakes = served.installation.service  # the server's scheduler polls for the new job
    assert served_scheduler_wakes is not None
    page.reload()
    page.evaluate("() => { window.sameDocument = true; }")
    row = page.locator('tr[data-id="DataSource/ds-console-big"]')
    row.wait_for()
    seen = set()
    for _ in range(600):
        status = row.locator('[data-field="Status"]').inner_text()
        seen.add((status, row.locator('[data-field="ProgressText"]').inner_text()))
        if status == "COMPLETED":
            break
        page.wait_for_timeout(100)
    assert ("COMPLETED", "100 %") in seen
    assert any(status in ("PENDING", "INPROGRESS") for status, _ in seen), seen
    assert page.evaluate("() => window.sameDocument") is True
    check_accessibility(page, axe_source)
    screenshot(page, "jobs")


@pytest.mark.usefixtures("quick_refresh")
def test_jobs_page_shows_jobs_created_after_it_loaded(page: Any, served: Served, axe_source: str) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/jobs?kind=DataSource")
    page.evaluate("() => { window.sameDocument = true; }")
    source_id = "ds-console-late"
    served.installation.service.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": source_id,
            "DataSourceName": "<b>late</b> & new",
            "DataSpec": {
                "DataLocationS3": str(served.installation.sample),
                "DataSchema": bank_sample_schema().to_json(),
            },
        },
    )
    row = page.locator(f'tr[data-id="DataSource/{source_id}"]')
    row.wait_for(timeout=10_000)
    assert page.evaluate("() => window.sameDocument") is True
    # Newest first, named as text (never markup), linked to its page.
    assert page.locator("#jobs tbody tr").first.get_attribute("data-id") == f"DataSource/{source_id}"
    link = row.locator("a")
    assert link.inner_text() == "<b>late</b> & new" and row.locator("b").count() == 0
    assert link.get_attribute("href") == f"/console/datasources/{source_id}"
    status = row.locator('[data-field="Status"]')
    for _ in range(300):
        if status.inner_text() == "COMPLETED":
            break
        page.wait_for_timeout(100)
    assert row.locator('[data-field="ProgressText"]').inner_text() == "100 %"
    check_accessibility(page, axe_source)
    link.click()
    page.wait_for_url(f"**/console/datasources/{source_id}")


@pytest.mark.usefixtures("quick_refresh")
def test_a_job_added_to_the_jobs_page_offers_cancel_while_it_runs(
    page: Any, served: Served, axe_source: str
) -> None:
    """A job the page's script adds gets the Cancel the page writes for a running job, which goes once the
    job has ended; Cancel asks first, deletes the object and comes back to the jobs page. The twins show
    the job as running while the test's step is 1 or 2 (``as_running``)."""
    sign_in(page, served)
    source_id = "ds-console-cancelled"
    answered = {"page": 0, "json": 0, "step": 1}

    def twin(data: dict[str, Any], step: int) -> None:
        for job in data["Jobs"]:
            if job["Id"] == source_id:
                job.update(Status="PENDING", Cancels=f"datasources/{source_id}/delete")

    page.route(re.compile(r".*/console/jobs(\?.*)?$"), as_running(answered, twin, lambda body: body))
    page.goto(f"{served.url}/console/jobs?kind=DataSource")
    service = served.installation.service
    spec = {"DataLocationS3": str(served.installation.sample), "DataSchema": bank_sample_schema().to_json()}
    request = {"DataSourceId": source_id, "DataSourceName": "<b>cancelled</b>", "DataSpec": spec}
    service.call("CreateDataSourceFromS3", request)
    row = page.locator(f'tr[data-id="DataSource/{source_id}"]')
    cancel = row.locator('[data-field="Cancel"] button')
    cancel.wait_for(timeout=10_000)
    assert cancel.get_attribute("aria-label") == "Cancel the job of <b>cancelled</b>"
    check_accessibility(page, axe_source)
    service.wait("DataSource", source_id)
    answered["step"] = 3  # the twins as served: the job has ended
    cancel.wait_for(state="detached", timeout=10_000)
    assert row.locator('[data-field="Status"]').inner_text() == "COMPLETED"
    answered["step"] = 2
    cancel.wait_for(timeout=10_000)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    cancel.click()
    page.wait_for_url(f"{served.url}/console/jobs")
    assert asked and asked[0].startswith("Cancel the job of <b>cancelled</b>?")
    assert service.call("GetDataSource", {"DataSourceId": source_id})["Status"] == "DELETED"


@pytest.mark.usefixtures("quick_refresh")
def test_a_job_failing_after_the_page_loaded_says_why_beside_its_status(page: Any, served: Served) -> None:
    """A job that fails once the page is open: its row, built by the page's script, gives the reason in the
    column beside its status (at the table's end, past a wide window's edge, it went unseen), wrapped as
    the page's own rows are rather than on one line as wide as the message."""
    sign_in(page, served)
    page.goto(f"{served.url}/console/jobs?kind=MLModel")
    page.evaluate("() => { window.sameDocument = true; }")
    service, source_id, model_id = served.installation.service, "ds-console-fails", "ml-console-fails"
    spec = {"DataLocationS3": str(served.installation.sample), "DataSchema": bank_sample_schema().to_json()}
    service.call(
        "CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSpec": spec, "ComputeStatistics": True}
    )
    # Its datasource still PENDING, the type is refused by the model's job (the target 'y' is BINARY).
    request = {"MLModelId": model_id, "MLModelType": "MULTICLASS", "TrainingDataSourceId": source_id}
    service.call("CreateMLModel", request)
    row = page.locator(f'tr[data-id="MLModel/{model_id}"]')
    row.wait_for(timeout=10_000)
    status = row.locator('[data-field="Status"]')
    for _ in range(300):
        if status.inner_text() == "FAILED":
            break
        page.wait_for_timeout(100)
    headings = page.locator("#jobs thead th").all_inner_texts()
    assert headings.index("Message") == headings.index("Status") + 1
    message = row.locator("td").nth(headings.index("Message"))
    assert message.get_attribute("data-field") == "Message"
    assert "a MULTICLASS model needs a CATEGORICAL target" in message.inner_text()
    assert message.evaluate("(cell) => getComputedStyle(cell).whiteSpace") == "normal"
    # Styled as every FAILED object (and stream) is, though the page's script wrote it.
    assert status.locator(".status").get_attribute("class") == "status status-failed"
    assert page.evaluate("() => window.sameDocument") is True


def test_paste_a_record_prediction(page: Any, served: Served, axe_source: str) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/models/{MODEL}")
    if page.locator("text=Turn the real-time endpoint on").count():
        page.click("text=Turn the real-time endpoint on")
    page.goto(f"{served.url}/console/models/{MODEL}/predict")
    page.fill("input[name=a-0]", "41")
    page.click("button:has-text('Predict')")
    label = page.locator("#predicted-label").inner_text()
    # A BINARY score is the likelihood of 1 whichever label it is keyed by: said so, not drawn as label 0's.
    score = float(page.locator("#binary-score").inner_text())
    threshold = served.installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"]
    assert label == ("1" if score >= threshold else "0")
    assert page.locator("#scores-chart").count() == 0
    assert float(page.locator("#latency").inner_text()) > 0
    check_accessibility(page, axe_source)
    screenshot(page, "predict")
    page.fill("#pasted", '{"age": "30", "job": "student"}')
    page.click("button:has-text('Predict')")
    assert page.locator("#predicted-label").inner_text() in ("0", "1")
    page.fill("#pasted", "1,2,3")
    page.click("button:has-text('Predict')")
    assert "the pasted CSV line has 3 values" in page.locator("#pasted-error").inner_text()
    page.fill("#pasted", "41,student\n30,admin.")  # two records: refused, not a server error
    page.click("button:has-text('Predict')")
    assert "holds 2 CSV lines" in page.locator("#pasted-error").inner_text()
    page.fill("#pasted", "{not json")
    page.click("button:has-text('Predict')")
    assert "not valid JSON" in page.locator("#pasted-error").inner_text()
    page.goto(f"{served.url}/console/models/{MODEL}")
    page.click("text=Turn the real-time endpoint off")
    page.wait_for_selector("text=Turn the real-time endpoint on")
    endpoint = served.installation.service.call("GetMLModel", {"MLModelId": MODEL})["EndpointInfo"]
    assert endpoint["EndpointStatus"] == "NONE"


@pytest.mark.usefixtures("quick_refresh")
def test_batch_prediction_with_download(page: Any, served: Served, tmp_path: Any) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/batch-predictions/new?model={MODEL}")
    page.select_option("#datasource", f"{DATASOURCE}-eval")
    page.fill("#output", str(served.installation.home / "data" / "out"))
    page.click("button:has-text('Create')")
    page.wait_for_url(re.compile(r".*/console/batch-predictions/bp-[0-9a-f]+$"))
    link = page.locator("#result-files a").first
    link.wait_for(timeout=120_000)
    screenshot(page, "batch-prediction")
    with page.expect_download() as event:
        link.click()
    saved = tmp_path / "result.gz"
    event.value.save_as(saved)
    import gzip

    lines = gzip.decompress(saved.read_bytes()).decode().splitlines()
    assert lines[0].startswith("trueLabel,bestAnswer,score") or "bestAnswer" in lines[0]
    assert len(lines) > 100


#: The focused element's id and the part of its value selected.
SELECTED = """() => { const e = document.activeElement;
  return [e.id, (e.value || '').slice(e.selectionStart, e.selectionEnd)]; }"""


def test_share_link_viewed_logged_out_then_revoked(page: Any, browser: Any, served: Served) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/evaluations/{EVALUATION}")
    page.click("text=Create a share link")
    url = page.input_value("#share-url")
    # Shown only once: the focus starts on it, selected whole, ready to copy (and again when Tab returns).
    assert page.evaluate(SELECTED) == ["share-url", url]
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(SELECTED) == ["share-url", url]
    link_id = page.inner_text("#share-link-id")
    outsider = browser.new_context()
    try:
        shared = outsider.new_page()
        shared.goto(url)
        shared.wait_for_selector("html[data-charts=drawn]")
        assert shared.locator("#threshold-slider").count() == 1
        assert shared.locator("nav").count() == 0
        assert shared.locator("a[href^='/console/']").count() == 0
        screenshot(shared, "shared-evaluation")
        page.goto(f"{served.url}/console/evaluations/{EVALUATION}")
        # Its own link: other tests of the session may have left links of this evaluation, listed before it.
        page.get_by_role("button", name=f"Revoke link {link_id}").click()
        page.wait_for_url(f"**/console/evaluations/{EVALUATION}")
        assert page.locator(f"#share-link-{link_id}").count() == 0
        response = shared.goto(url)
        assert response is not None and response.status == 404
    finally:
        outsider.close()


def test_multiclass_heat_map_and_regression_residuals(
    page: Any, served: Served, more_evaluations: Evaluations, axe_source: str
) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/evaluations/{more_evaluations.multiclass}")
    page.wait_for_selector("html[data-charts=drawn]")
    data = page.evaluate("() => JSON.parse(document.getElementById('page-data').textContent)")
    view = data["GetEvaluationInsights"]["Insights"]["metrics"]["consoleView"]
    classes = len(view["classes"])
    cells = page.locator("#confusion-chart g.cell")
    assert cells.count() == classes * classes
    first = cells.first.get_attribute("aria-label")
    assert (
        first
        == f"true {view['classes'][0]}, predicted {view['classes'][0]}: {view['counts'][0][0]:,} records"
    )
    # Keyboard: the matrix is one tab stop; the arrow keys move between its cells.
    assert page.locator("#confusion-chart g.cell[tabindex='0']").count() == 1
    cells.first.focus()
    for key in ("ArrowRight", "ArrowDown", "ArrowDown", "ArrowLeft", "End"):
        page.keyboard.press(key)
    label = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    last = view["classes"][-1]
    assert label == f"true {view['classes'][2]}, predicted {last}: {view['counts'][2][-1]:,} records"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.closest('#confusion-chart')") is None
    check_accessibility(page, axe_source)
    screenshot(page, "evaluation-multiclass")
    page.goto(f"{served.url}/console/evaluations/{more_evaluations.regression}")
    page.wait_for_selector("html[data-charts=drawn]")
    data = page.evaluate("() => JSON.parse(document.getElementById('page-data').textContent)")
    counts = data["GetEvaluationInsights"]["Insights"]["metrics"]["residualHistogram"]["counts"]
    assert page.locator("#residual-chart svg rect").count() == len(counts)
    assert "RMSE" in page.locator(".headline").inner_text()
    check_accessibility(page, axe_source)
    screenshot(page, "evaluation-regression")


def test_samples_train_and_evaluate_in_one_click(page: Any, served: Served) -> None:
    sign_in(page, served)
    service = served.installation.service
    for name, model_type in (
        ("binary", "BINARY"),
        ("multiclass", "MULTICLASS"),
        ("regression", "REGRESSION"),
    ):
        page.goto(f"{served.url}/console/")
        page.click(f"#sample-{name}")
        page.wait_for_url(re.compile(rf".*/console/models/ml-sample-{name}$"))
        assert service.call("GetMLModel", {"MLModelId": f"ml-sample-{name}"})["MLModelType"] == model_type
    for name in ("binary", "multiclass", "regression"):
        assert service.wait("Evaluation", f"ev-sample-{name}")["Status"] == "COMPLETED"
    page.goto(f"{served.url}/console/")
    screenshot(page, "home")


def as_running(
    answered: dict[str, int], twin: Callable[[dict[str, Any], int], None], first_page: Callable[[str], str]
) -> Callable[[Any, Any], None]:
    """A route handler showing a finished object as running: the first page changed by ``first_page``, and
    the JSON twins by ``twin`` (given the twin and ``answered["step"]``) while the step is 1 or 2, as served
    from step 3 on. The test moves the step on once it has checked the page at the step before, so no round
    of the page's refresh can outrun it. ``answered`` also counts the pages and the twins answered."""

    def handle(route: Any, request: Any) -> None:
        response = route.fetch()
        kind = "json" if "format=json" in request.url else "page"
        answered[kind] += 1
        if kind == "json":
            data = response.json()
            if answered["step"] <= 2:
                twin(data, answered["step"])
            route.fulfill(response=response, json=data)
        else:
            body = response.text()
            route.fulfill(response=response, body=first_page(body) if answered["page"] == 1 else body)

    return handle


def shown_running(body: str, marker: str) -> str:
    """The page ``body`` with the COMPLETED status the element of ``marker`` (an attribute) follows shown
    as INPROGRESS."""
    return re.sub(
        rf'({marker} data-status=")COMPLETED("><span class="status) status-completed">COMPLETED<',
        r'\1INPROGRESS\2 status-inprogress">INPROGRESS<',
        body,
    )


@pytest.mark.usefixtures("quick_refresh")
def test_a_running_objects_page_updates_in_place_and_reloads_once_it_ends(page: Any, served: Served) -> None:
    """While a model and its evaluation run, the model's page follows its JSON twin without reloading (a
    choice being made keeps its value and focus); once both have ended it reloads once, to show what their
    end brought. The page and its first twins are shown as of a running model."""
    sign_in(page, served)
    answered = {"page": 0, "json": 0, "step": 1}

    def twin(data: dict[str, Any], step: int) -> None:
        data["GetMLModel"].update(Status="INPROGRESS", Progress=20.0 * step)
        for item in data["Evaluations"]:
            item["Status"] = "PENDING"

    def first_page(body: str) -> str:
        return shown_running(body, 'data-key="GetMLModel"').replace(
            f'data-id="{EVALUATION}" data-status="COMPLETED"',
            f'data-id="{EVALUATION}" data-status="PENDING"',
        )

    page.route(re.compile(rf".*/console/models/{MODEL}(\?.*)?$"), as_running(answered, twin, first_page))
    page.goto(f"{served.url}/console/models/{MODEL}")
    model = page.locator('[data-key="GetMLModel"]')
    assert model.get_attribute("data-status") == "INPROGRESS"
    page.evaluate("() => { window.sameDocument = true; }")
    chosen = page.locator("#expires_in option").nth(1).get_attribute("value")
    page.select_option("#expires_in", chosen)
    page.focus("#expires_in")
    answered["step"] = 2
    page.wait_for_function(
        "() => document.querySelector('[data-key=\"GetMLModel\"] progress')?.value === 40", timeout=10_000
    )
    assert page.evaluate("() => window.sameDocument") is True
    assert page.evaluate("() => document.activeElement.id") == "expires_in"
    assert page.input_value("#expires_in") == chosen
    assert model.locator(".status").inner_text() == "INPROGRESS"
    assert page.locator(f'li[data-id="{EVALUATION}"]').get_attribute("data-status") == "PENDING"
    # Both ended: one reload, after which the page is as served and stops following its twin.
    answered["step"] = 3
    page.wait_for_function("() => window.sameDocument === undefined", timeout=10_000)
    assert model.get_attribute("data-status") == "COMPLETED"
    assert page.locator(f'li[data-id="{EVALUATION}"]').get_attribute("data-status") == "COMPLETED"
    assert answered["page"] == 2


@pytest.mark.usefixtures("quick_refresh")
@pytest.mark.parametrize(("path", "listed"), [("models", ("Results",)), ("", ("Recent", "MLModel"))])
def test_a_running_objects_status_in_a_list_updates_in_place_and_reloads_once_it_ends(
    page: Any, served: Served, path: str, listed: tuple[str, ...]
) -> None:
    """The models' list and the home page show a running model's status as it moves, from their JSON
    twins, without reloading (a filter being typed stays); once it has ended they reload to show it. The
    page and its first twins are shown as of a running model."""
    # The newest completed model, which both pages show (the home page only the five newest): other tests
    # of the session's installation may have added a model that failed.
    service = served.installation.service
    five_newest = service.call(
        "DescribeMLModels", {"Limit": 5, "SortOrder": "dsc", "FilterVariable": "CreatedAt", "GE": "0"}
    )["Results"]
    completed = [
        m["MLModelId"]
        for m in five_newest
        if service.wait("MLModel", m["MLModelId"])["Status"] == "COMPLETED"
    ]
    assert completed, five_newest
    newest = completed[0]
    # Nothing else running either: the pages would follow it too, and reload only once it has ended.
    for kind in ("DataSource", "MLModel", "Evaluation", "BatchPrediction"):
        for status in ("PENDING", "INPROGRESS"):
            request = {"FilterVariable": "Status", "EQ": status}
            for item in service.call(f"Describe{kind}s", request)["Results"]:
                service.wait(kind, item[f"{kind}Id"])
    sign_in(page, served)
    answered = {"page": 0, "json": 0, "step": 1}

    def twin(data: dict[str, Any], step: int) -> None:
        items: Any = data
        for key in listed:
            items = items[key]
        for item in items:
            if item["MLModelId"] == newest:
                item.update(Status="INPROGRESS", Progress=20.0 * step)

    def first_page(body: str) -> str:
        return shown_running(body, f'data-id="{newest}"')

    page.route(re.compile(rf".*/console/{path}(\?.*)?$"), as_running(answered, twin, first_page))
    page.goto(f"{served.url}/console/{path}")
    model = page.locator(f'[data-live="object"][data-id="{newest}"]')
    assert model.get_attribute("data-status") == "INPROGRESS"
    page.evaluate("() => { window.sameDocument = true; }")
    answered["step"] = 2
    page.wait_for_function(
        f"() => document.querySelector('[data-id=\"{newest}\"] progress')?.value === 40", timeout=10_000
    )
    assert page.evaluate("() => window.sameDocument") is True
    assert model.locator(".status").inner_text() == "INPROGRESS"
    answered["step"] = 3
    page.wait_for_function("() => window.sameDocument === undefined", timeout=10_000)
    assert model.get_attribute("data-status") == "COMPLETED"
    assert answered["page"] >= 2
