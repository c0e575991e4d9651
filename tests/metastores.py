"""Empty metastores for tests: a SQLite file, or a PostgreSQL or MariaDB database dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

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
