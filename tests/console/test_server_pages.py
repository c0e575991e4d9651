"""The console's pages through Starlette's test client: every page and its JSON twin, 404 pages, escaping,
static files, paging, the threshold form, and the jobs and capacity pages."""

from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize("path", PAGES)
def test_every_page_and_its_json_twin_refuse_anonymous_requests(anonymous: Any, path: str) -> None:
    page = anonymous.get(path)
    assert page.status_code == 303 and page.headers["location"].startswith("/console/login?next=")
    # HEAD asks for the page as GET does: no form was sent, so the login page says no session ended.
    assert anonymous.head(path).headers["location"] == page.headers["location"]
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


def test_names_that_reorder_their_characters_show_them(admin: Any, installation: Installation) -> None:
    # "Bank\u202ecsv.exe" reads "Bankexe.csv": the pages show the override as its code point, the name's
    # data (the twin, the forms' values) keeps it.
    service = installation.service
    spec = {"DataLocationS3": str(installation.sample), "DataSchema": bank_sample_schema().to_json()}
    name = "Bank\u202ecsv.exe"
    request = {"DataSourceId": "ds-bidi", "DataSourceName": name, "DataSpec": spec, "ComputeStatistics": True}
    service.call("CreateDataSourceFromS3", request)
    service.wait("DataSource", "ds-bidi")
    for path in ("/console/datasources", "/console/datasources/ds-bidi", "/console/", "/console/jobs"):
        page = admin.get(path)
        assert page.status_code == 200 and "Bank[U+202E]csv.exe" in page.text, path
        assert "\u202e" not in page.text, path
    chosen = admin.get("/console/models/new", params={"mode": "custom", "datasource": "ds-bidi"}).text
    assert 'value="ds-bidi" selected>Bank[U+202E]csv.exe (ds-bidi)</option>' in chosen
    assert admin.get("/console/datasources/ds-bidi?format=json").json()["GetDataSource"]["Name"] == name


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
    token = login_token(admin.get("/console/account").text)
    for consumers in ("\u00b2", "9" * 5000):
        started = admin.post(
            "/console/streams/no-stream/start", data={"csrf_token": token, "consumers": consumers}
        )
        assert started.status_code == 400 and "Consumers must be a whole number" in started.text


def test_numbers_in_urls_longer_than_int_reads_are_not_errors(admin: Any, installation: Installation) -> None:
    # int() refuses a string of more than 4,300 digits: each is an unknown page, page size or file.
    digits = "9" * 5000
    listed = admin.get("/console/datasources", params={"size": digits, "format": "json"})
    assert listed.status_code == 200 and len(listed.json()["Results"]) <= 100
    browsed = admin.get("/console/storage", params={"token": digits, "format": "json"})
    assert browsed.status_code == 200 and "is not a page token" in browsed.json()["Notice"]
    completed_batch_prediction(installation, "bp-long-digits", installation.home / "data" / "long-digits-out")
    missing = admin.get(f"/console/batch-predictions/bp-long-digits/files/{digits}")
    assert missing.status_code == 404 and "has no file" in missing.text


def test_an_evaluation_counts_the_records_without_a_target_and_the_unreadable_ones_as_left_out(
    admin: Any, installation: Installation
) -> None:
    lines = installation.sample.read_text().splitlines()[:301]
    for position in range(1, 301, 3):  # every third record without its target (the last field)
        lines[position] = lines[position].rsplit(",", 1)[0] + ","
    for position in (2, 3):  # two records with a field too many, which cannot be read
        lines[position] += ",extra"
    partial = installation.home / "data" / "partial-target.csv"
    partial.write_text("\n".join(lines) + "\n")
    service = installation.service
    spec = {"DataLocationS3": str(partial), "DataSchema": bank_sample_schema().to_json()}
    service.call("CreateDataSourceFromS3", {"DataSourceId": "ds-partial", "DataSpec": spec})
    request = {"EvaluationId": "ev-partial", "MLModelId": MODEL, "EvaluationDataSourceId": "ds-partial"}
    service.call("CreateEvaluation", request)
    assert service.wait("Evaluation", "ev-partial")["Status"] == "COMPLETED"
    page = admin.get("/console/evaluations/ev-partial")
    assert "198 used, 100 left out (no usable target), 2 unreadable" in page.text


def test_two_evaluations_side_by_side(admin: Any) -> None:
    twin = admin.get(f"/console/evaluations/compare?a={EVALUATION}&b={EVALUATION}&format=json").json()
    assert [side["GetEvaluation"]["EvaluationId"] for side in twin["Evaluations"]] == [EVALUATION] * 2
    page = admin.get(f"/console/evaluations/compare?a={EVALUATION}")
    assert page.status_code == 200 and page.text.count('class="compare-side"') == 1
    assert admin.get("/console/evaluations/compare?a=ev-nope").status_code == 404


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
        # A link can say nothing else: no stream has such an id, nor a count of "\u00b2" consumers.
        for stream, started in (("Your session ended: log in at example.com", "3"), ("st-busy", "\u00b2")):
            query = {"kind": "Stream", "stream": stream, "started": started}
            assert 'id="stream-started"' not in admin.get("/console/jobs", params=query).text
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
    from emrml.service.rows import MLModel

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
