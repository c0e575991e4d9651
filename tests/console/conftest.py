"""The console on a real emrml: a home with users and a trained BINARY model, its app, a logged-in client,
and (for the browser tests) the server on a loopback port with Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import (
    AXE_PATH,
    BOB_PASSWORD,
    DATASOURCE,
    EVALUATION,
    MODEL,
    SESSION_COOKIE,
    Evaluations,
    Installation,
    Served,
    admin_signed_in,
)
from starlette.testclient import TestClient

from emrml.config import Settings
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML
from emrml.service.auth import ensure_admin
from emrml.service.identity import Identities
from emrml.service.logins import Logins, ensure_admin_password
from emrml.web.server import BackgroundServer, create_app, reserve_socket

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


def _split(complement: bool) -> str:
    splitting: dict[str, Any] = {
        "percentBegin": 0,
        "percentEnd": 70,
        "strategy": "random",
        "strategyParams": {"randomSeed": "console"},
    }
    if complement:
        splitting["complement"] = True
    return json.dumps({"splitting": splitting})


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """admin (password in the credentials file), bob (a user of his own), and a trained, evaluated model."""
    home = tmp_path_factory.mktemp("console-home")
    service = EmrML(Settings.load(environ={}, home=home))
    ensure_admin(Identities(service.sessions, home), home)
    ensure_admin_password(Logins(service.sessions), home)
    password = json.loads((home / "admin-credentials.json").read_text())["console_password"]
    Identities(service.sessions, home).create_user("bob")
    Logins(service.sessions).set_password("bob", BOB_PASSWORD)
    sample = write_bank_sample(home / "data" / "bank.csv", 2000)
    schema = bank_sample_schema().to_json()
    for source_id, rearrangement in ((DATASOURCE, _split(False)), (f"{DATASOURCE}-eval", _split(True))):
        spec = {"DataLocationS3": str(sample), "DataSchema": schema, "DataRearrangement": rearrangement}
        service.call(
            "CreateDataSourceFromS3",
            {
                "DataSourceId": source_id,
                "DataSourceName": "Bank " + source_id,
                "DataSpec": spec,
                "ComputeStatistics": True,
            },
        )
    service.call(
        "CreateMLModel",
        {
            "MLModelId": MODEL,
            "MLModelName": "Bank model",
            "MLModelType": "BINARY",
            "TrainingDataSourceId": DATASOURCE,
        },
    )
    service.call(
        "CreateEvaluation",
        {"EvaluationId": EVALUATION, "MLModelId": MODEL, "EvaluationDataSourceId": f"{DATASOURCE}-eval"},
    )
    service.wait("Evaluation", EVALUATION)
    yield Installation(service, home, password, sample)
    service.close()


@pytest.fixture(autouse=True)
def forgotten_login_failures(request: pytest.FixtureRequest) -> Iterator[None]:
    """Failed logins are counted in the metastore, which the tests of a session share: a test's failures
    must not throttle the next test's logins (the same users, from the same test client address)."""
    yield
    if "installation" in request.fixturenames:
        from sqlalchemy import delete

        from emrml.service.rows import LoginFailure

        sessions = request.getfixturevalue("installation").service.sessions
        with sessions() as session, session.begin():
            session.execute(delete(LoginFailure))


@pytest.fixture
def anonymous(installation: Installation) -> Iterator[Any]:
    with TestClient(create_app(installation.service), follow_redirects=False) as client:
        yield client


@pytest.fixture
def admin(anonymous: Any, installation: Installation) -> Any:
    """A client logged in as admin (in the session the tests share: the login form is the subject of the
    tests that log in through it)."""
    anonymous.cookies.set(SESSION_COOKIE, installation.admin_token(), path="/console/")
    return anonymous


def with_axe(app: Any, axe: bytes) -> Any:
    """``app``, and axe-core's script at ``AXE_PATH`` for the accessibility checks to load into a page.

    From the page's own origin, the console's Content-Security-Policy (``script-src 'self'``) lets it in
    unchanged; cached for good, a browser context fetches it once, where evaluating its text in each page
    sent its 550 KB through Playwright's protocol at every check (about 50 ms of CPU each).
    """
    headers = [
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"cache-control", b"public, max-age=86400, immutable"),
        (b"content-length", str(len(axe)).encode()),
    ]

    async def served_with_axe(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == AXE_PATH and scope["method"] == "GET":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": axe})
            return
        await app(scope, receive, send)

    return served_with_axe


@pytest.fixture(scope="session")
def served(installation: Installation) -> Iterator[Served]:
    sock = reserve_socket()
    app = create_app(installation.service, job_slots=2)
    if AXE.exists():
        app = with_axe(app, AXE.read_bytes())
    with BackgroundServer(app, sock) as server:
        yield Served(server.url, installation)


# Module scope: Playwright's sync API runs an asyncio loop in the main thread for as long as it is open, and
# later tests that call asyncio.run() must not find it running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()


#: The console's live pages (console.js) ask their JSON twin again 2 s after each answer. A page given this
#: script asks every 0.25 s instead: the tests of pages following the server's own state (jobs, streams,
#: an object's status until it ends, a scripted sequence of twins moved on by the test) wait for each
#: change a few rounds less.
QUICK_REFRESH = """(() => {
  const later = window.setTimeout.bind(window);
  window.setTimeout = (callback, delay, ...rest) => later(callback, delay === 2000 ? 250 : delay, ...rest);
})()"""


@pytest.fixture
def quick_refresh(page: Any) -> Any:
    """``page``, its live pages following their twins every 0.25 s rather than 2 s (``QUICK_REFRESH``)."""
    page.add_init_script(QUICK_REFRESH)
    return page


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed ({AXE}): npm ci --prefix tests/console")
    return AXE.read_text()


@pytest.fixture(scope="session")
def more_evaluations(installation: Installation, shared_datasets: Path) -> Evaluations:
    """A MULTICLASS model (wine quality) and a REGRESSION model (California housing), each evaluated."""
    service = installation.service
    made = {}
    for name, folder, model_type in (
        ("wine", "wine_quality", "MULTICLASS"),
        ("housing", "california_housing", "REGRESSION"),
    ):
        data = shared_datasets / folder / "data.csv"
        schema = (shared_datasets / folder / "data.csv.schema").read_text()
        for part, complement in (("train", False), ("eval", True)):
            spec = {
                "DataLocationS3": str(data),
                "DataSchema": schema,
                "DataRearrangement": _split(complement),
            }
            service.call(
                "CreateDataSourceFromS3",
                {
                    "DataSourceId": f"ds-{name}-{part}",
                    "DataSourceName": f"{name} {part}",
                    "DataSpec": spec,
                    "ComputeStatistics": True,
                },
            )
        service.call(
            "CreateMLModel",
            {
                "MLModelId": f"ml-{name}",
                "MLModelType": model_type,
                "TrainingDataSourceId": f"ds-{name}-train",
            },
        )
        service.call(
            "CreateEvaluation",
            {
                "EvaluationId": f"ev-{name}",
                "MLModelId": f"ml-{name}",
                "EvaluationDataSourceId": f"ds-{name}-eval",
            },
        )
        made[name] = f"ev-{name}"
    for evaluation_id in made.values():
        assert service.wait("Evaluation", evaluation_id)["Status"] == "COMPLETED"
    return Evaluations(made["wine"], made["housing"])


@pytest.fixture
def fresh_admin(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A client logged in as admin of a new home (no sample written yet), and the home."""
    home = tmp_path / "home"
    with admin_signed_in(home) as (_, client):
        yield client, home
