"""Describe* sorted or filtered by a text column, on a metastore of 50,000 objects of each kind.

Run by hand from the repository root, with the machine's MariaDB (127.0.0.1:3306, root) and PostgreSQL
(127.0.0.1:5432, trust) up: ``uv run python bench/describe.py [--rows N] [--repeat K] [--explain]``. It
migrates a throwaway database on each server (and a SQLite file), inserts the rows directly, runs ANALYZE,
and drops the databases at the end.

For each metastore and request: the median latency of the first page (Limit 100) and of a later page (the
NextToken of the 21st page), through ``EmrML.call`` in process, as the root (no visibility condition). With
``--explain``, each query's plan as the database gives it."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event, insert

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.rows import DataSource, MLModel

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/"
ACCOUNT = "000000000000"
USERS = 7  # the objects' creators

#: (label, operation, request): each sorts by a text column, or filters on one.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("DS default", "DescribeDataSources", {}),
    ("DS Name asc", "DescribeDataSources", {"FilterVariable": "Name"}),
    ("DS Name dsc", "DescribeDataSources", {"FilterVariable": "Name", "SortOrder": "dsc"}),
    ("DS Name Prefix", "DescribeDataSources", {"FilterVariable": "Name", "Prefix": "name-01"}),
    ("DS Name GE", "DescribeDataSources", {"FilterVariable": "Name", "GE": "name-02"}),
    ("DS Location asc", "DescribeDataSources", {"FilterVariable": "DataLocationS3"}),
    (
        "DS Location Prefix",
        "DescribeDataSources",
        {"FilterVariable": "DataLocationS3", "Prefix": "s3://b/x/01"},
    ),
    ("Model URI asc", "DescribeMLModels", {"FilterVariable": "TrainingDataURI"}),
    ("Model URI dsc", "DescribeMLModels", {"FilterVariable": "TrainingDataURI", "SortOrder": "dsc"}),
]


def _rows(count: int, kind: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(count):
        # Names repeat (ties go by id), some are missing or "", some differ by case only.
        name = (
            None
            if i % 97 == 0
            else ""
            if i % 89 == 0
            else f"{'N' if i % 5 == 0 else 'n'}ame-{i % 30_000:05d}"
        )
        row: dict[str, Any] = {
            "id": f"{kind}-{i * 7919 % 1_000_003:07d}",  # unique, not in insertion order
            "name": name,
            "status": "DELETED" if i % 50 == 0 else "COMPLETED",
            "created_by": f"arn:aws:iam::{ACCOUNT}:user/u{i % USERS}",
            "created_at": 1_700_000_000.0 + i,
            "last_updated_at": 1_700_000_000.0 + i,
            "request": "{}",
        }
        location = f"s3://b/x/{i % 40_000:06d}.csv"
        if kind == "ds":
            row.update(data_location=location, compute_statistics=False)
        else:
            row.update(
                input_data_location=None if i % 101 == 0 else location,
                model_type="BINARY",
                training_data_source_id=f"ds-{i}",
                training_parameters="{}",
            )
        rows.append(row)
    return rows


def fill(app: EmrML, count: int) -> None:
    engine = app.engine
    with engine.begin() as connection:
        for table, kind in ((DataSource, "ds"), (MLModel, "ml")):
            rows = _rows(count, kind)
            for start in range(0, count, 5000):
                connection.execute(insert(table), rows[start : start + 5000])
    with engine.begin() as connection:
        for table in ("data_sources", "ml_models"):
            mysql = engine.dialect.name in ("mysql", "mariadb")
            connection.exec_driver_sql(f"ANALYZE TABLE {table}" if mysql else f"ANALYZE {table}")


@contextmanager
def statements(engine: sqlalchemy.Engine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cu: Any, statement: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "LIMIT" in statement.upper():
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain(app: EmrML, operation: str, request: dict[str, Any]) -> str:
    with statements(app.engine) as seen:
        app.call(operation, request)
    prefix = "EXPLAIN QUERY PLAN" if app.engine.dialect.name == "sqlite" else "EXPLAIN"
    lines = []
    with app.engine.connect() as connection:
        for statement, parameters in seen:  # MySQL's and MariaDB's two queries, the others' one
            rows = connection.exec_driver_sql(f"{prefix} {statement}", parameters).all()
            lines += ["    " + " | ".join(map(str, row)) for row in rows]
    return "\n".join(lines)


def middle_token(app: EmrML, operation: str, request: dict[str, Any], count: int) -> str:
    """A NextToken of a page ending about the middle of the listing (one query of Limit count/2)."""
    token = app.call(operation, {**request, "Limit": 100})["NextToken"]
    for _ in range(count // 200):
        token = app.call(operation, {**request, "Limit": 100, "NextToken": token}).get("NextToken") or token
    return token


def timed(app: EmrML, operation: str, request: dict[str, Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        app.call(operation, request)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def run(kind: str, url: str, home: Path, count: int, repeat: int, show_plans: bool) -> None:
    app = EmrML(Settings.load(environ={}, home=home, metastore_url=url))
    try:
        start = time.perf_counter()
        fill(app, count)
        print(f"## {kind}: {count} datasources and models inserted in {time.perf_counter() - start:.1f} s")
        for label, operation, request in REQUESTS:
            first = timed(app, operation, {**request, "Limit": 100}, repeat)
            token = middle_token(app, operation, request, min(count, 4000))
            later = timed(app, operation, {**request, "Limit": 100, "NextToken": token}, repeat)
            print(f"{label:<20} first {first:8.1f} ms   later {later:8.1f} ms")
            if show_plans:
                print(explain(app, operation, {**request, "Limit": 100}))
                print(explain(app, operation, {**request, "Limit": 100, "NextToken": token}))
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--only", choices=["sqlite", "postgresql", "mariadb"], action="append")
    arguments = parser.parse_args()
    kinds = arguments.only or ["sqlite", "postgresql", "mariadb"]
    count, repeat, show = arguments.rows, arguments.repeat, arguments.explain
    with tempfile.TemporaryDirectory() as folder:
        for kind in kinds:
            name = f"emrml_bench_{uuid.uuid4().hex[:12]}"
            home = Path(folder) / kind
            if kind == "sqlite":
                run(
                    kind,
                    f"sqlite:///{folder}/metastore.db",
                    home,
                    arguments.rows,
                    arguments.repeat,
                    arguments.explain,
                )
                continue
            admin_url = POSTGRES if kind == "postgresql" else MARIADB
            admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {name}")
            try:
                url = admin_url.rsplit("/", 1)[0] + f"/{name}"
                run(kind, url, home, count, repeat, show)
            finally:
                with admin.connect() as connection:
                    force = " WITH (FORCE)" if kind == "postgresql" else ""
                    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
                admin.dispose()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
