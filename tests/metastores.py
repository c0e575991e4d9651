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
import uuid
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


def _mariadb_database(copy_of: str | None = None) -> Iterator[str]:
    import sqlalchemy

    name = f"emrml_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
            if copy_of is not None:
                _copy_mariadb_tables(connection, copy_of, name)
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
    cursor = connection.connection.cursor()  # pymysql's own: DDL text goes as it is, % signs and all
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
    """One migrated metastore of each kind for this test process, made when first needed; ``close`` drops
    them."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="emrml-metastore-templates-"))
        self.made: dict[str, str] = {}  # kind -> the template's SQLite path or database name
        self.dropping: list[Iterator[str]] = []

    def new_metastore(self, kind: str, tmp_path: Path) -> Iterator[str]:
        """The URL of a new metastore of ``kind`` (sqlite, postgresql, mariadb) at the current schema."""
        if kind == "sqlite":
            yield f"sqlite:///{self.sqlite_file(tmp_path / 'metastore.db')}"
            return
        template = self.made.get(kind) or self._make(kind)
        if kind == "postgresql":
            yield from _postgres_database(f"TEMPLATE {template}")
        else:
            yield from _mariadb_database(copy_of=template)

    def sqlite_file(self, path: Path) -> Path:
        """A SQLite metastore at the current schema written to ``path``."""
        shutil.copyfile(self.made.get("sqlite") or self._make("sqlite"), path)
        return path

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
        for databases in self.dropping:
            databases.close()  # the generator's finally drops the database
        shutil.rmtree(self.folder, ignore_errors=True)
