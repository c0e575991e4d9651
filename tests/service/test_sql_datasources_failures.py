"""RDS and Redshift datasources against the MariaDB and PostgreSQL servers of the machine that fail or
stop: every failure (a bad query, wrong credentials, credentials in a connection setting) leaves a
FAILED datasource with a clear message, no staged file, and the database as it was; passwords are
encrypted at rest; a stopping server ends its query and queues the job again."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import pytest
import sqlalchemy
from sql_helpers import PASSWORD, RDS, REDSHIFT, ROWS, Databases, failed, from_rds, from_redshift

from emrml.config import Settings
from emrml.errors import IdempotentParameterMismatchException
from emrml.service.app import EmrML
from emrml.service.rows import DataSource
from metastores import MARIADB_ADMIN, POSTGRES_ADMIN


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "SELECT * FROM no_such_table",
            r"SelectSqlQuery failed on RDS instance 'test-mariadb'.*doesn't exist",
        ),
        ("SELECT id FROM customers WHERE id < 0", "SelectSqlQuery returned no rows"),
        ("DELETE FROM customers", r"SelectSqlQuery must be a SELECT statement \(it starts with 'DELETE'\)"),
        ("SELECT touch() AS t", "READ ONLY transaction"),
        ("SELECT * FROM files", "column 'payload' holds bytes .*which no Amazon ML attribute type holds"),
        # BIT(1) reads as bytes too; CAST(... AS CHAR) would stage its 1 as the control character 0x01.
        ("SELECT * FROM flags", r"column 'active' holds bytes \(a MySQL BIT.*CAST\(`active` AS UNSIGNED\)"),
        ("SELECT id, id FROM customers", "two columns named 'id'"),
        # Values and types the driver cannot read fail with what to do about it, not only the driver's words.
        (
            "SELECT CAST('100:00:00' AS TIME) AS duration",
            r"cannot read, such as a zero date or a TIME outside .*CAST\(\.\.\. AS CHAR\)",
        ),
        ("SELECT NULL AS nothing", r"column 'nothing' holds NULL literals.*CAST\(NULL AS CHAR\) "),
        # The driver failed with its Rust stack trace in the message, and no word of what to do.
        (
            "SELECT CAST(12345678901234567890.5 AS DECIMAL(30, 2)) AS balance",
            r"DECIMAL value with more than 18 digits before the decimal point.*CAST\(\.\.\. AS DOUBLE\)\)$",
        ),
    ],
)
def test_bad_queries_on_mariadb_fail_the_datasource(
    sql_app: EmrML, databases: Databases, staging: Path, query: str, expected: str
) -> None:
    message = failed(sql_app, from_rds(sql_app, databases, staging, "rds-bad", query), staging)
    assert re.search(expected, message), message
    assert "backtrace" not in message.lower()
    assert databases.count(databases.mariadb, "customers") == ROWS
    assert databases.count(databases.mariadb, "audit") == 0


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "SELECT * FROM no_such_table",
            r"SelectSqlQuery failed on Redshift cluster 'test-postgres'.*does not exist",
        ),
        ("SELECT id FROM customers WHERE id < 0", "SelectSqlQuery returned no rows"),
        ("  -- clean up\n  DROP TABLE customers", r"must be a SELECT statement \(it starts with 'DROP'\)"),
        (
            "WITH gone AS (DELETE FROM customers WHERE id = 1 RETURNING id) SELECT * FROM gone",
            "cannot execute SELECT in a read-only transaction",
        ),
        ("SELECT * FROM files", "column 'payload' has SQL type bytea"),
        # CAST(... AS CHAR) would be CHAR(1) there: the conversion offered is PostgreSQL's own.
        ("SELECT '1 day'::interval AS wait", r"column 'wait' has SQL type interval.*CAST\(\.\.\. AS TEXT\)"),
        ("SELECT '10.0.0.1'::inet AS address", "column 'address' has SQL type inet"),
        # money arrives as a whole number of cents: 12.34 would have been staged as 1234.
        ("SELECT 12.34::money AS price", r"column 'price' has SQL type money.*price::numeric"),
        # It made a datasource, and then every model on it was refused for a DataSchema never given.
        (
            "SELECT " + ", ".join(f"age AS c{i}" for i in range(1_001)) + " FROM customers WHERE id <= 10",
            "SelectSqlQuery returns 1,001 columns; a datasource has at most 1,000 attributes",
        ),
    ],
)
def test_bad_queries_on_postgresql_fail_the_datasource(
    sql_app: EmrML, databases: Databases, staging: Path, query: str, expected: str
) -> None:
    message = failed(sql_app, from_redshift(sql_app, databases, staging, "redshift-bad", query), staging)
    assert re.search(expected, message), message
    assert databases.count(databases.postgres, "customers") == ROWS


def test_wrong_credentials_and_unknown_identifiers_fail_the_datasource(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    query = "SELECT * FROM customers"
    wrong = failed(
        sql_app, from_rds(sql_app, databases, staging, "rds-pw", query, password="not-the-password"), staging
    )
    assert "cannot connect to RDS instance 'test-mariadb'" in wrong and "Access denied" in wrong
    assert "not-the-password" not in wrong
    # PostgreSQL here trusts local connections: an unknown role is what it refuses.
    nobody = failed(
        sql_app, from_redshift(sql_app, databases, staging, "redshift-user", query, user="nobody"), staging
    )
    assert (
        "cannot connect to Redshift cluster 'test-postgres'" in nobody and '"nobody" does not exist' in nobody
    )
    unknown = failed(
        sql_app, from_rds(sql_app, databases, staging, "rds-unknown", query, instance="elsewhere"), staging
    )
    assert "InstanceIdentifier 'elsewhere' is not a configured connection" in unknown
    assert "sql_connections" in unknown


def test_a_connection_setting_holding_credentials_is_refused_without_showing_them(
    databases: Databases, staging: Path, tmp_path: Path
) -> None:
    # The URL was shown in every message about the connection: a password written into the setting was
    # told to every user whose datasource failed on it (and the driver's URL had two sets of credentials).
    connections = {REDSHIFT: "postgresql://postgres:setting-secret-7@127.0.0.1:5432"}
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home", sql_connections=connections))
    try:
        result = from_redshift(app, databases, staging, "redshift-url", "SELECT * FROM no_such_table")
        message = failed(app, result, staging)
    finally:
        app.close()
    assert "setting-secret-7" not in message
    assert f"setting sql_connections['{REDSHIFT}'] holds a user name or password" in message


def test_passwords_are_encrypted_at_rest_and_a_retry_is_still_safe(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    query = "SELECT age, colour FROM customers WHERE id <= 100"
    rds = from_rds(sql_app, databases, staging, "rds-sealed", query)
    redshift = from_redshift(sql_app, databases, staging, "redshift-sealed", query)
    # The jobs decrypted the password: both queries ran.
    assert rds["Status"] == redshift["Status"] == "COMPLETED", (rds, redshift)
    home = sql_app.settings.home
    stored = b"".join(path.read_bytes() for path in home.glob("metastore.db*"))
    assert PASSWORD.encode() not in stored
    with sql_app.sessions() as session:
        for entity_id in ("rds-sealed", "redshift-sealed"):
            row = session.get(DataSource, entity_id)
            assert PASSWORD not in row.request and "hmac-sha256:" in row.request
            assert row.database_password and PASSWORD not in row.database_password
    for entity_id in ("rds-sealed", "redshift-sealed"):
        described = sql_app.call("GetDataSource", {"DataSourceId": entity_id, "Verbose": True})
        assert PASSWORD not in json.dumps(described)
    # The same request again is a safe retry; another password is another request.
    assert from_rds(sql_app, databases, staging, "rds-sealed", query)["CreatedAt"] == rds["CreatedAt"]
    with pytest.raises(IdempotentParameterMismatchException):
        from_rds(sql_app, databases, staging, "rds-sealed", query, password="another-password")


def _stopped_with_its_server(app: EmrML, entity_id: str, running: Callable[[], list[int]]) -> None:
    """Run the queued datasource's job on a thread, as a server on the Spark engine does, and stop the
    server's jobs once its query (``running`` lists it) runs: the query ends, and the job, its read ended by
    the stop, is queued again, not FAILED."""
    app.jobs.in_process = True
    runner = threading.Thread(target=app.jobs.run_if_queued, args=("DataSource", entity_id), daemon=True)
    runner.start()
    while not running():
        assert runner.is_alive(), app.call("GetDataSource", {"DataSourceId": entity_id})
        time.sleep(0.1)
    assert app.jobs.interrupt() == [("DataSource", entity_id)]
    for _ in range(100):  # a loaded machine is slow
        if not running():
            break
        time.sleep(0.1)
    assert running() == []
    runner.join(30)
    assert not runner.is_alive()
    queued = app.call("GetDataSource", {"DataSourceId": entity_id})
    assert queued["Status"] == "PENDING" and "will run again" in queued["Message"]


def test_a_stopping_server_ends_its_threads_query_and_queues_the_job_again(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    """A server on the Spark engine runs jobs on its threads, which it asks to stop as it stops: a MySQL
    query that sends nothing while it works gave the job no progress point to stop at, and ran on beside the
    server. The stop ends it, and the job, its read ended by the stop, is queued again, not FAILED."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    query = f"SELECT (SELECT SUM(CRC32(seq)) FROM seq_1_to_100000000000) AS {marker}"
    spec = {
        "DatabaseInformation": {"InstanceIdentifier": RDS, "DatabaseName": databases.name},
        "SelectSqlQuery": query,
        "DatabaseCredentials": {"Username": databases.mariadb_user, "Password": PASSWORD},
        "S3StagingLocation": f"{staging}/",
        "ResourceRole": "r",
        "ServiceRole": "s",
        "SubnetId": "subnet-1",
        "SecurityGroupIds": ["sg-1"],
    }
    request = {"DataSourceId": "ds-long", "RDSData": spec, "RoleARN": "arn:aws:iam::000000000000:role/ml"}
    sql_app.call("CreateDataSourceFromRDS", request)
    admin = sqlalchemy.create_engine(MARIADB_ADMIN)

    def running() -> list[int]:
        with admin.connect() as connection:
            listing = (
                "SELECT id FROM information_schema.processlist WHERE instr(info, %s) > 0 "
                "AND id <> connection_id()"
            )
            return [row[0] for row in connection.exec_driver_sql(listing, (marker,))]

    try:
        _stopped_with_its_server(sql_app, "ds-long", running)
    finally:
        with admin.connect() as connection:
            for connection_id in running():
                with suppress(sqlalchemy.exc.DBAPIError):
                    connection.exec_driver_sql(f"KILL {int(connection_id)}")
        admin.dispose()


def test_a_stopping_server_cancels_its_threads_postgresql_query_and_queues_the_job_again(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    """The same of a Redshift datasource: its stop did not reach the query, which only the death of its
    process ended (PostgreSQL checks its client), and a server's thread does not die."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    spec = {
        "DatabaseInformation": {"ClusterIdentifier": REDSHIFT, "DatabaseName": databases.name},
        "SelectSqlQuery": f"SELECT 1 AS {marker} FROM pg_sleep(600)",
        "DatabaseCredentials": {"Username": "postgres", "Password": PASSWORD},
        "S3StagingLocation": f"{staging}/",
    }
    request = {"DataSourceId": "ds-long", "DataSpec": spec, "RoleARN": "arn:aws:iam::000000000000:role/ml"}
    sql_app.call("CreateDataSourceFromRedshift", request)
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    listing = (
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND strpos(query, %s) > 0 "
        "AND pid <> pg_backend_pid()"
    )

    def running() -> list[int]:
        with admin.connect() as connection:
            return [row[0] for row in connection.exec_driver_sql(listing, (marker,))]

    try:
        _stopped_with_its_server(sql_app, "ds-long", running)
    finally:
        with admin.connect() as connection:
            for pid in running():
                connection.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
        admin.dispose()
