"""A SelectSqlQuery may not write on the database server. MySQL's SELECT … INTO OUTFILE passed for a
SELECT, and the read-only transaction allows it, so describing the query wrote its rows to a file of the
server's (as whichever user the request signs in as, with the FILE privilege). Neither server runs a second
statement stacked after the query, nor PostgreSQL one that closes the ``COPY (query) TO STDOUT`` it is
read through to write elsewhere (``COPY … TO PROGRAM``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sql_sources_helpers import MYSQL, Databases, created_databases, staged_rows

from emrml.errors import DataError
from emrml.storage import sql
from metastores import MARIADB_ADMIN, POSTGRES_ADMIN

REFUSED = (
    "SelectSqlQuery must return its rows: SELECT … INTO writes them on the database server (a file of INTO "
    "OUTFILE or DUMPFILE, or variables) instead; remove the INTO clause (a column named into is written "
    "`into`)"
)


@pytest.fixture(scope="module")
def databases() -> Iterator[Databases]:
    with created_databases() as created:
        admin = sqlalchemy.create_engine(f"{MARIADB_ADMIN}{created.name}", isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE secrets (n INT, word VARCHAR(20))")
            connection.exec_driver_sql("INSERT INTO secrets VALUES (1, 'alpha'), (2, 'beta')")
        admin.dispose()
        admin = sqlalchemy.create_engine(_postgres_url(created), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE secrets (n INT)")
            connection.exec_driver_sql("INSERT INTO secrets VALUES (1), (2)")
        admin.dispose()
        yield created


def _postgres_url(databases: Databases) -> str:
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{databases.name}"


@pytest.fixture
def server_file() -> Iterator[Path]:
    """A path the database server may write (its /tmp is this machine's), removed afterwards."""
    path = Path(f"/tmp/emrml-into-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "query",
    [
        # Its own LIMIT outranks the zero-row limit the query is described under: the rows were written.
        "SELECT n, word FROM secrets LIMIT 5 INTO OUTFILE '{path}'",
        "SELECT word FROM secrets LIMIT 1 INTO DUMPFILE '{path}'",
        # A comment the server runs the text of.
        "SELECT n, word FROM secrets LIMIT 5 /*!50000 INTO OUTFILE '{path}' */",
        "WITH s AS (SELECT n FROM secrets) SELECT n FROM s LIMIT 5 INTO OUTFILE '{path}'",
    ],
)
def test_a_mysql_select_into_a_file_is_refused_before_it_runs(
    databases: Databases, tmp_path: Path, server_file: Path, query: str
) -> None:
    # The FILE privilege is the server's to grant: its administrator signs in here.
    source = sql.resolve(MYSQL, "RDS", "maria", databases.name, "root", "")
    with pytest.raises(DataError) as refused:
        staged_rows(source, query.format(path=server_file), tmp_path)
    assert refused.value.message == REFUSED
    assert not server_file.exists()
    assert not any(tmp_path.iterdir())  # nothing staged


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        ("SELECT 'a\\' INTO OUTFILE '/tmp/x' -- ' AS w", True),  # under NO_BACKSLASH_ESCAPES, a real INTO
        ("SELECT 1INTO @x", True),
        ("SELECT n --1 INTO @x\nFROM secrets", True),
        ("SELECT n FROM secrets # note\rINTO @x", True),  # ends at the \r for a server that ends it there
        ("SELECT n FROM secrets WHERE word <> 'insert into' -- into\n", False),
        ("SELECT `into` FROM t /* INTO */ # into", False),
        ("SELECT 'it''s into' AS x, \"into\", n AS intox, n AS xinto FROM t", False),
    ],
)
def test_into_is_looked_for_outside_strings_names_and_comments(query: str, refused: bool) -> None:
    if refused:
        with pytest.raises(DataError, match="SELECT … INTO writes them"):
            sql.check_mysql_select(query)
    else:
        sql.check_mysql_select(query)


def test_a_query_naming_into_in_strings_and_comments_is_read(databases: Databases, tmp_path: Path) -> None:
    rows, _ = staged_rows(
        databases.mariadb(),
        "SELECT n, 'insert into' AS `into` FROM secrets /* not INTO */ ORDER BY n -- into",
        tmp_path,
    )
    assert rows == [["n", "into"], ["1", "insert into"], ["2", "insert into"]]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT n FROM secrets) TO PROGRAM 'touch {path}'; COPY (SELECT 1",
        "SELECT n FROM secrets) TO '{path}' --",
        "SELECT n FROM secrets; COPY secrets TO PROGRAM 'touch {path}'",
        "SELECT n FROM secrets; SET default_transaction_read_only = off; DELETE FROM secrets",
    ],
)
def test_a_postgresql_query_cannot_leave_its_copy_nor_stack_a_statement(
    databases: Databases, tmp_path: Path, server_file: Path, query: str
) -> None:
    # Its user is the server's superuser, who may run programs and write files with COPY.
    with pytest.raises(DataError, match="SelectSqlQuery failed on Redshift cluster 'pg'"):
        staged_rows(databases.postgres(), query.format(path=server_file), tmp_path)
    admin = sqlalchemy.create_engine(_postgres_url(databases))
    with admin.connect() as connection:
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM secrets").scalar_one() == 2
    admin.dispose()
    assert not server_file.exists()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT n FROM secrets; DELETE FROM secrets",
        "SELECT n FROM secrets; /*! SET SESSION TRANSACTION READ WRITE; DELETE FROM secrets */",
        "SELECT n FROM secrets /*! ; DELETE FROM secrets */",
        "SELECT n FROM secrets; -- a note\n DELETE FROM secrets",
    ],
)
def test_a_mysql_query_cannot_stack_a_statement(databases: Databases, tmp_path: Path, query: str) -> None:
    source = sql.resolve(MYSQL, "RDS", "maria", databases.name, "root", "")
    with pytest.raises(DataError, match="ERROR 1064"):
        staged_rows(source, query, tmp_path)
    admin = sqlalchemy.create_engine(f"{MARIADB_ADMIN}{databases.name}")
    with admin.connect() as connection:
        assert connection.exec_driver_sql("SELECT COUNT(*) FROM secrets").scalar_one() == 2
    admin.dispose()
