"""A job whose metastore is full (SQLite's "database or disk is full", PostgreSQL's disk_full, MySQL and
MariaDB's disk or table full) fails saying so; no row is lost."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from jobs_helpers import pending_bank
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError

from emrml.errors import InternalServerException
from emrml.service.app import EmrML
from emrml.service.metastore import BUSY_SECONDS, is_full


@pytest.fixture
def full_for_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """The job's own metastore connections may not grow the database (SQLite's ``max_page_count``): as if
    its disk filled up as the job started. The test's connections are not limited."""
    from emrml.service import worker

    open_engine = worker.open_engine

    def limited(url: str) -> Engine:
        engine = open_engine(url)

        def no_more_pages(connection: sqlite3.Connection, _record: object) -> None:
            cursor = connection.cursor()
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count={pages}")
            cursor.close()

        event.listen(engine, "connect", no_more_pages)
        return engine

    monkeypatch.setattr(worker, "open_engine", limited)


def _metastore(app: EmrML) -> Path:
    return app.settings.home / "metastore.db"


def _run_in_process(app: EmrML, entity_id: str) -> None:
    from emrml.service import worker

    attempt = app.jobs.claim("DataSource", entity_id)
    worker.run_job_in_this_process(app.settings, "DataSource", entity_id, attempt, worker=False)


def test_a_job_whose_results_do_not_fit_in_the_metastore_fails_naming_it(
    sqlite_app: EmrML, shared_datasets: Path, request: pytest.FixtureRequest
) -> None:
    """The datasource's statistics are the bulk of its outcome: the metastore has no room for them. The job
    fails with a message naming the metastore (not an internal error, nor a worker dead of a traceback),
    its sample goes with it, and the other rows are whole."""
    app = sqlite_app
    pending_bank(app, "ds-kept", shared_datasets)
    assert app.wait("DataSource", "ds-kept")["Status"] == "COMPLETED"
    kept = app.call("GetDataSource", {"DataSourceId": "ds-kept"})
    pending_bank(app, "ds-full", shared_datasets)
    request.getfixturevalue("full_for_the_job")
    _run_in_process(app, "ds-full")
    failed = app.call("GetDataSource", {"DataSourceId": "ds-full"})
    assert failed["Status"] == "FAILED"
    assert failed["Message"] == (
        f"Reading the data and computing its statistics failed: the metastore (sqlite:///{_metastore(app)}) "
        "is full: the disk it is on is full or past a size limit; free some space and run it again"
    )
    assert "TotalRecordCount" not in failed
    assert not (app.settings.home / "datasources" / "ds-full.sample.arrow").exists()
    assert app.call("GetDataSource", {"DataSourceId": "ds-kept"}) == kept
    assert "Statistics" in app.call("GetDataSourceStatistics", {"DataSourceId": "ds-kept"})
    with sqlite3.connect(_metastore(app)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_progress_report_the_metastore_has_no_room_for_fails_the_job_naming_it(
    sqlite_app: EmrML, shared_datasets: Path, full_for_the_job: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers the job functions first)

    def reports_at_length(context: worker.JobContext) -> dict:
        context.progress(0.3, "reading " + "a very long file name " * 10_000)
        raise AssertionError("the progress report was recorded")

    app = sqlite_app
    pending_bank(app, "ds-full", shared_datasets)
    monkeypatch.setitem(worker.JOB_FUNCTIONS, "DataSource", reports_at_length)
    _run_in_process(app, "ds-full")
    failed = app.call("GetDataSource", {"DataSourceId": "ds-full"})
    assert failed["Status"] == "FAILED"
    assert failed["Message"].startswith(
        "Reading the data and computing its statistics failed: the metastore (sqlite:///"
    )
    assert "internal error" not in failed["Message"]


# A worker (``worker_main``) whose job fills the metastore: the page of its row first, so that not even the
# failure saying so fits, then the disk (``max_page_count``, as above) with its results.
_FILLING_WORKER = """
import os, sys
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from emrml.config import Settings
from emrml.service import tasks, worker

open_engine = worker.open_engine

def limited(url):
    engine = open_engine(url)

    def no_more_pages(connection, _record):
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count={pages}")

    event.listen(engine, "connect", no_more_pages)
    return engine

def fills_the_metastore(context):
    # A column without an index: an index's pages would fill first and leave the row's page room to spare.
    text = ""
    try:
        while True:
            context.write(invalid_examples=text + "n" * 16)
            text += "n" * 16
    except SQLAlchemyError:
        pass
    return {"statistics": "{}" + " " * 100_000}

worker.open_engine = limited
worker.JOB_FUNCTIONS["DataSource"] = fills_the_metastore
settings = Settings.load(environ={}, home=sys.argv[1])
worker.worker_main(settings, "DataSource", sys.argv[2], int(sys.argv[3]), os.getppid())
"""


def test_a_worker_that_finds_no_room_to_record_its_failure_ends_saying_so(
    sqlite_app: EmrML, shared_datasets: Path
) -> None:
    """Not even the job's failure fits in the metastore: the worker ends with an exit code its runner tells
    the user by (the job is retried, or failed, with that), having logged the message naming the
    metastore; the row is as the job's last write left it, and the metastore whole."""
    from emrml.service.worker import METASTORE_FULL, describe_exit

    app = sqlite_app
    pending_bank(app, "ds-full", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-full")
    ended = subprocess.run(
        [sys.executable, "-c", _FILLING_WORKER, str(app.settings.home), "ds-full", str(attempt)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ended.returncode == METASTORE_FULL, ended.stderr
    assert f"the metastore (sqlite:///{_metastore(app)}) is full" in ended.stderr
    assert "Traceback" not in ended.stderr
    assert describe_exit(ended.returncode) == "the metastore was full: its disk is full or past a size limit"
    described = app.call("GetDataSource", {"DataSourceId": "ds-full"})
    assert described["Status"] == "INPROGRESS" and "TotalRecordCount" not in described
    with sqlite3.connect(_metastore(app)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_heartbeat_the_metastore_refused_is_tried_again(
    tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heartbeat the metastore refused (full for a moment) does not end the job's heartbeats: a job whose
    heartbeats stopped would be taken over by another attempt while it still runs."""
    from sqlalchemy.exc import OperationalError

    from emrml.config import Settings
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers the job functions first)

    app = EmrML(Settings.load(environ={}, home=tmp_path / "home", job_lease_seconds=0.2))
    refused, beat_again = threading.Event(), threading.Event()
    write = worker.JobContext.write

    def refused_once(context: worker.JobContext, **values: object) -> bool:
        if list(values) == ["heartbeat_at"]:
            if not refused.is_set():
                refused.set()
                raise OperationalError("UPDATE", {}, sqlite3.OperationalError("database or disk is full"))
            beat_again.set()
        return write(context, **values)

    def waits_for_a_heartbeat_after_the_refused_one(_context: worker.JobContext) -> dict:
        assert beat_again.wait(60), "no heartbeat after the refused one"
        return {}

    monkeypatch.setattr(worker.JobContext, "write", refused_once)
    monkeypatch.setitem(worker.JOB_FUNCTIONS, "DataSource", waits_for_a_heartbeat_after_the_refused_one)
    pending_bank(app, "ds-beating", shared_datasets)
    _run_in_process(app, "ds-beating")
    described = app.call("GetDataSource", {"DataSourceId": "ds-beating"})
    assert described["Status"] == "COMPLETED", described.get("Message")
    app.close()


#: A trigger refusing a datasource's outcome as large as its statistics, with the error the database
#: sends when it has no room (provoking a disk really full is not cheap).
_NO_ROOM_FOR_STATISTICS = {
    "postgresql": [
        """CREATE FUNCTION no_room() RETURNS trigger AS $$ BEGIN
            IF length(NEW.statistics) > 1000 THEN
                RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
            END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql""",
        "CREATE TRIGGER no_room BEFORE UPDATE ON data_sources FOR EACH ROW EXECUTE FUNCTION no_room()",
    ],
    "mysql": [
        """CREATE TRIGGER no_room BEFORE UPDATE ON data_sources FOR EACH ROW BEGIN
            IF LENGTH(NEW.statistics) > 1000 THEN
                SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1114, MESSAGE_TEXT = 'The table is full';
            END IF;
        END"""
    ],
}


@pytest.mark.parametrize("metastore_url", ["postgresql", "mariadb"], indirect=True)
def test_a_job_whose_results_do_not_fit_in_a_database_server_metastore_fails_naming_it(
    app: EmrML, shared_datasets: Path
) -> None:
    """As on SQLite: a PostgreSQL or MariaDB metastore with no room for the job's outcome fails the job with
    the message naming the metastore, not an internal error."""
    from sqlalchemy.engine import make_url

    pending_bank(app, "ds-full", shared_datasets)
    with app.engine.begin() as connection:
        for statement in _NO_ROOM_FOR_STATISTICS[app.engine.dialect.name]:
            connection.exec_driver_sql(statement)
    _run_in_process(app, "ds-full")
    failed = app.call("GetDataSource", {"DataSourceId": "ds-full"})
    where = make_url(app.settings.database_url).render_as_string(hide_password=True)
    assert failed["Status"] == "FAILED"
    assert failed["Message"] == (
        f"Reading the data and computing its statistics failed: the metastore ({where}) is full: the disk "
        "it is on is full or past a size limit; free some space and run it again"
    )
    assert "TotalRecordCount" not in failed
    assert not (app.settings.home / "datasources" / "ds-full.sample.arrow").exists()


def _error(connection: Connection, statement: str) -> DBAPIError:
    """The error the database answers ``statement`` with, through its real driver."""
    with pytest.raises(DBAPIError) as raised:
        connection.exec_driver_sql(statement)
    connection.rollback()
    return raised.value


def _fill(connection: Connection, table_statement: str, row: str) -> DBAPIError:
    """Create a table with ``table_statement`` and insert ``row`` into it until the database has no room."""
    connection.exec_driver_sql(table_statement)
    for _ in range(100_000):
        try:
            connection.exec_driver_sql(f"INSERT INTO filler VALUES ({row})")
        except DBAPIError as exc:
            connection.rollback()
            return exc
    raise AssertionError("the table never filled up")


def test_a_metastore_with_no_room_is_told_from_its_other_errors(app: EmrML) -> None:
    """What each database answers when it has no room, through its real driver, is told as such (a job then
    fails naming the metastore); its other errors (a duplicate key, a server short of memory) are not."""
    with app.engine.connect() as connection:
        dialect = app.engine.dialect.name
        if dialect == "sqlite":
            # The table first: creating it needs a page, which a metastore without free pages (as its
            # migrations left it) would not have.
            connection.exec_driver_sql("CREATE TABLE filler (x BLOB)")
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
            connection.exec_driver_sql(f"PRAGMA max_page_count={pages}")
            full = [_fill(connection, "CREATE TABLE IF NOT EXISTS filler (x BLOB)", "zeroblob(4096)")]
        elif dialect == "postgresql":
            # A disk really full is not cheap to provoke: the server raises the error it would send.
            raise_error = "DO $$ BEGIN RAISE EXCEPTION 'no room' USING ERRCODE = '{}'; END $$"
            full = [_error(connection, raise_error.format("disk_full"))]
            assert not is_full(_error(connection, raise_error.format("out_of_memory")))
        else:
            # A MEMORY table past max_heap_table_size: "The table 'filler' is full" (1114), as an InnoDB
            # table whose disk is full; and ER_DISK_FULL (1021) as the server sends it.
            connection.exec_driver_sql("SET SESSION max_heap_table_size = 16384")
            table = "CREATE TEMPORARY TABLE filler (x VARCHAR(255)) ENGINE=MEMORY"
            full = [
                _fill(connection, table, "REPEAT('x', 255)"),
                _error(
                    connection, "SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1021, MESSAGE_TEXT = 'Disk full'"
                ),
            ]
        assert all(is_full(error) for error in full), [str(error) for error in full]
        connection.exec_driver_sql("CREATE TEMPORARY TABLE twice (x INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("INSERT INTO twice VALUES (1)")
        assert not is_full(_error(connection, "INSERT INTO twice VALUES (1)"))


def _on_every_connection(app: EmrML, statement: str) -> None:
    """Run ``statement`` on each connection the app opens from now on (its pool emptied first)."""

    def run(connection: sqlite3.Connection, _record: object) -> None:
        connection.execute(statement)

    event.listen(app.engine, "connect", run)
    app.engine.dispose()


def test_a_request_the_metastore_has_no_room_for_is_refused_naming_it(
    sqlite_app: EmrML, shared_datasets: Path
) -> None:
    """A Create* on a full metastore failed as an internal error ("OperationalError: database or disk is
    full", its traceback in a server's log): it now names the metastore and what to do, and writes nothing."""
    app = sqlite_app
    with sqlite3.connect(_metastore(app)) as connection:
        connection.execute("CREATE TABLE filler (x BLOB)")
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(sqlite3.OperationalError, match="full"):  # its free pages used up
            for _ in range(10_000):
                connection.execute("INSERT INTO filler VALUES (zeroblob(4096))")
    _on_every_connection(app, f"PRAGMA max_page_count={pages}")
    bank = shared_datasets / "bank_marketing"
    # Blanks after the schema make the row longer than the free room of a page: it needs a new one.
    schema = (bank / "data.csv.schema").read_text() + " " * 20_000
    spec = {"DataLocationS3": str(bank / "data.csv"), "DataSchema": schema}
    with pytest.raises(InternalServerException) as refused:
        app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-full", "DataSpec": spec})
    assert refused.value.message == (
        f"the metastore (sqlite:///{_metastore(app)}) is full: the disk it is on is full or past a size "
        "limit; free some space and try again"
    )
    assert app.call("DescribeDataSources", {})["Results"] == []


def test_a_request_kept_waiting_past_the_busy_timeout_is_refused_naming_it(sqlite_app: EmrML) -> None:
    """Another process holding the SQLite metastore locked past the busy timeout (here a moment, rather than
    its 30 s) failed a request as an internal error ("database is locked"); it now says so."""
    app = sqlite_app
    _on_every_connection(app, "PRAGMA busy_timeout=50")
    holder = sqlite3.connect(_metastore(app), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(InternalServerException) as refused:
            app.call("AddTags", {"ResourceId": "ds-x", "ResourceType": "DataSource", "Tags": []})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert refused.value.message == (
        f"the metastore (sqlite:///{_metastore(app)}) is busy: another process held it locked for longer "
        f"than {BUSY_SECONDS} s; try again"
    )


# A worker (``worker_main``) whose metastore another process holds locked past the busy timeout (here a
# moment, rather than its 30 s) as the job reports progress.
_LOCKED_OUT_WORKER = """
import os, sqlite3, sys
from sqlalchemy import event
from emrml.config import Settings
from emrml.service import tasks, worker

open_engine = worker.open_engine

def impatient(url):
    engine = open_engine(url)
    event.listen(engine, "connect", lambda connection, _record: connection.execute("PRAGMA busy_timeout=50"))
    return engine

def locked_out(context):
    holder = sqlite3.connect(sys.argv[1] + "/metastore.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        context.note("reading")
    finally:
        holder.execute("ROLLBACK")
    raise AssertionError("the progress was recorded")

worker.open_engine = impatient
worker.JOB_FUNCTIONS["DataSource"] = locked_out
settings = Settings.load(environ={}, home=sys.argv[1])
worker.worker_main(settings, "DataSource", sys.argv[2], int(sys.argv[3]), os.getppid())
"""


def test_a_worker_locked_out_of_the_metastore_ends_for_its_job_to_be_retried(
    sqlite_app: EmrML, shared_datasets: Path
) -> None:
    """The metastore held locked past the busy timeout by another process is no failure of the job's: its
    worker ended as for an internal error (the job FAILED for good, "see the log"); it now ends with an exit
    code its runner retries the job on, and tells the user by."""
    from emrml.service.worker import METASTORE_BUSY, describe_exit

    app = sqlite_app
    pending_bank(app, "ds-busy", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-busy")
    ended = subprocess.run(
        [sys.executable, "-c", _LOCKED_OUT_WORKER, str(app.settings.home), "ds-busy", str(attempt)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ended.returncode == METASTORE_BUSY, ended.stderr
    assert "Traceback" not in ended.stderr
    said = f"the metastore was busy: another process held it locked for longer than {BUSY_SECONDS} s"
    assert describe_exit(ended.returncode) == said
    assert app.jobs._retry_or_fail("DataSource", "ds-busy", attempt, f"the worker process died ({said})")
    retried = app.call("GetDataSource", {"DataSourceId": "ds-busy"})
    assert retried["Status"] == "PENDING" and said in retried["Message"]


def test_a_metastore_with_no_room_to_be_made_is_named_and_made_whole_later(tmp_path: Path) -> None:
    """A first command (or server start) on a disk too full for the metastore's tables ended in "internal
    error: OperationalError: database or disk is full" (a server's, in a traceback). It now names the
    metastore; the migrations rolled back whole, the next start, given room, makes it."""
    from emrml.service.metastore import migrate, open_engine, schema_is_current

    url = f"sqlite:///{tmp_path / 'metastore.db'}"
    engine = open_engine(url)
    event.listen(engine, "connect", lambda connection, _record: connection.execute("PRAGMA max_page_count=8"))
    with pytest.raises(InternalServerException) as refused:
        migrate(engine, tmp_path)
    engine.dispose()
    assert refused.value.message == (
        f"the metastore ({url}) is full: the disk it is on is full or past a size limit; free some space "
        "and try again"
    )
    engine = open_engine(url)
    migrate(engine, tmp_path)
    assert schema_is_current(engine)
    engine.dispose()
