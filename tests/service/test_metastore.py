"""What every metastore must keep exactly: ids that differ only in case, times to the millisecond."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML
from emrml.service.metastore import now

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from emrml.service.rows import Stream

SCHEMA = json.dumps(
    {
        "version": "1.0",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [{"attributeName": "x", "attributeType": "NUMERIC"}],
    }
)


def test_ids_differing_in_case_are_two_objects(app: EmrML, tmp_path: Path) -> None:
    for entity_id, rows in (("ds-case", "1\n2\n"), ("DS-CASE", "1\n2\n3\n")):
        data = tmp_path / f"{entity_id}.csv"
        data.write_text("x\n" + rows)
        spec = {"DataLocationS3": str(data), "DataSchema": SCHEMA}
        app.call("CreateDataSourceFromS3", {"DataSourceId": entity_id, "DataSpec": spec})
    lower, upper = app.wait("DataSource", "ds-case"), app.wait("DataSource", "DS-CASE")
    assert lower["DataLocationS3"].endswith("ds-case.csv")
    assert upper["DataLocationS3"].endswith("DS-CASE.csv")
    assert (lower["Status"], upper["Status"]) == ("COMPLETED", "COMPLETED")


def test_times_keep_milliseconds(app: EmrML, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x\n1\n")
    before = now()
    spec = {"DataLocationS3": str(data), "DataSchema": SCHEMA}
    app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-time", "DataSpec": spec})
    created = app.call("GetDataSource", {"DataSourceId": "ds-time"})["CreatedAt"]
    # A 4-byte float holds an epoch time only to about two minutes.
    assert before <= created <= now()
    assert created == round(created, 3)


def _longest_schema() -> str:
    """A valid DataSchema as long as the API's model allows (131,071 characters), padded with blanks."""
    return SCHEMA[:-1] + " " * (131071 - len(SCHEMA)) + "}"


def test_a_request_as_long_as_the_api_allows_is_stored(app: EmrML, tmp_path: Path) -> None:
    """MySQL's and MariaDB's TEXT (65,535 bytes) could not hold it: the Create failed with an internal
    error."""
    spec = {"DataLocationS3": str(tmp_path / "data.csv"), "DataSchema": _longest_schema()}
    app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-long", "DataSpec": spec})
    verbose = app.call("GetDataSource", {"DataSourceId": "ds-long", "Verbose": True})
    assert verbose["DataSourceSchema"] == spec["DataSchema"]


@contextmanager
def _downgraded(settings: Settings, revision: str, url: str | None = None) -> Iterator[Connection]:
    """A connection to ``settings``' metastore, migrated to the newest revision by a first start and then
    downgraded to ``revision`` in the transaction the caller writes its older rows in."""
    from alembic import command
    from alembic.config import Config

    from emrml.service import metastore

    EmrML(settings).close()  # migrated to the newest revision
    engine = metastore.open_engine(url or settings.database_url)
    config = Config()
    config.set_main_option("script_location", str(metastore.MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["home"] = settings.home
            command.downgrade(config, revision)
            yield connection
    finally:
        engine.dispose()


def test_migration_0014_makes_an_earlier_mariadb_metastore_hold_long_text(tmp_path: Path) -> None:
    """A metastore of 0013 (TEXT columns: what 0014's downgrade restores) takes a long request once the
    next start has migrated it."""
    from sqlalchemy import inspect

    from metastores import empty_metastore

    for url in empty_metastore("mariadb", tmp_path):
        settings = Settings.load(environ={}, home=tmp_path / "home", metastore_url=url)
        with _downgraded(settings, "0013", url) as connection:
            types = {
                column["name"]: type(column["type"]).__name__
                for column in inspect(connection).get_columns("data_sources")
            }
        assert types["request"] == "TEXT"
        app = EmrML(settings)  # migrates again
        try:
            spec = {"DataLocationS3": str(tmp_path / "data.csv"), "DataSchema": _longest_schema()}
            app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-long", "DataSpec": spec})
            assert app.call("GetDataSource", {"DataSourceId": "ds-long"})["Status"] == "PENDING"
            types = {
                c["name"]: type(c["type"]).__name__ for c in inspect(app.engine).get_columns("data_sources")
            }
            assert types["request"] == types["data_schema"] == "LONGTEXT"
        finally:
            app.close()


def _an_old_stream_migrated(home: Path, revision: str, column: str) -> Stream:
    """Stream ``st-old``, STOPPED, written to a metastore at ``revision`` (whose streams lack ``column``),
    as the ORM reads it once the next start has migrated the metastore."""
    from sqlalchemy import inspect, text

    from emrml.service import rows

    settings = Settings.load(environ={}, home=home)
    with _downgraded(settings, revision) as connection:
        assert column not in {c["name"] for c in inspect(connection).get_columns("streams")}
        connection.execute(
            text(
                "INSERT INTO streams (id, status, created_by, created_at, last_updated_at, request,"
                " ml_model_id, input_uri, output_uri, dead_letter_uri, starting_position, record_format)"
                " VALUES ('st-old', 'STOPPED', 'root', 1, 1, '{}', 'ml-old', 'kinesis://in', '/out', '/dead',"
                " 'LATEST', 'auto')"
            )
        )
    app = EmrML(settings)  # migrates again
    try:
        with app.sessions() as session:
            stream = session.get(rows.Stream, "st-old")
            assert stream is not None
            session.expunge(stream)
            return stream
    finally:
        app.close()


def test_migration_0015_keeps_earlier_streams_and_records_them_not_confined(tmp_path: Path) -> None:
    """A metastore of 0014 (streams without ``confined``) keeps its streams once the next start has
    migrated it: they were started before streams were confined, as objects before 0007 were."""
    stream = _an_old_stream_migrated(tmp_path / "home", "0014", "confined")
    assert (stream.output_uri, stream.confined) == ("/out", False)


def test_migration_0016_takes_a_stopping_streams_last_update_for_its_stop_request(tmp_path: Path) -> None:
    """A stream STOPPING as the metastore is upgraded gets its ``last_updated_at`` as the time it was asked
    to stop (the best record of it); a RUNNING one has not been asked."""
    from sqlalchemy import text

    from emrml.service import rows

    settings = Settings.load(environ={}, home=tmp_path / "home")
    with _downgraded(settings, "0015") as connection:
        for stream_id, status, updated in (("st-stopping", "STOPPING", 5), ("st-running", "RUNNING", 7)):
            connection.execute(
                text(
                    "INSERT INTO streams (id, status, created_by, created_at, last_updated_at, request,"
                    " ml_model_id, input_uri, output_uri, dead_letter_uri, starting_position, record_format)"
                    f" VALUES ('{stream_id}', '{status}', 'root', 1, {updated}, '{{}}', 'ml-old',"
                    " 'kinesis://in', '/out', '/dead', 'LATEST', 'auto')"
                )
            )
    app = EmrML(settings)  # migrates again
    try:
        with app.sessions() as session:
            stopping = session.get(rows.Stream, "st-stopping")
            running = session.get(rows.Stream, "st-running")
            assert stopping is not None and running is not None
            assert (stopping.stop_requested_at, running.stop_requested_at) == (5.0, None)
    finally:
        app.close()


def test_migration_0019_makes_an_earlier_postgresql_metastore_list_by_code_point(
    tmp_path: Path,
) -> None:
    """Users of a metastore of 0018 in a database whose text collates as English (users' names in its
    order there) list by code point, as on the other metastores, once the next start has migrated it."""
    from sqlalchemy import text

    from metastores import empty_metastore

    names = ["B", "a", "_x", "Z", "b"]
    for url in empty_metastore("postgresql-english", tmp_path):
        settings = Settings.load(environ={}, home=tmp_path / "home", metastore_url=url)
        with _downgraded(settings, "0018", url) as connection:
            for name in names:
                connection.execute(
                    text("INSERT INTO users (name, created_at, enabled) VALUES (:name, 1, true)"),
                    {"name": name},
                )
            english = connection.execute(text("SELECT name FROM users ORDER BY name")).scalars().all()
        assert [name for name in english if name in names] != sorted(names)
        app = EmrML(settings)  # migrates again
        try:
            listed = [user.name for user in app.access.list_users()]
            assert [name for name in listed if name in names] == sorted(names)
        finally:
            app.close()


@pytest.mark.parametrize("url", ["mysql+mysqldb://root@127.0.0.1/x", "postgresql+nosuchdriver://x/y", "x"])
def test_a_metastore_url_without_a_driver_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidInputException, match=r"setting metastore_url: .*pip install 'emrml\[mysql\]'"):
        EmrML(Settings.load(environ={}, home=tmp_path, metastore_url=url))


def test_the_migrated_schema_is_the_models_schema(app: EmrML) -> None:
    """Migrations and the SQLAlchemy models describe the same tables, columns, types and indexes."""
    import importlib
    import pkgutil
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import emrml.service
    from emrml.service.metastore import sort_key_objects
    from emrml.service.rows import Base

    for module in pkgutil.iter_modules(emrml.service.__path__):  # every module that declares tables
        importlib.import_module(f"emrml.service.{module.name}")

    def declared(_object: object, name: str | None, kind: str, reflected: bool, _compared: object) -> bool:
        # Describe*'s sort keys (migration 0020) differ by metastore, and no model declares them
        # (test_describe_pages_from_index checks them).
        return not (reflected and (kind, name) in sort_key_objects())

    with app.engine.connect() as connection, warnings.catch_warnings():
        # SQLAlchemy reflects no index on an expression of SQLite's (those sort keys), and says so.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index ix_")
        context = MigrationContext.configure(connection, opts={"include_object": declared})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_a_second_app_on_the_same_home_keeps_the_first_ones_sqlite_locks(tmp_path: Path) -> None:
    """Opening a second EmrML on a home (the CLI run inside a notebook or a server process) must not open
    and close the metastore file: closing any descriptor of a file drops all of the process's POSIX locks
    on it, SQLite's included, and another process closing its last connection would then take the
    database for unused and delete the WAL that this process still writes to (disk I/O errors)."""
    import sqlite3
    import subprocess
    import sys

    first = EmrML(Settings.load(environ={}, home=tmp_path))
    try:
        first.call("DescribeDataSources", {})  # a pooled connection, holding its shared lock
        wal = tmp_path / "metastore.db-wal"
        assert wal.exists()
        EmrML(Settings.load(environ={}, home=tmp_path)).close()
        other_process = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "c.execute('select count(*) from sqlite_master').fetchall(); c.close()"
        )
        subprocess.run([sys.executable, "-c", other_process, str(tmp_path / "metastore.db")], check=True)
        assert wal.exists(), "another process found the database unused and removed its WAL"
        first.call("DescribeDataSources", {})
    finally:
        first.close()
    assert sqlite3.connect(tmp_path / "metastore.db").execute("pragma integrity_check").fetchone() == ("ok",)


#: A process that upgrades the metastore ``argv[1]`` (home ``argv[2]``) to 0011, then upgrades it on and
#: is killed in the middle of 0012: after its first table, before the others and the new revision.
_KILLED_AS_IT_MIGRATES = """
import os, sys
from pathlib import Path
from alembic import command, op
from alembic.config import Config
from emrml.service import metastore

url, home = sys.argv[1], Path(sys.argv[2])
engine = metastore.open_engine(url)
config = Config()
config.set_main_option("script_location", str(metastore.MIGRATIONS))
with engine.begin() as connection:
    config.attributes["connection"] = connection
    config.attributes["home"] = home
    command.upgrade(config, "0011")
execute = op.execute

def killed(statement, *args, **kwargs):
    if "UPDATE ml_models" in str(statement):
        os._exit(9)
    return execute(statement, *args, **kwargs)

op.execute = killed
metastore.migrate(engine, home)
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_process_killed_as_it_migrates_leaves_the_metastore_as_it_was(kind: str, tmp_path: Path) -> None:
    """An older metastore whose upgrade was cut short (a server stopped, a machine down) is upgraded by the
    next start, not refused with "duplicate column" forever. (MySQL and MariaDB commit each DDL statement by
    itself: no migration there can be undone.)"""
    import subprocess
    import sys

    from emrml.service.metastore import migrate, open_engine, schema_is_current
    from metastores import empty_metastore

    metastore_urls = empty_metastore(kind, tmp_path)
    url = next(metastore_urls)
    try:
        command = [sys.executable, "-c", _KILLED_AS_IT_MIGRATES, url, str(tmp_path)]
        assert subprocess.run(command, capture_output=True, text=True).returncode == 9
        engine = open_engine(url)
        try:
            migrate(engine, tmp_path)
            assert schema_is_current(engine)
        finally:
            engine.dispose()
    finally:
        next(metastore_urls, None)


@pytest.mark.parametrize("made", ["not a database", "a folder"])
def test_a_metastore_file_that_is_no_database_is_named(tmp_path: Path, made: str) -> None:
    """A home whose metastore.db was some other file (or a folder) failed every command with "internal
    error: DatabaseError" (exit 1); nothing is written over it."""
    from emrml.service.metastore import migrate, open_engine

    path = tmp_path / "metastore.db"
    if made == "a folder":
        path.mkdir()
        reason = "unable to open database file"
    else:
        path.write_text("garbage\n")
        reason = "file is not a database"
    engine = open_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(InvalidInputException) as caught:
            migrate(engine, tmp_path)
    finally:
        engine.dispose()
    assert caught.value.message == f"metastore {path}: cannot open it as an SQLite database ({reason})"
    assert path.is_dir() if made == "a folder" else path.read_text() == "garbage\n"


def test_migration_0021_starts_earlier_streams_at_start_generation_0(tmp_path: Path) -> None:
    """A metastore of 0020 (streams without ``start_generation``) keeps its streams once the next start has
    migrated it, each at generation 0, which the next StartStream claims."""
    stream = _an_old_stream_migrated(tmp_path / "home", "0020", "start_generation")
    assert (stream.status, stream.start_generation) == ("STOPPED", 0)
