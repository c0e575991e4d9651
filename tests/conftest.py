"""Shared fixtures: the real datasets beside the checkout, and an app on each supported metastore."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

from emrml.config import Settings
from emrml.service.app import EmrML
from metastores import Templates
from s3_server import S3, S3Server

#: Under CI a skipped test fails the run (tests/require_all.py); the Spark engine's tests share one process
#: of pytest-xdist, as do the tests of each module with a fixture of module scope (tests/xdist_groups.py).
pytest_plugins = ["require_all", "xdist_groups", "pytester"]

# S3 requests go to the loopback test server only, signed with throwaway credentials: set before any job
# process (forked from a server started later) copies the environment, and so no real account is ever used.
# A client given no endpoint (settings without s3_endpoint_url) meets a closed loopback port, never AWS.
os.environ.update(
    AWS_ENDPOINT_URL="http://127.0.0.1:9",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
)

# Every Spark driver JVM the tests start (the session's, job workers', drivers run as subprocesses), and
# spark-submit's launcher JVM before it, compiles with C1 only: their start's CPU time about halves (7 s
# instead of 14 s here), and the tests' short jobs never repay C2's compilation. Set before any job process
# or driver subprocess copies the environment; spark-submit adds them to the JVMs' command lines silently.
for _variable in ("SPARK_SUBMIT_OPTS", "SPARK_LAUNCHER_OPTS"):
    os.environ.setdefault(_variable, "-XX:TieredStopAtLevel=1")

# Hypothesis times each example (its 200 ms deadline) and each draw (the too_slow health check) by the wall
# clock: on two cores shared with Spark's JVMs and the other pytest process, an example or a draw paused for a
# second failed a correct test (FailedHealthCheck, DeadlineExceeded). The examples tried are the same.
hypothesis.settings.register_profile(
    "emrml", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("emrml")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def no_log_handler_left_behind() -> Iterator[None]:
    """A test leaves emrml's loggers with the handlers it found. ``emrml serve`` run in the test's process
    (CliRunner) adds handlers on stderr, which is the runner's capture there, closed after the command: a
    server thread of a later test (the session's ``live_server``) that logs to them fails with "--- Logging
    error ---" (I/O operation on closed file), and the access log stops reaching caplog."""
    loggers = [logging.getLogger(name) for name in ("emrml", "emrml.access")]
    found = [list(logger.handlers) for logger in loggers]
    yield
    left = [(logger.name, handler) for logger, before in zip(loggers, found, strict=True) for handler in
            logger.handlers if handler not in before]  # fmt: skip
    assert not left, f"handlers left on emrml's loggers (monkeypatch access_log.configure_logging): {left}"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"the shared datasets are not beside the checkout ({SHARED_DATASETS})")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def metastore_templates() -> Iterator[Templates]:
    templates = Templates()
    yield templates
    templates.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def metastore_url(
    request: pytest.FixtureRequest, tmp_path: Path, metastore_templates: Templates
) -> Iterator[str]:
    """A new metastore at the current schema on SQLite and on PostgreSQL (tests/service adds MariaDB);
    tests of the migrations themselves start from ``metastores.empty_metastore``."""
    yield from metastore_templates.new_metastore(request.param, tmp_path)


@pytest.fixture
def settings(tmp_path: Path, metastore_url: str) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", metastore_url=metastore_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[EmrML]:
    application = EmrML(settings)
    yield application
    application.close()


@pytest.fixture
def sqlite_app(tmp_path: Path, metastore_templates: Templates) -> Iterator[EmrML]:
    """An app on SQLite only (its home's own metastore.db, at the current schema), for slow end-to-end
    flows whose metastore use the other tests cover."""
    home = metastore_templates.sqlite_home(tmp_path / "home")
    settings = Settings.load(environ={}, home=home)
    application = EmrML(settings)
    yield application
    application.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 API on a loopback port, shared by the session (tests use buckets of their own)."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server, tmp_path: Path) -> Iterator[S3]:
    """A new bucket; emrml's storage layer is configured for the test server while the test runs."""
    import boto3

    from emrml.storage.locations import configure

    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    bucket = f"emrml-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    settings = Settings.load(environ={}, home=tmp_path / "home", s3_endpoint_url=s3_server.endpoint_url)
    configure(settings)
    yield S3(s3_server.endpoint_url, bucket, client, settings)
    configure(Settings.load(environ={}, home=tmp_path / "home"))


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One Spark application (``local[2]``) for the whole test session: a JVM starts in 10–30 s here."""
    import shutil

    if shutil.which("java") is None:
        pytest.skip("Java is not installed: the Spark engine's tests need a Java 17 runtime")
    from emrml.engine.spark import session

    settings = Settings.load(environ={}, home=tmp_path_factory.mktemp("spark-home"), engine="spark")
    yield session.spark_session(settings)
    session.stop()
