"""How long a SQL source's query runs (storage.sql, sql_child, sql_watch) on the MariaDB and PostgreSQL
servers of the machine: it ends with its worker, its job's stop, or the read left, and the process reading a
MySQL query ends with its reader and lets the other threads of its process run meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import sqlalchemy
from sql_sources_helpers import MYSQL, PASSWORD, POSTGRES, Databases, created_databases

from emrml.errors import DataError
from emrml.storage import sql, sql_staging
from metastores import MARIADB_ADMIN, POSTGRES_ADMIN


@pytest.fixture(scope="module")
def databases() -> Iterator[Databases]:
    with created_databases() as created:
        yield created


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
