"""Attribute names, category values, class labels and job messages come from the user's data: a character
that draws nothing yet changes how they read (a right-to-left override, a zero-width space) is shown as its
code point by the filter ``visible`` on the pages, and alike in the charts and the rows the script adds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import sign_in
from console_helpers import Installation, Served, page_token

from emrml.errors import ResourceNotFoundException

OVERRIDE, ZERO_WIDTH = "\u202e", "\u200b"
#: A multiclass dataset whose attribute names, category values and class labels hold both characters.
AMOUNT, COLOR, RED, CLASS = f"amount{OVERRIDE}", f"colo{ZERO_WIDTH}r", f"red{OVERRIDE}", f"a{OVERRIDE}b"
SHOWN = {
    AMOUNT: "amount[U+202E]",
    COLOR: "colo[U+200B]r",
    RED: "red[U+202E]",
    CLASS: "a[U+202E]b",
}
IDS = {"data": "ds-visible-values", "missing": "ds-visible-missing", "model": "ml-visible-values",
       "evaluation": "ev-visible-values"}  # fmt: skip


def _objects(installation: Installation, folder: Path) -> None:
    """The datasource, its model and evaluation, and a datasource FAILED with a message naming its file."""
    service = installation.service
    try:
        service.call("GetEvaluation", {"EvaluationId": IDS["evaluation"]})
        return  # made by an earlier test of the session
    except ResourceNotFoundException:
        pass
    rows = [f"{AMOUNT},{COLOR},kind"]
    for index in range(90):
        label = (CLASS, "c", "d")[index % 3]
        rows.append(f"{index % 7 + (index % 3) * 10},{(RED, 'blue')[index % 2]},{label}")
    data = folder / "visible.csv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    schema = {
        "version": "1.0",
        "targetAttributeName": "kind",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": AMOUNT, "attributeType": "NUMERIC"},
            {"attributeName": COLOR, "attributeType": "CATEGORICAL"},
            {"attributeName": "kind", "attributeType": "CATEGORICAL"},
        ],
    }
    spec = {"DataLocationS3": str(data), "DataSchema": json.dumps(schema)}
    service.call("CreateDataSourceFromS3",
                 {"DataSourceId": IDS["data"], "DataSpec": spec, "ComputeStatistics": True})  # fmt: skip
    missing = {"DataLocationS3": str(folder / f"gone{OVERRIDE}.csv"), "DataSchema": json.dumps(schema)}
    service.call("CreateDataSourceFromS3", {"DataSourceId": IDS["missing"], "DataSpec": missing})
    service.wait("DataSource", IDS["data"])
    service.wait("DataSource", IDS["missing"])
    service.call("CreateMLModel", {"MLModelId": IDS["model"], "MLModelType": "MULTICLASS",
                                   "TrainingDataSourceId": IDS["data"]})  # fmt: skip
    service.wait("MLModel", IDS["model"])
    service.call("CreateEvaluation", {"EvaluationId": IDS["evaluation"], "MLModelId": IDS["model"],
                                      "EvaluationDataSourceId": IDS["data"]})  # fmt: skip
    service.wait("Evaluation", IDS["evaluation"])


@pytest.fixture
def objects(installation: Installation) -> Installation:
    _objects(installation, installation.sample.parent)  # in the data roots: the forms read it
    return installation


def test_the_pages_show_data_names_values_labels_and_messages_by_code_point(
    admin: Any, objects: Installation
) -> None:
    failed = objects.service.call("GetDataSource", {"DataSourceId": IDS["missing"]})
    assert failed["Status"] == "FAILED" and OVERRIDE in failed["Message"]
    expected = {
        f"/console/datasources/{IDS['data']}": [SHOWN[AMOUNT], SHOWN[COLOR]],
        f"/console/datasources/{IDS['missing']}": ["gone[U+202E].csv"],
        "/console/jobs?kind=DataSource": ["gone[U+202E].csv"],
        "/console/datasources?status=FAILED&size=100": ["gone[U+202E].csv"],  # its Location column
        f"/console/evaluations/{IDS['evaluation']}": [SHOWN[CLASS]],
        f"/console/models/{IDS['model']}/predict": [SHOWN[AMOUNT], SHOWN[COLOR]],
    }
    for path, shown in expected.items():
        page = admin.get(path)
        assert page.status_code == 200, path
        for text in shown:
            assert text in page.text, (path, text)
        assert OVERRIDE not in page.text and ZERO_WIDTH not in page.text, path
    # The new datasource's form names the attributes of the schema it read alike; its fields keep them.
    location = str(Path(failed["DataLocationS3"]).parent / "visible.csv")
    form = {"csrf_token": page_token(admin, "/console/datasources/new"), "location": location}
    chosen = admin.post("/console/datasources/new", data=form).text
    assert f'aria-label="Exclude {SHOWN[AMOUNT]}"' in chosen and f'value="{AMOUNT}"' in chosen, chosen
    assert f'<span class="fit">{SHOWN[COLOR]}</span>' in chosen


def _text_of(page: Any, selector: str) -> str:
    texts = "(s) => Array.from(document.querySelectorAll(s)).map((n) => n.textContent).join('|')"
    return page.evaluate(texts, selector)


def test_the_charts_show_data_names_values_and_labels_by_code_point(
    page: Any, served: Served, objects: Installation
) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/datasources/{IDS['data']}")
    page.wait_for_selector("html[data-charts='drawn']")
    drawn = _text_of(page, "#target-chart, #correlation-chart, #attribute-charts")
    for text in (SHOWN[AMOUNT], SHOWN[COLOR], SHOWN[RED]):
        assert text in drawn, text
    assert OVERRIDE not in drawn and ZERO_WIDTH not in drawn
    page.goto(f"{served.url}/console/evaluations/{IDS['evaluation']}")
    page.wait_for_selector("html[data-charts='drawn']")
    matrix = _text_of(page, "#confusion-chart")
    assert SHOWN[CLASS] in matrix and OVERRIDE not in matrix


@pytest.mark.usefixtures("quick_refresh")
def test_a_job_added_live_shows_its_messages_hidden_characters_as_the_page_does(
    page: Any, served: Served, objects: Installation, tmp_path: Path
) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/jobs?kind=DataSource")
    service, source_id = served.installation.service, "ds-visible-live"
    schema = service.call("GetDataSource", {"DataSourceId": IDS["data"], "Verbose": True})["DataSourceSchema"]
    spec = {"DataLocationS3": str(tmp_path / f"late{OVERRIDE}.csv"), "DataSchema": schema}
    service.call("CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSpec": spec})
    service.wait("DataSource", source_id)
    message = page.locator(f'tr[data-id="DataSource/{source_id}"] [data-field="Message"]')
    page.wait_for_function(
        '(id) => { const n = document.querySelector(`tr[data-id="DataSource/${id}"] [data-field="Message"]`);'
        " return n && n.textContent !== ''; }",
        arg=source_id,
        timeout=10_000,
    )
    added = message.inner_text()
    assert "late[U+202E].csv" in added and OVERRIDE not in added
    page.reload()
    assert message.inner_text() == added
