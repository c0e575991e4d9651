"""Names the jobs page's script writes (the rows of jobs and streams created since the page loaded) read as
the server's pages write them: a character that draws nothing yet changes how a name reads (a right-to-left
override, a zero-width space) shown as its code point, "[U+202E]", by the filter ``visible``'s one set."""

from __future__ import annotations

from typing import Any

import pytest
from browser_helpers import sign_in
from console_helpers import MODEL, Served, put_stream, remove_streams

from emrml.console.formats import visible
from emrml.samples import bank_sample_schema

#: The script's ``visible`` over every character a string holds as one (all code points but the
#: surrogates): those it changes, with what it shows for them.
SHOWN_BY_SCRIPT = """() => {
  const changed = [];
  for (let code = 0; code < 0x110000; code++) {
    if (code >= 0xD800 && code <= 0xDFFF) continue;
    const character = String.fromCodePoint(code);
    const shown = window.emrmlVisible(character);
    if (shown !== character) changed.push([code, shown]);
  }
  return changed;
}"""


def test_the_scripts_names_show_the_characters_the_pages_show(page: Any, served: Served) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/")
    by_script = page.evaluate(SHOWN_BY_SCRIPT)
    characters = (chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    by_pages = [[ord(c), shown] for c in characters if (shown := visible(c)) != c]
    assert by_script == by_pages
    assert [0x202E, "[U+202E]"] in by_script and [0x200B, "[U+200B]"] in by_script
    # A name with characters of several code units (an emoji, joined by U+200D) is shown as it is.
    assert page.evaluate("(name) => window.emrmlVisible(name)", "a\U0001f469\u200d\U0001f4bb\u202e") == (
        "a\U0001f469\u200d\U0001f4bb[U+202E]"
    )


@pytest.mark.usefixtures("quick_refresh")
def test_a_job_added_live_shows_its_names_hidden_characters_as_the_page_does(
    page: Any, served: Served
) -> None:
    sign_in(page, served)
    page.goto(f"{served.url}/console/jobs?kind=DataSource")
    page.evaluate("() => { window.sameDocument = true; }")
    source_id, name = "ds-live-names", "report\u202eslx.exe\u200b"
    service = served.installation.service
    spec = {"DataLocationS3": str(served.installation.sample), "DataSchema": bank_sample_schema().to_json()}
    service.call(
        "CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSourceName": name, "DataSpec": spec}
    )
    try:
        row = page.locator(f'tr[data-id="DataSource/{source_id}"]')
        row.wait_for(timeout=10_000)
        assert page.evaluate("() => window.sameDocument") is True
        added = row.locator("td").first.inner_text()
        assert added == "report[U+202E]slx.exe[U+200B]"
        # Its link still leads to the object, and the page written by the server names it alike.
        assert row.locator("a").get_attribute("href") == f"/console/datasources/{source_id}"
        page.reload()
        assert row.locator("td").first.inner_text() == added
    finally:
        service.wait("DataSource", source_id)


def _stream_names(row: Any) -> list[str]:
    """What a stream's row names: the stream, its model (by name, its id beside), and its start button."""
    cells = row.locator("td")
    return [
        cells.nth(0).inner_text(),
        cells.nth(1).inner_text(),
        row.locator("button").get_attribute("aria-label"),
    ]


@pytest.mark.usefixtures("quick_refresh")
def test_a_stream_added_live_shows_its_and_its_models_hidden_characters_as_the_page_does(
    page: Any, served: Served
) -> None:
    service, stream_id, name = served.installation.service, "st-live-names", "clicks\u202eslx.exe\u200b"
    model_name = service.call("GetMLModel", {"MLModelId": MODEL})["Name"]
    service.call("UpdateMLModel", {"MLModelId": MODEL, "MLModelName": "Bank\u200b model\u202e"})
    remove_streams(service, stream_id)
    try:
        sign_in(page, served)
        page.goto(f"{served.url}/console/jobs?kind=Stream")
        page.evaluate("() => { window.sameDocument = true; }")
        put_stream(service, stream_id, "STOPPED", name=name)
        row = page.locator(f'tr[data-id="Stream/{stream_id}"]')
        row.wait_for(timeout=10_000)
        assert page.evaluate("() => window.sameDocument") is True
        added = _stream_names(row)
        assert added == [
            "clicks[U+202E]slx.exe[U+200B]",
            f"Bank[U+200B] model[U+202E] {MODEL}",
            "Start the consumers of clicks[U+202E]slx.exe[U+200B]",
        ]
        page.reload()
        assert _stream_names(row) == added
    finally:
        remove_streams(service, stream_id)
        service.call("UpdateMLModel", {"MLModelId": MODEL, "MLModelName": model_name})
