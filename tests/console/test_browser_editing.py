"""Editing in the console in Debian's Chromium, driven by Playwright against a real ``emrml serve`` app: the
threshold explorer against the command line, the datasource wizard, the storage browser's upload,
download and delete, and forms sent back with errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import check_accessibility, screenshot, sign_in
from console_helpers import DATASOURCE, EVALUATION, MODEL, Served

from emrml.cli import app as cli_app
from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.auth import ensure_admin
from emrml.service.identity import Identities
from emrml.service.logins import Logins, ensure_admin_password
from emrml.web.server import BackgroundServer, create_app, reserve_socket


def cli_at(home: Path, threshold: float) -> dict[str, str]:
    """What ``emrml evaluation show --score-threshold T`` prints: the counts and the rates of the row it marks
    as tried (``◀ tried``; the model's own threshold is marked ``◀ current``)."""
    from typer.testing import CliRunner

    result = CliRunner().invoke(
        cli_app,
        ["--home", str(home), "evaluation", "show", EVALUATION, "--score-threshold", str(threshold)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    actual_1 = re.search(r"Actual 1\s+([\d,]+)\s+([\d,]+)", text)
    actual_0 = re.search(r"Actual 0\s+([\d,]+)\s+([\d,]+)", text)
    row = re.search(
        r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+%)\s+◀ tried", text
    )
    assert actual_1 and actual_0 and row, text
    keys = (
        "threshold",
        "accuracy",
        "precision",
        "recall",
        "falsePositiveRate",
        "f1",
        "predictedPositiveRate",
    )
    shown = dict(zip(keys, row.groups(), strict=True))
    shown.update(
        truePositives=actual_1.group(1),
        falseNegatives=actual_1.group(2),
        falsePositives=actual_0.group(1),
        trueNegatives=actual_0.group(2),
    )
    return shown


def page_at(page: Any) -> dict[str, str]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-at]')]
             .map(n => [n.dataset.at, n.textContent.trim()]))"""
    )


def test_threshold_explorer_by_drag_and_keyboard_matches_the_cli(
    page: Any, served: Served, axe_source: str
) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/evaluations/{EVALUATION}")
    page.wait_for_selector("html[data-charts=drawn]")
    slider = page.locator("#threshold-slider")
    assert slider.get_attribute("aria-valuenow") == "0.5"
    check_accessibility(page, axe_source)
    screenshot(page, "evaluation-binary")
    home = served.installation.home

    # Drag the line to about 0.3.
    box = page.locator("#score-chart svg").bounding_box()
    handle = slider.bounding_box()
    svg_width = 640
    scale = box["width"] / svg_width
    target_x = box["x"] + (56 + 0.3 * (640 - 56 - 20)) * scale
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(target_x, handle["y"] + handle["height"] / 2, steps=8)
    page.mouse.up()
    dragged = float(slider.get_attribute("aria-valuenow"))
    assert abs(dragged - 0.3) <= 0.02
    assert page_at(page) == cli_at(home, dragged)

    # Keyboard: focus the line, move it.
    slider.focus()
    page.keyboard.press("PageUp")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    moved = float(slider.get_attribute("aria-valuenow"))
    assert moved == pytest.approx(round(dragged + 0.12, 2))
    assert page_at(page) == cli_at(home, moved)
    page.keyboard.press("Home")
    for _ in range(7):
        page.keyboard.press("ArrowUp")
    assert slider.get_attribute("aria-valuenow") == "0.07"
    assert page_at(page) == cli_at(home, 0.07)
    assert page.input_value("#threshold") == "0.07"

    # Save: UpdateMLModel, and the page says so.
    page.click("#save-threshold")
    page.wait_for_url(re.compile(r".*saved=1.*"))
    assert page.locator("#model-threshold").inner_text() == "0.07"
    assert served.installation.service.call("GetMLModel", {"MLModelId": MODEL})["ScoreThreshold"] == 0.07
    served.installation.service.call("UpdateMLModel", {"MLModelId": MODEL, "ScoreThreshold": 0.5})


def test_a_refused_threshold_stays_in_its_box_beside_the_error(page: Any, served: Served) -> None:
    # The chart's first drawing wrote the model's threshold over it, leaving an error that quotes a value
    # no longer on the page.
    sign_in(page, served)
    page.goto(f"{served.url}/console/evaluations/{EVALUATION}?threshold=abc")
    page.wait_for_selector("html[data-charts=drawn]")
    assert page.input_value("#threshold") == "abc"
    assert "(got 'abc')" in page.locator("#threshold-error").inner_text()
    assert page.locator("#threshold-slider").get_attribute("aria-valuenow") == "0.5"
    # Moving the line afterwards writes its value, as always.
    page.locator("#threshold-slider").focus()
    page.keyboard.press("ArrowRight")
    assert page.input_value("#threshold") == "0.51"


def test_datasource_wizard_with_schema_edits(page: Any, served: Served, axe_source: str) -> None:
    sign_in(page, served)
    page.goto(served.url + "/console/datasources/new")
    page.fill("#location", str(served.installation.sample))
    page.click("text=Next: the schema")
    page.wait_for_selector("#schema-table")
    check_accessibility(page, axe_source)
    screenshot(page, "datasource-wizard")
    page.fill("#name", "Wizard <b>bank</b>")
    page.select_option("select[aria-label='Type of age']", "CATEGORICAL")
    page.check("input[aria-label='y is the target']")
    page.check("input[aria-label='Exclude notes']")
    page.check("input[name=split][value=train]")
    page.fill("#percent", "150")
    page.click("text=Create the datasource")
    assert "whole percentage from 1 to 99" in page.locator("#percent-error").inner_text()
    page.check("input[name=split][value=train]")
    page.fill("#percent", "60")
    page.click("text=Create the datasource")
    page.wait_for_url(re.compile(r".*/console/datasources/ds-[0-9a-f]+$"))
    source_id = page.url.rsplit("/", 1)[1]
    described = served.installation.service.wait("DataSource", source_id)
    described = served.installation.service.call(
        "GetDataSource", {"DataSourceId": source_id, "Verbose": True}
    )
    assert described["Status"] == "COMPLETED", described.get("Message")
    assert described["Name"] == "Wizard <b>bank</b>"
    assert '"percentEnd": 60' in described["DataRearrangement"]
    schema = json.loads(described["DataSourceSchema"])
    assert schema["targetAttributeName"] == "y"
    assert schema["excludedAttributeNames"] == ["notes"]
    assert {a["attributeName"]: a["attributeType"] for a in schema["attributes"]}["age"] == "CATEGORICAL"


def test_storage_browser_upload_open_and_download(page: Any, served: Served, tmp_path: Path) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/storage")
    folder = f"up-{tmp_path.name[-8:]}"
    page.fill("#name", folder)
    page.click("text=Create folder")
    page.click(f"#entries a:text-is('{folder}/')")
    local = tmp_path / "notes.csv"
    local.write_text("a,b\n1,2\n")
    page.set_input_files("#file", str(local))
    page.click("button:text-is('Upload')")
    assert "Uploaded" in page.locator("[role=status]").inner_text()
    with page.expect_download() as download:
        page.click("#entries a:text-is('notes.csv')")
    saved = tmp_path / "downloaded.csv"
    download.value.save_as(saved)
    assert saved.read_text() == "a,b\n1,2\n"
    assert (served.installation.home / "data" / folder / "notes.csv").read_text() == "a,b\n1,2\n"


def test_an_upload_past_the_limit_shows_the_413_page(page: Any, tmp_path: Path) -> None:
    """Chromium sends the form whole while the server has answered at the limit: it shows the answer (the
    console's page naming the setting), not a connection reset."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "emrml.toml").write_text(f"console_upload_max_bytes = {3 * 1024 * 1024}\n")
    service = EmrML(Settings.load(environ={}, home=home))
    try:
        ensure_admin(Identities(service.sessions, home), home)
        ensure_admin_password(Logins(service.sessions), home)
        password = json.loads((home / "admin-credentials.json").read_text())["console_password"]
        with BackgroundServer(create_app(service), reserve_socket()) as server:
            page.goto(server.url + "/console/login")
            page.fill("#username", "admin")
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_url(server.url + "/console/")
            page.goto(f"{server.url}/console/storage")
            large = tmp_path / "large.csv"
            large.write_bytes(b"x" * (40 * 1024 * 1024))
            page.set_input_files("#file", str(large))
            with page.expect_navigation():
                page.click("button:text-is('Upload')")
            assert "at most 3145728 bytes (setting console_upload_max_bytes)" in page.content()
            assert not (home / "data" / "large.csv").exists()
    finally:
        service.close()


def test_deleting_a_file_asks_first_and_keeps_it_when_declined(
    page: Any, served: Served, tmp_path: Path
) -> None:
    """A file's Delete cannot be undone: the browser asks, naming the file; declined, nothing is sent and
    the file stays; accepted, it goes."""
    folder = served.installation.home / "data" / f"del-{tmp_path.name[-8:]}"
    folder.mkdir(parents=True)
    (folder / "keep.csv").write_text("a\n1\n")
    sign_in(page, served)
    page.goto(f"{served.url}/console/storage?location={folder}/")
    asked: list[str] = []

    def answer(accept: bool) -> None:
        page.once(
            "dialog",
            lambda dialog: (asked.append(dialog.message), dialog.accept() if accept else dialog.dismiss()),
        )

    answer(False)
    page.get_by_role("button", name="Delete").click()
    assert asked == [f"Delete {folder}/keep.csv? This cannot be undone."]
    page.wait_for_timeout(300)
    assert (folder / "keep.csv").exists() and page.url.endswith(f"{folder}/")
    answer(True)
    with page.expect_navigation():
        page.get_by_role("button", name="Delete").click()
    assert len(asked) == 2 and not (folder / "keep.csv").exists()


def test_a_form_sent_back_puts_the_focus_on_its_first_field_to_correct(page: Any, served: Served) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/models/new?mode=custom")
    page.select_option("#datasource", DATASOURCE)
    page.fill("#passes", "many")
    page.fill("#l2", "x")
    page.click("button[type=submit]:text-is('Train')")
    page.wait_for_selector("#passes-error")
    focused = page.evaluate(
        "() => [document.activeElement.id, document.activeElement.getAttribute('aria-describedby')]"
    )
    assert focused == ["passes", "passes-error"]
