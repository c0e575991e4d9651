"""The service tests run on every supported metastore: SQLite, PostgreSQL and MariaDB.

The other suites stay on SQLite and PostgreSQL (tests/conftest.py): the service layer is where the
metastore is used, and one more database for every web or CLI test would only add CI time.

The fixtures several test modules share live here too; the costly ones for the session, so that the
modules sharing them still build them once a process (trained models), or once a run (a database of a
million rows, which the pytest-xdist processes share).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from batch_helpers import csv_text, generated_rows, generated_schema, train_generated
from endpoints_helpers import BANK, Trained, create_datasource, train_small
from jobs_helpers import bank_times
from sql_helpers import (
    RDS,
    REDSHIFT,
    Databases,
    create_mariadb_database,
    create_postgres_database,
)

from emrml.config import Settings
from emrml.service.app import EmrML
from metastores import MARIADB_ADMIN, POSTGRES_ADMIN, Templates
from run_lock import run_lock


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


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """One SQLite installation with a BINARY, a MULTICLASS, a REGRESSION and (when the shared datasets are
    there) a bank-marketing model, all COMPLETED. For the session: the endpoint tests of several modules
    (test_endpoints_*.py) share it, and the bank model takes seconds to train; each test leaves no
    endpoint behind."""
    folder = tmp_path_factory.mktemp("endpoints")
    app = EmrML(Settings.load(environ={}, home=folder / "home"))
    train_small(app, folder, "binary")
    train_small(app, folder, "multiclass")
    train_small(app, folder, "regression", recipe='{"outputs": ["normalize(x)"]}')
    header = None
    if BANK.is_dir():
        create_datasource(app, "ds-bank", BANK / "data.csv", (BANK / "data.csv.schema").read_text())
        app.call(
            "CreateMLModel",
            {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"},
        )
        header = (BANK / "data.csv").open().readline().strip().split(",")
    app.jobs.run_pending()
    for model in app.call("DescribeMLModels", {})["Results"]:
        assert model["Status"] == "COMPLETED", model.get("Message")
    yield Trained(app, folder / "home", header)
    app.close()


@pytest.fixture
def endpoint(trained: Trained, request: pytest.FixtureRequest) -> Iterator[str]:
    """A READY endpoint on the model named by the test's parameter (default ml-binary), removed after."""
    model_id = getattr(request, "param", "ml-binary")
    trained.app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})
    yield model_id
    trained.app.call("DeleteRealtimeEndpoint", {"MLModelId": model_id})


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small model of each type trained on generated data. For the session (it was a module's): the
    batch prediction modules that score with them (test_batch_predictions_*.py) share them."""
    folder = tmp_path_factory.mktemp("batch-models")
    settings = Settings.load(environ={}, home=folder / "home")
    paths = {}
    for kind in ("BINARY", "MULTICLASS", "REGRESSION"):
        training = folder / f"train-{kind}.csv"
        training.write_text(csv_text(generated_rows(kind, 600, seed=1), generated_schema(kind).names))
        paths[kind] = train_generated(settings, kind, training, f"ml-{kind.lower()}")
    return paths


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    """A database on each server with a million rows, made once for the run: the RDS and Redshift
    datasource modules (test_sql_datasources_*.py) only read it, and filling it takes seconds, several
    times more when each pytest-xdist process filled its own at once. The first process to need it makes
    it, the last one done with it drops it (a count of its users beside the run's lock)."""
    with run_lock(tmp_path_factory, "sql-databases") as folder:
        users = folder / "sql-databases.json"
        if users.exists():
            shared = json.loads(users.read_text())
        else:
            suffix = uuid.uuid4().hex[:12]
            shared = {"name": f"emrmlsql{suffix}", "user": f"emrml_{suffix}", "users": 0}
            try:
                create_mariadb_database(shared["name"], shared["user"])
                create_postgres_database(shared["name"])
            except sqlalchemy.exc.OperationalError as exc:
                needed = "MariaDB (127.0.0.1:3306) and PostgreSQL (127.0.0.1:5432) are needed"
                pytest.skip(f"{needed}: {exc.orig}")
        shared["users"] += 1
        _write_json(users, shared)
    try:
        yield Databases(shared["name"], shared["user"])
    finally:
        with run_lock(tmp_path_factory, "sql-databases"):
            shared = json.loads(users.read_text())
            shared["users"] -= 1
            if shared["users"]:
                _write_json(users, shared)
            else:
                _drop_databases(shared["name"], shared["user"])
                users.unlink()


def _write_json(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value))
    partial.replace(path)


def _drop_databases(name: str, user: str) -> None:
    admin = sqlalchemy.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
    admin.dispose()
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def sql_app(tmp_path: Path) -> Iterator[EmrML]:
    connections = {RDS: "mysql://127.0.0.1:3306", REDSHIFT: "postgresql://127.0.0.1:5432"}
    application = EmrML(Settings.load(environ={}, home=tmp_path / "home", sql_connections=connections))
    yield application
    application.close()


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    return tmp_path / "staging"
