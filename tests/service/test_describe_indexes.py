"""Describe*'s text filters use the metastore's indexes, and the migration that made it possible (0018)
upgrades a metastore holding objects, users and passwords."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, insert, text

from emrml.config import Settings
from emrml.service import metastore
from emrml.service.app import EmrML
from emrml.service.identity import Identities
from emrml.service.logins import LoginRefused, Logins
from emrml.service.metastore import open_engine, session_factory
from emrml.service.rows import DataSource
from metastores import empty_metastore

#: The foreign keys of a MariaDB metastore made new, each deleting with the row it references.
FOREIGN_KEYS = [
    "access_keys_ibfk_1",
    "console_logins_ibfk_1",
    "console_sessions_ibfk_1",
    "group_members_ibfk_1",
    "group_members_ibfk_2",
    "group_statements_ibfk_1",
]

#: Enough rows that a planner reading the whole table would not be cheaper than the index.
ROWS = 3000


def _data_sources(engine: Engine, count: int) -> None:
    rows = [
        {
            "id": f"ds-{i:05d}",
            "name": f"name-{i:05d}",
            "status": "COMPLETED",
            "created_by": f"arn:aws:iam::000000000000:user/u{i % 7}",
            "created_at": 1_700_000_000.0 + i,
            "last_updated_at": 1_700_000_000.0 + i,
            "request": "{}",
            "data_location": f"/data/{i:05d}.csv",
            "compute_statistics": False,
        }
        for i in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(insert(DataSource), rows)
        connection.exec_driver_sql(
            "ANALYZE data_sources" if engine.dialect.name == "postgresql" else "ANALYZE TABLE data_sources"
        )


@contextmanager
def _statements(engine: Engine) -> Iterator[list[tuple[str, object]]]:
    """The SELECTs run on ``engine`` meanwhile, with their parameters."""
    seen: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "data_sources" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _plan(app: EmrML, request: dict) -> str:
    """The database's plan of the queries DescribeDataSources runs for ``request`` (MariaDB's two: the
    range of sort keys, then the page)."""
    with _statements(app.engine) as seen:
        app.call("DescribeDataSources", request)
    with app.engine.connect() as connection:
        rows = [
            row
            for statement, parameters in seen
            for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        ]
    return json.dumps([list(map(str, row)) for row in rows])


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_text_filters_and_sorts_use_the_indexes(kind: str, tmp_path: Path) -> None:
    """Compared as the column is (code point, no padding), not wrapped in COLLATE "C", CAST AS BINARY or
    COALESCE: an EQ or Prefix on the name or location finds its rows by index."""
    for url in empty_metastore(kind, tmp_path):
        app = EmrML(Settings.load(environ={}, home=tmp_path / "home", metastore_url=url))
        try:
            _data_sources(app.engine, ROWS)
            for request, index in (
                ({"FilterVariable": "Name", "EQ": "name-01234"}, "ix_data_sources_name"),
                ({"FilterVariable": "Name", "Prefix": "name-0123"}, "ix_data_sources_name"),
                ({"FilterVariable": "Name", "EQ": "name-01234", "SortOrder": "dsc"}, "ix_data_sources_name"),
                (
                    {"FilterVariable": "DataLocationS3", "EQ": "/data/01234.csv"},
                    "ix_data_sources_data_location",
                ),
            ):
                plan = _plan(app, request)
                assert index in plan, (request, plan)
            found = app.call("DescribeDataSources", {"FilterVariable": "Name", "Prefix": "name-0123"})
            assert [item["DataSourceId"] for item in found["Results"]] == [f"ds-0123{i}" for i in range(10)]
        finally:
            app.close()


def _upgrade_to(url: str, home: Path, revision: str) -> None:
    engine = open_engine(url)
    config = Config()
    config.set_main_option("script_location", str(metastore.MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["home"] = home
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def _mysql_collations(app: EmrML) -> set[str]:
    with app.engine.connect() as connection:
        return set(
            connection.exec_driver_sql(
                "SELECT DISTINCT collation_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE() AND collation_name IS NOT NULL"
            ).scalars()
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql-english", "mariadb"])
def test_a_metastore_of_0017_with_objects_and_users_is_upgraded(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    names = ["apple", "Banana", "b", "a", "a ", "Ä"]
    for url in empty_metastore(kind, tmp_path):
        # As an earlier version made it: MySQL's and MariaDB's tables in utf8mb4_bin, which pads.
        with monkeypatch.context() as patched:
            patched.setattr(metastore, "mysql_collation", lambda _dialect: "utf8mb4_bin")
            _upgrade_to(url, home, "0017")
        engine = open_engine(url)
        with engine.begin() as connection:
            connection.execute(
                insert(DataSource),
                [
                    {
                        "id": f"ds-{i}",
                        "name": name,
                        "status": "COMPLETED",
                        "created_by": "arn:aws:iam::000000000000:user/alice",
                        "created_at": 1_700_000_000.0 + i,
                        "last_updated_at": 1_700_000_000.0 + i,
                        "request": "{}",
                        "data_location": f"/data/{i}.csv",
                        "compute_statistics": False,
                    }
                    for i, name in enumerate(names)
                ],
            )
        # A user with a password, an access key and groups: rows joined by foreign keys to users.name.
        home.mkdir(mode=0o700)
        identities = Identities(session_factory(engine), home)
        identities.create_user("bob")
        key = identities.create_key("bob")
        Logins(session_factory(engine)).set_password("bob", "bob-password-1")
        engine.dispose()
        app = EmrML(
            Settings.load(environ={}, home=home, metastore_url=url)
        )  # upgrades to the newest revision
        try:
            with app.engine.connect() as connection:
                assert (
                    connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                    == metastore.head_revision()
                )
            listed = app.call("DescribeDataSources", {"FilterVariable": "Name"})["Results"]
            assert [item["Name"] for item in listed] == sorted(names)
            found = app.call("DescribeDataSources", {"FilterVariable": "Name", "EQ": "a"})["Results"]
            assert [item["DataSourceId"] for item in found] == ["ds-3"]
            assert app.call("GetDataSource", {"DataSourceId": "ds-4"})["Name"] == "a "
            [bob] = app.access.list_users()
            assert (bob.name, bob.access_keys, bob.groups) == ("bob", 1, ("users",))
            assert app.access.identities.credential(key.access_key_id) is not None
            logins = Logins(app.sessions)
            with pytest.raises(LoginRefused):
                logins.log_in("bob ", "bob-password-1", "10.0.0.1")
            assert logins.log_in("bob", "bob-password-1", "10.0.0.1").token
            if kind == "mariadb":
                assert _mysql_collations(app) == {"utf8mb4_nopad_bin"}
                with app.engine.connect() as connection:
                    keys = connection.exec_driver_sql(
                        "SELECT constraint_name, delete_rule FROM information_schema.referential_constraints"
                        " WHERE constraint_schema = DATABASE()"
                    ).all()
                assert sorted(keys) == [(name, "CASCADE") for name in FOREIGN_KEYS]
            if kind.startswith("postgresql"):
                with app.engine.connect() as connection:
                    collation = connection.exec_driver_sql(
                        "SELECT collation_name FROM information_schema.columns"
                        " WHERE table_name = 'data_sources' AND column_name = 'name'"
                    ).scalar()
                assert collation == "C"
        finally:
            app.close()
