"""Console pages: server time per page with 10,000 datasources and models in the metastore against 10.

Run by hand from the repository root (not part of the tests)::

    uv run python bench/console.py                # SQLite and PostgreSQL; writes its bench/README.md section
    uv run python bench/console.py --requests 50 --no-readme

For each metastore (SQLite in a temporary home; PostgreSQL in a throwaway database on 127.0.0.1:5432) two
installations are filled directly in the database — one with 10 datasources and 10 models, one with 10,000
of each — and the console's list pages (first page, a later page through ``NextToken``, a name-prefix
filter) and the home page are requested ``--requests`` times each through the ASGI app in this process,
logged in, interleaving the two sizes. Server time is the time to the whole response; the table gives the
median and p95 of each and the ratio of the p95s (the target: at most 1.5, paging in the database).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, insert, text

from common import load_average, machine_report, write_readme_section
from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.identity import Identities
from emrml.service.logins import Logins
from emrml.service.rows import DataSource, MLModel
from emrml.web.server import create_app

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password"


def fill(service: EmrML, count: int) -> None:
    """``count`` COMPLETED datasources and models, inserted in bulk (what the list pages read)."""
    now = time.time()
    common = {
        "status": "COMPLETED",
        "created_by": "arn:aws:iam::000000000000:root",
        "request": "{}",
        "progress": 1.0,
        "attempts": 1,
        "last_updated_at": now,
    }
    sources = [
        {
            **common,
            "id": f"ds-{i:06d}",
            "name": f"datasource {i:06d}",
            "created_at": now - i,
            "data_location": f"/data/file-{i}.csv",
            "compute_statistics": True,
        }
        for i in range(count)
    ]
    models = [
        {
            **common,
            "id": f"ml-{i:06d}",
            "name": f"model {i:06d}",
            "created_at": now - i,
            "model_type": "BINARY",
            "training_data_source_id": f"ds-{i:06d}",
            "training_parameters": "{}",
            "endpoint_status": "NONE",
            "peak_requests_per_second": 0,
        }
        for i in range(count)
    ]
    with service.engine.begin() as connection:
        for table, rows in ((DataSource.__table__, sources), (MLModel.__table__, models)):
            for start in range(0, len(rows), 2000):
                connection.execute(insert(table), rows[start : start + 2000])


@contextmanager
def installation(kind: str, count: int) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory() as home:
        url = ""
        if kind == "postgresql":
            name = f"emrml_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        service = EmrML(Settings.load(environ={}, home=Path(home), metastore_url=url))
        try:
            # An admin sees every object the pages list (a "users" member would see none of them).
            Identities(service.sessions, Path(home)).create_user("bench", ("admins",))
            Logins(service.sessions).set_password("bench", PASSWORD)
            fill(service, count)
            with TestClient(create_app(service), follow_redirects=False) as client:
                page = client.get("/console/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                client.post(
                    "/console/login", data={"csrf_token": token, "username": "bench", "password": PASSWORD}
                )
                yield client
        finally:
            service.close()
            if url:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))


def pages(client: Any) -> dict[str, str]:
    token = client.get("/console/datasources?format=json").json()["NextToken"]
    return {
        "home": "/console/",
        "datasources": "/console/datasources",
        "datasources, page 2": f"/console/datasources?token={token}",
        "models": "/console/models",
        "models by name prefix": "/console/models?prefix=model%2000000",
    }


def measure(kind: str, requests: int) -> list[str]:
    rows = []
    with installation(kind, 10) as small, installation(kind, 10_000) as large:
        paths = {size: pages(client) for size, client in (("small", small), ("large", large))}
        for name in paths["small"]:
            times: dict[str, list[float]] = {"small": [], "large": []}
            for _ in range(requests):
                for size, client in (("small", small), ("large", large)):
                    started = time.perf_counter()
                    response = client.get(paths[size][name])
                    times[size].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text[:300]
            small_p95, large_p95 = (float(np.percentile(times[s], 95)) * 1000 for s in ("small", "large"))
            rows.append(
                f"| {kind} | {name} | {np.median(times['small']) * 1000:.1f} | {small_p95:.1f} | "
                f"{np.median(times['large']) * 1000:.1f} | {large_p95:.1f} | {large_p95 / small_p95:.2f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--metastores", default="sqlite,postgresql")
    parser.add_argument("--no-readme", action="store_true")
    arguments = parser.parse_args()
    load_before = load_average()
    rows = []
    for kind in arguments.metastores.split(","):
        rows += measure(kind, arguments.requests)
        print("\n".join(rows[-5:]), flush=True)
    body = "\n".join(
        [
            f"Server time per console page (ms), {arguments.requests} requests each, 10 against 10,000 "
            "datasources and models; load average before "
            f"{load_before}, after {load_average()}. Target: p95 ratio ≤ 1.5.",
            "",
            "| metastore | page | 10: median | 10: p95 | 10,000: median | 10,000: p95 | p95 ratio |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            machine_report(),
        ]
    )
    print(body)
    if not arguments.no_readme:
        write_readme_section("console", body)


if __name__ == "__main__":
    main()
