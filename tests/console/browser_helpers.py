"""What the console's browser tests share: axe-core checks of a page, screenshots for the documentation,
logging in through the form or with admin's session, and a script finding words a line break splits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from console_helpers import AXE_PATH, SESSION_COOKIE, Served

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
