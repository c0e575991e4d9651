"""The list tables at a phone's width (390 px): each scrolls sideways in a labelled, focusable box, and
its columns keep their ids and dates whole rather than squeezed to a letter or two a line."""

from __future__ import annotations

from typing import Any

from console_helpers import Served
from test_browser import check_accessibility, log_in

#: The words of list tables' cells split over lines (ids, dates, figures): the names' column (the
#: first) and prose (messages, descriptions) aside, which wrap.
SPLIT_CELL_WORDS = """() => {
  const split = [];
  for (const cell of document.querySelectorAll('main table td:not(:first-child):not(.prose)')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode()); ) {
      for (const match of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if ([...range.getClientRects()].filter(rect => rect.width > 0).length > 1) split.push(match[0]);
      }
    }
  }
  return split;
}"""

#: What reaches past the window's right edge (the assertion's message).
WIDE = """() => [...document.querySelectorAll('main *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth)
  .map(e => e.tagName + (e.id ? '#' + e.id : '')).slice(0, 12)"""

#: Each list table's box: [its label, whether Tab reaches it, its overflow-x].
BOXES = """() => [...document.querySelectorAll('main table:not(.visually-hidden)')].map(table => {
  const box = table.parentElement;
  return [box.getAttribute('role') === 'region' && box.getAttribute('aria-label'),
          box.tabIndex === 0, getComputedStyle(box).overflowX];
})"""


def test_list_tables_scroll_sideways_at_a_phones_width(page: Any, served: Served, axe_source: str) -> None:
    log_in(page, served)
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
