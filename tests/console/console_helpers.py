"""What the console tests share besides their fixtures (``conftest.py``): the installation's names,
logging in through the login form, forms' CSRF tokens and error messages, and stream rows as consumers
would leave them."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.auth import ensure_admin
from emrml.service.identity import Identities
from emrml.service.logins import Logins, ensure_admin_password
from emrml.web.server import create_app

BOB_PASSWORD = "bob-password-1"
SESSION_COOKIE = "emrml_session"
DATASOURCE, MODEL, EVALUATION = "ds-console-bank", "ml-console-bank", "ev-console-bank"
#: Where the test server answers with axe-core beside the console (``conftest.with_axe``), outside
#: ``/console/``.
AXE_PATH = "/axe-core/axe.min.js"


@dataclass
class Installation:
    service: EmrML
    home: Path
    admin_password: str
    sample: Path
    #: The session token of ``admin_token``.
    _admin_token: str | None = field(default=None, repr=False)

    def admin_token(self) -> str:
        """The session token of an admin logged in through the login form, shared by the tests that need
        admin logged in but do not test the login itself (each login costs a scrypt hash and two pages); a
        new one once the server has ended it (a logout, a password change), so that no test depends on
        another leaving it alive."""
        from emrml.service.logins import Logins

        if self._admin_token is None or Logins(self.service.sessions).session(self._admin_token) is None:
            with TestClient(create_app(self.service), follow_redirects=False) as client:
                assert log_in(client, "admin", self.admin_password).status_code == 303
                self._admin_token = client.cookies[SESSION_COOKIE]
        return self._admin_token


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


def page_token(client: Any, path: str = "/console/account") -> str:
    """The CSRF token of the form on the page at ``path``, for the client's session."""
    return login_token(client.get(path).text)


def form_errors(page: Any) -> list[str]:
    """The error messages a page shows beside its form and fields, unescaped."""
    return [html.unescape(text) for text in re.findall(r'class="error[^"]*"[^>]*>([^<]*)<', page.text)]


def log_in(client: Any, user: str, password: str) -> Any:
    page = client.get("/console/login")
    return client.post(
        "/console/login",
        data={"csrf_token": login_token(page.text), "username": user, "password": password},
    )


@contextmanager
def admin_signed_in(home: Path) -> Iterator[tuple[EmrML, TestClient]]:
    """The service of ``home`` (its settings read from its ``emrml.toml``) and a client of its app signed in
    to the console as its admin."""
    service = EmrML(Settings.load(environ={}, home=home))
    try:
        ensure_admin(Identities(service.sessions, home), home)
        ensure_admin_password(Logins(service.sessions), home)
        password = json.loads((home / "admin-credentials.json").read_text())["console_password"]
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, "admin", password).status_code == 303
            yield service, client
    finally:
        service.close()


def completed_batch_prediction(
    installation: Installation, batch_id: str, output: Path, caller: str | None = None
) -> dict[str, Any]:
    """A batch prediction of the console's model over its evaluation data into ``output``, run to COMPLETED
    (as ``caller``, through the server's door, when given); its GetBatchPrediction."""
    request = {
        "BatchPredictionId": batch_id,
        "MLModelId": MODEL,
        "BatchPredictionDataSourceId": f"{DATASOURCE}-eval",
        "OutputUri": f"{output}/",
    }
    service = installation.service
    if caller is None:
        service.call("CreateBatchPrediction", request)
    else:
        service.call("CreateBatchPrediction", request, caller, remote=True)
    described = service.wait("BatchPrediction", batch_id)
    assert described["Status"] == "COMPLETED", described
    return described


def put_stream(
    service: EmrML, stream_id: str, status: str, *, name: str | None = None, message: str | None = None,
    running: bool = False,
) -> None:  # fmt: skip
    """The stream ``stream_id`` of the console's model at ``status`` (created when absent, its consumers and
    shard figures replaced); with one consumer and one shard's figures (120 records in, 117 out, 3 failed,
    1.5 s behind) when ``running``."""
    from emrml.service.rows import Stream, StreamConsumer, StreamLease

    moment = time.time()
    with service.sessions() as session, session.begin():
        session.query(StreamLease).filter_by(stream_id=stream_id).delete()
        session.query(StreamConsumer).filter_by(stream_id=stream_id).delete()
        stream = session.get(Stream, stream_id)
        if stream is None:
            stream = Stream(
                id=stream_id, name=name, created_by="arn:aws:iam::000000000000:user/admin",
                created_at=moment, request="{}", ml_model_id=MODEL, input_uri="kinesis://clicks",
                output_uri="kinesis://scored", dead_letter_uri="", starting_position="TRIM_HORIZON",
                record_format="auto",
            )  # fmt: skip
            session.add(stream)
        stream.status, stream.message, stream.last_updated_at = status, message, moment
        if running:
            consumer = f"host:1:{stream_id}"
            session.add(
                StreamConsumer(
                    id=consumer, stream_id=stream_id, host="host", pid=1, started_at=moment,
                    heartbeat_at=moment, status="RUNNING", records_per_second=40.0,
                )
            )  # fmt: skip
            session.add(
                StreamLease(
                    stream_id=stream_id, shard_id="shardId-000000000000", parents="[]", counter=3,
                    owner=consumer, owner_switches=0, records_in=120, records_out=117,
                    records_failed=3, millis_behind_latest=1500,
                )
            )  # fmt: skip


def remove_streams(service: EmrML, *stream_ids: str) -> None:
    """Remove the streams ``put_stream`` wrote, their consumers and shard figures."""
    from emrml.service.rows import Stream, StreamConsumer, StreamLease

    with service.sessions() as session, session.begin():
        for table, column in (
            (StreamLease, StreamLease.stream_id),
            (StreamConsumer, StreamConsumer.stream_id),
        ):
            session.query(table).filter(column.in_(stream_ids)).delete()
        session.query(Stream).filter(Stream.id.in_(stream_ids)).delete()
