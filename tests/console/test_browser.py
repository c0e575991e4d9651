"""The console in Debian's Chromium, driven by Playwright against a real ``emrml serve`` app.

Each page visited is checked with axe-core (no violation of impact serious or critical) and, with
EMRML_SCREENSHOTS=docs, photographed for docs/console.md (into docs/console/).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from console_helpers import AXE_PATH, BOB_PASSWORD, DATASOURCE, EVALUATION, MODEL, SESSION_COOKIE, Served

from emrml.cli import app as cli_app
from emrml.config import Settings
from emrml.samples import bank_sample_schema
from emrml.service.app import EmrML
from emrml.service.auth import ensure_admin
from emrml.service.identity import Identities
from emrml.service.logins import Logins, ensure_admin_password
from emrml.web.server import BackgroundServer, create_app, reserve_socket

#: Where the pages' screenshots go: docs/console (the documentation's pictures) when EMRML_SCREENSHOTS=docs,
#: else nowhere: a photograph asserts nothing, and a test run leaves the checkout as it was.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "console"
    if os.environ.get("EMRML_SCREENSHOTS") == "docs"
    else None
)


#: Loads axe-core into the page from the test server (``conftest.with_axe``), unless an earlier check of
#: the same document did: true once ``axe`` is there, false when the page's origin has no such script.
#: The script element goes once run, leaving the page's document as it was.
LOAD_AXE = """async (path) => {
  if (window.axe) return true;
  const script = document.createElement('script');
  script.src = path;
  const loaded = new Promise(resolve => {
    script.onload = () => resolve(true);
    script.onerror = () => resolve(false);
  });
  document.head.append(script);
  const ok = await loaded;
  script.remove();
  return ok && !!window.axe;
}"""

#: axe.run over the whole document, its violations of these impacts as [id, impact, help, the first three
#: nodes' targets]. axe-core gives each rule an impact, which all its violations take: a rule of another
#: impact can fail no check, and is not run. Only violations are collected (``resultTypes``: the passes and
#: incomplete results keep one node each, the rest untouched), and only the asserted ones come back.
RUN_AXE = """async (impacts) => {
  const rules = {};
  for (const rule of axe._audit.rules) {
    if (rule.impact && !impacts.includes(rule.impact)) rules[rule.id] = {enabled: false};
  }
  const result = await axe.run(document, {resultTypes: ['violations'], rules});
  return result.violations.filter(v => impacts.includes(v.impact))
    .map(v => [v.id, v.impact, v.help, v.nodes.slice(0, 3).map(n => n.target)]);
}"""


def check_accessibility(
    page: Any, axe_source: str, impacts: tuple[str, ...] = ("serious", "critical")
) -> None:
    """No axe-core violation of these impacts on the page (all four: "minor", "moderate" too)."""
    if not page.evaluate(LOAD_AXE, AXE_PATH):
        page.evaluate(axe_source)  # a page of another server than ``served``'s
    serious = [
        f"{rule} ({impact}): {help_text} — {targets}"
        for rule, impact, help_text, targets in page.evaluate(RUN_AXE, list(impacts))
    ]
    assert not serious, "\n".join(serious)


def screenshot(page: Any, name: str) -> None:
    if SCREENSHOTS is None:
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = min(page.evaluate("() => document.documentElement.scrollHeight"), 1800)
    clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": height}
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, clip=clip)


def log_in(page: Any, served: Served, user: str = "admin", password: str | None = None) -> None:
    page.goto(served.url + "/console/")
    assert "/console/login" in page.url
    page.fill("#username", user)
    page.fill("#password", password or served.installation.admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(served.url + "/console/")


def sign_in(page: Any, served: Served) -> None:
    """The page's browser holding admin's shared session (``Installation.admin_token``), for the tests that
    need admin logged in but do not test the login form (``log_in`` does, and the tests that log out)."""
    page.context.add_cookies(
        [
            {
                "name": SESSION_COOKIE,
                "value": served.installation.admin_token(),
                "url": served.url + "/console/",
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )


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


def test_login_wrong_password_and_logout(page: Any, served: Served, axe_source: str) -> None:
    page.goto(served.url + "/console/")
    check_accessibility(page, axe_source)
    screenshot(page, "login")
    page.fill("#username", "admin")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert page.locator("#login-error").inner_text() == "Wrong user name or password."
    log_in(page, served)
    assert page.locator(".who a").inner_text() == "admin"
    check_accessibility(page, axe_source)
    screenshot(page, "home")
    page.click("text=Log out")
    page.wait_for_url(re.compile(r".*/console/login.*"))
    page.goto(served.url + "/console/models")
    assert "/console/login" in page.url


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


def test_datasource_model_and_list_pages_pass_axe(page: Any, served: Served, axe_source: str) -> None:
    # bob's page shows an active and a deactivated access key (their status column and buttons).
    identities = Identities(served.installation.service.sessions, served.installation.home)
    keys = [identities.create_key("bob").access_key_id, identities.create_key("bob").access_key_id]
    identities.set_key_active(keys[1], False)
    try:
        _visit_for_axe(page, served, axe_source)
    finally:
        # bob's keys are this test's: a later test sees bob as the installation made him.
        for key in keys:
            identities.delete_key(key)
    page.goto(f"{served.url}/console/datasources/ds-console-bank")
    assert page.locator("#attribute-charts svg").count() >= 10


def _visit_for_axe(page: Any, served: Served, axe_source: str) -> None:
    sign_in(page, served)
    for path, name in (
        ("datasources", "datasources"),
        ("datasources/ds-console-bank", "datasource"),
        (f"models/{MODEL}", "model"),
        ("models/new", "model-new"),
        ("jobs", "jobs"),
        ("evaluations", "evaluations"),
        ("account", "account"),
        ("storage", "storage"),
        ("users", "users"),
        ("users/bob", "user"),
        ("groups", "groups"),
        ("groups/users", "group"),
        ("capacity?nodes=10&disk=800GB&data=3TB", "capacity"),
    ):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        check_accessibility(page, axe_source)
        screenshot(page, name)
    page.goto(f"{served.url}/console/users/bob")
    assert page.get_by_role("button", name="Deactivate", exact=True).count() == 1
    assert page.get_by_role("button", name="Activate", exact=True).count() == 1


def test_long_names_and_charts_stay_within_the_window(page: Any, served: Served) -> None:
    # A name is one word of 1,024 letters at most; the datasource's charts sit in a grid of narrower columns.
    long_name = "w" * 1024
    served.installation.service.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-console-long",
            "DataSourceName": long_name,
            "DataSpec": {
                "DataLocationS3": str(served.installation.sample),
                "DataSchema": bank_sample_schema().to_json(),
            },
        },
    )
    sign_in(page, served)
    for path in ("", "datasources", "datasources/ds-console-long", "datasources/ds-console-bank", "jobs"):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= page.viewport_size["width"], path


def split_words_script(cells: str, word: str) -> str:
    """A page script listing the words (matches of the JS pattern ``word``) of the elements matched by
    ``cells`` whose text a line break splits: their pieces on more than one line."""
    return f"""() => {{
  const split = [];
  for (const cell of document.querySelectorAll({json.dumps(cells)})) {{
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode()); ) {{
      for (const match of node.data.matchAll(/{word}/g)) {{
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if ([...range.getClientRects()].filter(rect => rect.width > 0).length > 1) split.push(match[0]);
      }}
    }}
  }}
  return split;
}}"""


#: The words of the console's own table cells (headings, statuses, kinds, alert results) that a line
#: break splits, though the word has no hyphen to break at.
SPLIT_WORDS = split_words_script(
    'main thead th, main td .status, main td.word, main td[data-field="Status"]', r"[^\s-]+"
)


def test_a_narrow_window_wraps_tables_between_the_consoles_words_not_inside_them(
    page: Any, served: Served
) -> None:
    # Long rows (a jobs page, a model's alerts beside their long detail) in a window short of room: the
    # columns of the users' names shrink, the headings, statuses, kinds and results stay whole words.
    sign_in(page, served)
    page.set_viewport_size({"width": 700, "height": 900})
    for path in (f"models/{MODEL}", "jobs", "datasources", "groups"):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        assert page.evaluate(SPLIT_WORDS) == [], path


#: The model page's feature labels: [whole label (data-label), shown text, title, right edge, the bars' left].
FEATURE_LABELS = """() => {
  const svg = document.querySelector('#features-chart svg');
  const left = Math.min(...[...svg.querySelectorAll('rect')].map(r => r.getBoundingClientRect().left));
  return [...svg.querySelectorAll('.bar-labels text')].map(text => [
    text.dataset.label, text.firstChild.data, text.querySelector('title').textContent,
    text.getBoundingClientRect().right, left]);
}"""


def test_feature_labels_are_cut_to_their_room_and_still_tell_the_features_apart(
    page: Any, served: Served
) -> None:
    # Features differ at their end ("quantile_bin(duration,50)=bin_4", "...=bin_49"): a label cut at its
    # end made many bars read alike. A label is cut only when its column has no room for it, whatever its
    # length, and keeps the whole one in its title.
    sign_in(page, served)
    data_script = "() => JSON.parse(document.getElementById('page-data').textContent)"
    for width, cut in ((1280, False), (390, True)):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{served.url}/console/models/{MODEL}")
        page.wait_for_selector("html[data-charts=drawn]")
        insights = page.evaluate(data_script)["GetMLModelInsights"]
        features = [feature["feature"] for feature in insights["TopFeatures"][:20]]
        labels = page.evaluate(FEATURE_LABELS)
        assert [label[0] for label in labels] == features and any(len(feature) > 30 for feature in features)
        assert len({shown for _, shown, *_ in labels}) == len(set(features)), width
        for whole, shown, title, right, bars_left in labels:
            assert title == whole and right <= bars_left, (width, whole, shown)
            head, ellipsis, tail = shown.partition("…")
            assert shown == whole or (ellipsis and whole.startswith(head) and whole.endswith(tail) and tail)
        assert any(shown != whole for whole, shown, *_ in labels) is cut, width


def test_an_objects_lists_of_facts_line_up(page: Any, served: Served) -> None:
    # The facts atop a page come in lists (created and run times, then the object's own): their values
    # start at one left edge.
    sign_in(page, served)
    for path in (f"datasources/{DATASOURCE}", f"models/{MODEL}", f"evaluations/{EVALUATION}"):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        lefts = page.evaluate(
            "() => { const top = [];"
            " for (const part of document.querySelector('main').children) {"
            "  if (part.tagName === 'H2') break;"
            "  if (part.classList.contains('kv')) top.push(part); }"
            " return top.map(list => Math.round(list.querySelector('dd').getBoundingClientRect().left)); }"
        )
        assert len(lefts) >= 2 and len(set(lefts)) == 1, (path, lefts)


def test_a_form_sent_after_logging_out_in_another_tab_leads_to_the_login_page(
    page: Any, served: Served, axe_source: str
) -> None:
    log_in(page, served)
    other = page.context.new_page()
    other.goto(f"{served.url}/console/account")
    page.click("text=Log out")
    page.wait_for_url("**/console/login")
    other.fill("#current", "wrong-but-never-checked")
    other.fill("#new", "new-password-1")
    other.fill("#again", "new-password-1")
    other.click("main button[type=submit]")
    other.wait_for_url("**/console/login?**")
    assert "so nothing was sent" in other.locator("#login-error").inner_text()
    check_accessibility(other, axe_source)
    other.fill("#username", "admin")
    other.fill("#password", served.installation.admin_password)
    other.click("main button[type=submit]")
    other.wait_for_url(f"{served.url}/console/account")
    # A form whose address is no page (a share link's) comes back to the home page.
    other.goto(f"{served.url}/console/evaluations/{EVALUATION}")
    other.context.clear_cookies()
    other.click("text=Create a share link")
    other.wait_for_url("**/console/login?**")
    assert "next=%2Fconsole%2F&" in other.url


def test_the_other_pages_pass_axe_without_even_minor_violations(
    page: Any, served: Served, axe_source: str
) -> None:
    every = ("minor", "moderate", "serious", "critical")
    sign_in(page, served)
    for path in (
        "",
        "batch-predictions",
        "batch-predictions/new",
        "evaluations/new",
        f"evaluations/{EVALUATION}",
        f"evaluations/compare?a={EVALUATION}&b={EVALUATION}",
        "users/bob",
        "groups/users",
        "datasources/new",
        "no-such-page",
        f"models/{MODEL}/predict",
    ):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        check_accessibility(page, axe_source, every)


def test_back_after_logging_out_shows_no_page_of_the_session(page: Any, served: Served) -> None:
    log_in(page, served)
    page.goto(f"{served.url}/console/users")
    page.goto(f"{served.url}/console/models/{MODEL}")
    page.click("text=Log out")
    page.wait_for_url("**/console/login")
    page.go_back()
    page.wait_for_url("**/console/login?next=**")
    assert MODEL not in page.locator("main").inner_text()
    # Static files keep their long cache lifetime.
    css = page.request.get(served.url + page.locator("link[rel=stylesheet]").get_attribute("href"))
    assert "immutable" in css.headers["cache-control"]


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


def test_a_button_the_users_permissions_disable_looks_disabled(page: Any, served: Served) -> None:
    # bob may not read data: the default settings' Train is disabled, its note saying why; it must not
    # look like the working button of the custom settings beside it.
    log_in(page, served, "bob", BOB_PASSWORD)
    looks = "b => [b.disabled, getComputedStyle(b).backgroundColor, getComputedStyle(b).cursor]"
    page.goto(f"{served.url}/console/models/new")
    disabled = page.get_by_role("button", name="Train").evaluate(looks)
    page.goto(f"{served.url}/console/models/new?mode=custom")
    enabled = page.get_by_role("button", name="Train").evaluate(looks)
    assert disabled[0] and not enabled[0]
    assert disabled[1] != enabled[1] and disabled[2] == "not-allowed" != enabled[2]


def test_charts_figures_are_tables_for_screen_readers(page: Any, served: Served) -> None:
    """A chart is one image to a screen reader: its figures are in a table beside it, named as the chart
    is (a model's feature weights and loss by pass, a datasource's histograms and categories)."""
    sign_in(page, served)
    page.goto(f"{served.url}/console/models/{MODEL}")
    page.wait_for_selector("html[data-charts=drawn]")
    insights = page.evaluate("() => JSON.parse(document.getElementById('page-data').textContent)")[
        "GetMLModelInsights"
    ]
    weights = page.get_by_role("table", name="Largest feature weights")
    rows = weights.locator("tbody tr").all_inner_texts()
    features = insights["TopFeatures"][:20]
    assert [row.split("\t")[0] for row in rows] == [feature["feature"] for feature in features]
    losses = page.get_by_role("table", name="Training loss by pass").locator("tbody tr")
    assert losses.count() == len(insights["TrainingReport"]["losses"])
    page.goto(f"{served.url}/console/datasources/{DATASOURCE}")
    page.wait_for_selector("html[data-charts=drawn]")
    age = page.get_by_role("table", name="Histogram of age")
    assert age.locator("tbody tr").count() >= 2 and " to " in age.locator("tbody th").first.inner_text()
    assert page.get_by_role("table", name="Top categories of job").locator("tbody tr").count() >= 2


def test_a_texts_prominent_words_say_their_order_and_count_occurrences(page: Any, served: Served) -> None:
    """A text attribute's words come most correlated with the target first, not by count: the chart says
    so, and that its figures are occurrences (a record may hold a word twice), not records."""
    sign_in(page, served)
    page.goto(f"{served.url}/console/datasources/{DATASOURCE}")
    page.wait_for_selector("html[data-charts=drawn]")
    data = page.evaluate("() => JSON.parse(document.getElementById('page-data').textContent)")
    notes = next(
        a for a in data["GetDataSourceStatistics"]["Statistics"]["attributes"] if a["name"] == "notes"
    )
    words = notes["prominentWords"][:15]
    label = "Prominent words of notes, most correlated with the target first"
    table = page.get_by_role("table", name=label)
    assert table.locator("thead th").all_inner_texts() == ["Word", "Occurrences"]
    rows = [row.split("\t") for row in table.locator("tbody tr").all_inner_texts()]
    assert rows == [[w["word"], f"{w['count']:,}"] for w in words]
    assert page.get_by_role("img", name=label).count() == 1


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
