"""The databases the RDS and Redshift datasource tests read (a million rows on the machine's MariaDB and
PostgreSQL servers), the datasources created from them, and what those stage."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy

from emrml.service.app import EmrML
from metastores import MARIADB_ADMIN, POSTGRES_ADMIN

ROWS = 1_000_000
PASSWORD = "sql-datasource-test-1"
RDS = "test-mariadb"
REDSHIFT = "test-postgres"


# One row per number n: every type an ML datasource needs, from expressions both servers understand.
_COLUMNS = """
    n AS id,
    18 + MOD(n, 60) AS age,
    MOD(n * 37, 1000) * 12.5 AS income,
    CASE MOD(n, 4) WHEN 0 THEN 'red' WHEN 1 THEN 'green' WHEN 2 THEN 'blue' ELSE 'amber' END AS colour,
    CONCAT('note ', MOD(n, 13), ' about client ', MOD(n, 101), ' ', MOD(n, 7)) AS note,
    MOD(n, 3) = 0 AS churned
"""


@dataclass
class Databases:
    name: str
    mariadb_user: str

    def count(self, engine_url: str, table: str) -> int:
        engine = sqlalchemy.create_engine(engine_url)
        try:
            with engine.connect() as connection:
                return connection.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar_one()
        finally:
            engine.dispose()

    @property
    def mariadb(self) -> str:
        return f"{MARIADB_ADMIN}{self.name}"

    @property
    def postgres(self) -> str:
        return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{self.name}"


def create_mariadb_database(name: str, user: str) -> None:
    admin = sqlalchemy.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        run = connection.exec_driver_sql
        run(f"CREATE DATABASE {name}")
        # Every privilege on its database: only the read-only transaction keeps the queries from writing.
        run(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        run(f"GRANT ALL PRIVILEGES ON {name}.* TO '{user}'@'127.0.0.1'")
        run(f"USE {name}")
        run(
            "CREATE TABLE customers (id INT PRIMARY KEY, age INT, income DOUBLE, colour VARCHAR(10), "
            "note TEXT, churned BOOLEAN)"
        )
        run(f"INSERT INTO customers SELECT {_COLUMNS} FROM (SELECT seq AS n FROM seq_1_to_{ROWS}) AS numbers")
        run("CREATE TABLE files (id INT, payload BLOB)")
        run("INSERT INTO files VALUES (1, 'abc')")
        run("CREATE TABLE flags (id INT, active BIT(1))")
        run("INSERT INTO flags VALUES (1, b'1'), (2, b'0'), (3, b'1'), (4, NULL)")
        run("CREATE TABLE audit (id INT)")
        run(
            "CREATE FUNCTION touch() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO audit VALUES (1); "
            "RETURN 1; END"
        )
    admin.dispose()


def create_postgres_database(name: str) -> None:
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    engine = sqlalchemy.create_engine(
        POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}", isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        run = connection.exec_driver_sql
        run(
            "CREATE TABLE customers (id INT PRIMARY KEY, age INT, income DOUBLE PRECISION, "
            "colour VARCHAR(10), note TEXT, churned BOOLEAN)"
        )
        run(f"INSERT INTO customers SELECT {_COLUMNS} FROM generate_series(1, {ROWS}) AS n")
        run("CREATE TABLE files (id INT, payload BYTEA)")
        run("INSERT INTO files VALUES (1, 'abc')")
    engine.dispose()


def from_rds(
    app: EmrML, databases: Databases, staging: Path, entity_id: str, query: str, **options: Any
) -> dict[str, Any]:
    spec = {
        "DatabaseInformation": {
            "InstanceIdentifier": options.pop("instance", RDS),
            "DatabaseName": databases.name,
        },
        "SelectSqlQuery": query,
        "DatabaseCredentials": {
            "Username": databases.mariadb_user,
            "Password": options.pop("password", PASSWORD),
        },
        "S3StagingLocation": f"{staging}/",
        "ResourceRole": "DataPipelineDefaultResourceRole",
        "ServiceRole": "DataPipelineDefaultRole",
        "SubnetId": "subnet-1",
        "SecurityGroupIds": ["sg-1"],
        **options,
    }
    request = {"DataSourceId": entity_id, "RDSData": spec, "RoleARN": "arn:aws:iam::000000000000:role/ml"}
    app.call("CreateDataSourceFromRDS", {**request, "ComputeStatistics": True})
    return app.wait("DataSource", entity_id)


def from_redshift(
    app: EmrML, databases: Databases, staging: Path, entity_id: str, query: str, **options: Any
) -> dict[str, Any]:
    spec = {
        "DatabaseInformation": {
            "ClusterIdentifier": options.pop("cluster", REDSHIFT),
            "DatabaseName": databases.name,
        },
        "SelectSqlQuery": query,
        "DatabaseCredentials": {"Username": options.pop("user", "postgres"), "Password": PASSWORD},
        "S3StagingLocation": f"{staging}/",
        **options,
    }
    request = {"DataSourceId": entity_id, "DataSpec": spec, "RoleARN": "arn:aws:iam::000000000000:role/ml"}
    app.call("CreateDataSourceFromRedshift", {**request, "ComputeStatistics": True})
    return app.wait("DataSource", entity_id)


def failed(app: EmrML, result: dict[str, Any], staging: Path) -> str:
    """The FAILED datasource's message, having checked that nothing was staged or returned secretly."""
    assert result["Status"] == "FAILED", result
    assert not staging.exists() or not any(staging.iterdir()), "a failed query left a staged file"
    verbose = app.call("GetDataSource", {"DataSourceId": result["DataSourceId"], "Verbose": True})
    assert PASSWORD not in json.dumps(verbose) and PASSWORD not in result["Message"]
    return result["Message"]


def check_staged_datasource(app: EmrML, result: dict[str, Any], staging: Path) -> None:
    assert result["Status"] == "COMPLETED", result
    assert result["TotalRecordCount"] == ROWS and result["InvalidRecordCount"] == 0
    staged = staging / f"{result['DataSourceId']}.csv.gz"
    assert result["DataLocationS3"] == str(staged)
    with gzip.open(staged, "rt") as text:
        assert text.readline().strip() == "id,age,income,colour,note,churned"
        first = next(csv.reader(text))
    assert first[:4] == ["1", "19", "462.5", "green"] and first[5] in ("false", "0")
    verbose = app.call("GetDataSource", {"DataSourceId": result["DataSourceId"], "Verbose": True})
    schema = json.loads(verbose["DataSourceSchema"])
    types = {a["attributeName"]: a["attributeType"] for a in schema["attributes"]}
    assert types == {
        "id": "NUMERIC",
        "age": "NUMERIC",
        "income": "NUMERIC",
        "colour": "CATEGORICAL",
        "note": "TEXT",
        "churned": "BINARY",
    }
    statistics = app.call("GetDataSourceStatistics", {"DataSourceId": result["DataSourceId"]})["Statistics"]
    by_name = {a["name"]: a for a in statistics["attributes"]}
    assert by_name["age"]["min"] == 18 and by_name["age"]["max"] == 77
    assert PASSWORD not in json.dumps(verbose)


def staged_rows(result: dict[str, Any]) -> list[list[str]]:
    with gzip.open(result["DataLocationS3"], "rt", newline="") as text:
        return list(csv.reader(text))


def attribute_types(app: EmrML, entity_id: str) -> dict[str, str]:
    verbose = app.call("GetDataSource", {"DataSourceId": entity_id, "Verbose": True})
    schema = json.loads(verbose["DataSourceSchema"])
    return {a["attributeName"]: a["attributeType"] for a in schema["attributes"]}
