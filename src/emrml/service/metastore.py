"""The metastore: one SQLAlchemy table per Amazon ML entity, plus tags.

Times are epoch seconds (floats), as the API speaks them. JSON documents (schemas, statistics, parameters)
are stored as text so the same tables work on SQLite, PostgreSQL and MySQL / MariaDB. The schema is created
and upgraded by the Alembic migrations in ``migrations/``; never by ``create_all``.
"""

# No ``from __future__ import annotations`` here: SQLAlchemy reads the ``Mapped[...]`` annotations of every
# column when a class is declared, and string annotations must be evaluated first (9 ms of every start that
# opens the metastore, a fifth of this module's import).
import fcntl
import functools
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Dialect,
    Engine,
    Float,
    Integer,
    String,
    Text,
    create_engine,
    event,
    false,
    text,
    update,
)
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateTable

from emrml.errors import InternalServerException, InvalidInputException

if TYPE_CHECKING:
    from emrml.core.model import ExpectedModel

log = logging.getLogger(__name__)

ENTITY_ID = String(64)
STATUS = String(16)


class Base(DeclarativeBase):
    pass


class Entity:
    """Columns every asynchronous Amazon ML object has (spec 4.1), plus the job bookkeeping."""

    id: Mapped[str] = mapped_column(ENTITY_ID, primary_key=True)
    #: Indexed, as the creator and the data location, for Describe*'s filters; on MySQL and MariaDB, the
    #: first 255 characters of each (migration 0018).
    name: Mapped[str | None] = mapped_column(Text, index=True)
    status: Mapped[str] = mapped_column(STATUS, index=True)
    message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(256), index=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    last_updated_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    compute_time: Mapped[int | None] = mapped_column(BigInteger)
    #: The Create request as canonical JSON: a repeated Create with other parameters is a mismatch.
    request: Mapped[str] = mapped_column(Text)
    # Job bookkeeping: fraction done, the worker holding the job, its last sign of life.
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    #: The number of the job's latest attempt: it only grows (every write of a worker is fenced by it, and
    #: a batch prediction's temporaries are named after it).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Tries since the job was last queued as new, for ``Settings.job_max_attempts``: a FAILED job queued
    #: again starts anew, and a try interrupted by a server's stop does not count.
    tries: Mapped[int] = mapped_column(Integer, default=0)
    #: Created by a request through ``emrml serve``: the job reads local files only inside the data roots
    #: (``service.confinement``), checking each file again as it opens it.
    confined: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: On the Spark engine: the application the job ran on and the Spark job ids it ran (a JSON list).
    spark_application: Mapped[str | None] = mapped_column(String(128))
    spark_jobs: Mapped[str | None] = mapped_column(Text)


class DataSource(Entity, Base):
    __tablename__ = "data_sources"
    kind = "DataSource"

    data_location: Mapped[str] = mapped_column(Text, index=True)
    data_rearrangement: Mapped[str | None] = mapped_column(Text)
    data_schema: Mapped[str | None] = mapped_column(Text)
    compute_statistics: Mapped[bool] = mapped_column(Boolean, default=False)
    role_arn: Mapped[str | None] = mapped_column(String(110))
    redshift_metadata: Mapped[str | None] = mapped_column(Text)
    rds_metadata: Mapped[str | None] = mapped_column(Text)
    #: An RDS or Redshift request's DatabaseCredentials.Password, encrypted with the home's secrets.key
    #: (``service.identity.SecretBox``); ``request`` holds a keyed hash of it in its place.
    database_password: Mapped[str | None] = mapped_column(Text)
    data_size: Mapped[int | None] = mapped_column(BigInteger)
    number_of_files: Mapped[int | None] = mapped_column(Integer)
    total_records: Mapped[int | None] = mapped_column(BigInteger)
    invalid_records: Mapped[int | None] = mapped_column(BigInteger)
    invalid_examples: Mapped[str | None] = mapped_column(Text)
    statistics: Mapped[str | None] = mapped_column(Text)
    #: What a random split hashes for each file: "relative" (its path below the location) or "absolute"
    #: (its object key: datasources recorded before relative keys keep the split they had).
    split_keys: Mapped[str] = mapped_column(String(16), default="relative")


class ReadsDatasource:
    """Columns of the objects whose job reads a datasource: models, evaluations, batch predictions."""

    #: The datasource's location when the object was created (the API's ``InputDataLocationS3``).
    input_data_location: Mapped[str | None] = mapped_column(Text, index=True)


class MLModel(Entity, ReadsDatasource, Base):
    __tablename__ = "ml_models"
    kind = "MLModel"

    model_type: Mapped[str] = mapped_column(String(16))
    training_data_source_id: Mapped[str] = mapped_column(ENTITY_ID, index=True)
    training_parameters: Mapped[str] = mapped_column(Text)
    recipe: Mapped[str | None] = mapped_column(Text)
    recipe_uri: Mapped[str | None] = mapped_column(Text)
    data_schema: Mapped[str | None] = mapped_column(Text)
    artifact_location: Mapped[str | None] = mapped_column(Text)
    size_in_bytes: Mapped[int | None] = mapped_column(BigInteger)
    score_threshold: Mapped[float | None] = mapped_column(Float)
    score_threshold_updated_at: Mapped[float | None] = mapped_column(Float)
    endpoint_status: Mapped[str] = mapped_column(String(16), default="NONE")
    #: No longer written (older versions kept the creating process's URL here): a model's EndpointUrl is
    #: the public URL of the server asked (``service.models.endpoint_url``).
    endpoint_url: Mapped[str | None] = mapped_column(Text)
    endpoint_created_at: Mapped[float | None] = mapped_column(Float)
    peak_requests_per_second: Mapped[int] = mapped_column(Integer, default=0)

    def expected(self) -> "ExpectedModel":
        """What this model's file must state too (``core.model.load_artifact``): every door loading the
        file for this model passes it, so that another model's file is refused rather than used."""
        from emrml.core.model import ExpectedModel

        return ExpectedModel(
            self.id, self.model_type, self.data_schema, self.recipe, self.training_parameters
        )


class Evaluation(Entity, ReadsDatasource, Base):
    __tablename__ = "evaluations"
    kind = "Evaluation"

    ml_model_id: Mapped[str] = mapped_column(ENTITY_ID, index=True)
    evaluation_data_source_id: Mapped[str] = mapped_column(ENTITY_ID, index=True)
    performance_metrics: Mapped[str | None] = mapped_column(Text)
    insights: Mapped[str | None] = mapped_column(Text)


class BatchPrediction(Entity, ReadsDatasource, Base):
    __tablename__ = "batch_predictions"
    kind = "BatchPrediction"

    ml_model_id: Mapped[str] = mapped_column(ENTITY_ID, index=True)
    batch_prediction_data_source_id: Mapped[str] = mapped_column(ENTITY_ID, index=True)
    output_uri: Mapped[str] = mapped_column(Text)
    total_records: Mapped[int | None] = mapped_column(BigInteger)
    invalid_records: Mapped[int | None] = mapped_column(BigInteger)
    #: Records scored although a NUMERIC or BINARY value could not be read (it counted as missing).
    unparsed_records: Mapped[int | None] = mapped_column(BigInteger)


class Tag(Base):
    __tablename__ = "tags"

    resource_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(ENTITY_ID, primary_key=True)
    #: On MySQL and MariaDB in a collation without padding (migration 0017): "a" and "a " are two keys.
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str | None] = mapped_column(String(256))
    #: Insertion order, so DescribeTags lists tags as they were added.
    position: Mapped[int] = mapped_column(Integer)


class Stream(Base):
    """A stream scoring: consumers score the records of a Kinesis stream with a model (``emrml.stream``).

    ``status``: RUNNING (consumers should run), STOPPING (consumers finish their batch, checkpoint and
    exit), STOPPED. Not an Amazon ML entity: it has no job; its consumers are processes of their own.
    """

    __tablename__ = "streams"

    id: Mapped[str] = mapped_column(ENTITY_ID, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(STATUS, index=True)
    message: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[float] = mapped_column(Float)
    last_updated_at: Mapped[float] = mapped_column(Float)
    #: The start request as canonical JSON: a repeated start with other parameters is a mismatch.
    request: Mapped[str] = mapped_column(Text)
    ml_model_id: Mapped[str] = mapped_column(ENTITY_ID, index=True)
    input_uri: Mapped[str] = mapped_column(Text)
    output_uri: Mapped[str] = mapped_column(Text)
    dead_letter_uri: Mapped[str] = mapped_column(Text)
    #: TRIM_HORIZON, LATEST or AT_TIMESTAMP: where a shard without a checkpoint starts.
    starting_position: Mapped[str] = mapped_column(String(16))
    starting_timestamp: Mapped[float | None] = mapped_column(Float)
    #: "auto", "json" or "csv": how records are read.
    record_format: Mapped[str] = mapped_column(String(8))
    #: Started (or started again) by a request through ``emrml serve``: its consumers write the local output
    #: and dead-letter parts the request named through the confined jobs' write check
    #: (``service.confinement.checked_here``), each file in its folder as opened.
    confined: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: When the stream was last asked to stop (it became STOPPING): the consumers that ran then and went
    #: silent instead of stopping make it FAILED (``service.streams.settle_stopping``). Not
    #: ``last_updated_at``, which a consumer's failure message written after the stop moves later.
    stop_requested_at: Mapped[float | None] = mapped_column(Float)


class StreamLease(Base):
    """One shard of a stream: who holds it, its lease counter and checkpoint (KCL's lease table).

    An owner renews by raising ``counter``; another consumer takes the lease over once it has seen the
    counter unchanged for a lease time on its own clock, so no two machines need agreeing clocks.
    ``checkpoint`` is the sequence number of the last record whose outputs are durable, or ``SHARD_END``.
    """

    __tablename__ = "stream_leases"

    stream_id: Mapped[str] = mapped_column(ENTITY_ID, primary_key=True)
    shard_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The shard's parents as a JSON list (a split has one, a merge two): consumed only once they end.
    parents: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(128))
    counter: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpoint: Mapped[str | None] = mapped_column(String(128))
    checkpointed_at: Mapped[float | None] = mapped_column(Float)
    renewed_at: Mapped[float | None] = mapped_column(Float)
    #: How often the lease was taken from a live or expired owner (takeovers and steals).
    owner_switches: Mapped[int] = mapped_column(Integer, default=0)
    records_in: Mapped[int] = mapped_column(BigInteger, default=0)
    records_out: Mapped[int] = mapped_column(BigInteger, default=0)
    records_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    millis_behind_latest: Mapped[int | None] = mapped_column(BigInteger)


class StreamConsumer(Base):
    """A consumer process of a stream, as it last reported itself."""

    __tablename__ = "stream_consumers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stream_id: Mapped[str] = mapped_column(ENTITY_ID, index=True)
    host: Mapped[str] = mapped_column(String(256))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(STATUS)
    #: Records per second scored over the last reporting interval.
    records_per_second: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)


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


ENTITY_CLASSES: dict[str, type[DataSource | MLModel | Evaluation | BatchPrediction]] = {
    cls.kind: cls for cls in (DataSource, MLModel, Evaluation, BatchPrediction)
}

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


def is_full(exc: BaseException) -> bool:
    """Whether a metastore statement failed for want of room: its disk is full, or the database (a file, a
    table) past a size limit. The statement's transaction is rolled back whole."""
    if not isinstance(exc, DBAPIError):
        return False
    error = exc.orig
    if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
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


def fenced_update(session: Session, table: type[Base], where: list[Any], values: dict[str, Any]) -> bool:
    """``UPDATE table SET values WHERE where`` and whether exactly one row changed.

    The metastore's one way to change a row that several processes may race for (a job's claim, a
    stream's shard lease): the condition states what the writer believes, and a writer whose belief is
    out of date writes nothing.
    """
    return session.execute(update(table).where(*where).values(**values)).rowcount == 1


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: sessionmaker) -> Engine:
    """The engine of ``session_factory(engine)``: for the reads a server repeats from its threads, through a
    Core connection, which holds the interpreter lock a third as long as an ORM session would."""
    return sessions.kw["bind"]
