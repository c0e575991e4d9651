"""SQL datasources: 1M rows from MariaDB and from PostgreSQL into a datasource, against a bare read + write.

Run by hand from the repository root, with the machine's MariaDB (127.0.0.1:3306, root) and PostgreSQL
(127.0.0.1:5432, trust) up: ``uv run python bench/sql.py [--rows N] [--pairs K]``. It makes a throwaway
database on each server holding ``customers`` (6 columns: 3 integer, 1 float, 1 short text, 1 long text,
1 boolean), and drops it at the end.

For each server, K interleaved pairs of:

- **bare**: the Arrow-native reader alone (connectorx for MariaDB, ADBC for PostgreSQL) reading the whole
  result as one table, then pyarrow's CSV writer and zlib (gzip, level 1, as emrml stages) into a file;
- **stage**: ``emrml.storage.sql_staging.stage_query``, the job's SQL part (read-only transaction,
  streaming batches, atomic write of the gzip CSV);
- **datasource**: ``CreateDataSourceFromRDS`` / ``FromRedshift`` and ``wait``, without statistics: staging
  plus the job's pass over the staged file (counting and validating every record) and the metastore writes.

Reported: medians, and the median of the pair ratios bare / stage and bare / datasource (goal ≥ 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
import sqlalchemy
from pyarrow import csv

from common import load_average
from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.storage import gzipped, sql, sql_staging

MARIADB = "mysql+pymysql://root@127.0.0.1:3306/"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-sql-password"
COLUMNS = """
    n AS id, 18 + MOD(n, 60) AS age, MOD(n * 37, 1000) * 12.5 AS income,
    CASE MOD(n, 4) WHEN 0 THEN 'red' WHEN 1 THEN 'green' WHEN 2 THEN 'blue' ELSE 'amber' END AS colour,
    CONCAT('note ', MOD(n, 13), ' about client ', MOD(n, 101), ' ', MOD(n, 7)) AS note,
    MOD(n, 3) = 0 AS churned
"""
TABLE = (
    "CREATE TABLE customers (id INT PRIMARY KEY, age INT, income DOUBLE PRECISION, colour VARCHAR(10), "
    "note TEXT, churned BOOLEAN)"
)
QUERY = "SELECT * FROM customers"


def create(name: str, user: str, rows: int) -> None:
    admin = sqlalchemy.create_engine(MARIADB, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        run = connection.exec_driver_sql
        run(f"CREATE DATABASE {name}")
        run(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        run(f"GRANT SELECT ON {name}.* TO '{user}'@'127.0.0.1'")
        run(f"USE {name}")
        run(TABLE)
        run(f"INSERT INTO customers SELECT {COLUMNS} FROM (SELECT seq AS n FROM seq_1_to_{rows}) AS numbers")
    admin.dispose()
    admin = sqlalchemy.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    engine = sqlalchemy.create_engine(POSTGRES.rsplit("/", 1)[0] + f"/{name}", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(TABLE)
        connection.exec_driver_sql(
            f"INSERT INTO customers SELECT {COLUMNS} FROM generate_series(1, {rows}) AS n"
        )
        connection.exec_driver_sql("VACUUM ANALYZE customers")
    engine.dispose()


def drop(name: str, user: str) -> None:
    admin = sqlalchemy.create_engine(MARIADB, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        connection.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
    admin.dispose()
    admin = sqlalchemy.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def bare(source: sql.SqlSource, path: Path) -> int:
    """The floor: one Arrow table from the driver, written as gzip CSV."""
    if source.api == "RDS":
        import connectorx

        table = connectorx.read_sql(source.driver_url(), QUERY, return_type="arrow")
    else:
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(source.driver_url()) as connection, connection.cursor() as cursor:
            cursor.execute(QUERY)
            table = cursor.fetch_arrow_table()
    table = pa.table(
        [c.storage if isinstance(c.type, pa.ExtensionType) else c for c in table.columns], table.schema.names
    )
    text = pa.BufferOutputStream()
    csv.write_csv(table, text)
    compressor = zlib.compressobj(gzipped.LEVEL, zlib.DEFLATED, 31)
    with path.open("wb") as out:
        out.write(compressor.compress(text.getvalue()))
        out.write(compressor.flush())
    return table.num_rows


def timed(function, *args) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def datasource(app: EmrML, source: sql.SqlSource, database: str, staging: Path, entity_id: str) -> dict:
    credentials = {"Username": source.user, "Password": source.password}
    where = {"DatabaseName": database}
    if source.api == "RDS":
        app.call(
            "CreateDataSourceFromRDS",
            {
                "DataSourceId": entity_id,
                "RoleARN": "arn:aws:iam::000000000000:role/ml",
                "RDSData": {
                    "DatabaseInformation": {
                        "InstanceIdentifier": source.identifier,
                        "DatabaseName": database,
                    },
                    "SelectSqlQuery": QUERY,
                    "DatabaseCredentials": credentials,
                    "S3StagingLocation": f"{staging}/",
                    "ResourceRole": "r",
                    "ServiceRole": "s",
                    "SubnetId": "subnet-1",
                    "SecurityGroupIds": ["sg-1"],
                },
            },
        )
    else:
        app.call(
            "CreateDataSourceFromRedshift",
            {
                "DataSourceId": entity_id,
                "RoleARN": "arn:aws:iam::000000000000:role/ml",
                "DataSpec": {
                    "DatabaseInformation": {"ClusterIdentifier": source.identifier, **where},
                    "SelectSqlQuery": QUERY,
                    "DatabaseCredentials": credentials,
                    "S3StagingLocation": f"{staging}/",
                },
            },
        )
    result = app.wait("DataSource", entity_id)
    assert result["Status"] == "COMPLETED", result
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:10]
    name, user = f"emrmlbench{suffix}", f"emrml_bench_{suffix}"
    print(f"creating {args.rows:,} rows on each server (load {load_average()})", flush=True)
    create(name, user, args.rows)
    connections = {"bench-mariadb": "mysql://127.0.0.1:3306", "bench-postgres": "postgresql://127.0.0.1:5432"}
    sources = [
        sql.resolve(connections, "RDS", "bench-mariadb", name, user, PASSWORD),
        sql.resolve(connections, "Redshift", "bench-postgres", name, "postgres", PASSWORD),
    ]
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            app = EmrML(Settings.load(environ={}, home=root / "home", sql_connections=connections))
            # The first job starts the job runner's fork server: not part of any measurement.
            datasource(app, sources[0], name, root / "staging", "bench-warm-up")
            for source in sources:
                times: dict[str, list[float]] = {"bare": [], "stage": [], "datasource": []}
                for pair in range(args.pairs):
                    seconds, rows = timed(bare, source, root / "bare.csv.gz")
                    assert rows == args.rows, rows
                    times["bare"].append(seconds)
                    staged_at = str(root / "stage" / "s.csv.gz")
                    seconds, staged = timed(sql_staging.stage_query, source, QUERY, staged_at)
                    assert staged.rows == args.rows  # type: ignore[attr-defined]
                    times["stage"].append(seconds)
                    entity = f"bench-{source.identifier}-{pair}"
                    seconds, _ = timed(datasource, app, source, name, root / "staging", entity)
                    times["datasource"].append(seconds)
                    print(
                        f"{source.identifier} pair {pair + 1}: bare {times['bare'][-1]:.2f} s, stage "
                        f"{times['stage'][-1]:.2f} s, datasource {times['datasource'][-1]:.2f} s "
                        f"(load {load_average()})",
                        flush=True,
                    )
                ratios = {
                    side: statistics.median(b / s for b, s in zip(times["bare"], times[side], strict=True))
                    for side in ("stage", "datasource")
                }
                medians = {side: statistics.median(values) for side, values in times.items()}
                print(
                    f"| {source.identifier} | {medians['bare']:.2f} | {medians['stage']:.2f} | "
                    f"{medians['datasource']:.2f} | {ratios['stage']:.2f} | {ratios['datasource']:.2f} |"
                )
            app.close()
    finally:
        drop(name, user)
    print(f"load after: {load_average()}; Python {sys.version.split()[0]}, pyarrow {pa.__version__}")


if __name__ == "__main__":
    main()
