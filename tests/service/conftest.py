"""The service tests run on every supported metastore: SQLite, PostgreSQL and MariaDB.

The other suites stay on SQLite and PostgreSQL (tests/conftest.py): the service layer is where the
metastore is used, and one more database for every web or CLI test would only add CI time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_helpers import bank_times

from metastores import Templates


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def metastore_url(
    request: pytest.FixtureRequest, tmp_path: Path, metastore_templates: Templates
) -> Iterator[str]:
    yield from metastore_templates.new_metastore(request.param, tmp_path)


@pytest.fixture
def big_bank_csv(tmp_path: Path, shared_datasets: Path) -> Path:
    """The bank data 8 times over (~39 MB): long enough to kill a worker in the middle."""
    path = tmp_path / "bank-x8.csv"
    path.write_bytes(bank_times(shared_datasets, 8))
    return path
