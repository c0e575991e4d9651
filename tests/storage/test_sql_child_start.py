"""The process reading a MySQL query (``storage.sql_child``) starts for every MySQL read: it imports what the
read needs (the driver, Arrow, the error messages of ``storage.sql_errors``), not ``storage.sql`` and what
that pulls (TLS, the watcher's module, subprocess handling), some 0.06 s of every read's start.

As tests/test_startup.py, it lists the modules the child imports with Python's import-time profile, here
given to the very child a read starts (``PYTHONPROFILEIMPORTTIME``), whose stderr the reader copies to its
own."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from emrml.storage import sql, sql_watch
from metastores import MARIADB_ADMIN

#: What the child has no use for.
UNNEEDED = ("emrml.storage.sql", "emrml.storage.sql_watch", "ssl", "subprocess")


def _admin_source() -> sql.SqlSource:
    """The test server's administrator on its ``mysql`` database: a read needs no table of its own."""
    admin = make_url(MARIADB_ADMIN)
    url = f"mysql://{admin.host}:{admin.port}"
    return sql.resolve({"maria": url}, "RDS", "maria", "mysql", admin.username or "", admin.password or "")


def test_the_process_reading_a_mysql_query_imports_only_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    started: list[str] = []
    start_module = sql_watch.start_module

    def profiled(module: str, **options: Any) -> subprocess.Popen[bytes]:
        if module != "emrml.storage.sql_child":  # the watcher
            return start_module(module, **options)
        started.append(module)
        with monkeypatch.context() as environment:
            environment.setenv("PYTHONPROFILEIMPORTTIME", "1")
            return start_module(module, **options)

    monkeypatch.setattr(sql_watch, "start_module", profiled)
    with sql.read_query(_admin_source(), "SELECT 7 AS seven") as reader:
        assert reader.read_all().to_pylist() == [{"seven": 7}]
    assert started == ["emrml.storage.sql_child"]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {"connectorx", "pyarrow"} <= imported  # the profile is the reading child's
    assert imported & set(UNNEEDED) == set()
    assert "PYTHONPROFILEIMPORTTIME" not in os.environ
