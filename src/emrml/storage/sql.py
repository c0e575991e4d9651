"""SQL datasources: a query's result, read as Arrow batches, staged as one gzip CSV file.

Amazon ML ran an RDS (MySQL) or Redshift query into ``S3StagingLocation`` and made a datasource of the
staged CSV; emrml does the same. The instance or cluster identifier of the request names a connection of
the ``sql_connections`` setting (``{"my-instance": "mysql://db.example.com:3306"}``); the request's
database name and credentials complete it. Reads are Arrow-native — connectorx for MySQL / MariaDB, the
ADBC PostgreSQL driver for the PostgreSQL wire protocol — and run in a read-only transaction, so a query
that would write fails instead. Both drivers are the optional extra ``emrml[sql]``.

Memory is bounded by the batch size, whatever the width of the rows: batches stream from the driver (about
16 MiB each from PostgreSQL, ``BATCH_ROWS`` rows from MySQL), a slice of at most ``SLICE_BYTES`` at a time
through pyarrow's CSV writer and a gzip stream into ``storage.locations.atomic_write``, so the staged file
appears whole or not at all.
"""

from __future__ import annotations

import csv as python_csv
import dataclasses
import io
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from emrml.core.inference import infer_type
from emrml.core.schema import (
    DEFAULT_MAX_ATTRIBUTES,
    MAX_NAME_LENGTH,
    Attribute,
    AttributeType,
    Schema,
    header_names,
)
from emrml.errors import DataError
from emrml.storage.gzipped import gzip_compressor
from emrml.storage.locations import atomic_write

#: Rows per Arrow batch read from MySQL / MariaDB (connectorx counts batches in rows; the PostgreSQL driver
#: is asked for about 16 MiB instead). Few enough that wide rows stay small in memory (4,096 rows of 20 KB
#: are 80 MB, where 65,536 of them held 1.3 GB, and about ten times that while staged); narrow rows read
#: no slower.
BATCH_ROWS = 4_096
#: Staged a slice of at most this many bytes of a batch at a time: the CSV text of a slice is in memory.
SLICE_BYTES = 8 << 20
#: Schema inference looks at the first rows of the result: this many, or fewer within ``SAMPLE_BYTES``.
SAMPLE_ROWS = 65_536
SAMPLE_BYTES = 32 << 20
#: The MySQL driver reads every DECIMAL with this many digits after the point, rounding off any more.
MYSQL_DECIMAL_SCALE = 10
#: Seconds to wait for the database to accept a connection.
CONNECT_TIMEOUT = 10
#: The schemes a connection URL may have, by the API that may use it.
SCHEMES = {"RDS": ("mysql", "mariadb"), "Redshift": ("postgresql", "postgres", "redshift")}

Progress = Callable[[float, str | None], None]


@dataclass(frozen=True)
class SqlSource:
    """Where a SelectSqlQuery runs: the API ("RDS" or "Redshift"), the identifier, a database, a user."""

    api: str
    identifier: str
    url: str
    database: str
    user: str
    password: str = dataclasses.field(repr=False)  # never in a log line or a traceback's locals

    @property
    def what(self) -> str:
        noun = "RDS instance" if self.api == "RDS" else "Redshift cluster"
        return f"{noun} {self.identifier!r} ({self.url}, database {self.database!r}, user {self.user!r})"

    def driver_url(self) -> str:
        """The connection URL with database and credentials filled in (never logged or shown)."""
        parts = urlsplit(self.url)
        scheme = "mysql" if parts.scheme in SCHEMES["RDS"] else "postgresql"
        credentials = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        query = f"?{parts.query}" if parts.query else ""
        return f"{scheme}://{credentials}{parts.netloc}/{quote(self.database, safe='')}{query}"


def resolve(
    connections: dict[str, str], api: str, identifier: str, database: str, user: str, password: str
) -> SqlSource:
    """The configured connection for ``identifier``; DataError when there is none or it is of another kind."""
    url = connections.get(identifier)
    member = "InstanceIdentifier" if api == "RDS" else "ClusterIdentifier"
    if url is None:
        configured = ", ".join(sorted(connections)) or "none"
        example = "mysql://host:3306" if api == "RDS" else "postgresql://host:5432"
        raise DataError(
            f"DatabaseInformation.{member} {identifier!r} is not a configured connection (setting "
            f"sql_connections maps identifiers to URLs such as {example}; configured: {configured})"
        )
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Every message about the source names its URL, and a FAILED datasource's reaches whoever asked:
        # a password there would be shown to every user of the connection. Not echoed here either.
        raise DataError(
            f"setting sql_connections[{identifier!r}] holds a user name or password (user:password@host): "
            "a connection URL names the server only, the request's DatabaseCredentials sign in; remove "
            "them from the setting"
        )
    if parts.scheme not in SCHEMES[api] or not parts.hostname:
        raise DataError(
            f"setting sql_connections[{identifier!r}] = {url!r}: a {api} connection is "
            f"{' or '.join(f'{s}://host:port' for s in SCHEMES[api])}"
        )
    return SqlSource(api, identifier, url, database, user, password)


_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*(\w*)", re.DOTALL)


def for_copy(query: str) -> str:
    """``query`` made safe to wrap in parentheses, as the PostgreSQL driver does (``COPY (query) TO STDOUT``).

    Trailing semicolons and blanks go (``SELECT ...;`` followed by a newline was a syntax error at the
    ``;``) and a newline ends the query, so that a last line ending in a ``-- comment`` does not comment
    out the closing parenthesis.
    """
    text = query.rstrip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text + "\n"


def check_select(query: str) -> None:
    """A SelectSqlQuery must be a query: SELECT or WITH (the read-only transaction is the real guard)."""
    match = _FIRST_WORD.match(query)
    word = match.group(1) if match else ""
    if word.upper() not in ("SELECT", "WITH"):
        found = f"it starts with {word.upper()!r}" if word else "it is empty"
        raise DataError(f"SelectSqlQuery must be a SELECT statement ({found}); it runs read-only")


# ---------------------------------------------------------------------------------------------- reading


def _missing_driver(package: str) -> DataError:
    return DataError(f"SQL datasources need the {package} package: pip install 'emrml[sql]'")


def _clean(error: BaseException) -> str:
    """A driver's error as one line, without stack traces or the driver's wrapping."""
    # connectorx's errors while reading carry the Rust stack after the message: of no use to the user.
    text = str(error).split("Stack backtrace:", 1)[0]
    for pattern in (r"ERROR \d+ \([0-9A-Z]+\): [^}]*", r"ERROR:\s+[^\n]*"):
        found = re.search(pattern, text)
        if found:
            text = found.group(0)
            break
    text = " ".join(text.replace(" }", "").split())[:500]
    # connectorx cannot read some MySQL values (a zero date '0000-00-00', a TIME beyond 24 hours or
    # negative) or types (a column of NULL literals): say what the user can do about it.
    if "Couldn't convert the value" in text:
        text += (
            " (a value the MySQL driver cannot read, such as a zero date or a TIME outside 00:00-24:00: "
            "convert the column in the query, e.g. CAST(... AS CHAR))"
        )
    elif "decimal scale is not equal to expected scale" in text:
        # The driver holds a DECIMAL in 28 digits with 10 after the point: 19 or more before it do not fit.
        text += (
            " (a DECIMAL value with more than 18 digits before the decimal point, more than the MySQL driver "
            "reads: convert the column in the query, e.g. CAST(... AS DOUBLE))"
        )
    elif "MYSQL_TYPE_NULL" in text:
        text += " (a column of NULL literals: give it a type in the query, e.g. CAST(NULL AS CHAR))"
    return text


def _check_mysql_decimals(connection: Any, query: str) -> bool:
    """DataError for a DECIMAL result column with more digits after the point than the MySQL driver reads,
    which it would round off without a word (DECIMAL(38,20)'s 0.12345678901234567890 staged as 0.1234567890).

    The columns are described without running the query: as a derived table with LIMIT 0, which the server
    answers from the query's plan. False when the query cannot be described so.
    """
    import pymysql
    from pymysql.constants import FIELD_TYPE

    with connection.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        try:
            cursor.execute(f"SELECT * FROM ({for_copy(query)}) AS emrml_result LIMIT 0")
        except pymysql.Error:
            # A derived table refuses some queries the server runs (two columns of one name, a semicolon
            # followed by a comment): the driver runs such a query as written, and its own error or the
            # column checks speak for it.
            return False
        description = cursor.description or ()
    for name, type_code, _, _, _, scale, _ in description:
        if type_code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL) and scale > MYSQL_DECIMAL_SCALE:
            quoted = "`" + name.replace("`", "``") + "`"
            raise DataError(
                f"SelectSqlQuery column {name!r} is a DECIMAL with {scale} digits after the decimal point; "
                f"the MySQL driver reads {MYSQL_DECIMAL_SCALE} and would round off the rest: convert it in "
                f"the query, e.g. CAST({quoted} AS DOUBLE) (NUMERIC values are read as 64-bit floats, "
                f"about 16 significant digits, anyway) or ROUND({quoted}, {MYSQL_DECIMAL_SCALE})"
            )
    return True


@contextmanager
def _mysql_batches(source: SqlSource, query: str) -> Iterator[pa.RecordBatchReader]:
    try:
        import connectorx
        import pymysql
    except ImportError as exc:
        raise _missing_driver(exc.name or "connectorx") from None
    # connectorx retries a refused login for half a minute and only then says why; a direct connection
    # first answers at once, with the server's reason.
    parts = urlsplit(source.url)
    try:
        connection = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=source.user,
            password=source.password,
            database=source.database,
            connect_timeout=CONNECT_TIMEOUT,
        )
    except pymysql.Error as exc:
        reason = exc.args[1] if len(exc.args) == 2 else str(exc)  # pymysql's args: (code, message)
        raise DataError(f"cannot connect to {source.what}: {reason}") from None
    try:
        described = _check_mysql_decimals(connection, query)
    finally:
        connection.close()
    try:
        reader = connectorx.read_sql(
            source.driver_url(),
            query,
            return_type="arrow_stream",
            batch_size=BATCH_ROWS,
            # Every later transaction of the session, the query's included, is read-only.
            pre_execution_query=["SET SESSION TRANSACTION READ ONLY"],
        )
    # connectorx raises RuntimeError for a query the server refuses, and a pyo3 PanicException (a
    # BaseException) for one that fails while running.
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise DataError(f"SelectSqlQuery failed on {source.what}: {_clean(exc)}") from None
    decimal = next((field.name for field in reader.schema if pa.types.is_decimal(field.type)), None)
    if not described and decimal is not None:
        # Its digits after the point were not counted: it might be rounded off.
        raise DataError(
            f"SelectSqlQuery column {decimal!r} is a DECIMAL whose digits after the point could not be "
            "counted, as the query cannot be read as a subquery (SELECT * FROM (query) AS q); without a "
            "comment after its semicolon it can be, or convert the column, e.g. CAST(... AS DOUBLE)"
        )
    yield _guarded(reader, source)


@contextmanager
def _postgresql_batches(source: SqlSource, query: str) -> Iterator[pa.RecordBatchReader]:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        raise _missing_driver("adbc-driver-postgresql") from None
    # default_transaction_read_only: the driver's transaction, and any other, is read-only.
    url = source.driver_url()
    options = "options=-c%20default_transaction_read_only%3Don"
    url += ("&" if "?" in url else "?") + options + f"&connect_timeout={CONNECT_TIMEOUT}"
    try:
        connection = adbc.connect(url)
    except adbc.Error as exc:
        raise DataError(f"cannot connect to {source.what}: {_clean(exc)}") from None
    try:
        with connection.cursor() as cursor:
            try:
                cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(16 << 20)})
                cursor.execute(for_copy(query))
                reader = cursor.fetch_record_batch()
            except adbc.Error as exc:
                raise DataError(f"SelectSqlQuery failed on {source.what}: {_clean(exc)}") from None
            yield _guarded(reader, source)
    finally:
        connection.close()


def _guarded(reader: pa.RecordBatchReader, source: SqlSource) -> pa.RecordBatchReader:
    """``reader`` whose errors while streaming become DataError naming the source."""

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            raise DataError(f"SelectSqlQuery failed on {source.what}: {_clean(exc)}") from None

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def read_query(source: SqlSource, query: str) -> AbstractContextManager[pa.RecordBatchReader]:
    """The query's rows as Arrow batches, read in a read-only transaction; errors are DataError."""
    check_select(query)
    return _mysql_batches(source, query) if source.api == "RDS" else _postgresql_batches(source, query)


# ---------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Column:
    """A result column: its name, the Amazon ML type its SQL type gives (None: inferred from the values
    as for a CSV column), and the Arrow type its values are written to CSV as."""

    name: str
    type: AttributeType | None
    csv_type: pa.DataType
    #: A PostgreSQL date, timestamp or time, whose special values the driver reads as overflowed numbers.
    postgresql_temporal: bool = False


def _sql_type(field: pa.Field) -> str:
    metadata = field.metadata or {}
    name = metadata.get(b"POSTGRESQL:type") or metadata.get(b"ADBC:postgresql:typname")
    return name.decode() if name else str(field.type)


def _column(field: pa.Field) -> Column:
    kind = field.type
    # The ADBC driver reads NUMERIC as pyarrow's OpaqueType of text storage: a C++ extension type, which
    # is a pa.BaseExtensionType but not a pa.ExtensionType (those are defined in Python). Other extension
    # types (json, uuid, inet, ...) hold no Amazon ML type.
    storage = kind.storage_type if isinstance(kind, pa.BaseExtensionType) else kind
    sql_type = _sql_type(field)
    if sql_type == "numeric" and pa.types.is_string(storage):
        return Column(field.name, AttributeType.NUMERIC, pa.string())  # PostgreSQL NUMERIC, as text
    if sql_type == "money":
        # Read as an integer count of cents (of the server's lc_monetary), so 12.34 would be 1234.
        raise DataError(
            f"SelectSqlQuery column {field.name!r} has SQL type money, which is read as a whole number of "
            f"cents; convert it in the query, e.g. {field.name}::numeric"
        )
    if pa.types.is_boolean(kind):
        return Column(field.name, AttributeType.BINARY, kind)
    if pa.types.is_integer(kind):
        return Column(field.name, None, kind)  # BINARY when it holds only 0 and 1 (MySQL's BOOLEAN)
    if pa.types.is_floating(kind):
        return Column(field.name, AttributeType.NUMERIC, kind)
    if pa.types.is_decimal(kind):
        return Column(field.name, AttributeType.NUMERIC, pa.string())  # staged as its digits
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return Column(field.name, None, pa.string())
    postgresql = bool(field.metadata and b"POSTGRESQL:type" in field.metadata)
    if pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_timestamp(kind):
        return Column(field.name, AttributeType.CATEGORICAL, pa.string(), postgresql_temporal=postgresql)
    if (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)) and not postgresql:
        # The MySQL driver reads BIT(n) as bytes, like BINARY and BLOB, and says nothing more of the type:
        # CAST(... AS CHAR) would stage BIT(1)'s 1 as the control character 0x01, so say how to get 0 and 1.
        quoted = "`" + field.name.replace("`", "``") + "`"
        raise DataError(
            f"SelectSqlQuery column {field.name!r} holds bytes (a MySQL BIT, BINARY, VARBINARY or BLOB "
            "column), which no Amazon ML attribute type holds; convert it in the query: a BIT column with "
            f"CAST({quoted} AS UNSIGNED) (BIT(1) then reads as 0 and 1, a BINARY attribute), other bytes "
            f"with HEX({quoted})"
        )
    # PostgreSQL's CHAR is CHAR(1): CAST(... AS CHAR) would stage '1 day' as '1', and every value cut so.
    conversion = "CAST(... AS TEXT) or encode(..., 'hex')" if postgresql else "CAST(... AS CHAR) or HEX(...)"
    raise DataError(
        f"SelectSqlQuery column {field.name!r} has SQL type {_sql_type(field)}, which no Amazon ML attribute "
        f"type holds (BINARY, CATEGORICAL, NUMERIC, TEXT); convert it in the query, e.g. {conversion}"
    )


def result_columns(schema: pa.Schema) -> list[Column]:
    """The columns of a query result; DataError for a type without an Amazon ML type, or a bad name."""
    seen: set[str] = set()
    columns = []
    for field in schema:
        name = field.name
        if not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise DataError(
                f"SelectSqlQuery column {name!r}: an attribute name has 1 to {MAX_NAME_LENGTH} characters; "
                "rename it in the query (AS ...)"
            )
        if name in seen:
            raise DataError(
                f"SelectSqlQuery returns two columns named {name!r}; give them distinct names (AS)"
            )
        seen.add(name)
        columns.append(_column(field))
    return columns


def _wrapped(value: int, bits: int) -> int:
    """``value`` as a two's complement integer of ``bits`` bits would hold it after overflowing."""
    return (value + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))


#: PostgreSQL counts from 2000-01-01; the ADBC driver adds this offset (in days, in microseconds) to move
#: to the Unix epoch, so its 'infinity' (the type's largest value) and '-infinity' (the smallest) overflow.
_PG_EPOCH_DAYS, _PG_EPOCH_MICROSECONDS = 10_957, 946_684_800_000_000


def _postgresql_temporal_text(array: pa.Array) -> pa.Array:
    """A PostgreSQL date, timestamp or time column as text, its special values spelled as PostgreSQL does.

    Read through pyarrow's cast, 'infinity' became ``<value out of range: -9222425352054775809>`` (or a date
    in the year -28134) and the time ``24:00:00`` ``<value out of range: 86400000000>``.
    """
    special: dict[int, str] = {}
    if pa.types.is_timestamp(array.type) and array.type.unit == "us":
        bits, offset = 64, _PG_EPOCH_MICROSECONDS
    elif pa.types.is_date32(array.type):
        bits, offset = 32, _PG_EPOCH_DAYS
    else:
        bits, offset = 0, 0
    if bits:
        special[_wrapped((1 << (bits - 1)) - 1 + offset, bits)] = "infinity"
        special[_wrapped(-(1 << (bits - 1)) + offset, bits)] = "-infinity"
    elif pa.types.is_time64(array.type) and array.type.unit == "us":
        special[86_400_000_000] = "24:00:00.000000"
    if not special:
        return pc.cast(array, pa.string())
    numbers = array.view(pa.int32() if bits == 32 else pa.int64())
    text = pc.cast(array, pa.string())
    for number, spelling in special.items():
        matches = pc.fill_null(pc.equal(numbers, pa.scalar(number, numbers.type)), False)
        text = pc.if_else(matches, pa.scalar(spelling, pa.string()), text)
    return text


#: A fixed-point number's trailing zeros after the point (and the point, when only zeros follow it).
_TRAILING_ZEROS = r"^(-?[0-9]+)(?:\.0+|(\.[0-9]*[1-9])0+)$"


def _decimal_text(array: pa.Array) -> pa.Array:
    """A decimal column as the values' own digits: ``12.5`` and ``7``, not the MySQL driver's
    ``12.5000000000`` and ``7.0000000000`` (it reads every DECIMAL with 10 digits after the point).

    Arrow spells a value under 10⁻⁶ in scientific notation (``0E-10``, ``1.234E-7``); those are spelled from
    1 + |value| instead (``1.0000001234`` gives ``0.0000001234``).
    """
    text = pc.cast(array, pa.string())
    scientific = pc.fill_null(pc.match_substring(text, "E"), False)
    if pc.any(scientific).as_py():
        wider = pa.decimal256(min(array.type.precision + 1, 76), array.type.scale)
        shifted = pc.add(pc.cast(pc.abs(array), wider), pa.scalar(Decimal(1), pa.decimal256(1, 0)))
        fixed = pc.replace_substring_regex(pc.cast(shifted, pa.string()), "^1", "0")
        signed = pc.binary_join_element_wise(pa.scalar("-"), fixed, pa.scalar(""))
        fixed = pc.if_else(pc.less(array, pa.scalar(Decimal(0), array.type)), signed, fixed)
        text = pc.if_else(scientific, fixed, text)
    return pc.replace_substring_regex(text, _TRAILING_ZEROS, r"\1\2")


def _as_csv(batch: pa.RecordBatch, columns: list[Column]) -> pa.RecordBatch:
    arrays = []
    for array, column in zip(batch.columns, columns, strict=True):
        if isinstance(array.type, pa.BaseExtensionType):
            array = array.storage
        if column.postgresql_temporal:
            array = _postgresql_temporal_text(array)
        elif pa.types.is_decimal(array.type):
            array = _decimal_text(array)
        if pa.types.is_null(array.type) or array.type != column.csv_type:
            array = pc.cast(array, column.csv_type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


def inferred_schema(columns: list[Column], sample: pa.RecordBatch | pa.Table | None) -> Schema:
    """The datasource schema when none is given: types from SQL, strings (and 0/1 integers) by value; names
    as the staged file's header gives them, as for any CSV file (a name with blanks around it trimmed)."""
    attributes = []
    names = header_names([column.name for column in columns])
    for index, column in enumerate(columns):
        kind = column.type
        if kind is None:
            values = (
                pa.array([], pa.string()) if sample is None else pc.cast(sample.column(index), pa.string())
            )
            guessed = infer_type(values)
            if pa.types.is_integer(column.csv_type):
                kind = AttributeType.BINARY if guessed == AttributeType.BINARY else AttributeType.NUMERIC
            else:
                # Digits in a text column are codes (zip codes, ids), not quantities.
                kind = AttributeType.CATEGORICAL if guessed == AttributeType.NUMERIC else guessed
        attributes.append(Attribute(names[index], kind))
    return Schema(tuple(attributes), has_header=True)


# ---------------------------------------------------------------------------------------------- staging


@dataclass(frozen=True)
class Staged:
    location: str
    rows: int
    schema: Schema


def staged_location(staging: str, data_source_id: str) -> str:
    """The file a datasource's query result is staged as: ``<S3StagingLocation>/<id>.csv.gz``."""
    return f"{staging.rstrip('/')}/{data_source_id}.csv.gz"


def _slices(batch: pa.RecordBatch, limit: int) -> Iterator[pa.RecordBatch]:
    """``batch`` cut into consecutive slices of about ``limit`` bytes each (one row at least)."""
    per_row = max(batch.nbytes / batch.num_rows, 1.0)
    step = max(int(limit / per_row), 1)
    for start in range(0, batch.num_rows, step):
        yield batch.slice(start, step)


class _Sample:
    """The first rows of the result, for schema inference: ``SAMPLE_ROWS`` of them or ``SAMPLE_BYTES``."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []
        self.rows = self.bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if self.rows >= SAMPLE_ROWS or self.bytes >= SAMPLE_BYTES:
            return
        per_row = max(batch.nbytes / batch.num_rows, 1.0)
        wanted = min(SAMPLE_ROWS - self.rows, max(int((SAMPLE_BYTES - self.bytes) / per_row), 1))
        # A copy: a slice would keep the whole batch (its buffers) alive while the rest is staged.
        taken = batch.take(pa.array(range(wanted), pa.int64())) if wanted < batch.num_rows else batch
        self.batches.append(taken)
        self.rows += taken.num_rows
        self.bytes += taken.nbytes

    def table(self) -> pa.Table | None:
        return pa.Table.from_batches(self.batches) if self.batches else None


def stage(
    reader: pa.RecordBatchReader,
    location: str,
    progress: Progress | None = None,
    *,
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
) -> Staged:
    """Write the rows of ``reader`` to ``location`` as gzip CSV with a header; DataError when there are none,
    or more columns than a schema may have attributes (``max_attributes``).

    The file appears only if every row was written; the schema is inferred from the column types and the
    first rows. Memory holds one batch of the driver's and the CSV text of one slice of it (``SLICE_BYTES``),
    whatever the width of the rows.
    """
    if len(reader.schema) > max_attributes:
        # Refused before any row is read: a datasource of it would complete, and every model on it fail.
        raise DataError(
            f"SelectSqlQuery returns {len(reader.schema):,} columns; a datasource has at most "
            f"{max_attributes:,} attributes (the max_attributes setting): select fewer columns"
        )
    columns = result_columns(reader.schema)
    rows, sample = 0, _Sample()
    # Not pyarrow's gzip stream, which has no compression level.
    compressor = gzip_compressor()
    options = csv.WriteOptions(include_header=False)
    with atomic_write(location) as out:
        # The header by hand: pyarrow quotes every name, where a name needs quotes only as a value would.
        names = io.StringIO()
        python_csv.writer(names, lineterminator="\n").writerow(c.name for c in columns)
        out.write(compressor.compress(names.getvalue().encode()))
        for batch in reader:
            if not batch.num_rows:
                continue
            sample.add(batch)
            for piece in _slices(batch, SLICE_BYTES):
                text = pa.BufferOutputStream()
                csv.write_csv(_as_csv(piece, columns), text, options)
                out.write(compressor.compress(text.getvalue()))
                del text
            rows += batch.num_rows
            del batch
            if progress is not None:
                progress(0.0, f"staged {rows:,} rows of the query result")
        if rows == 0:
            raise DataError("SelectSqlQuery returned no rows: there is nothing to make a datasource of")
        out.write(compressor.flush())
    return Staged(location, rows, inferred_schema(columns, sample.table()))


def stage_query(
    source: SqlSource,
    query: str,
    location: str,
    progress: Progress | None = None,
    *,
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES,
) -> Staged:
    """Run ``query`` on ``source`` read-only and stage its result at ``location``."""
    if progress is not None:
        progress(0.0, f"running SelectSqlQuery on {source.what}")
    with read_query(source, query) as reader:
        return stage(reader, location, progress, max_attributes=max_attributes)
