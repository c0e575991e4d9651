"""A form opened from an object's page offers that object in its select, even when it is older than the
newest objects the select lists (console/choices.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from console_helpers import DATASOURCE, MODEL, login_token

from emrml.console import choices


def _selected(page: str, select: str) -> str | None:
    """The value of the selected option of ``select`` in ``page``."""
    body = re.search(rf'<select id="{select}"[^>]*>(.*?)</select>', page, re.S)
    assert body, select
    chosen = re.search(r'<option value="([^"]*)" selected>', body.group(1))
    return chosen.group(1) if chosen else None


def test_an_older_datasource_is_offered_by_the_forms_opened_for_it(
    admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One choice listed: the newest completed datasource, which the first one of the installation is not
    # (its evaluation part was created after it).
    monkeypatch.setattr(choices, "CHOICES", 1)
    trained = admin.get(f"/console/models/new?datasource={DATASOURCE}")
    assert trained.status_code == 200 and _selected(trained.text, "datasource") == DATASOURCE
    token = login_token(trained.text)
    form = {"csrf_token": token, "model": MODEL, "datasource": DATASOURCE, "output": ""}
    refused = admin.post("/console/batch-predictions/new", data=form)  # no output: shown again
    assert refused.status_code == 400
    assert _selected(refused.text, "datasource") == DATASOURCE and _selected(refused.text, "model") == MODEL
    # An id the user cannot read is not offered (sending the form says why).
    unknown = admin.get("/console/models/new?datasource=ds-no-such")
    assert _selected(unknown.text, "datasource") is None
