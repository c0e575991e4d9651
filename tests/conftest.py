"""Shared fixtures: the real datasets beside the checkout, and an app on each supported metastore."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.service.app import EmrML
from metastores import empty_metastore

#: Under CI a skipped test fails the run (tests/require_all.py).
pytest_plugins = ["require_all", "pytester"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"the shared datasets are not beside the checkout ({SHARED_DATASETS})")
    return SHARED_DATASETS


@pytest.fixture(params=["sqlite", "postgresql"])
def metastore_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty metastore on SQLite and on PostgreSQL (tests/service adds MariaDB)."""
    yield from empty_metastore(request.param, tmp_path)


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
