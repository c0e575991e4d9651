"""The console's pages in Debian's Chromium, driven by Playwright against a real ``emrml serve`` app: logging
in and out, axe-core checks of every page, and layouts that stay within the window and readable.

Each page visited is checked with axe-core (no violation of impact serious or critical) and, with
EMRML_SCREENSHOTS=docs, photographed for docs/console.md (into docs/console/).
"""

from __future__ import annotations

import re
from typing import Any

from browser_helpers import check_accessibility, log_in, screenshot, sign_in, split_words_script
from console_helpers import BOB_PASSWORD, DATASOURCE, EVALUATION, MODEL, Served

from emrml.samples import bank_sample_schema
from emrml.service.identity import Identities


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
