"""The console's Jobs page starts the consumers of a stream none runs any longer (FAILED or STOPPED), as
StartStream does from the API, with the parameters the stream was started with."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from stream_helpers import Kinesalite, Running, record, wait_until

from emrml.errors import ResourceNotFoundException
from emrml.service.app import EmrML
from emrml.service.auth import ensure_admin
from emrml.service.identity import Identities
from emrml.service.logins import Logins, ensure_admin_password
from emrml.web.server import create_app

BOB_PASSWORD = "bob-password-1"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _client(app: EmrML, user: str, password: str) -> Any:
    from starlette.testclient import TestClient

    client = TestClient(create_app(app), follow_redirects=False)
    login = client.get("/console/login")
    answer = client.post(
        "/console/login", data={"csrf_token": _csrf(login.text), "username": user, "password": password}
    )
    assert answer.status_code == 303
    return client


@pytest.fixture
def admin_and_bob(stream_app: EmrML) -> Iterator[tuple[Any, Any]]:
    home = stream_app.settings.home
    ensure_admin(Identities(stream_app.sessions, home), home)
    ensure_admin_password(Logins(stream_app.sessions), home)
    password = json.loads((home / "admin-credentials.json").read_text())["console_password"]
    Identities(stream_app.sessions, home).create_user("bob")
    Logins(stream_app.sessions).set_password("bob", BOB_PASSWORD)
    with _client(stream_app, "admin", password) as admin, _client(stream_app, "bob", BOB_PASSWORD) as bob:
        yield admin, bob


def _row(client: Any, stream_id: str) -> dict[str, Any]:
    (row,) = [
        s for s in client.get("/console/jobs?format=json").json()["Streams"] if s["StreamId"] == stream_id
    ]
    return row


def test_the_jobs_page_starts_again_the_consumers_of_a_failed_stream(
    stream_app: EmrML,
    kinesalite: Kinesalite,
    consumers: list[Running],
    cleanup: None,
    admin_and_bob: tuple[Any, Any],
) -> None:
    admin, bob = admin_and_bob
    kinesalite.create("console-1", 1)
    kinesalite.create("console-1-scored", 1)
    kinesalite.put("console-1", [(record(i), str(i)) for i in range(10)])
    request = {"StreamId": "st-console-1", "MLModelId": "ml-binary", "Consumers": 0,
               "InputStream": "kinesis://console-1", "OutputUri": "kinesis://console-1-scored"}  # fmt: skip
    stream_app.call("StartStream", request)
    running = Running(stream_app.settings, "st-console-1")
    consumers.append(running)
    wait_until(lambda: _row(admin, "st-console-1")["RecordsIn"] == 10, 30)
    assert _row(admin, "st-console-1")["Startable"] is False  # a consumer runs it
    assert "streams/st-console-1/start" not in admin.get("/console/jobs?kind=Stream").text

    # Its output deleted, the consumer fails: the stream shows FAILED, and the page offers to start it.
    kinesalite.delete("console-1-scored")
    kinesalite.put("console-1", [(record(i), str(i)) for i in range(10, 15)])
    with pytest.raises(ResourceNotFoundException):
        running.join()
    consumers.remove(running)
    row = _row(admin, "st-console-1")
    assert row["Status"] == "FAILED" and row["Startable"] is True
    page = admin.get("/console/jobs?kind=Stream").text
    assert 'action="/console/streams/st-console-1/start"' in page and "Start again</button>" in page

    # Another user, who may not see the stream, can neither be offered nor start it.
    assert bob.get("/console/jobs?format=json").json()["Streams"] == []
    refused = bob.post(
        "/console/streams/st-console-1/start", data={"csrf_token": _csrf(bob.get("/console/jobs").text)}
    )
    assert refused.status_code == 404 and "st-console-1" in refused.text
    assert stream_app.call("GetStream", {"StreamId": "st-console-1"})["Status"] == "FAILED"

    # A wrong number of consumers is refused, saying so; nothing starts.
    token = _csrf(page)
    wrong = admin.post("/console/streams/st-console-1/start", data={"csrf_token": token, "consumers": "0"})
    assert wrong.status_code == 400 and "Consumers must be a whole number from 1 to 64" in wrong.text

    # The cause fixed (the output back), the button starts a consumer, which resumes from the checkpoint.
    kinesalite.create("console-1-scored", 1)
    started = admin.post("/console/streams/st-console-1/start", data={"csrf_token": token, "consumers": "1"})
    assert started.status_code == 303
    assert started.headers["location"] == "/console/jobs?kind=Stream&stream=st-console-1&started=1"
    notice = admin.get(started.headers["location"]).text
    assert "Stream st-console-1: 1 consumer process(es) started" in notice
    row = wait_until(lambda: (found := _row(admin, "st-console-1"))["RecordsIn"] == 15 and found, 60, 0.3)
    assert row["Status"] == "RUNNING" and row["Message"] is None and row["Startable"] is False
    scored = [json.loads(item["Data"])["PartitionKey"] for item in kinesalite.read_all("console-1-scored")]
    assert sorted(scored, key=int) == [str(i) for i in range(10, 15)]
    stream_app.call("StopStream", {"StreamId": "st-console-1"})
    wait_until(lambda: _row(admin, "st-console-1")["Status"] == "STOPPED", 30, 0.3)
    assert _row(admin, "st-console-1")["Startable"] is True  # a stopped stream is offered too
