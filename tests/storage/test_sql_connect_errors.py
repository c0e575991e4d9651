"""A MySQL / MariaDB source that cannot be connected to (a closed port, a wrong password, an unknown
database) fails at once with the server's reason, naming the source, against the MariaDB server of the
machine: as a datasource (the reader's own connection, made first, refuses) and in the process reading the
query (``storage.sql_child``), whose driver's connection pool retries a refused connection for 30 s before
it says why. A server that takes the connection and says nothing fails them after ``sql_connect_seconds``
(given 1 s here), saying so, where the pool waited 30 s and said "timed out waiting for connection".

The module makes its own database and user (with a password, as the API demands one) and drops them
afterwards.

Each test bounds the time the failure takes by 15 s: not a measure of speed, but the absence of the pool's
30 s wait, which the failure took before and which nothing else in these reads comes near.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy

from emrml.config import Settings
from emrml.errors import DataError, InvalidInputException
from emrml.service.app import EmrML
from emrml.storage import sql, sql_child
from metastores import MARIADB_ADMIN

PASSWORD = "connect-errors-password-1"
RDS = "test-mariadb"
#: Far below the driver's pool's 30 s wait, far above the second or so a refused connection takes here.
NO_POOL_WAIT = 15.0


@dataclass(frozen=True)
class Account:
    database: str
    user: str


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    suffix = uuid.uuid4().hex[:12]
    name, user = f"emrmlconn{suffix}", f"emrml_conn_{suffix}"
    admin = sqlalchemy.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
            connection.exec_driver_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (PASSWORD,))
            # Every database of the name's prefix, so that one that does not exist is "unknown" to the
            # user, rather than one it may not see.
            connection.exec_driver_sql(f"GRANT SELECT ON `{name}%%`.* TO '{user}'@'127.0.0.1'")
        yield Account(name, user)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            connection.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        admin.dispose()


def _closed_port() -> int:
    """A port of the loopback address nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Refusal:
    """A connection the server (or the machine) refuses, and what the failure must say of it."""

    port: int | None  # None: the server's
    database_suffix: str  # "" for the user's database
    password: str
    reason: str  # in the datasource's message (the reader's driver, pymysql)
    child_reason: str  # in the reading process's (connectorx)
    options: str = ""  # of the connection URL


REFUSALS = {
    "closed port": Refusal(
        0, "", PASSWORD, "Can't connect to MySQL server on '127.0.0.1'", "Connection refused (os error 111)"
    ),
    "wrong password": Refusal(
        None,
        "",
        "not-the-password",
        "Access denied for user",
        "ERROR 1045 (28000): Access denied for user",
    ),
    "unknown database": Refusal(
        None, "_missing", PASSWORD, "Unknown database", "ERROR 1049 (42000): Unknown database"
    ),
}


#: The server of the tests offers no TLS. The reader's first connection refuses it too (test_sql_values):
#: the reading process's alone here, as when its driver's TLS differs from the first connection's.
CHILD_REFUSALS = {
    **REFUSALS,
    "TLS the server lacks": Refusal(
        None,
        "",
        PASSWORD,
        "SSL is required",
        "Client requires secure connection but server does not have this capability",
        "?ssl-mode=REQUIRED",
    ),
}


def _url(refusal: Refusal) -> str:
    return f"mysql://127.0.0.1:{_closed_port() if refusal.port == 0 else 3306}{refusal.options}"


def _rds_request(
    datasource_id: str, account: Account, password: str, folder: Path, database_suffix: str = ""
) -> dict[str, object]:
    spec = {
        "DatabaseInformation": {
            "InstanceIdentifier": RDS,
            "DatabaseName": account.database + database_suffix,
        },
        "SelectSqlQuery": "SELECT 1 AS one",
        "DatabaseCredentials": {"Username": account.user, "Password": password},
        "S3StagingLocation": f"{folder / 'staging'}/",
        "ResourceRole": "DataPipelineDefaultResourceRole",
        "ServiceRole": "DataPipelineDefaultRole",
        "SubnetId": "subnet-1",
        "SecurityGroupIds": ["sg-1"],
    }
    return {"DataSourceId": datasource_id, "RDSData": spec, "RoleARN": "arn:aws:iam::000000000000:role/ml"}


@pytest.mark.parametrize("refusal", list(REFUSALS.values()), ids=list(REFUSALS))
def test_an_rds_datasource_that_cannot_connect_fails_at_once_with_the_reason(
    account: Account, refusal: Refusal, tmp_path: Path
) -> None:
    url = _url(refusal)
    app = EmrML(Settings.load(environ={}, home=tmp_path / "home", sql_connections={RDS: url}))
    try:
        started = time.monotonic()
        request = _rds_request("rds-refused", account, refusal.password, tmp_path, refusal.database_suffix)
        app.call("CreateDataSourceFromRDS", request)
        result = app.wait("DataSource", "rds-refused")
        took = time.monotonic() - started
    finally:
        app.close()
    assert result["Status"] == "FAILED", result
    message = result["Message"]
    assert message.startswith(f"cannot connect to RDS instance '{RDS}' ({url}, database "), message
    assert refusal.reason in message, message
    assert "not-the-password" not in message and PASSWORD not in message
    assert took < NO_POOL_WAIT, f"the failure took {took:.1f} s: {message}"


@pytest.mark.parametrize("refusal", list(CHILD_REFUSALS.values()), ids=list(CHILD_REFUSALS))
def test_the_process_reading_a_mysql_query_fails_at_once_when_its_connection_is_refused(
    account: Account, refusal: Refusal, capfd: pytest.CaptureFixture[str]
) -> None:
    # Its own connection: the reader's, made first, would have answered already in a read.
    url = _url(refusal)
    source = sql.resolve(
        {RDS: url}, "RDS", RDS, account.database + refusal.database_suffix, account.user, refusal.password
    )
    started = time.monotonic()
    with (
        pytest.raises(DataError) as failure,
        sql_child.ChildRead(source, "SELECT 1 AS one", []).batches([]) as reader,
    ):
        reader.read_all()
    took = time.monotonic() - started
    message = failure.value.message
    assert message.startswith(f"cannot connect to {source.what}: "), message
    assert refusal.child_reason in message, message
    assert "{" not in message, message  # the driver's reason, not its wrapping
    assert took < NO_POOL_WAIT, f"the failure took {took:.1f} s: {message}"
    # Told once, in the read's error: not also in the log, once per attempt of the pool.
    assert "r2d2" not in capfd.readouterr().err


@contextmanager
def _silent_server() -> Iterator[str]:
    """The URL of a port that takes connections (the kernel completes them for a listening socket) and
    sends nothing, as a proxy with no database behind it does."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        yield f"mysql://127.0.0.1:{silent.getsockname()[1]}"


UNANSWERED = "no answer in 1 s (the time setting sql_connect_seconds gives to connect and sign in)"


def test_a_mysql_server_that_never_answers_fails_the_datasource_after_sql_connect_seconds(
    account: Account, tmp_path: Path
) -> None:
    with _silent_server() as url:
        settings = Settings.load(
            environ={}, home=tmp_path / "home", sql_connections={RDS: url}, sql_connect_seconds=1
        )
        app = EmrML(settings)
        try:
            app.call("CreateDataSourceFromRDS", _rds_request("rds-silent", account, PASSWORD, tmp_path))
            result = app.wait("DataSource", "rds-silent")
        finally:
            app.close()
    assert result["Status"] == "FAILED", result
    message = result["Message"]
    assert message.startswith(f"cannot connect to RDS instance '{RDS}' ({url}, database "), message
    assert message.endswith(f": {UNANSWERED}"), message


def test_the_process_reading_a_mysql_query_fails_after_sql_connect_seconds_when_the_server_says_nothing(
    account: Account,
) -> None:
    # Its own connection: the reader's, made first, found the server answering (then one behind a proxy
    # went away, or hung).
    with _silent_server() as url:
        source = sql.resolve(
            {RDS: url}, "RDS", RDS, account.database, account.user, PASSWORD, connect_seconds=1
        )
        with (
            pytest.raises(DataError) as failure,
            sql_child.ChildRead(source, "SELECT 1 AS one", []).batches([]) as reader,
        ):
            reader.read_all()
    assert failure.value.message == f"cannot connect to {source.what}: {UNANSWERED}"


def test_the_process_reading_a_mysql_query_waits_for_it_once_connected_whatever_sql_connect_seconds(
    account: Account,
) -> None:
    # Its connection's first statements take longer than the second it has to connect: once connected, the
    # read is waited for (as a query that sorts or joins large tables is).
    source = sql.resolve(
        {RDS: "mysql://127.0.0.1:3306"},
        "RDS",
        RDS,
        account.database,
        account.user,
        PASSWORD,
        connect_seconds=1,
    )
    with sql_child.ChildRead(source, "SELECT 1 AS one", ["SELECT SLEEP(2)"]).batches([]) as reader:
        assert reader.read_all().to_pylist() == [{"one": 1}]


def test_a_mysql_connection_waits_for_a_query_longer_than_sql_connect_seconds(account: Account) -> None:
    # The timeout that bounds the sign-in (above) is lifted once signed in: a query that sends nothing for
    # longer than it, as one that sorts or joins large tables does while it is described, is waited for.
    server = {RDS: "mysql://127.0.0.1:3306"}
    source = sql.resolve(server, "RDS", RDS, account.database, account.user, PASSWORD, connect_seconds=1)
    connection = sql.mysql_connect(source)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT SLEEP(2)")
            assert cursor.fetchone() == (0,)
    finally:
        connection.close()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_connect_time_that_is_not_a_positive_number_of_seconds_is_refused_naming_the_setting(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(
        InvalidInputException, match=rf"setting sql_connect_seconds must be a positive .*\(got {value}\)"
    ):
        Settings.load(environ={"EMRML_SQL_CONNECT_SECONDS": value}, home=tmp_path)
