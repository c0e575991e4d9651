"""SQL datasources: a query's result, read as Arrow batches (``storage.sql_staging`` stages it as one gzip
CSV file).

Amazon ML ran an RDS (MySQL) or Redshift query into ``S3StagingLocation`` and made a datasource of the
staged CSV; emrml does the same. The instance or cluster identifier of the request names a connection of
the ``sql_connections`` setting (``{"my-instance": "mysql://db.example.com:3306"}``); the request's
database name and credentials complete it. Reads are Arrow-native — connectorx for MySQL / MariaDB, the
ADBC PostgreSQL driver for the PostgreSQL wire protocol — and run in a read-only transaction, so a query
that would write fails instead. Both drivers are the optional extra ``emrml[sql]``; connectorx reads in a
process of its own (``storage.sql_child``), since it holds the interpreter's lock while it waits for rows.
A query whose reader dies (a job's worker killed) or leaves it ends on the server: PostgreSQL checks its
client, a MySQL read runs beside a watcher that ends it (``storage.sql_watch``). So does one whose job is
stopped (``read_query``'s ``stopped``): cancelled on PostgreSQL, ended by the watcher on MySQL.

Memory is bounded by the batch size, whatever the width of the rows: batches stream from the driver (about
16 MiB each from PostgreSQL, ``BATCH_ROWS`` rows from MySQL) to ``storage.sql_staging``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from emrml.core.surrogates import is_text
from emrml.errors import DataError
from emrml.storage import sql_child, sql_watch
from emrml.storage.sql_errors import clean_error, missing_driver, unanswered

if TYPE_CHECKING:
    # Imported where used: the watcher of a MySQL read (storage.sql_watch) runs beside the read, for as
    # long as it runs, and connects with this module's ``mysql_connect``: pyarrow would add some 60 MB to it.
    import pyarrow as pa

#: Rows per Arrow batch read from MySQL / MariaDB (connectorx counts batches in rows; the PostgreSQL driver
#: is asked for about 16 MiB instead). Few enough that wide rows stay small in memory (4,096 rows of 20 KB
#: are 80 MB, where 65,536 of them held 1.3 GB, and about ten times that while staged); narrow rows read
#: no slower.
BATCH_ROWS = 4_096
#: The MySQL driver reads every DECIMAL with this many digits after the point, rounding off any more.
MYSQL_DECIMAL_SCALE = 10
#: Seconds to wait for the database to take a connection and sign the user in (setting
#: ``sql_connect_seconds``): a server that says nothing for that long fails the read.
CONNECT_SECONDS = 10.0
#: The schemes a connection URL may have, by the API that may use it.
SCHEMES = {"RDS": ("mysql", "mariadb"), "Redshift": ("postgresql", "postgres", "redshift")}

#: The options a MySQL / MariaDB connection URL may carry (``?ssl-mode=VERIFY_CA&ssl-ca=/path/ca.pem``): TLS,
#: as the MySQL client spells it and connectorx reads it; the first connection (pymysql) is given the same.
MYSQL_SSL_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
MYSQL_URL_OPTIONS = ("ssl-mode", "ssl-ca")

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
    connect_seconds: float = CONNECT_SECONDS

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
    connections: dict[str, str],
    api: str,
    identifier: str,
    database: str,
    user: str,
    password: str,
    *,
    connect_seconds: float = CONNECT_SECONDS,
) -> SqlSource:
    """The configured connection for ``identifier``; DataError when there is none or it is of another kind.
    ``connect_seconds``: how long its server may take to answer a connection (``sql_connect_seconds``)."""
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
    if api == "RDS":
        _check_mysql_options(identifier, parts.query)
    for member, value in (("Username", user), ("Password", password)):
        if not is_text(value):  # the drivers send it in UTF-8
            raise DataError(
                f"DatabaseCredentials.{member} holds a character that is not Unicode text (a lone surrogate "
                "code point): no database can have been given it"
            )
    return SqlSource(api, identifier, url, database, user, password, connect_seconds)


def _check_mysql_options(identifier: str, query: str) -> None:
    """DataError for a MySQL URL option the drivers would not both apply (``MYSQL_URL_OPTIONS``)."""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in MYSQL_URL_OPTIONS:
            raise DataError(
                f"setting sql_connections[{identifier!r}]: the URL option {name!r} is not one emrml knows; a "
                "MySQL connection URL takes ssl-mode (" + ", ".join(MYSQL_SSL_MODES) + ") and ssl-ca (the "
                "file of the certificate authority that signed the server's), e.g. "
                "mysql://host:3306?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/ssl/rds-ca.pem"
            )
        if name == "ssl-mode" and value.upper() not in MYSQL_SSL_MODES:
            raise DataError(
                f"setting sql_connections[{identifier!r}]: ssl-mode {value!r} is none of "
                + ", ".join(MYSQL_SSL_MODES)
            )


def _mysql_tls(source: SqlSource) -> dict[str, Any]:
    """pymysql's arguments for the URL's TLS options, as connectorx applies them to the read: so that the
    connection made first (for its quick, clear refusals) is made as the read's would be."""
    options = dict(parse_qsl(urlsplit(source.url).query))
    mode = options.get("ssl-mode", "").upper()
    if not mode:
        return {}  # both drivers use TLS when the server offers it
    if mode == "DISABLED":
        return {"ssl_disabled": True}
    try:
        context = ssl.create_default_context(cafile=options.get("ssl-ca") or None)
    except OSError as exc:
        raise DataError(
            f"cannot connect to {source.what}: the certificate authority file ssl-ca "
            f"{options['ssl-ca']!r} cannot be read ({exc.strerror or exc})"
        ) from None
    # PREFERRED too: connectorx refuses a server without TLS under it.
    if mode in ("PREFERRED", "REQUIRED"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "VERIFY_CA":
        context.check_hostname = False
    return {"ssl": context}


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


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")


def postgresql_statement(query: str) -> str:
    """``for_copy`` of ``query`` less the semicolons and comments that end it (``SELECT …; -- note``, which
    psql runs, was a syntax error at the ``;`` once wrapped in parentheses), by PostgreSQL's lexical rules.
    """
    return for_copy(query[: _postgresql_end(query)])


# Written here rather than with sqlparse: its lexer reads every '…' string with backslash escapes (MySQL's
# rule) and block comments unnested, where PostgreSQL escapes only in E'…' strings and nests /* */.
def _postgresql_end(query: str) -> int:
    """Where the text of ``query`` ends that is neither blanks, semicolons nor comments after it: ``'…'``
    and ``E'…'`` strings, ``"…"`` names and ``$tag$…$tag$`` bodies are skipped whole, ``--`` and (nested)
    ``/* */`` comments are not text. The whole length when a string or comment is never closed (the server
    then says what is wrong)."""
    length, position, end = len(query), 0, 0
    while position < length:
        char = query[position]
        if char.isspace() or char == ";":
            position += 1
        elif query.startswith("--", position):
            newline = query.find("\n", position)
            position = length if newline < 0 else newline + 1
        elif query.startswith("/*", position):
            depth, position = 1, position + 2
            while position < length and depth:
                step = query[position : position + 2]
                depth += (step == "/*") - (step == "*/")
                position += 2 if step in ("/*", "*/") else 1
            if depth:
                return length
        else:
            closed = _token_end(query, position)
            if closed is None:
                return length
            position = end = closed
    return end


def _token_end(query: str, position: int) -> int | None:
    """The end of the string, name, dollar-quoted body or character at ``position``; None when unclosed."""
    char = query[position]
    word_before = position > 0 and (query[position - 1].isalnum() or query[position - 1] == "_")
    if char == "'":
        # An E'…' string escapes with backslashes; any string doubles its quotes.
        escapes = (
            word_before
            and query[position - 1] in "eE"
            and not (position > 1 and (query[position - 2].isalnum() or query[position - 2] == "_"))
        )
        position += 1
        while position < len(query):
            if escapes and query[position] == "\\":
                position += 2
            elif query[position] == "'":
                if not query.startswith("''", position):
                    return position + 1
                position += 2
            else:
                position += 1
        return None
    if char == '"':
        closing = query.find('"', position + 1)  # a doubled "" reads as two names in a row: same extent
        return None if closing < 0 else closing + 1
    tag = _DOLLAR_TAG.match(query, position) if char == "$" and not word_before else None
    if tag is not None:
        closing = query.find(tag.group(0), tag.end())
        return None if closing < 0 else closing + len(tag.group(0))
    return position + 1


def check_select(query: str) -> None:
    """A SelectSqlQuery must be a query: SELECT or WITH (the read-only transaction is the real guard)."""
    match = _FIRST_WORD.match(query)
    word = match.group(1) if match else ""
    if word.upper() not in ("SELECT", "WITH"):
        found = f"it starts with {word.upper()!r}" if word else "it is empty"
        raise DataError(f"SelectSqlQuery must be a SELECT statement ({found}); it runs read-only")


def check_mysql_select(query: str) -> None:
    """DataError for a MySQL SelectSqlQuery holding SELECT … INTO, which the read-only transaction allows:
    INTO OUTFILE or DUMPFILE writes the rows to a file on the database server (describing the query runs
    it as written, under a limit its own LIMIT outranks), INTO a variable returns nothing to read.
    Whether the server reads backslashes in strings as escapes is its ``sql_mode``'s choice, so the words
    are looked for both ways: in ``'a\\' INTO OUTFILE '/tmp/x' -- '`` one reads INTO, the other a string."""
    if any("INTO" in _mysql_words(query, escapes) for escapes in (True, False)):
        raise DataError(
            "SelectSqlQuery must return its rows: SELECT … INTO writes them on the database server (a file "
            "of INTO OUTFILE or DUMPFILE, or variables) instead; remove the INTO clause (a column named "
            "into is written `into`)"
        )


#: What MySQL reads as a comment whose text runs all the same: ``/*! … */`` (``/*!50700 … */`` from a
#: version on) and MariaDB's ``/*M! … */``.
_MYSQL_RUN_COMMENT = re.compile(r"/\*M?!\d*")
#: A ``--`` comment's opening: its dashes and a blank.
_MYSQL_DASHES = {f"--{blank}" for blank in " \t\n\r\f\v"}
#: The letters of a word; digits end one, so that ``1INTO`` is looked at as the server may read it.
_MYSQL_LETTERS = re.compile(r"[A-Za-z_$\x80-\U0010ffff]+")


def _mysql_words(query: str, escapes: bool) -> set[str]:
    """The words of ``query``, upper-cased, outside its strings, `names` and comments (by MySQL's lexical
    rules, backslashes escaping in strings when ``escapes``); where in doubt, more text is read as words."""
    words, length, position = set(), len(query), 0
    while position < length:
        char = query[position]
        if char in "'\"`":
            position = _mysql_quoted_end(query, position, escapes and char != "`")
        elif run := _MYSQL_RUN_COMMENT.match(query, position):
            position = run.end()
        elif query.startswith("/*", position):
            closing = query.find("*/", position + 2)
            position = length if closing < 0 else closing + 2
        elif char == "#" or query[position : position + 3] in _MYSQL_DASHES:
            # Ended at either line break: a server ending it at a carriage return reads what follows.
            ends = [end for end in (query.find("\n", position), query.find("\r", position)) if end >= 0]
            position = min(ends, default=length)
        elif letters := _MYSQL_LETTERS.match(query, position):
            words.add(letters.group(0).upper())
            position = letters.end()
        else:
            position += 1
    return words


def _mysql_quoted_end(query: str, position: int, escapes: bool) -> int:
    """The end of the string or name opening at ``position`` (its doubled quotes, and with ``escapes`` its
    backslashed characters, inside it); the end of ``query`` when it is never closed."""
    quote_char, position = query[position], position + 1
    while position < len(query):
        if escapes and query[position] == "\\":
            position += 2
        elif query[position] == quote_char:
            if not query.startswith(quote_char * 2, position):
                return position + 1
            position += 2
        else:
            position += 1
    return len(query)


# ---------------------------------------------------------------------------------------------- reading


def _described_mysql(connection: Any, source: SqlSource, query: str) -> list[str]:
    """The result's TIMESTAMP columns (``_utc_timestamps``); DataError for a DECIMAL result column with
    more digits after the point than the MySQL driver reads, which it would round off without a word
    (DECIMAL(38,20)'s 0.12345678901234567890 staged as 0.1234567890), for a spatial column, for a column
    of NULL literals, and for a query the server refuses (its error on the query as written)."""
    from pymysql.constants import FIELD_TYPE

    with connection.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    description = _mysql_description(connection, source, query)
    if not description:
        # No result set: connectorx panics on it (a Rust backtrace in the log, a message about Arrow).
        raise DataError(
            f"SelectSqlQuery on {source.what} returns no rows to read (a SELECT … INTO puts its result "
            "elsewhere): select the columns the datasource reads"
        )
    for field in description:
        name, type_code, scale = field.name, field.type_code, field.scale
        if type_code == FIELD_TYPE.NULL or (
            type_code == FIELD_TYPE.STRING and field.length == 0 and field.charsetnr == _BINARY_CHARSET
        ):
            # SELECT NULL AS x: the driver has no type for it and panicked ("not implemented:
            # MYSQL_TYPE_NULL", a Rust backtrace in the log). Described from a derived table, the column is
            # a BINARY(0), as one of NULLs from a UNION or an IF is, which the driver reads as bytes.
            quoted = "`" + name.replace("`", "``") + "`"
            raise DataError(
                f"SelectSqlQuery column {name!r} holds NULL literals, which have no SQL type the MySQL "
                f"driver reads; give the column one in the query, e.g. CAST(NULL AS CHAR) AS {quoted} (an "
                "attribute whose values are all missing, as PostgreSQL's NULL column is)"
            )
        if type_code == FIELD_TYPE.GEOMETRY:
            # The driver has no type for it: it panicked ("not implemented: MYSQL_TYPE_GEOMETRY", a Rust
            # backtrace in the log), the error naming neither the column nor what to do.
            quoted = "`" + name.replace("`", "``") + "`"
            raise DataError(
                f"SelectSqlQuery column {name!r} has SQL type GEOMETRY, which no Amazon ML attribute type "
                f"holds; convert it in the query, e.g. ST_AsText({quoted}) or ST_X({quoted})"
            )
        if type_code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL) and scale > MYSQL_DECIMAL_SCALE:
            quoted = "`" + name.replace("`", "``") + "`"
            raise DataError(
                f"SelectSqlQuery column {name!r} is a DECIMAL with {scale} digits after the decimal point; "
                f"the MySQL driver reads {MYSQL_DECIMAL_SCALE} and would round off the rest: convert it in "
                f"the query, e.g. CAST({quoted} AS DOUBLE) (NUMERIC values are read as 64-bit floats, "
                f"about 16 significant digits, anyway) or ROUND({quoted}, {MYSQL_DECIMAL_SCALE})"
            )
    return [field.name for field in description if field.type_code == FIELD_TYPE.TIMESTAMP]


#: The character set number of bytes (``binary``), which the server gives a column of NULL literals.
_BINARY_CHARSET = 63


def _mysql_description(connection: Any, source: SqlSource, query: str) -> list[Any]:
    """The result's columns as the server describes them (pymysql's fields: name, type_code, length,
    charsetnr, scale), without running the query: as a derived table with LIMIT 0, which the server
    answers from the query's plan.
    A derived table refuses some queries the server runs as written (a semicolon followed by a comment, two
    columns of one name): those are described as written, under ``sql_select_limit`` 0, which the server
    answers the same way; only a LIMIT of the query's own outranks it, whose rows are then read (one at a
    time) and dropped. DataError with the server's error when it refuses the query as written: told of
    the query the user wrote (the MySQL driver's own error would quote the LIMIT it adds to it)."""
    import pymysql
    from pymysql.cursors import SSCursor

    with connection.cursor() as cursor:
        try:
            cursor.execute(f"SELECT * FROM ({for_copy(query)}) AS emrml_result LIMIT 0")
            return _fields(cursor)
        except pymysql.Error:
            pass
    with connection.cursor(SSCursor) as cursor:
        try:
            cursor.execute("SET SESSION sql_select_limit = 0")
            cursor.execute(query)
            return _fields(cursor)
        except pymysql.Error as exc:
            code, reason = exc.args if len(exc.args) == 2 else ("", str(exc))  # pymysql's: (code, message)
            raise DataError(f"SelectSqlQuery failed on {source.what}: ERROR {code}: {reason}") from None


def _fields(cursor: Any) -> list[Any]:
    """The result's fields, none without a result set. Read from the result, as pymysql's DictCursor does:
    ``description`` leaves out the character set, which tells bytes from text."""
    return list(cursor._result.fields) if cursor.description else []


def mysql_connect(source: SqlSource) -> Any:
    """A pymysql connection to ``source``, made as the read's driver makes its own (TLS options, UTF-8
    credentials); DataError with the server's reason when it refuses."""
    try:
        import pymysql
    except ImportError as exc:
        raise missing_driver(exc.name or "pymysql") from None
    parts = urlsplit(source.url)
    try:
        connection = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=source.user,
            # As UTF-8 bytes: pymysql encodes a str password as Latin-1, so "pässwörd" would be sent in
            # bytes the server's UTF-8 hash does not match and "密码" would not encode at all. connectorx
            # takes it percent-encoded in UTF-8 (driver_url) and sends the same bytes.
            password=source.password.encode(),
            database=source.database,
            # connect_timeout bounds the TCP connection alone: the server's greeting and the sign-in are
            # read under the read timeout, none by default, so an address that takes the connection and
            # says nothing (a proxy or load balancer with no server behind it, a port of another
            # protocol) was waited on for ever. Both timeouts are lifted once signed in (below).
            connect_timeout=source.connect_seconds,
            read_timeout=source.connect_seconds,
            write_timeout=source.connect_seconds,
            **_mysql_tls(source),
        )
    except pymysql.Error as exc:
        reason = exc.args[1] if len(exc.args) == 2 else str(exc)  # pymysql's args: (code, message)
        if reason.endswith("(timed out)"):  # "Lost connection to MySQL server during query": no query ran
            reason = unanswered(source.connect_seconds)
        raise DataError(f"cannot connect to {source.what}: {reason}") from None
    # A query may send nothing for hours (a sort, a join of large tables), which its describing connection
    # waits for. pymysql has no setter: it applies these at its next read and write.
    connection._read_timeout = connection._write_timeout = None
    return connection


@contextmanager
def _mysql_batches(
    source: SqlSource, query: str, stopped: threading.Event | None
) -> Iterator[pa.RecordBatchReader]:
    # connectorx retries a refused login for half a minute and only then says why; a direct connection
    # first answers at once, with the server's reason.
    connection = mysql_connect(source)
    # Both connections running the query (to describe it, then to read it) take a lock naming them, by which
    # the read's watcher ends them if this process dies or leaves the read (storage.sql_watch).
    token = uuid.uuid4().hex
    child = sql_child.ChildRead(
        source,
        query,
        # Every later transaction of the session, the query's included, is read-only; TIMESTAMPs are sent
        # in UTC (the server's time zone by default, which the values would not say).
        [
            "SET SESSION TRANSACTION READ ONLY",
            "SET SESSION time_zone = '+00:00'",
            f"SELECT GET_LOCK('{sql_watch.lock_name(token, 'read')}', 0)",
        ],
    )
    with sql_watch.watched(source, token) as leave:

        def stop() -> None:
            child.stop()  # first: the watcher then finds the read connection's lock, if it ever took it
            leave()

        with sql_watch.when_stopped(stopped, stop):
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT GET_LOCK(%s, 0)", (sql_watch.lock_name(token, "describe"),))
                if stopped is not None and stopped.is_set():
                    # Perhaps before the lock was taken, so the watcher looked for it in vain; a later stop
                    # finds it.
                    raise sql_child.stopped_error(source)
                timestamps = _described_mysql(connection, source, query)
            finally:
                connection.close()
            with child.batches(timestamps) as reader:
                yield reader


@contextmanager
def _postgresql_batches(
    source: SqlSource, query: str, stopped: threading.Event | None
) -> Iterator[pa.RecordBatchReader]:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        raise missing_driver("adbc-driver-postgresql") from None
    # default_transaction_read_only: the driver's transaction, and any other, is read-only.
    url = source.driver_url()
    options = "options=-c%20default_transaction_read_only%3Don"
    # libpq takes whole seconds (and waits 2 at least).
    url += ("&" if "?" in url else "?") + options + f"&connect_timeout={math.ceil(source.connect_seconds)}"
    try:
        connection = adbc.connect(url)
    except adbc.Error as exc:
        raise DataError(f"cannot connect to {source.what}: {clean_error(exc)}") from None
    try:
        with connection.cursor() as cursor:
            _end_with_the_client(connection, cursor, adbc.Error)

            def cancel() -> None:
                with suppress(adbc.Error):  # nothing running (yet, or any more)
                    cursor.adbc_cancel()

            # The driver waits for the server without the interpreter's lock: the stop's thread runs.
            with sql_watch.when_stopped(stopped, cancel):
                try:
                    cursor.adbc_statement.set_options(
                        **{"adbc.postgresql.batch_size_hint_bytes": str(16 << 20)}
                    )
                    cursor.execute(postgresql_statement(query))
                    reader = cursor.fetch_record_batch()
                except adbc.Error as exc:
                    raise DataError(f"SelectSqlQuery failed on {source.what}: {clean_error(exc)}") from None
                yield _guarded(reader, source)
    finally:
        connection.close()


#: Have PostgreSQL 14 and later check every second, while a query runs, that its client is still there.
_CLIENT_CHECK = (
    "SELECT set_config('client_connection_check_interval', '1000', false) "
    "WHERE current_setting('server_version_num')::int >= 140000"
)


def _end_with_the_client(connection: Any, cursor: Any, error: type[Exception]) -> None:
    """Make the server end the query when its client goes. A job whose datasource is deleted, or that runs
    out of memory, has its worker killed; PostgreSQL otherwise runs the query to its end all the same, which
    for a long one (a join of large tables, ``pg_sleep``) may be hours of the database's time. A server
    without the setting (before 14, Redshift) is left as it is."""
    try:
        cursor.execute(_CLIENT_CHECK)
        cursor.fetchall()
    except error:
        connection.rollback()


def _guarded(reader: pa.RecordBatchReader, source: SqlSource) -> pa.RecordBatchReader:
    """``reader`` whose errors while streaming become DataError naming the source."""
    import pyarrow as pa

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            raise DataError(f"SelectSqlQuery failed on {source.what}: {clean_error(exc)}") from None

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def read_query(
    source: SqlSource, query: str, stopped: threading.Event | None = None
) -> AbstractContextManager[pa.RecordBatchReader]:
    """The query's rows as Arrow batches, read in a read-only transaction; errors are DataError. The read
    is ended once ``stopped`` is set, its query with it (a MySQL one killed by its watcher, a PostgreSQL
    one cancelled): it then fails with a DataError."""
    check_select(query)
    if source.api == "RDS":
        check_mysql_select(query)
        return _mysql_batches(source, query, stopped)
    return _postgresql_batches(source, query, stopped)


# ---------------------------------------------------------------------------------------------- types
