"""The service tests run on every supported metastore: SQLite, PostgreSQL and MariaDB.

The other suites stay on SQLite and PostgreSQL (tests/conftest.py): the service layer is where the
metastore is used, and one more database for every web or CLI test would only add CI time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metastores import empty_metastore


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def metastore_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from empty_metastore(request.param, tmp_path)
