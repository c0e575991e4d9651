"""Metastores for tests: a SQLite file, or a PostgreSQL or MariaDB database dropped afterwards.

``empty_metastore`` gives an empty one, which the first ``EmrML`` on it migrates (the migration tests start
there). ``Templates.new_metastore`` gives one at the current schema, copied from a database migrated once
per test process: migrating a new metastore runs every migration, 0.3–1 s on SQLite and PostgreSQL and
2–4 s on MariaDB, which hundreds of tests would each pay; a copy takes a few milliseconds (a file, or
PostgreSQL's ``CREATE DATABASE ... TEMPLATE``) to a few tenths of a second (MariaDB's tables, recreated from
``SHOW CREATE TABLE`` with their keys and rows).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"


#: A database whose text sorts as English does ("apple" < "b" < "Banana"), as many servers' default
#: locale makes it, rather than by code point as this machine's C.UTF-8 does.
POSTGRES_ENGLISH = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"


def _postgres_database(options: str = "") -> Iterator[str]:
    import sqlalchemy

    name = f"emrml_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name} {options}".rstrip())
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432: {exc.orig}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _mariadb_database() -> Iterator[str]:
    import sqlalchemy

    name = f"emrml_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except sqlalchemy.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"MariaDB is not reachable at 127.0.0.1:3306: {exc.orig}")
    try:
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


def _copy_mariadb_tables(connection: Any, source: str, target: str) -> None:
    """``source``'s tables, created again in ``target`` as ``SHOW CREATE TABLE`` gives them (columns,
    collations, indexes and foreign keys, which name tables of their own database without it), with their
    rows."""
    cursor = connection.cursor()  # pymysql's own (DBAPI): DDL text goes as it is, % signs and all
    try:
        cursor.execute(
            "SELECT default_character_set_name, default_collation_name FROM information_schema.schemata "
            "WHERE schema_name = %s",
            (source,),
        )
        charset, collation = cursor.fetchone()
        cursor.execute(f"ALTER DATABASE {target} CHARACTER SET {charset} COLLATE {collation}")
        cursor.execute(f"USE {target}")
        cursor.execute("SET SESSION foreign_key_checks = 0")  # tables referring to others made later
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (source,),
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f"SHOW CREATE TABLE {source}.`{table}`")
            cursor.execute(cursor.fetchone()[1])
            cursor.execute(f"INSERT INTO `{table}` SELECT * FROM {source}.`{table}`")
    finally:
        cursor.execute("SET SESSION foreign_key_checks = 1")
        cursor.close()


def empty_metastore(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty metastore of ``kind``: a SQLite file, or a new database dropped afterwards
    (``postgresql-english``: one whose text collates as English)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'metastore.db'}"
    elif kind == "postgresql":
        yield from _postgres_database()
    elif kind == "postgresql-english":
        yield from _postgres_database(POSTGRES_ENGLISH)
    else:
        yield from _mariadb_database()


class Templates:
    """One migrated metastore of each kind for this test process, made when first needed, and the databases
    copied from it, used again: ``close`` drops them all.

    A copy of the template costs 0.1–0.3 s on PostgreSQL and 0.5–1 s on MariaDB (every table's file
    created, then removed by the drop); deleting a used database's rows and putting back the template's
    (its builtin groups and their statements) costs a few hundredths. So a database a test has used goes
    back to a pool, and a later test takes it once its rows are reset — not before ``QUARANTINE_SECONDS``,
    and not if anything is still connected to it or its tables differ from the template's: a job worker
    outliving its test could otherwise write into the next test's metastore, and a test that changed the
    schema would hand on a metastore that is not at the current one. Either way the database is dropped
    instead, as every one used to be.
    """

    #: Seconds a used database waits before another test may take it. A process of the last test still
    #: using it holds a connection (SQLAlchemy keeps its pool's open), which ``take`` sees; the wait is for
    #: one that has not connected yet. Longer waits make more databases, all dropped at the end (0.2–1 s
    #: each on MariaDB).
    QUARANTINE_SECONDS = 5.0

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="emrml-metastore-templates-"))
        self.made: dict[str, str] = {}  # kind -> the template's SQLite path or database name
        self.dropping: list[Iterator[str]] = []
        self._servers: dict[str, _Server] = {}

    def new_metastore(self, kind: str, tmp_path: Path) -> Iterator[str]:
        """The URL of a new metastore of ``kind`` (sqlite, postgresql, mariadb) at the current schema."""
        if kind == "sqlite":
            yield f"sqlite:///{self.sqlite_file(tmp_path / 'metastore.db')}"
            return
        server = self._servers.get(kind) or self._server(kind)
        name = server.take()
        try:
            yield server.url(name)
        finally:
            server.give_back(name)

    def sqlite_file(self, path: Path) -> Path:
        """A SQLite metastore at the current schema written to ``path``."""
        shutil.copyfile(self.made.get("sqlite") or self._make("sqlite"), path)
        return path

    def sqlite_home(self, home: Path) -> Path:
        """A new home folder ``home`` whose SQLite metastore is at the current schema, as after a first
        command: a command run on it has nothing to migrate."""
        home.mkdir(mode=0o700)
        self.sqlite_file(home / "metastore.db")
        return home

    def _server(self, kind: str) -> _Server:
        template = self.made.get(kind) or self._make(kind)
        server: _Server = _Postgres(template) if kind == "postgresql" else _MariaDB(template)
        self._servers[kind] = server
        return server

    def _make(self, kind: str) -> str:
        from emrml.service.metastore import migrate, open_engine

        if kind == "sqlite":
            path = self.folder / "metastore.db"
            url, made = f"sqlite:///{path}", str(path)
        else:
            databases = empty_metastore(kind, self.folder)
            self.dropping.append(databases)
            url = next(databases)
            made = url.rsplit("/", 1)[1]
        engine = open_engine(url)
        try:
            migrate(engine, self.folder)
        finally:
            engine.dispose()  # no connection left: PostgreSQL copies a template nobody is connected to
        self.made[kind] = made
        return made

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        for databases in self.dropping:
            databases.close()  # the generator's finally drops the database
        shutil.rmtree(self.folder, ignore_errors=True)


class _Server:
    """The copies of one server's template: made, handed out, reset and dropped over one admin connection."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.admin = self._connect(None)
        self.shape = self._shape(template)
        #: The template's tables: the first member of its shape's rows, but for a test's functions and views.
        self.tables = sorted({row[0] for row in self.shape} - {"function", "routine", "view"})
        self.seed = self._seed(template)
        self.free: list[tuple[float, str]] = []  # (when given back, name), oldest first
        self.used: set[str] = set()

    def take(self) -> str:
        while self.free and time.monotonic() - self.free[0][0] >= Templates.QUARANTINE_SECONDS:
            _, name = self.free.pop(0)
            if self._reusable(name):
                self.used.add(name)
                return name
            self._drop(name)
        name = f"emrml_test_{uuid.uuid4().hex[:12]}"
        self._copy(name)
        self.used.add(name)
        return name

    def _reusable(self, name: str) -> bool:
        """Whether ``name`` could be reset for another test (and it was): nothing connected to it, its
        tables those of the template."""
        try:
            if self._connected(name) or self._shape(name) != self.shape:
                return False
            self._reset(name)
        except Exception as exc:  # the database's own trouble: the test gets a new copy instead
            warnings.warn(f"metastore {name} not used again: {exc}", stacklevel=1)
            return False
        return True

    def give_back(self, name: str) -> None:
        self.used.discard(name)
        self.free.append((time.monotonic(), name))

    def close(self) -> None:
        for name in [name for _, name in self.free] + sorted(self.used):
            self._drop(name)
        self.admin.close()

    def _seed(self, database: str) -> dict[str, list[tuple[Any, ...]]]:
        """The rows of the template's tables that have some (the builtin groups, the schema's version)."""
        seed = {}
        with self._connect(database) as connection, connection.cursor() as cursor:
            for table in self.tables:
                cursor.execute(f"SELECT * FROM {self.quote(table)}")
                rows = [tuple(row) for row in cursor.fetchall()]
                if rows:
                    seed[table] = rows
        return seed

    # What each server does its own way.
    def url(self, name: str) -> str:
        raise NotImplementedError

    def quote(self, table: str) -> str:
        raise NotImplementedError

    def _connect(self, database: str | None) -> Any:
        raise NotImplementedError

    def _shape(self, database: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _connected(self, database: str) -> bool:
        raise NotImplementedError

    def _reset(self, name: str) -> None:
        """Delete every row of ``name`` and put the template's back."""
        raise NotImplementedError

    def _copy(self, name: str) -> None:
        raise NotImplementedError

    def _drop(self, name: str) -> None:
        raise NotImplementedError


class _Postgres(_Server):
    def url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

    def quote(self, table: str) -> str:
        return f'"{table}"'

    def _connect(self, database: str | None) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=5432,
            user="postgres",
            dbname=database or "postgres",
            autocommit=not database,
        )

    def _shape(self, database: str) -> list[tuple[Any, ...]]:
        with self._connect(database) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
                " coalesce(co.collname, ''), pg_get_expr(d.adbin, d.adrelid)"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
                " LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum"
                " WHERE n.nspname = 'public' AND c.relkind = 'r'"
                " UNION ALL SELECT tablename, indexname, indexdef, true, '', '' FROM pg_indexes"
                " WHERE schemaname = 'public'"
                # Triggers, functions and views a test added (tests/service/test_metastore_full.py's).
                " UNION ALL SELECT c.relname, t.tgname, '', true, '', '' FROM pg_trigger t"
                " JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal"
                " UNION ALL SELECT 'function', p.proname, '', true, '', '' FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
                " UNION ALL SELECT 'view', viewname, '', true, '', '' FROM pg_views"
                " WHERE schemaname = 'public'"
                " ORDER BY 1, 2"
            )
            return [tuple(row) for row in cursor.fetchall()]

    def _connected(self, database: str) -> bool:
        with self.admin.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,))
            return bool(cursor.fetchone()[0])

    def _reset(self, name: str) -> None:
        # DELETE, not TRUNCATE: on tables of a few rows it is a tenth of the time (TRUNCATE makes new files).
        with self._connect(name) as connection, connection.cursor() as cursor:
            # The template's rows go back in any order: no foreign key is checked meanwhile.
            cursor.execute("SET LOCAL session_replication_role = replica")
            for table in self.tables:
                cursor.execute(f"DELETE FROM {self.quote(table)}")
            for table, rows in self.seed.items():
                marks = ", ".join(["%s"] * len(rows[0]))
                cursor.executemany(f"INSERT INTO {self.quote(table)} VALUES ({marks})", rows)
            for (sequence,) in cursor.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            ):
                connection.execute(f'ALTER SEQUENCE "{sequence}" RESTART')
            connection.commit()

    def _copy(self, name: str) -> None:
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")

    def _drop(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class _MariaDB(_Server):
    def url(self, name: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:3306/{name}"

    def quote(self, table: str) -> str:
        return f"`{table}`"

    def _connect(self, database: str | None) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=3306, user="root", database=database, autocommit=not database
        )

    def _shape(self, database: str) -> list[tuple[Any, ...]]:
        with self.admin.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, column_name, column_type, is_nullable, collation_name, column_default"
                " FROM information_schema.columns WHERE table_schema = %s"
                " UNION ALL SELECT table_name, index_name, column_name, seq_in_index, non_unique, ''"
                " FROM information_schema.statistics WHERE table_schema = %s"
                # Triggers and routines a test added (tests/service/test_metastore_full.py's).
                " UNION ALL SELECT event_object_table, trigger_name, '', 0, 0, ''"
                " FROM information_schema.triggers WHERE trigger_schema = %s"
                " UNION ALL SELECT 'routine', routine_name, '', 0, 0, ''"
                " FROM information_schema.routines WHERE routine_schema = %s ORDER BY 1, 2, 3",
                (database, database, database, database),
            )
            return [tuple(row) for row in cursor.fetchall()]

    def _connected(self, database: str) -> bool:
        with self.admin.cursor() as cursor:
            # Not counting this connection, whose current database is the one it copied last (``_copy``).
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID()",
                (database,),
            )
            return bool(cursor.fetchone()[0])

    def _reset(self, name: str) -> None:
        # Over the admin connection, naming the database: a new connection costs MariaDB 0.1–0.2 s here.
        with self.admin.cursor() as cursor:
            cursor.execute("SET SESSION foreign_key_checks = 0")
            try:
                cursor.execute("BEGIN")
                for table in self.tables:
                    cursor.execute(f"DELETE FROM {name}.`{table}`")
                    if table in self.seed:
                        cursor.execute(
                            f"INSERT INTO {name}.`{table}` SELECT * FROM {self.template}.`{table}`"
                        )
                cursor.execute("COMMIT")
                # DELETE keeps a table's counter, where a new database's starts at 1; setting it again costs
                # 0.1–0.3 s, so only a counter that moved is.
                cursor.execute(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = %s AND auto_increment > 1",
                    (name,),
                )
                for (table,) in cursor.fetchall():
                    cursor.execute(f"ALTER TABLE {name}.`{table}` AUTO_INCREMENT = 1")
            finally:
                cursor.execute("SET SESSION foreign_key_checks = 1")

    def _copy(self, name: str) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        _copy_mariadb_tables(self.admin, self.template, name)

    def _drop(self, name: str) -> None:
        with self.admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
