"""The jobs page's streams table follows the streams as its jobs table follows the jobs: a stream started
again (or ended) shows its new status, figures and start form, a stream created since the page loaded
appears and a deleted one goes, without reloading the page."""

from __future__ import annotations

from typing import Any

import pytest
from browser_helpers import check_accessibility, sign_in
from console_helpers import MODEL, Served, put_stream, remove_streams

STREAM = "st-live"


def _set_stream(served: Served, status: str, message: str | None = None, running: bool = False) -> None:
    """The stream ``STREAM`` at ``status``; with one consumer and its shard's figures when ``running``."""
    put_stream(
        served.installation.service, STREAM, status, name="live clicks", message=message, running=running
    )


@pytest.mark.usefixtures("quick_refresh")
def test_the_streams_table_follows_a_stream_started_again_and_ended(
    page: Any, served: Served, axe_source: str
) -> None:
    _set_stream(served, "STOPPED")
    try:
        sign_in(page, served)
        page.goto(f"{served.url}/console/jobs?kind=Stream")
        page.evaluate("() => { window.sameDocument = true; }")
        row = page.locator(f'tr[data-id="Stream/{STREAM}"]')
        assert row.locator("button").inner_text() == "Start"
        _set_stream(served, "RUNNING", running=True)
        records = row.locator('[data-field="Records"]')
        page.wait_for_function("(cell) => cell.textContent === '120 / 117 / 3'", arg=records.element_handle())
        assert row.locator('[data-field="Status"]').inner_text() == "RUNNING"
        assert row.locator('[data-field="Lag"]').inner_text() == "1.5 s"
        assert row.locator("form").count() == 0  # a consumer runs it: nothing to start
        _set_stream(served, "FAILED", message="the consumers ended")
        button = row.locator("button")
        button.wait_for(timeout=10_000)
        assert button.inner_text() == "Start again"
        # Styled as every FAILED object, as a row the page loaded with is.
        assert row.locator('[data-field="Status"] .status').get_attribute("class") == "status status-failed"
        assert row.locator('[data-field="Message"]').inner_text() == "the consumers ended"
        assert page.evaluate("() => window.sameDocument") is True
        assert row.locator("form").get_attribute("action") == f"/console/streams/{STREAM}/start"
        check_accessibility(page, axe_source)
    finally:
        _remove_stream(served)


def _remove_stream(served: Served) -> None:
    remove_streams(served.installation.service, STREAM)


@pytest.mark.usefixtures("quick_refresh")
def test_the_streams_table_gains_a_new_stream_and_loses_a_deleted_one(
    page: Any, served: Served, axe_source: str
) -> None:
    _remove_stream(served)
    try:
        sign_in(page, served)
        page.goto(f"{served.url}/console/jobs?kind=Stream")
        page.evaluate("() => { window.sameDocument = true; }")
        table = page.locator("#streams")
        assert table.locator("tbody").inner_text().strip() == "No stream consumers."
        _set_stream(served, "RUNNING", running=True)
        row = table.locator(f'tr[data-id="Stream/{STREAM}"]')
        row.wait_for(timeout=10_000)
        cells = row.locator("td")
        assert cells.nth(0).inner_text() == "live clicks"
        assert row.locator("a").get_attribute("href") == f"/console/models/{MODEL}"
        # Its model by name, its id beside, as the template writes a stream's row.
        assert cells.nth(1).inner_text() == f"Bank model {MODEL}"
        assert cells.nth(2).inner_text() == "kinesis://clicks"
        assert row.locator('[data-field="Records"]').inner_text() == "120 / 117 / 3"
        assert table.locator("tbody tr").count() == 1  # the empty-table row went
        check_accessibility(page, axe_source)
        _remove_stream(served)
        page.wait_for_function("(id) => !document.querySelector(`tr[data-id='Stream/${id}']`)", arg=STREAM)
        assert table.locator("tbody").inner_text().strip() == "No stream consumers."
        assert page.evaluate("() => window.sameDocument") is True
    finally:
        _remove_stream(served)
