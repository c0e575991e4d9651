"""The home page's samples write a file for the user: they need ``storage:Write`` on it, as an upload of
that file would, and not only the ``storage:Read`` its datasources need to read it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from console_helpers import admin_signed_in, log_in, login_token

from emrml.console.samples import sample_location
from emrml.service.logins import Logins


def _reader_of_the_sample(service: Any, home: Path, name: str, write: bool) -> None:
    """A user who may create objects of its own and read (``write``: and write) the sample's location."""
    access = service.access
    access.create_group(f"{name}-group")
    path = os.path.realpath(sample_location(home))
    storage = ["storage:Read", "storage:Write"] if write else ["storage:Read"]
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": storage, "Resource": path})
    access.create_user(name, ("users", f"{name}-group"))
    Logins(service.sessions).set_password(name, f"{name}-password-1")


def test_a_user_who_may_only_read_the_sample_is_neither_offered_it_nor_has_it_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with admin_signed_in(home) as (service, client):
        _reader_of_the_sample(service, home, "rita", write=False)
        client.cookies.clear()
        assert log_in(client, "rita", "rita-password-1").status_code == 303
        page = client.get("/console/")
        assert page.status_code == 200 and 'id="sample-binary"' not in page.text
        sent = client.post(
            "/console/samples", data={"csrf_token": login_token(page.text), "sample": "binary"}
        )
        assert sent.status_code == 403 and "storage:Write" in sent.text
        assert not sample_location(home).exists()
        assert client.get("/console/datasources?format=json").json()["Results"] == []


def test_a_user_who_may_write_the_sample_runs_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with admin_signed_in(home) as (service, client):
        _reader_of_the_sample(service, home, "will", write=True)
        client.cookies.clear()
        assert log_in(client, "will", "will-password-1").status_code == 303
        page = client.get("/console/")
        assert 'id="sample-binary"' in page.text
        sent = client.post(
            "/console/samples", data={"csrf_token": login_token(page.text), "sample": "binary"}
        )
        assert sent.status_code == 303 and "/console/models/" in sent.headers["location"]
        assert sample_location(home).stat().st_size > 0
