"""Reading SQL sources (storage.sql) against the MariaDB and PostgreSQL servers of the machine: sign-in
with any password, and the values of awkward column types as they are staged."""

from __future__ import annotations

import csv
import gzip
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy

from emrml.errors import DataError
from emrml.storage import sql, sql_staging
from metastores import MARIADB_ADMIN, POSTGRES_ADMIN

#: Non-ASCII letters (Latin-1 and beyond it) and every character a connection URL gives a meaning to.
PASSWORD = "pässwörd-密码 @:/?#%+&="
MYSQL = {"maria": "mysql://127.0.0.1:3306"}
POSTGRES = {"pg": "postgresql://127.0.0.1:5432"}


@dataclass
class Databases:
    name: str
    user: str

    def mariadb(self, password: str = PASSWORD) -> sql.SqlSource:
        return sql.resolve(MYSQL, "RDS", "maria", self.name, self.user, password)

    def postgres(self, password: str = "any") -> sql.SqlSource:
        # The server trusts loopback connections: the password is not checked, only carried.
        return sql.resolve(POSTGRES, "Redshift", "pg", self.name, "postgres", password)


@pytest.fixture(scope="module")
def databases() -> Iterator[Databases]:
    suffix = uuid.uuid4().hex[:12]
    name, user = f"emrmlsrc{suffix}", f"emrml_src_{suffix}"
    maria = sqlalchemy.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    postgres = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with maria.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
            # The password as the server's UTF-8 connection sends it: what the mysql client does too.
            connection.exec_driver_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (PASSWORD,))
            connection.exec_driver_sql(f"GRANT SELECT ON {name}.* TO '{user}'@'127.0.0.1'")
        with postgres.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        yield Databases(name, user)
    finally:
        with maria.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            connection.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        with postgres.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        maria.dispose()
        postgres.dispose()


def staged_rows(
    source: sql.SqlSource, query: str, tmp_path: Path
) -> tuple[list[list[str]], sql_staging.Staged]:
    location = str(tmp_path / f"{uuid.uuid4().hex}.csv.gz")
    staged = sql_staging.stage_query(source, query, location)
    with gzip.open(location, "rt", newline="") as text:
        return list(csv.reader(text)), staged


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
    assert refused.value.message == (
        "SelectSqlQuery on RDS instance 'maria' (mysql://127.0.0.1:3306, database "
        f"'{databases.name}', user '{databases.user}') returns no rows to read (a SELECT … INTO puts its "
        "result elsewhere): select the columns the datasource reads"
    )
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


def _running_queries(admin_url: str, listing: str, marker: str) -> list[str]:
    """The text of the queries other connections run with ``marker`` in them (``listing`` selects them)."""
    admin = sqlalchemy.create_engine(admin_url)
    with admin.connect() as connection:
        queries = [row[0] for row in connection.exec_driver_sql(listing, (marker,))]
    admin.dispose()
    return queries


def _postgres_queries(marker: str) -> list[str]:
    listing = (
        "SELECT query FROM pg_stat_activity WHERE state = 'active' AND strpos(query, %s) > 0 "
        "AND pid <> pg_backend_pid()"
    )
    return _running_queries(POSTGRES_ADMIN, listing, marker)


def test_a_postgresql_query_ends_when_its_worker_is_killed(databases: Databases) -> None:
    """A job whose datasource is deleted, or that runs out of memory, has its worker killed: the query
    must not go on using the database for as long as it would have run (here ten minutes)."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    source = databases.postgres()
    script = (
        "import sys\n"
        "from emrml.storage import sql, sql_staging\n"
        f"source = sql.resolve({POSTGRES!r}, 'Redshift', 'pg', {source.database!r}, 'postgres', 'any')\n"
        f"sql_staging.stage_query(source, 'SELECT 1 AS {marker} FROM pg_sleep(600)', sys.argv[1])\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        worker = subprocess.Popen([sys.executable, "-c", script, f"{folder}/staged.csv.gz"])
        try:
            while not _postgres_queries(marker):
                assert worker.poll() is None, "the query ended before it ran"
                time.sleep(0.1)
        finally:
            worker.kill()
            worker.wait()
        assert _gone(_postgres_queries, marker) == []


def _mariadb_queries(marker: str) -> list[str]:
    listing = (
        "SELECT info FROM information_schema.processlist WHERE instr(info, %s) > 0 AND id <> connection_id()"
    )
    return _running_queries(MARIADB_ADMIN, listing, marker)


def _gone(queries: Callable[[str], list[str]], marker: str) -> list[str]:
    """The queries still running with ``marker`` in them, after waiting up to ten seconds for none (a
    loaded machine is slow)."""
    for _ in range(100):
        if not queries(marker):
            break
        time.sleep(0.1)
    return queries(marker)


def _staging(
    source: sql.SqlSource, query: str, tmp_path: Path, stopped: threading.Event
) -> tuple[threading.Thread, list[BaseException]]:
    """A thread (not started) staging ``query`` into ``tmp_path``'s staged.csv.gz until ``stopped``, and the
    failures it will have met."""
    failures: list[BaseException] = []

    def stage() -> None:
        try:
            sql_staging.stage_query(source, query, str(tmp_path / "staged.csv.gz"), stopped=stopped)
        except BaseException as exc:
            failures.append(exc)

    return threading.Thread(target=stage, daemon=True), failures


@contextmanager
def _ended_after(marker: str) -> Iterator[None]:
    """Whatever the test found, no query with ``marker`` in it runs on after it, on either server: they would
    take hours."""
    try:
        yield
    finally:
        admin = sqlalchemy.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            found = connection.exec_driver_sql(
                "SELECT id FROM information_schema.processlist WHERE instr(info, %s) > 0 "
                "AND id <> connection_id()",
                (marker,),
            )
            for (connection_id,) in found.all():
                with suppress(sqlalchemy.exc.DBAPIError):
                    connection.exec_driver_sql(f"KILL {int(connection_id)}")
        admin.dispose()
        admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE strpos(query, %s) > 0 "
                "AND pid <> pg_backend_pid()",
                (marker,),
            )
        admin.dispose()


#: A query that sends nothing for hours while it works, as a join of large tables or a sort would (SLEEP
#: is no test: the server checks its client during it). Its result is described by running it in full.
HOURS_DESCRIBING = "SELECT (SELECT SUM(CRC32(seq)) FROM seq_1_to_100000000000) AS {marker}"
#: The same, described from its plan: it runs in the driver's connection.
HOURS_READING = "SELECT SUM(CRC32(seq)) AS {marker} FROM seq_1_to_100000000000"
#: Like it, but some twenty seconds long (longer on a loaded machine): long enough to be seen and stopped,
#: short enough that a read whose stop never reaches it (a process frozen until the driver's first batch)
#: ends, and fails the test, rather than hanging it.
SECONDS_READING = "SELECT SUM(CRC32(seq)) AS {marker} FROM seq_1_to_200000000"


@pytest.mark.parametrize("query", [HOURS_DESCRIBING, HOURS_READING], ids=["describing", "reading"])
def test_a_mysql_query_ends_when_its_worker_is_killed(databases: Databases, query: str) -> None:
    """MariaDB does not notice that the client of a query that sends nothing while it works has gone: a
    killed worker's query ran on to its end. Both connections of a read are ended: the one describing the
    result and the driver's reading it."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    query = query.format(marker=marker)
    script = (
        "import sys\n"
        "from emrml.storage import sql, sql_staging\n"
        f"source = sql.resolve({MYSQL!r}, 'RDS', 'maria', {databases.name!r}, {databases.user!r}, "
        f"{PASSWORD!r})\n"
        f"sql_staging.stage_query(source, {query!r}, sys.argv[1])\n"
    )
    with tempfile.TemporaryDirectory() as folder, _ended_after(marker):
        worker = subprocess.Popen([sys.executable, "-c", script, f"{folder}/staged.csv.gz"])
        try:
            # The query that runs for hours: describing it (a derived table, emrml_result) does for the one,
            # reading it in the driver's connection for the other. Before the read, the other's description
            # comes and goes in a moment: seen between two looks at the process list, it is no answer.
            describing = query == HOURS_DESCRIBING.format(marker=marker)
            deadline, step = time.monotonic() + 120, "describing" if describing else "reading"
            while not any(("emrml_result" in seen) == describing for seen in _mariadb_queries(marker)):
                assert worker.poll() is None, "the query ended before it ran"
                assert time.monotonic() < deadline, f"no query {step} ran"
                time.sleep(0.1)
        finally:
            worker.kill()
            worker.wait()
        assert _gone(_mariadb_queries, marker) == []


def test_a_mysql_query_ends_when_its_read_is_left(databases: Databases) -> None:
    """A read left before its end (an error while staging, a job stopped at a progress point) ends its
    query, though the process reading it lives on."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    with _ended_after(marker):
        with (
            pytest.raises(RuntimeError, match="left"),
            sql.read_query(databases.mariadb(), HOURS_READING.format(marker=marker)),
        ):
            assert _mariadb_queries(marker)
            raise RuntimeError("left")
        assert _gone(_mariadb_queries, marker) == []


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


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command's name (state, parent, …); [] once it has ended."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs: not ended, nor a zombie its new parent has not reaped yet."""
    return _stat(pid)[:1] not in ([], ["Z"])


def _reading_children(parent: int) -> list[int]:
    """The processes ``parent`` started to read a MySQL query (``storage.sql_child``), zombies left out."""
    found = []
    for folder in Path("/proc").glob("[0-9]*"):
        fields = _stat(folder.name)
        try:
            command = (folder / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if (
            fields[1:2] == [str(parent)]
            and _alive(int(folder.name))
            and b"emrml.storage.sql_child" in command
        ):
            found.append(int(folder.name))
    return found


def test_a_mysql_read_waiting_for_its_rows_lets_the_other_threads_of_its_process_run(
    databases: Databases,
) -> None:
    """connectorx holds the interpreter's lock while it waits for a batch: a query that sent nothing for a
    while froze every thread of the process reading it until its first rows came (on a server running jobs
    on its threads, its HTTP API, its console and its other jobs). Here the test's own thread looks for the
    query on the server again and again while the read waits for it: frozen, it could look at most once."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    results: list[object] = []

    def read() -> None:
        try:
            with sql.read_query(databases.mariadb(), f"SELECT SLEEP(3) AS {marker}, 7 AS seven") as reader:
                results.append(reader.read_all().to_pylist())
        except BaseException as exc:
            results.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    sightings = 0
    with _ended_after(marker):
        reader.start()
        while reader.is_alive():
            # The read's own query, not the one describing its result (``emrml_result``, from its plan).
            sightings += any("emrml_result" not in query for query in _mariadb_queries(marker))
        reader.join()
    assert results == [[{marker: 0, "seven": 7}]]
    assert sightings >= 5


def test_the_process_reading_a_mysql_query_ends_with_its_reader(databases: Databases) -> None:
    """The driver reads in a process of its own: it ends when the read is left (here by an error), and
    when the process reading dies, killed."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    with _ended_after(marker):
        with (
            pytest.raises(RuntimeError, match="left"),
            sql.read_query(databases.mariadb(), HOURS_READING.format(marker=marker)),
        ):
            assert len(_reading_children(os.getpid())) == 1
            raise RuntimeError("left")
        assert _reading_children(os.getpid()) == []
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    script = (
        "from emrml.storage import sql\n"
        f"source = sql.resolve({MYSQL!r}, 'RDS', 'maria', {databases.name!r}, {databases.user!r}, "
        f"{PASSWORD!r})\n"
        f"with sql.read_query(source, {HOURS_READING.format(marker=marker)!r}) as reader:\n"
        "    reader.read_all()\n"
    )
    with _ended_after(marker):
        worker = subprocess.Popen([sys.executable, "-c", script])
        try:
            # The read's own query: the one describing its result (``emrml_result``) runs before the child.
            while not any("emrml_result" not in query for query in _mariadb_queries(marker)):
                assert worker.poll() is None, "the query ended before it ran"
                time.sleep(0.1)
            children = _reading_children(worker.pid)
            assert len(children) == 1
        finally:
            worker.kill()
            worker.wait()
        for _ in range(100):  # a loaded machine is slow
            if not _alive(children[0]):
                break
            time.sleep(0.1)
        assert not _alive(children[0])
        assert _gone(_mariadb_queries, marker) == []


def test_a_mysql_read_whose_reading_process_is_killed_fails_and_ends_its_query(databases: Databases) -> None:
    """The kernel, short of memory, kills the largest process: the driver's, perhaps. The read fails saying
    so, not as a stream cut short, and its query, which sends nothing while it works, is ended."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    with _ended_after(marker):
        with (
            pytest.raises(DataError, match=r"process reading its result was ended by signal 9 \(Killed\)"),
            sql.read_query(databases.mariadb(), HOURS_READING.format(marker=marker)) as reader,
        ):
            [child] = _reading_children(os.getpid())
            os.kill(child, signal.SIGKILL)
            reader.read_all()
        assert _gone(_mariadb_queries, marker) == []


@pytest.mark.parametrize(
    ("describing", "query"),
    [(True, HOURS_DESCRIBING), (False, SECONDS_READING)],
    ids=["describing", "reading"],
)
def test_a_mysql_query_ends_when_its_job_is_stopped(
    databases: Databases, tmp_path: Path, describing: bool, query: str
) -> None:
    """A job on a server's thread (the Spark engine) is asked to stop, never killed: a query that sends
    nothing while it works gave it no progress point to stop at, and ran on to its end beside the
    server, whose process lives on. The stop ends it, and the read fails at once, whether the query is
    described or read (by the driver, which froze the process while it waited, the stop's thread too)."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    stopped = threading.Event()
    reader, failures = _staging(databases.mariadb(), query.format(marker=marker), tmp_path, stopped)
    with _ended_after(marker):
        reader.start()
        # Stopped in the phase the test is about: the result described from the plan is seen, briefly, too.
        while not any(("emrml_result" in seen) == describing for seen in _mariadb_queries(marker)):
            assert reader.is_alive(), f"the query ended before it ran: {failures}"
            time.sleep(0.1)
        stopped.set()
        assert _gone(_mariadb_queries, marker) == []
        reader.join(10)
        assert not reader.is_alive()
        assert [type(failure) for failure in failures] == [DataError]
    assert not (tmp_path / "staged.csv.gz").exists()


def test_a_postgresql_query_ends_when_its_job_is_stopped(databases: Databases, tmp_path: Path) -> None:
    """The job's stop cancels the query, which ran on to its end otherwise (only the death of its process
    ended it), and the read fails at once, as a MySQL one does."""
    marker = f"marker_{uuid.uuid4().hex[:12]}"
    stopped = threading.Event()
    reader, failures = _staging(
        databases.postgres(), f"SELECT 1 AS {marker} FROM pg_sleep(600)", tmp_path, stopped
    )
    with _ended_after(marker):
        reader.start()
        while not _postgres_queries(marker):
            assert reader.is_alive(), f"the query ended before it ran: {failures}"
            time.sleep(0.1)
        stopped.set()
        assert _gone(_postgres_queries, marker) == []
        reader.join(10)
        assert not reader.is_alive()
        assert [type(failure) for failure in failures] == [DataError]
        assert "canceling statement" in str(failures[0])
    assert not (tmp_path / "staged.csv.gz").exists()
