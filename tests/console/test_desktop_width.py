"""The console's list tables at a desktop's width (1280 px) fit their boxes: no column is left past the
box's edge behind a sideways scroll (the jobs table's dates, compute time and Spark ids were)."""

from __future__ import annotations

from typing import Any

from browser_helpers import sign_in
from console_helpers import Served, put_stream, remove_streams
from test_narrow import assert_tables_scroll_sideways

#: Each table wider than its box: [its id or caption, its width, its box's width].
TOO_WIDE = """() => [...document.querySelectorAll('main .table-scroll > table')]
  .filter(table => table.scrollWidth > table.parentElement.clientWidth)
  .map(table => [table.id || table.textContent.trim().slice(0, 40), table.scrollWidth,
                 table.parentElement.clientWidth])"""

LISTS = ("datasources", "models", "evaluations", "batch-predictions", "jobs", "users", "groups", "storage")


def test_list_tables_fit_their_boxes_at_a_desktops_width(page: Any, served: Served, axe_source: str) -> None:
    # A stream that may be started again: its row holds the widest cell of the streams table, a form.
    put_stream(
        served.installation.service,
        "st-desktop",
        "STOPPED",
        name="clicks scored at a desktop's width",
        message="Stopped by admin after the consumers had read every shard to its end",
        running=True,
    )
    try:
        sign_in(page, served)
        page.set_viewport_size({"width": 1280, "height": 900})
        for path in LISTS:
            page.goto(f"{served.url}/console/{path}")
            page.wait_for_selector("html[data-charts=drawn]")
            assert page.evaluate(TOO_WIDE) == [], path
        # Narrower, the same tables keep their ids and dates whole and scroll in their boxes as before.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{served.url}/console/jobs")
        page.wait_for_selector("html[data-charts=drawn]")
        assert_tables_scroll_sideways(page, "jobs", axe_source)
    finally:
        remove_streams(served.installation.service, "st-desktop")
