"""What the console tests share besides their fixtures (``conftest.py``): the installation's names, and
logging in through the login form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrml.service.app import EmrML

BOB_PASSWORD = "bob-password-1"
DATASOURCE, MODEL, EVALUATION = "ds-console-bank", "ml-console-bank", "ev-console-bank"


@dataclass
class Installation:
    service: EmrML
    home: Path
    admin_password: str
    sample: Path


@dataclass
class Served:
    url: str
    installation: Installation


@dataclass
class Evaluations:
    multiclass: str
    regression: str


def login_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def log_in(client: Any, user: str, password: str) -> Any:
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"csrf_token": login_token(page.text), "username": user, "password": password},
    )
