"""The metastore's database: its engine, its migrations, the locks of its home, and its ORM sessions.

The tables are ``service.tables`` (SQLAlchemy Core), the ORM's classes mapped onto them ``service.rows``.
This module imports neither the ORM nor the mapped classes: ``Sessions`` imports them with the first
session asked for, so a server answers Predict (whose reads go through Core connections) without them.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import os
import re
import resource
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Dialect, Engine, Float, Text, create_engine, event, text, update
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateTable

from emrml.errors import InternalServerException, InvalidInputException

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: The text columns Describe* sorts by, of each entity table, with whether they may hold NULL (sorted as "").
#: Migration 0020 gives each a sort key the models do not declare, as it differs by metastore: on SQLite and
#: PostgreSQL an index on the sort value and the id, ``ix_<table>_<column>_id``; on MySQL and MariaDB,
#: which index no expression, an indexed virtual column of the value's first characters, ``<column>_sort``
#: (index ``ix_<table>_<column>_sort``): ``sort_key_column`` and ``sort_key_index``.
SORTED_TEXT: dict[str, tuple[tuple[str, bool], ...]] = {
    "data_sources": (("name", True), ("data_location", False)),
    "ml_models": (("name", True), ("input_data_location", True)),
    "evaluations": (("name", True), ("input_data_location", True)),
    "batch_predictions": (("name", True), ("input_data_location", True)),
}


def sort_key_column(column: str) -> str:
    """MySQL's and MariaDB's virtual column of ``column``'s sort key (migration 0020)."""
    return f"{column}_sort"


def sort_key_index(table: str, column: str) -> str:
    """MySQL's and MariaDB's index of ``column``'s sort key (migration 0020)."""
    return f"ix_{table}_{column}_sort"


def sort_key_objects() -> set[tuple[str, str]]:
    """(kind, name) of the columns and indexes of migration 0020 on any metastore: what the schema has and
    the models do not declare."""
    objects = set()
    for table, columns in SORTED_TEXT.items():
        for column, _ in columns:
            objects |= {("index", f"ix_{table}_{column}_id"), ("index", sort_key_index(table, column))}
            objects.add(("column", sort_key_column(column)))
    return objects


MIGRATIONS = Path(__file__).with_name("migrations")


def now() -> float:
    return round(time.time(), 3)


#: Seconds an SQLite statement waits for a lock another process holds before it fails (``out_of_service``).
BUSY_SECONDS = 30


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets the server read while a worker process writes; busy_timeout makes writers queue, not fail.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # LIKE compares as ids and names are, case and all, as on PostgreSQL and MariaDB (utf8mb4_bin): the
    # Describe* filters that statements' resource patterns become, and the Prefix filter, rely on it.
    cursor.execute("PRAGMA case_sensitive_like=ON")
    cursor.close()


# MySQL and MariaDB, unlike the others, read FLOAT as 4 bytes (epoch seconds would lose minutes) and compare
# text case-insensitively (ids "a" and "A" would collide): every float is a DOUBLE there, and every table
# compares bytes. Hooks on the DDL compiler, so each migration (and each new one) gets them.
@compiles(Float, "mysql", "mariadb")
def _double(_type: Float, _compiler: object, **_kw: object) -> str:
    return "DOUBLE"


# Their TEXT holds 65,535 bytes, less than a request the API allows (a DataSchema of 131,071 characters);
# LONGTEXT holds what the other databases' text does (migration 0014 changed the columns made before).
@compiles(Text, "mysql", "mariadb")
def _long_text(_type: Text, _compiler: object, **_kw: object) -> str:
    return "LONGTEXT"


def mysql_collation(dialect: Dialect) -> str:
    """The collation of MySQL's and MariaDB's text: binary (by code point, as SQLite and PostgreSQL's "C"
    compare), and without padding where the server has one: utf8mb4_bin compares "bob" and "bob " equal, so
    a name with a trailing blank found another's row (migration 0018). MySQL before 8.0.17 has none."""
    version = dialect.server_version_info or ()
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin" if version >= (10, 2) else "utf8mb4_bin"
    return "utf8mb4_0900_bin" if version >= (8, 0, 17) else "utf8mb4_bin"


@compiles(CreateTable, "mysql", "mariadb")
def _binary_collation(create: CreateTable, compiler: Any, **kw: object) -> str:
    sql = compiler.visit_create_table(create, **kw)
    return f"{sql.rstrip()} DEFAULT CHARSET=utf8mb4 COLLATE={mysql_collation(compiler.dialect)}"


#: The bytes of a text value MySQL and MariaDB sort by (their ``max_sort_length``): enough for the longest
#: text the API sorts, a location of 2,048 characters, at 4 bytes each. Their default, 1,024, sorted by the
#: first 256 characters only, so Describe* listed names alike that far in the order of their ids, and its
#: pages, which continue after the last value listed, left some out.
MYSQL_SORT_LENGTH = 8192


def _mysql_session(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute(f"SET SESSION max_sort_length = {MYSQL_SORT_LENGTH}")
    cursor.close()


def open_engine(url: str) -> Engine:
    """Create the SQLAlchemy engine for ``url`` (SQLite gets WAL mode and a busy timeout)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": BUSY_SECONDS})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "handle_error", _sqlite_no_room)
            return engine
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name in ("mysql", "mariadb"):
            event.listen(engine, "connect", _mysql_session)
        return engine
    except (ImportError, ArgumentError) as exc:
        raise InvalidInputException(
            f"setting metastore_url: {exc}. Supported: sqlite:///PATH, postgresql+psycopg://..., and "
            "mysql+pymysql://... (pip install 'emrml[mysql]')"
        ) from None


#: PostgreSQL's SQLSTATE disk_full. Not out_of_memory (53200): the server short of memory for a moment is
#: no want of room that freeing disk space mends, and its message must not say it is.
_POSTGRESQL_DISK_FULL = "53100"
#: MySQL and MariaDB: ER_DISK_FULL (1021), and ER_RECORD_FILE_FULL (1114, "The table is full": its disk
#: full, its tablespace or a MEMORY table past its size limit).
_MYSQL_NO_ROOM = {1021, 1114}


#: SQLite's errors of a file it could not write or grow. A disk full (ENOSPC) is SQLITE_FULL; a quota
#: exceeded (EDQUOT) or a file size limit (EFBIG) is one of these, which do not carry the system's error
#: (nor does Python's sqlite3 give it): ``_sqlite_no_room`` tells them apart from a failing disk.
_SQLITE_WRITE_ERRORS = {
    sqlite3.SQLITE_IOERR_WRITE,
    sqlite3.SQLITE_IOERR_FSYNC,
    sqlite3.SQLITE_IOERR_TRUNCATE,
    sqlite3.SQLITE_IOERR_SHMSIZE,
}
#: The attribute ``_sqlite_no_room`` marks an SQLite error with when it found the metastore had no room.
_NO_ROOM_MARK = "emrml_no_room"
#: What the probe of ``_sqlite_no_room`` allocates beside the metastore: a few of its pages.
_PROBE_BYTES = 64 * 1024


def _sqlite_no_room(context: Any) -> None:
    """Mark an SQLite write error (``_SQLITE_WRITE_ERRORS``) of a metastore that has no room, for
    ``is_full``: the file past the process's size limit, or no room to allocate beside it (a quota exceeded,
    a disk full). Probed as the error happens, while the condition holds; a disk that fails otherwise (EIO)
    stays an internal error."""
    error = context.original_exception
    if getattr(error, "sqlite_errorcode", None) not in _SQLITE_WRITE_ERRORS:
        return
    database = context.engine.url.database
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        _probe_room(error, path)
    except OSError:  # the metastore's folder gone or unreadable: an error of its own, not want of room
        return


def _probe_room(error: BaseException, path: Path) -> None:
    """``_sqlite_no_room``'s checks of the database file ``path``."""
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        sizes = [os.stat(name).st_size for name in (path, f"{path}-wal") if os.path.exists(name)]
        if max(sizes, default=0) + _PROBE_BYTES > limit:
            setattr(error, _NO_ROOM_MARK, errno.EFBIG)
            return
    try:
        # (Unnamed where the file system allows, else removed as it closes.)
        with tempfile.TemporaryFile(dir=path.parent) as probe:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(probe.fileno(), 0, _PROBE_BYTES)
            else:  # macOS: blocks written and synced are blocks allocated
                probe.write(bytes(_PROBE_BYTES))
                probe.flush()
                os.fsync(probe.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            setattr(error, _NO_ROOM_MARK, exc.errno)


def is_full(exc: BaseException) -> bool:
    """Whether a metastore statement failed for want of room: its disk is full, or the database (a file, a
    table) past a size limit or its owner's quota. The statement's transaction is rolled back whole."""
    if not isinstance(exc, DBAPIError):
        return False
    error = exc.orig
    if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or hasattr(error, _NO_ROOM_MARK):
        return True
    # psycopg names it ``sqlstate``, psycopg2 ``pgcode``.
    if _POSTGRESQL_DISK_FULL in (getattr(error, "sqlstate", None), getattr(error, "pgcode", None)):
        return True
    # The MySQL drivers (PyMySQL, mysqlclient) give (error number, message); the others' first argument is
    # their message.
    arguments = getattr(error, "args", ())
    return bool(arguments) and type(arguments[0]) is int and arguments[0] in _MYSQL_NO_ROOM


def shown_url(url: str) -> str:
    """The metastore's URL as messages show it: its password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def out_of_service(exc: BaseException, url: str) -> InternalServerException | None:
    """The error a request answers when the metastore ``url`` refused its statement for want of room
    (``is_full``) or, SQLite, for a lock another process held past the busy timeout; None for any other
    error. Either is no bug to look up in a log but a state of the machine the message names, and which
    ends: the statement's transaction was rolled back whole, and the request may be sent again."""
    if is_full(exc):
        return InternalServerException(
            f"the metastore ({shown_url(url)}) is full: the disk it is on is full or past a size limit; "
            "free some space and try again"
        )
    code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    if isinstance(exc, DBAPIError) and code is not None and code & 0xFF == sqlite3.SQLITE_BUSY:
        return InternalServerException(
            f"the metastore ({shown_url(url)}) is busy: another process held it locked for longer than "
            f"{BUSY_SECONDS} s; try again"
        )
    return None


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision, read from the migration files' ``revision`` and ``down_revision``
    lines (None unless they form one chain with one head: then Alembic decides and explains)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision\s*=\s*"([^"]+)"', source, re.MULTILINE)
        parent = re.search(r'^down_revision\s*=\s*"([^"]+)"', source, re.MULTILINE)
        if revision is None:
            return None
        revisions.add(revision.group(1))
        if parent is not None:
            parents.add(parent.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision: one query, no Alembic import."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:  # no alembic_version table yet: a new database
        return False
    return versions == [head]


def migrate(engine: Engine, home: Path) -> None:
    """Bring the database schema to the latest Alembic revision (nothing to do, and no Alembic import,
    when it is there already: every CLI command and server start opens the metastore). ``home`` holds the
    key a data migration may need (0011 encrypts passwords stored in clear by earlier versions)."""
    if schema_is_current(engine):
        return
    _check_sqlite_opens(engine)
    # Imported here: Alembic takes most of a second to import and is needed only to upgrade.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Processes started at once on a new or older metastore (two CLI commands, a server, the servers of
    # several machines sharing one database) would all run the migrations, and all but one fail with "table
    # ... already exists": one upgrades at a time, and the next finds the schema current.
    try:
        with _migration_lock(engine, home):
            if schema_is_current(engine):
                return
            with _migration_transaction(engine) as connection:
                config.attributes["connection"] = connection
                config.attributes["home"] = home
                command.upgrade(config, "head")
    except DBAPIError as exc:
        # (Rolled back whole: the next start, given room, migrates from where this one started.)
        error = out_of_service(exc, str(engine.url))
        if error is None:
            raise
        raise error from None


def _check_sqlite_opens(engine: Engine) -> None:
    """Refuse, naming it, an SQLite metastore file that cannot be opened as a database (a home whose
    metastore.db is some other file, or a folder): the migrations failed on it with an internal error."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT count(*) FROM sqlite_master")
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_IOERR_SHMSIZE:
            # Its shared-memory file (WAL mode) could not be made: "disk I/O error" of a metastore that is
            # whole, its disk full.
            raise InternalServerException(
                f"the metastore ({shown_url(str(engine.url))}) is full: the disk it is on is full or past a "
                f"size limit (SQLite cannot make its {Path(engine.url.database or '').name}-shm file beside "
                "it); free some space and try again"
            ) from None
        raise InvalidInputException(
            f"metastore {engine.url.database}: cannot open it as an SQLite database ({exc.orig})"
        ) from None


@contextmanager
def _migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection whose statements, the migrations' DDL included, commit together or not at all.

    Python's sqlite3 begins a transaction only before an INSERT, UPDATE or DELETE and commits each DDL
    statement outside one by itself, so a process killed as it migrated (a server stopped, a machine down)
    left a schema half upgraded under the old revision, and every later start failed ("duplicate column
    name"). SQLite's DDL is transactional when the transaction is begun by hand, as here; PostgreSQL's is
    anyway (MySQL and MariaDB commit each DDL statement whatever is done)."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as connection:
            yield connection
        return
    with engine.connect() as connection:
        # The driver then leaves transactions to us (the pool restores its default when it gets it back).
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.exec_driver_sql("ROLLBACK")
            raise
        connection.exec_driver_sql("COMMIT")


@contextmanager
def home_lock(home: Path, name: str) -> Iterator[None]:
    """Hold the lock file ``name`` of ``home`` (created there): one process of the home at a time does
    what it guards. A process that dies releases it."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Owner-only, as every file of the home (it holds nothing, but a shared machine need not see it either).
    descriptor = os.open(home / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(descriptor, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


#: PostgreSQL's advisory lock key of the migrations (advisory locks are per database): "emrml" in ASCII.
_MIGRATION_LOCK_KEY = 0x656D726D6C
#: Seconds of each wait for MariaDB's migration lock (the wait is logged, then goes on).
_MIGRATION_LOCK_WAIT = 60


@contextmanager
def _migration_lock(engine: Engine, home: Path) -> Iterator[None]:
    """Hold the metastore's migration lock: a lock of the database server's for PostgreSQL and MariaDB,
    whose processes may be on several machines, each with its own home; for SQLite, a lock file in the home
    of the database file. A process that dies releases it (its connection or its file closes)."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        with home_lock(home, ".migrate.lock"):
            yield
        return
    with engine.connect() as connection:
        if dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            release = text("SELECT pg_advisory_unlock(:key)").bindparams(key=_MIGRATION_LOCK_KEY)
        else:
            # MariaDB's lock names are the whole server's: this one names the database.
            name = "SHA1(CONCAT('emrml-migrate:', DATABASE()))"
            acquire = text(f"SELECT GET_LOCK({name}, :wait)").bindparams(wait=_MIGRATION_LOCK_WAIT)
            while (taken := connection.execute(acquire).scalar()) == 0:
                log.warning("waiting for another process to finish migrating the metastore")
            if taken != 1:  # NULL: an error, such as the thread being killed
                raise InternalServerException("could not take the metastore's migration lock (GET_LOCK)")
            release = text(f"SELECT RELEASE_LOCK({name})")
        connection.commit()
        try:
            yield
        finally:
            # Held by the connection, not a transaction: released before it goes back to the pool.
            connection.execute(release)
            connection.commit()


def fenced_update(
    session: Session | Connection, table: Any, where: list[Any], values: dict[str, Any]
) -> bool:
    """``UPDATE table SET values WHERE where`` and whether exactly one row changed (``table``: a table of
    ``service.tables`` or a class of ``service.rows``).

    The metastore's one way to change a row that several processes may race for (a job's claim, a
    stream's shard lease): the condition states what the writer believes, and a writer whose belief is
    out of date writes nothing.
    """
    return session.execute(update(table).where(*where).values(**values)).rowcount == 1


class Sessions:
    """ORM sessions on ``engine`` (``expire_on_commit`` off), made by a ``sessionmaker`` built with the first
    one asked for: the ORM and the mapped classes (``service.rows``) are imported then. A server's start
    and its Predict path read through Core connections on ``engine`` and never ask for one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._maker: sessionmaker[Session] | None = None

    def __call__(self) -> Session:
        maker = self._maker
        if maker is None:
            from sqlalchemy.orm import sessionmaker

            maker = self._maker = sessionmaker(self.engine, expire_on_commit=False)
        return maker()


@contextmanager
def snapshot(sessions: Sessions) -> Iterator[Session]:
    """A session for reads that must agree with each other (rows read by several statements, that another
    process changes together in one transaction): its reads all see the metastore as of the first one.

    SQLite's driver begins no transaction before a SELECT, so each statement reads the latest commit: the
    transaction is begun by hand (its first read fixes the snapshot, WAL mode lets writers go on). Under
    PostgreSQL's default, READ COMMITTED, each statement takes a snapshot of its own; REPEATABLE READ takes
    one for the transaction, as it is MariaDB's default (asked for anyway, a server may set another). The
    session only reads: its transaction ends with it, and the connection goes back to the pool as it was."""
    with sessions() as session:
        if session.get_bind().dialect.name == "sqlite":
            connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            connection.exec_driver_sql("BEGIN")
            try:
                yield session
            finally:
                # The driver's rollback, which ends the transaction where SQLite has not already (it may
                # on an error of the body's, whose report a failing ROLLBACK statement would replace).
                connection.connection.rollback()
        else:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session


def session_factory(engine: Engine) -> Sessions:
    return Sessions(engine)


def engine_of(sessions: Sessions) -> Engine:
    """The engine of ``sessions``: for the reads a server repeats from its threads, through a Core
    connection, which holds the interpreter lock a third as long as an ORM session would."""
    return sessions.engine
