"""RDS and Redshift datasources against the MariaDB and PostgreSQL servers of the machine.

The module makes its own database on each server (and a MariaDB user with a password, since the API
demands one), fills it with a million rows, and drops everything afterwards. Every failure must leave a
FAILED datasource with a clear message, no staged file, and the database as it was.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from emrml.config import Settings
from emrml.errors import IdempotentParameterMismatchException
from emrml.service.app import EmrML
from emrml.service.metastore import DataSource
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


def _mariadb(name: str, user: str) -> None:
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


def _postgres(name: str) -> None:
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


@pytest.fixture(scope="module")
def databases() -> Iterator[Databases]:
    suffix = uuid.uuid4().hex[:12]
    name, user = f"emrmlsql{suffix}", f"emrml_{suffix}"
    try:
        _mariadb(name, user)
        _postgres(name)
    except sqlalchemy.exc.OperationalError as exc:
        pytest.skip(f"MariaDB (127.0.0.1:3306) and PostgreSQL (127.0.0.1:5432) are needed: {exc.orig}")
    try:
        yield Databases(name, user)
    finally:
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


def _check_staged_datasource(app: EmrML, result: dict[str, Any], staging: Path) -> None:
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


def test_a_million_rows_from_mariadb(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    result = from_rds(sql_app, databases, staging, "rds-million", "SELECT * FROM customers ORDER BY id")
    _check_staged_datasource(sql_app, result, staging)
    metadata = sql_app.call("GetDataSource", {"DataSourceId": "rds-million", "Verbose": True})["RDSMetadata"]
    assert metadata["DatabaseUserName"] == databases.mariadb_user
    assert metadata["SelectSqlQuery"] == "SELECT * FROM customers ORDER BY id"


def test_a_million_rows_from_postgresql(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    result = from_redshift(
        sql_app, databases, staging, "redshift-million", "SELECT * FROM customers ORDER BY id"
    )
    _check_staged_datasource(sql_app, result, staging)


def test_a_given_schema_names_the_target(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    schema = {
        "version": "1.0",
        "targetAttributeName": "churned",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "age", "attributeType": "NUMERIC"},
            {"attributeName": "colour", "attributeType": "CATEGORICAL"},
            {"attributeName": "churned", "attributeType": "BINARY"},
        ],
    }
    query = "SELECT age, colour, churned FROM customers WHERE id <= 1000"
    for result in (
        from_rds(sql_app, databases, staging, "rds-schema", query, DataSchema=json.dumps(schema)),
        from_redshift(sql_app, databases, staging, "redshift-schema", query, DataSchema=json.dumps(schema)),
    ):
        assert result["Status"] == "COMPLETED" and result["TotalRecordCount"] == 1000, result
        verbose = sql_app.call("GetDataSource", {"DataSourceId": result["DataSourceId"], "Verbose": True})
        assert json.loads(verbose["DataSourceSchema"])["targetAttributeName"] == "churned"


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
        ("SELECT NULL AS nothing", r"a column of NULL literals: .*CAST\(NULL AS CHAR\)"),
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


def test_a_mysql_bit_column_converted_as_the_refusal_says_is_binary(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    query = "SELECT id, CAST(active AS UNSIGNED) AS active FROM flags ORDER BY id"
    result = from_rds(sql_app, databases, staging, "rds-flags", query)
    assert result["Status"] == "COMPLETED", result
    with gzip.open(staging / "rds-flags.csv.gz", "rt") as text:
        assert text.read().split() == ["id,active", "1,1", "2,0", "3,1", "4,"]
    verbose = sql_app.call("GetDataSource", {"DataSourceId": "rds-flags", "Verbose": True})
    types = {
        a["attributeName"]: a["attributeType"] for a in json.loads(verbose["DataSourceSchema"])["attributes"]
    }
    assert types == {"id": "NUMERIC", "active": "BINARY"}


def test_mysql_decimals_are_staged_as_their_own_digits(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # The MySQL driver reads every DECIMAL with 10 digits after the point: 12.50 was staged as
    # 12.5000000000, and a value under 10^-6 as 1E-7.
    query = (
        "SELECT id, CAST(income AS DECIMAL(12, 2)) AS income, CAST(id - 3 AS DECIMAL(10, 0)) AS shifted, "
        "CAST(id / 10000000 AS DECIMAL(20, 10)) AS tiny, CAST(-income / 1000 AS DECIMAL(12, 4)) AS loss "
        "FROM customers WHERE id <= 4 ORDER BY id"
    )
    result = from_rds(sql_app, databases, staging, "rds-decimals", query)
    assert result["Status"] == "COMPLETED", result
    assert _staged_rows(result) == [
        ["id", "income", "shifted", "tiny", "loss"],
        ["1", "462.5", "-2", "0.0000001", "-0.4625"],
        ["2", "925", "-1", "0.0000002", "-0.925"],
        ["3", "1387.5", "0", "0.0000003", "-1.3875"],
        ["4", "1850", "1", "0.0000004", "-1.85"],
    ]
    assert set(_types(sql_app, "rds-decimals").values()) == {"NUMERIC"}
    statistics = sql_app.call("GetDataSourceStatistics", {"DataSourceId": "rds-decimals"})["Statistics"]
    assert all(a["invalidCount"] == 0 for a in statistics["attributes"])


def test_a_mysql_decimal_with_more_digits_than_the_driver_reads_is_refused(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # DECIMAL(38,20)'s 0.12345678901234567890 was staged as 0.1234567890, the rest rounded off in silence.
    value = "CAST('0.12345678901234567890' AS DECIMAL(38, 20))"
    result = from_rds(sql_app, databases, staging, "rds-scale", f"SELECT id, {value} AS share FROM customers")
    assert re.search(
        r"column 'share' is a DECIMAL with 20 digits after the decimal point; the MySQL driver reads 10 "
        r"and would round off the rest: .*CAST\(`share` AS DOUBLE\).* or ROUND\(`share`, 10\)$",
        failed(sql_app, result, staging),
    )
    # A query that cannot be read as a subquery has its digits counted as written, and is refused alike.
    query = f"SELECT id, {value} AS share FROM customers; -- shares"
    result = from_rds(sql_app, databases, staging, "rds-scale-unknown", query)
    assert re.search(
        r"column 'share' is a DECIMAL with 20 digits after the decimal point",
        failed(sql_app, result, staging),
    )
    # Rounded as the message offers, by the query's own choice.
    query = f"SELECT id, ROUND({value}, 10) AS share FROM customers WHERE id = 1"
    rounded = from_rds(sql_app, databases, staging, "rds-scale-rounded", query)
    assert _staged_rows(rounded) == [["id", "share"], ["1", "0.123456789"]]


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


def _staged_rows(result: dict[str, Any]) -> list[list[str]]:
    with gzip.open(result["DataLocationS3"], "rt", newline="") as text:
        return list(csv.reader(text))


def _types(app: EmrML, entity_id: str) -> dict[str, str]:
    verbose = app.call("GetDataSource", {"DataSourceId": entity_id, "Verbose": True})
    schema = json.loads(verbose["DataSourceSchema"])
    return {a["attributeName"]: a["attributeType"] for a in schema["attributes"]}


def test_postgresql_numeric_columns_are_numeric(sql_app: EmrML, databases: Databases, staging: Path) -> None:
    # NUMERIC is what PostgreSQL gives decimal columns, decimal literals, AVG and SUM of integers: the driver
    # reads it as an opaque extension type, which every such query used to fail as "no Amazon ML type".
    query = (
        "SELECT age, income::numeric(12, 2) AS income, 1.5 AS ratio, churned FROM customers "
        "WHERE id <= 100 ORDER BY id"
    )
    result = from_redshift(sql_app, databases, staging, "redshift-numeric", query)
    assert result["Status"] == "COMPLETED", result
    assert _types(sql_app, "redshift-numeric") == {
        "age": "NUMERIC",
        "income": "NUMERIC",
        "ratio": "NUMERIC",
        "churned": "BINARY",
    }
    rows = _staged_rows(result)
    assert rows[0] == ["age", "income", "ratio", "churned"]
    assert rows[1][:3] == ["19", "462.50", "1.5"]
    statistics = sql_app.call("GetDataSourceStatistics", {"DataSourceId": "redshift-numeric"})["Statistics"]
    income = next(a for a in statistics["attributes"] if a["name"] == "income")
    assert income["invalidCount"] == 0
    assert income["max"] == max(((n * 37) % 1000) * 12.5 for n in range(1, 101))
    # And a given schema reads them too: a model trains on a NUMERIC column.
    schema = {
        "version": "1.0",
        "targetAttributeName": "churned",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "income", "attributeType": "NUMERIC"},
            {"attributeName": "churned", "attributeType": "BINARY"},
        ],
    }
    given = from_redshift(
        sql_app,
        databases,
        staging,
        "redshift-numeric-schema",
        "SELECT SUM(age) AS income, bool_or(churned) AS churned FROM customers WHERE id <= 100 GROUP BY age",
        DataSchema=json.dumps(schema),
    )
    assert given["Status"] == "COMPLETED" and given["TotalRecordCount"] == 60, given


def test_postgresql_special_dates_and_times_are_spelled_as_postgresql_does(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # The driver reads 'infinity' as an overflowed number: pyarrow spelled it '<value out of range: ...>'
    # or as a date in the year -28134, and the time 24:00 as '<value out of range: 86400000000>'.
    query = """
        SELECT id,
               CASE id WHEN 1 THEN 'infinity'::timestamp WHEN 2 THEN '-infinity'::timestamp
                       ELSE '2024-01-02 03:04:05' END AS seen,
               CASE id WHEN 1 THEN '-infinity'::timestamptz WHEN 2 THEN 'infinity'::timestamptz
                       ELSE '2024-01-02 03:04:05+00' END AS seen_utc,
               CASE id WHEN 1 THEN 'infinity'::date WHEN 2 THEN '-infinity'::date
                       ELSE '2024-01-02' END AS day,
               CASE id WHEN 1 THEN '24:00'::time ELSE '23:59:59.999999'::time END AS closing
        FROM customers WHERE id <= 3 ORDER BY id
    """
    result = from_redshift(sql_app, databases, staging, "redshift-infinity", query)
    assert result["Status"] == "COMPLETED", result
    assert _staged_rows(result)[1:] == [
        ["1", "infinity", "-infinity", "infinity", "24:00:00.000000"],
        ["2", "-infinity", "infinity", "-infinity", "23:59:59.999999"],
        ["3", "2024-01-02 03:04:05.000000", "2024-01-02 03:04:05.000000Z", "2024-01-02", "23:59:59.999999"],
    ]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT age, colour FROM customers WHERE id <= 10 -- the first ten",
        "SELECT age, colour FROM customers WHERE id <= 10;\n",
        "SELECT age, colour\nFROM customers\nWHERE id <= 10 ;  \n\n",
    ],
)
def test_postgresql_queries_may_end_in_a_comment_or_a_semicolon(
    sql_app: EmrML, databases: Databases, staging: Path, query: str
) -> None:
    # The driver runs COPY (<query>) TO STDOUT: a last line's comment hid the closing parenthesis, and a
    # semicolon followed by a newline was a syntax error.
    for result in (
        from_redshift(sql_app, databases, staging, "redshift-ending", query),
        from_rds(sql_app, databases, staging, "rds-ending", query),
    ):
        assert result["Status"] == "COMPLETED" and result["TotalRecordCount"] == 10, result


def test_column_names_that_need_quoting_or_trimming_make_a_datasource(
    sql_app: EmrML, databases: Databases, staging: Path
) -> None:
    # A name with blanks around it was written to the staged header as is, and the header check, which
    # trims names as for any CSV file, then failed the datasource ("column 3 is 'e' in the header but ' e '
    # in the schema"), telling to fix a schema the user never gave.
    query = (
        'SELECT age AS "a,b", age AS "c""d", age AS " e ", age AS "f\ng", churned '
        "FROM customers WHERE id <= 5"
    )
    result = from_redshift(sql_app, databases, staging, "redshift-names", query)
    assert result["Status"] == "COMPLETED" and result["TotalRecordCount"] == 5, result
    assert list(_types(sql_app, "redshift-names")) == ["a,b", 'c"d', "e", "f\ng", "churned"]


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
