"""Reading SQL sources (storage.sql) against the MariaDB and PostgreSQL servers of the machine: sign-in
with any password, the query as written, and the values of awkward column types as they are staged."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sql_sources_helpers import MYSQL, PASSWORD, POSTGRES, Databases, created_databases, staged_rows

from emrml.errors import DataError
from emrml.storage import sql, sql_staging
from metastores import MARIADB_ADMIN, POSTGRES_ADMIN


@pytest.fixture(scope="module")
def databases() -> Iterator[Databases]:
    with created_databases() as created:
        yield created


def test_a_mysql_password_with_non_ascii_and_url_characters_signs_in(
    databases: Databases, tmp_path: Path
) -> None:
    # pymysql sent a str password in Latin-1: "密码" could not be encoded (an internal error), and "ä"
    # would have been sent as a byte the server's hash of the UTF-8 password does not match.
    rows, _ = staged_rows(databases.mariadb(), "SELECT 1 AS x, 'héllo, wörld' AS y", tmp_path)
    assert rows == [["x", "y"], ["1", "héllo, wörld"]]
    with pytest.raises(DataError, match=r"cannot connect to RDS instance 'maria' .*Access denied"):
        staged_rows(databases.mariadb("pässwörd"), "SELECT 1 AS x", tmp_path)
    # The PostgreSQL driver's URL carries it too, without the URL's characters in it changing the URL.
    rows, _ = staged_rows(databases.postgres(PASSWORD), "SELECT current_database() AS d", tmp_path)
    assert rows == [["d"], [databases.name]]


def test_credentials_that_are_not_unicode_text_are_refused_without_being_shown() -> None:
    # A JSON request may carry a lone surrogate ("\ud800"), which no driver can send: it failed the job
    # with an internal error.
    with pytest.raises(DataError, match=r"DatabaseCredentials.Password holds .* not Unicode") as refused:
        sql.resolve(MYSQL, "RDS", "maria", "db", "user", "secret\ud800")
    assert "secret" not in refused.value.message
    with pytest.raises(DataError, match=r"DatabaseCredentials.Username"):
        sql.resolve(POSTGRES, "Redshift", "pg", "db", "us\udfffer", "secret")


def test_mysql_tls_options_of_the_url_apply_to_the_first_connection_too(
    databases: Databases, tmp_path: Path
) -> None:
    """The server of the tests offers no TLS: a URL requiring it is refused at once, with the driver's
    reason, where the first connection ignored the URL's options and the read's driver then retried for
    half a minute before failing."""

    def source(options: str) -> sql.SqlSource:
        connections = {"maria": f"mysql://127.0.0.1:3306?{options}"}
        return sql.resolve(connections, "RDS", "maria", databases.name, databases.user, PASSWORD)

    for mode in ("REQUIRED", "verify_identity"):
        with pytest.raises(DataError, match=r"cannot connect to RDS instance 'maria' .*SSL is required"):
            staged_rows(source(f"ssl-mode={mode}"), "SELECT 1 AS x", tmp_path)
    with pytest.raises(DataError, match=r"ssl-ca '/no/such/ca.pem' cannot be read"):
        staged_rows(source("ssl-mode=VERIFY_CA&ssl-ca=/no/such/ca.pem"), "SELECT 1 AS x", tmp_path)
    rows, _ = staged_rows(source("ssl-mode=DISABLED"), "SELECT 1 AS x", tmp_path)
    assert rows == [["x"], ["1"]]
    # Options neither driver would apply are refused before anything connects, naming the right spelling.
    with pytest.raises(DataError, match=r"URL option 'ssl_ca' is not one emrml knows.* ssl-mode \(DISABLED"):
        source("ssl_ca=/etc/ssl/ca.pem&ssl_verify_cert=true")
    with pytest.raises(DataError, match=r"ssl-mode 'ON' is none of DISABLED"):
        source("ssl-mode=ON")


def test_mysql_timestamps_are_staged_as_utc_instants_datetimes_as_they_are(
    databases: Databases, tmp_path: Path
) -> None:
    """A TIMESTAMP is an instant, which the server sends in the session's time zone (by default its own),
    without saying which: staged as its UTC instant ``…Z``, as PostgreSQL's timestamptz. A DATETIME has no
    time zone: staged as written."""
    maria = sqlalchemy.create_engine(MARIADB_ADMIN.rsplit("/", 1)[0] + f"/{databases.name}")
    with maria.begin() as connection:
        connection.exec_driver_sql("SET SESSION time_zone = '+05:00'")
        connection.exec_driver_sql("CREATE TABLE moments (n INT, t TIMESTAMP NULL, d DATETIME)")
        connection.exec_driver_sql(
            "INSERT INTO moments VALUES (1, '2024-01-02 03:04:05', '2024-01-02 03:04:05'), (2, NULL, NULL)"
        )
        connection.exec_driver_sql(f"GRANT SELECT ON {databases.name}.* TO '{databases.user}'@'127.0.0.1'")
    maria.dispose()
    expected = [
        ["n", "t", "d"],
        ["1", "2024-01-01 22:04:05.000000Z", "2024-01-02 03:04:05.000000"],
        ["2", "", ""],
    ]
    rows, staged = staged_rows(databases.mariadb(), "SELECT n, t, d FROM moments ORDER BY n", tmp_path)
    assert rows == expected
    assert {a.name: a.type.value for a in staged.schema.attributes}["t"] == "CATEGORICAL"
    # Queries a derived table refuses (a comment after the semicolon), whose columns are described as
    # written: the TIMESTAMP is the same instant (it was staged without its time zone, as a DATETIME is).
    for query in (
        "SELECT n, t, d FROM moments ORDER BY n; -- both rows",
        "SELECT n, t, d FROM moments ORDER BY n LIMIT 5; /* its own limit */",
    ):
        rows, _ = staged_rows(databases.mariadb(), query, tmp_path)
        assert rows == expected, query


def test_a_mysql_query_without_a_result_set_is_refused_before_it_runs(
    databases: Databases, tmp_path: Path
) -> None:
    # SELECT … INTO a variable passes for a SELECT, and the MySQL driver failed on it with a panic.
    with pytest.raises(DataError) as refused:
        staged_rows(databases.mariadb(), "SELECT 1 AS a INTO @emrml_v", tmp_path)
    assert refused.value.message.startswith("SelectSqlQuery must return its rows: SELECT … INTO writes them")
    assert not any(tmp_path.iterdir())  # nothing staged


def test_a_mysql_spatial_column_is_refused_by_name_before_it_is_read(
    databases: Databases, tmp_path: Path
) -> None:
    # The MySQL driver has no type for GEOMETRY: it panicked ("not implemented: MYSQL_TYPE_GEOMETRY").
    with pytest.raises(DataError) as refused:
        staged_rows(databases.mariadb(), "SELECT 1 AS n, POINT(1, 2) AS `p``t`", tmp_path)
    assert refused.value.message == (
        "SelectSqlQuery column 'p`t' has SQL type GEOMETRY, which no Amazon ML attribute type holds; "
        "convert it in the query, e.g. ST_AsText(`p``t`) or ST_X(`p``t`)"
    )
    assert not any(tmp_path.iterdir())  # nothing staged
    rows, _ = staged_rows(databases.mariadb(), "SELECT ST_AsText(POINT(1, 2)) AS `p``t`", tmp_path)
    assert rows == [["p`t"], ["POINT(1 2)"]]


def test_a_mysql_column_of_null_literals_is_refused_by_name_before_it_is_read(
    databases: Databases, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The MySQL driver has no type for a column of NULL literals: it panicked ("not implemented:
    MYSQL_TYPE_NULL", a Rust backtrace in the log) and the error named no column. One of NULLs from a
    UNION, typed BINARY(0) by the server, was refused as a column of bytes, to be converted with HEX."""
    for query, column in (
        ("SELECT NULL AS x, 1 AS y", "x"),
        ("SELECT 1 AS y, NULL AS `n``x`; -- described as written", "n`x"),
        ("SELECT NULL AS x UNION ALL SELECT NULL", "x"),
    ):
        with pytest.raises(DataError) as refused:
            staged_rows(databases.mariadb(), query, tmp_path)
        quoted = "`" + column.replace("`", "``") + "`"
        assert refused.value.message == (
            f"SelectSqlQuery column {column!r} holds NULL literals, which have no SQL type the MySQL driver "
            f"reads; give the column one in the query, e.g. CAST(NULL AS CHAR) AS {quoted} (an attribute "
            "whose values are all missing, as PostgreSQL's NULL column is)"
        ), query
    assert "panicked" not in capfd.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing staged
    # The conversion it names reads as PostgreSQL reads the NULL column: an attribute of missing values.
    for source, query in (
        (databases.mariadb(), "SELECT CAST(NULL AS CHAR) AS x, 1 AS y"),
        (databases.postgres(), "SELECT NULL AS x, 1 AS y"),
    ):
        rows, staged = staged_rows(source, query, tmp_path)
        assert rows == [["x", "y"], ["", "1"]]
        assert [a.type.value for a in staged.schema.attributes] == ["CATEGORICAL", "NUMERIC"]


def test_a_postgresql_query_without_columns_is_refused(databases: Databases, tmp_path: Path) -> None:
    with pytest.raises(DataError) as refused:
        staged_rows(databases.postgres(), "SELECT FROM pg_class", tmp_path)
    assert refused.value.message == (
        "SelectSqlQuery returns no columns; select the columns the datasource reads"
    )
    assert not any(tmp_path.iterdir())  # nothing staged


def test_a_mysql_query_the_server_refuses_is_told_as_written(databases: Databases, tmp_path: Path) -> None:
    """The server's error on the query the user wrote: the MySQL driver's own quoted the LIMIT it adds to
    the query (a syntax error at the end was said to be "near 'LIMIT 0'")."""
    for query, expected in (
        (
            "SELECT 1 AS x FROM DUAL WHERE",
            r"ERROR 1064: You have an error in your SQL syntax.* near '' at line 1$",
        ),
        ("SELECT x FROM no_such_table; -- a comment", r"ERROR 1146: Table '.*no_such_table' doesn't exist$"),
    ):
        with pytest.raises(DataError) as refused:
            staged_rows(databases.mariadb(), query, tmp_path)
        assert refused.value.message.startswith("SelectSqlQuery failed on RDS instance 'maria'")
        assert re.search(expected, refused.value.message), refused.value.message
        assert "LIMIT" not in refused.value.message
    assert not any(tmp_path.iterdir())  # nothing staged


def test_a_postgresql_query_may_end_with_a_comment_after_its_semicolon(
    databases: Databases, tmp_path: Path
) -> None:
    """psql runs ``SELECT …; -- note``: wrapped in ``COPY (…)`` it was a syntax error at the ``;``. What
    looks like a semicolon or a comment inside a string, a quoted name or a dollar-quoted body stays."""
    queries = (
        "SELECT 1 AS a; -- the answer",
        "SELECT 1 AS a ; /* a comment /* nested */ */ ;\n",
        "SELECT 1 AS a; -- one\n-- two\n",
    )
    for query in queries:
        assert staged_rows(databases.postgres(), query, tmp_path)[0] == [["a"], ["1"]], query
    query = (
        "SELECT 'x; -- y' AS \"b;--\", $tag$ /* z; $tag$ AS c, "
        r"E'it\'s;' AS d, "
        '2 AS "e""" -- f\n; -- end'
    )
    rows, _ = staged_rows(databases.postgres(), query, tmp_path)
    assert rows == [["b;--", "c", "d", 'e"'], ["x; -- y", " /* z; ", "it's;", "2"]]


def _postgres_table(databases: Databases, *statements: str) -> None:
    engine = sqlalchemy.create_engine(POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{databases.name}")
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()


def test_postgresql_uuid_and_json_columns_are_staged_as_their_text(
    databases: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They were refused as types no Amazon ML attribute holds ("convert it ... encode(..., 'hex')"), though
    # a uuid is the commonest of identifiers and json is text.
    monkeypatch.setattr(sql_staging, "SLICE_BYTES", 4096)  # slices that start inside the driver's batches
    _postgres_table(
        databases,
        "CREATE TABLE ids (n INT, u UUID, j JSONB, k JSON)",
        "INSERT INTO ids SELECT n, CASE WHEN mod(n, 7) = 0 THEN NULL ELSE md5(n::text)::uuid END, "
        """CASE WHEN mod(n, 5) = 0 THEN NULL ELSE jsonb_build_object('n', n, 's', 'a,"b"') END, '[1, 2]' """
        "FROM generate_series(1, 3000) AS n",
    )
    source = databases.postgres()
    rows, staged = staged_rows(source, "SELECT n, u, j, k FROM ids ORDER BY n", tmp_path)
    expected = sqlalchemy.create_engine(POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{databases.name}")
    with expected.connect() as connection:
        spelled = connection.exec_driver_sql("SELECT n, u::text, j::text FROM ids ORDER BY n").all()
    expected.dispose()
    assert rows[0] == ["n", "u", "j", "k"] and len(rows) == 3001
    assert [(int(r[0]), r[1] or None, r[2] or None) for r in rows[1:]] == [tuple(row) for row in spelled]
    assert rows[1][3] == "[1, 2]"
    types = {a.name: a.type.value for a in staged.schema.attributes}
    assert types["u"] == "CATEGORICAL"


def test_postgresql_bytea_is_refused_with_a_conversion_that_works_on_it(
    databases: Databases, tmp_path: Path
) -> None:
    _postgres_table(
        databases, "CREATE TABLE blobs (b BYTEA, i INTERVAL)", "INSERT INTO blobs VALUES ('\\xff', '1 day')"
    )
    source = databases.postgres()
    with pytest.raises(DataError, match=r"column 'b' has SQL type bytea.* e\.g\. encode\(\.\.\., 'hex'\)$"):
        staged_rows(source, "SELECT b FROM blobs", tmp_path)
    with pytest.raises(DataError, match=r"column 'i' has SQL type interval.* e\.g\. CAST\(\.\.\. AS TEXT\)$"):
        staged_rows(source, "SELECT i FROM blobs", tmp_path)
    rows, _ = staged_rows(source, "SELECT encode(b, 'hex') AS b, CAST(i AS TEXT) AS i FROM blobs", tmp_path)
    assert rows == [["b", "i"], ["ff", "1 day"]]


def test_a_value_the_mysql_driver_cannot_convert_fails_the_read_without_a_backtrace(
    databases: Databases, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zero date makes the driver panic: the read fails with the panic's message and what to do, and the
    server's log has the panic's line, not the hundred frames of a backtrace a RUST_BACKTRACE asks for."""
    monkeypatch.setenv("RUST_BACKTRACE", "1")
    with pytest.raises(DataError) as refused:
        staged_rows(databases.mariadb(), "SELECT CAST('0000-00-00' AS DATE) AS d", tmp_path)
    assert refused.value.message.endswith(
        "Couldn't convert the value `Date(\"'0000-00-00'\")` to a desired type (a value the MySQL driver "
        "cannot read, such as a zero date or a TIME outside 00:00-24:00: convert the column in the query, "
        "e.g. CAST(... AS CHAR))"
    )
    logged = capfd.readouterr().err
    assert "panicked" in logged  # the driver's line, as it said it
    assert "stack backtrace" not in logged
    assert not any(tmp_path.iterdir())  # nothing staged
