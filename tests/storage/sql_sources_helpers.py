"""The databases of the SQL source tests (test_sql_values, test_sql_query_lifetime): a MariaDB database with
a user signing in with an awkward password, a PostgreSQL database of the same name, and staging a query."""

from __future__ import annotations

import csv
import gzip
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

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


@contextmanager
def created_databases() -> Iterator[Databases]:
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
