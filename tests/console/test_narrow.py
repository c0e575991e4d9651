"""The console's tables at a phone's width (390 px): each scrolls sideways in a labelled, focusable box,
and its columns keep their ids and dates whole rather than squeezed to a letter or two a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser_helpers import check_accessibility, sign_in, split_words_script
from console_helpers import DATASOURCE, EVALUATION, MODEL, Evaluations, Served

from emrml.samples import bank_sample_schema

#: The words of list tables' cells split over lines (ids, dates, figures): the names' column (the
#: first) and prose (messages, descriptions) aside, which wrap.
SPLIT_CELL_WORDS = split_words_script("main table td:not(:first-child):not(.prose)", r"\S+")

#: What reaches past the window's right edge (the assertion's message), the scrolling boxes' insides aside.
WIDE = """() => [...document.querySelectorAll('body *')]
  .filter(e => !e.closest('.table-scroll') && e.getBoundingClientRect().right > window.innerWidth)
  .map(e => e.tagName + (e.id ? '#' + e.id : '')).slice(0, 12)"""

#: Each list table's box: [its label, whether Tab reaches it, its overflow-x].
BOXES = """() => [...document.querySelectorAll('main table:not(.visually-hidden table)')].map(table => {
  const box = table.parentElement;
  return [box.getAttribute('role') === 'region' && box.getAttribute('aria-label'),
          box.tabIndex === 0, getComputedStyle(box).overflowX];
})"""


def assert_tables_scroll_sideways(page: Any, path: str, axe_source: str) -> None:
    """The page at 390 px is no wider than the window, its tables' ids and dates stay whole, each table
    (at least one) sits in a labelled box that Tab reaches and that scrolls, and axe finds nothing."""
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, (path, page.evaluate(WIDE))
    assert page.evaluate(SPLIT_CELL_WORDS) == [], path
    boxes = page.evaluate(BOXES)
    assert boxes and all(
        label and focusable and overflow == "auto" for label, focusable, overflow in boxes
    ), (
        path,
        boxes,
    )
    check_accessibility(page, axe_source)


def test_list_tables_scroll_sideways_at_a_phones_width(page: Any, served: Served, axe_source: str) -> None:
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (
        "datasources",
        "models",
        "evaluations",
        "batch-predictions",
        "jobs",
        "users",
        "groups",
        "storage",
    ):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        assert_tables_scroll_sideways(page, path, axe_source)
    # The storage browser's fields within the page's text, as test_forms_fit_a_phones_width checks forms'.
    assert page.evaluate(PAST_THE_TEXT) == []


def test_an_objects_tables_scroll_sideways_at_a_phones_width(
    page: Any, served: Served, axe_source: str
) -> None:
    """A group's statements, a user's access keys, the capacity page's codecs, a datasource's schema (on
    its page, opened; the wizard's in the test of its attribute names), and a model's and an evaluation's
    alerts and counts."""
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    sample = served.installation.sample
    for path in (
        "groups/users",
        "users/admin",
        f"capacity?nodes=10&disk=800GB&data=3TB&sample={sample}",
        f"datasources/{DATASOURCE}",
        f"models/{MODEL}",
        f"evaluations/{EVALUATION}",
    ):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        for summary in page.locator("main details:not([open]) > summary").all():
            summary.click()
        assert_tables_scroll_sideways(page, path, axe_source)


def test_a_multiclass_evaluations_and_invalid_records_tables_scroll_sideways(
    page: Any, served: Served, more_evaluations: Evaluations, axe_source: str, tmp_path: Path
) -> None:
    """The F1 by class of a multiclass evaluation (its charts checked here as the charts test checks the
    other chart pages'), and the invalid records of a datasource with bad lines."""
    sample = served.installation.sample
    bad = tmp_path / "bank-bad.csv"
    bad.write_text(sample.read_text() + "not a record\n" + "1,2\n")
    service = served.installation.service
    service.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-console-narrow-bad",
            "DataSpec": {"DataLocationS3": str(bad), "DataSchema": bank_sample_schema().to_json()},
            "ComputeStatistics": True,
        },
    )
    service.wait("DataSource", "ds-console-narrow-bad")
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    for path, table in (
        (f"evaluations/{more_evaluations.multiclass}", "#class-f1"),
        ("datasources/ds-console-narrow-bad", "table:has(th:text-is('Reason'))"),
    ):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        assert page.locator(table).count() == 1, path
        if path.startswith("evaluations/"):
            assert page.locator("main svg").count() >= 1 and page.evaluate(CHART_PROBLEMS) == [], path
        assert_tables_scroll_sideways(page, path, axe_source)


#: Each chart's problems at the window's width: drawn wider than it shows (its words shrunk with it), words
#: past its edges, an axis's numbers running into each other.
CHART_PROBLEMS = """() => {
  const problems = [];
  for (const svg of document.querySelectorAll('main svg')) {
    const box = svg.getBoundingClientRect(), name = svg.getAttribute('aria-label');
    if (box.width < svg.width.baseVal.value - 1) problems.push(name + ': shrunk to ' + Math.round(box.width));
    for (const text of svg.querySelectorAll('text')) {
      const r = text.getBoundingClientRect();
      if (r.width && (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1))
        problems.push(name + ': ' + text.textContent + ' past the edge');
    }
    for (const axis of svg.querySelectorAll('.axis')) {
      const ticks = [...axis.querySelectorAll('.tick text')].map(t => t.getBoundingClientRect());
      ticks.forEach((a, i) => ticks.slice(i + 1).forEach(b => {
        if (a.right > b.left && b.right > a.left && a.bottom > b.top && b.bottom > a.top)
          problems.push(name + ': ticks overlap');
      }));
    }
  }
  return problems;
}"""


def test_charts_keep_their_words_readable_at_a_phones_width(
    page: Any, served: Served, more_evaluations: Evaluations, axe_source: str
) -> None:
    """Every chart page at 390 px (the multiclass evaluation's in the test of its tables): the charts are
    drawn at the width they have, not drawn for a wide window and shrunk; their labels stay inside them
    and their axes' numbers apart; the page no wider."""
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    compared = f"a={EVALUATION}&b={more_evaluations.multiclass}"
    for path in (
        f"evaluations/{EVALUATION}",
        f"evaluations/{more_evaluations.regression}",
        f"evaluations/compare?{compared}",
        f"models/{MODEL}",
        f"datasources/{DATASOURCE}",
    ):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        assert page.locator("main svg").count() >= 1, path
        assert page.evaluate(CHART_PROBLEMS) == [], path
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, (path, page.evaluate(WIDE))
        check_accessibility(page, axe_source)


#: The width of the first cell of the list's first row, in rem.
FIRST_CELL_REM = """() => document.querySelector('main table.objects tbody td').getBoundingClientRect().width
  / parseFloat(getComputedStyle(document.documentElement).fontSize)"""


def test_a_lists_names_column_is_as_wide_as_its_names_up_to_a_most(page: Any, served: Served) -> None:
    """A column of short names ("abc") stays narrow; one of a long one-word name is 12rem (and the
    padding) at most, the name wrapped in it, at a phone's width and a wide window's."""
    service = served.installation.service
    spec = {"DataLocationS3": str(served.installation.sample), "DataSchema": bank_sample_schema().to_json()}
    for source_id, name in (("ds-console-fit-short", "abc"), ("ds-console-fit-long", "fitlong" + "w" * 300)):
        service.call(
            "CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSourceName": name, "DataSpec": spec}
        )
    sign_in(page, served)
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 844})
        page.goto(f"{served.url}/console/datasources?prefix=abc")
        assert page.locator("main table.objects tbody tr").count() == 1
        assert page.evaluate(FIRST_CELL_REM) < 5, width
        page.goto(f"{served.url}/console/datasources?prefix=fitlong")
        assert 11 < page.evaluate(FIRST_CELL_REM) <= 13.5, width
        assert (
            page.locator("main table.objects tbody td .fit").evaluate("e => e.getClientRects().length") == 1
        )
        assert page.locator("main table.objects tbody td a").evaluate("a => a.getClientRects().length") > 1


#: The form fields (outside the tables' scrolling boxes) reaching past the right edge of the page's text.
PAST_THE_TEXT = """() => {
  const main = document.querySelector('main'), style = getComputedStyle(main);
  const edge = main.getBoundingClientRect().right - parseFloat(style.paddingRight);
  return [...main.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !e.closest('.table-scroll') && e.getBoundingClientRect().right > edge + 0.5)
    .map(e => e.id || e.name);
}"""


def test_forms_fit_a_phones_width(page: Any, served: Served, axe_source: str) -> None:
    """The create forms and a record's prediction form at 390 px (the storage browser's in the list tables'
    test): no wider than the window, their fields within the page's text."""
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (
        f"models/{MODEL}/predict",
        "models/new",
        "models/new?mode=custom",
        "datasources/new",
        "batch-predictions/new",
        "evaluations/new",
        "account",
    ):
        page.goto(f"{served.url}/console/{path}")
        page.wait_for_selector("html[data-charts=drawn]")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, (path, page.evaluate(WIDE))
        assert page.evaluate(PAST_THE_TEXT) == [], path
        check_accessibility(page, axe_source)


#: The heat map's class-name column: [the longest row label's drawn width, where the first cell starts].
HEAT_MAP_COLUMN = """() => {
  const svg = document.querySelector('#confusion-chart svg');
  const names = [...svg.querySelectorAll('text[data-label]')]
    .filter(t => t.getAttribute('text-anchor') === 'end');
  const cell = svg.querySelector('g.cell').transform.baseVal.consolidate().matrix.e;
  return [Math.max(...names.map(t => t.getComputedTextLength())), cell];
}"""


def test_the_heat_maps_class_names_take_the_room_they_need(
    page: Any, served: Served, more_evaluations: Evaluations
) -> None:
    """Short class names leave their room to the cells, at a phone's width as in a wide window."""
    sign_in(page, served)
    for width in (390, 1200):
        page.set_viewport_size({"width": width, "height": 844})
        page.goto(f"{served.url}/console/evaluations/{more_evaluations.multiclass}")
        page.wait_for_selector("html[data-charts=drawn]")
        name, cell = page.evaluate(HEAT_MAP_COLUMN)
        assert name < 100 and cell <= name + 12, (width, name, cell)


def test_charts_are_drawn_again_at_their_new_width_when_the_window_turns(
    page: Any, served: Served, axe_source: str
) -> None:
    """A phone turned from landscape to portrait: the charts are drawn for the narrower box, not shrunk,
    the threshold chosen stays; a change of height alone draws nothing again."""
    sign_in(page, served)
    page.set_viewport_size({"width": 1200, "height": 844})
    page.goto(f"{served.url}/console/evaluations/{EVALUATION}")
    page.wait_for_selector("html[data-charts=drawn]")
    wide = page.evaluate("() => document.querySelector('#score-chart svg').width.baseVal.value")
    page.focus("#threshold-slider")
    page.keyboard.press("PageUp")
    chosen = page.get_attribute("#threshold-slider", "aria-valuenow")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_selector("html[data-charts-redrawn='1']")
    narrow = page.evaluate("() => document.querySelector('#score-chart svg').width.baseVal.value")
    assert narrow < 390 < wide and page.locator("#score-chart svg").count() == 1
    assert page.evaluate(CHART_PROBLEMS) == []
    assert page.get_attribute("#threshold-slider", "aria-valuenow") == chosen
    assert page.evaluate("() => document.activeElement.id") == "threshold-slider"
    check_accessibility(page, axe_source)
    page.set_viewport_size({"width": 390, "height": 600})
    page.wait_for_timeout(600)
    assert page.get_attribute("html", "data-charts-redrawn") == "1"


#: The focused element's [aria-label, whether it is in the heat map, the heat map's tab stops' labels].
HEAT_MAP_FOCUS = """() => [document.activeElement.getAttribute('aria-label'),
  !!document.activeElement.closest('#confusion-chart'),
  [...document.querySelectorAll("#confusion-chart g.cell[tabindex='0']")]
    .map(c => c.getAttribute('aria-label'))]"""


def test_the_heat_map_keeps_the_focused_cell_when_drawn_again(
    page: Any, served: Served, more_evaluations: Evaluations
) -> None:
    """A keyboard user on a cell of the confusion matrix, the window turned: the same cell has the focus in
    the matrix drawn again, is its one tab stop, and the arrow keys go on from it."""
    sign_in(page, served)
    page.set_viewport_size({"width": 1200, "height": 844})
    page.goto(f"{served.url}/console/evaluations/{more_evaluations.multiclass}")
    page.wait_for_selector("html[data-charts=drawn]")
    page.locator("#confusion-chart g.cell").first.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    label, inside, stops = page.evaluate(HEAT_MAP_FOCUS)
    assert inside and stops == [label]
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_selector("html[data-charts-redrawn='1']")
    assert page.evaluate(HEAT_MAP_FOCUS) == [label, True, [label]]
    page.keyboard.press("ArrowDown")
    data = page.evaluate("() => JSON.parse(document.getElementById('page-data').textContent)")
    view = data["GetEvaluationInsights"]["Insights"]["metrics"]["consoleView"]
    classes, counts = view["classes"], view["counts"]
    below = f"true {classes[2]}, predicted {classes[1]}: {counts[2][1]:,} records"
    assert page.evaluate(HEAT_MAP_FOCUS) == [below, True, [below]]


#: The storage table's caption (its folder): [where its text starts, where its text and its box end].
CAPTION_IN_SIGHT = """() => {
  const caption = document.querySelector('#entries caption'), box = caption.closest('.table-scroll');
  const range = document.createRange();
  range.selectNodeContents(caption);
  const text = range.getBoundingClientRect(), shown = box.getBoundingClientRect();
  return [text.left - shown.left, text.right, shown.right];
}"""


def test_the_storage_tables_folder_is_in_sight_at_a_phones_width(page: Any, served: Served) -> None:
    """The folder's path captioning the files' table starts at the box's left edge and ends within it,
    rather than centred over a table wider than the window, cut by the box's edge."""
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{served.url}/console/storage")
    assert page.evaluate("() => document.querySelector('#entries').scrollWidth > 390")
    start, end, edge = page.evaluate(CAPTION_IN_SIGHT)
    assert start < 12 and end <= edge + 1, (start, end, edge)
    # The evaluation's counts, a captioned table in a row of boxes, keep their width.
    page.goto(f"{served.url}/console/evaluations/{EVALUATION}")
    counts = page.get_by_role("region", name="Counts at the threshold").bounding_box()
    assert counts and counts["width"] > 200, counts


#: The labels of the fieldsets' boxes that are not next to their box: neither just before it on its line
#: nor above it (overlapping it sideways) — [label, where it is, where its box is].
LABELS_APART = """() => [...document.querySelectorAll('main fieldset label[for]')].map(label => {
  const box = document.getElementById(label.htmlFor);
  const l = label.getBoundingClientRect(), b = box.getBoundingClientRect();
  const sameLine = l.right <= b.left + 1 && l.top < b.bottom && b.top < l.bottom;
  const above = l.bottom <= b.top + 1 && l.left < b.right && b.left < l.right;
  return sameLine || above ? null : [label.textContent, [l.left, l.top], [b.left, b.top]];
}).filter(Boolean)"""


def test_a_fieldsets_labels_stay_beside_their_boxes_at_a_phones_width(page: Any, served: Served) -> None:
    """The training parameters and the datasource's split: at 390 px each label is on its box's line,
    just before it, or just above it, never at the end of another field's line."""
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{served.url}/console/models/new?mode=custom")
    assert page.locator("main fieldset label[for]").count() == 5
    assert page.evaluate(LABELS_APART) == []
    page.goto(f"{served.url}/console/datasources/new")
    page.fill("#location", str(served.installation.sample))
    with page.expect_navigation():
        page.press("#location", "Enter")
    assert page.locator("main fieldset label[for]").count() == 2
    assert page.evaluate(LABELS_APART) == []


#: The wizard's attribute names split over lines: the bank sample's are short words, whole at any width.
SPLIT_ATTRIBUTE_NAMES = split_words_script("#schema-table tbody th", r"\S+")


def test_the_wizards_attribute_names_stay_whole_at_a_phones_width(
    page: Any, served: Served, axe_source: str
) -> None:
    """The schema step at 390 px: the table scrolls sideways in its box rather than squeezing the
    attributes' names to a few letters a line ("educatio|n", "campaig|n")."""
    sign_in(page, served)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(served.url + "/console/datasources/new")
    page.fill("#location", str(served.installation.sample))
    page.click("text=Next: the schema")
    page.wait_for_selector("#schema-table")
    assert page.locator("#schema-table tbody th").count() == len(bank_sample_schema().attributes)
    assert page.evaluate(SPLIT_ATTRIBUTE_NAMES) == []
    assert_tables_scroll_sideways(page, "datasources/new", axe_source)
