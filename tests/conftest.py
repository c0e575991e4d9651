"""Shared fixtures: the real datasets beside the checkout, and an app on each supported metastore."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.service.app import EmrML

#: Under CI a skipped test fails the run (tests/require_all.py).
pytest_plugins = ["require_all", "pytester"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"the shared datasets are not beside the checkout ({SHARED_DATASETS})")
    return SHARED_DATASETS


def _postgres_database() -> Iterator[str]:
    import sqlalchemy

    name = f"emrml_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432: {exc.orig}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def metastore_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty metastore: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metastore.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path: Path, metastore_url: str) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", metastore_url=metastore_url)


@pytest.fixture
def app(settings: Settings) -> Iterator[EmrML]:
    application = EmrML(settings)
    yield application
    application.close()


@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[EmrML]:
    """An app on SQLite only, for slow end-to-end flows whose metastore use the other tests cover."""
    settings = Settings.load(environ={}, home=tmp_path / "home")
    application = EmrML(settings)
    yield application
    application.close()
