"""A real emrml HTTP server on a free loopback port, shared by the web tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web_helpers import LiveServer

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.groups import ADMINS
from emrml.service.identity import Identities
from emrml.web.server import BackgroundServer, create_app, reserve_socket

#: The datasets the tests read (tests/conftest.py's ``shared_datasets``).
SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The API with SigV4 auth and up to 4 background jobs, as user ``tester``.

    Its data roots are the shared datasets and the tests' temporary folders (which hold its home: the
    home's own files stay refused all the same).
    """
    home = tmp_path_factory.mktemp("live-server")
    sock = reserve_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    roots = (SHARED_DATASETS, tmp_path_factory.getbasetemp())
    service = EmrML(Settings.load(environ={}, home=home, public_url=url, data_roots=roots))
    identities = Identities(service.sessions, home)
    identities.create_user("tester", groups=(ADMINS,))  # the API tests run as an administrator
    key = identities.create_key("tester")
    app = create_app(service, job_slots=4, credential_ttl_seconds=1.0)
    with BackgroundServer(app, sock) as server:
        assert server.url == url
        yield LiveServer(url, service, identities, key)
    service.close()
