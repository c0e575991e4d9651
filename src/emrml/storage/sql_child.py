"""A MySQL / MariaDB read of ``storage.sql``, run by the driver in a process of its own, started for it.

connectorx holds the interpreter's lock (the GIL) while it waits for a batch: a query that sends nothing
for a while (a sort, an aggregate, a join of large tables, SLEEP) froze every other thread of the process
reading it until its first rows came. On a server running jobs on its threads (the Spark engine) that is
its HTTP API, its console and its other jobs, 45 s in one traceback dump. connectorx has no option to let
go of the lock while it streams (its whole-result read does, and holds the whole result in memory). So the
read runs in a child process, which sends the batches back as an Arrow IPC stream over a pipe: the reader's
wait is a read of the pipe, during which the other threads run.

- Started with ``sys.executable -m`` (``sql_watch.start_module``), never forked from a threaded server; the
  source, credentials included, goes over its stdin, not its command line or environment.
- It dies with its reader: the reader kills it when it leaves the read (its end, an error, a stop), and
  the kernel when the reader dies (``PR_SET_PDEATHSIG``). Its query, which may run on without a client, is
  the watcher's to end (``storage.sql_watch``): the child's connection takes the read's lock first.
- Memory is bounded by the batch size on both sides: the child writes a batch while the reader takes the
  one before, and waits on the full pipe meanwhile.
- A connection the server refuses fails the read at once. connectorx connects through a pool (r2d2) that
  retries a failed connection for 30 s, its fixed wait, before it says why (a wrong password, an unknown
  database, a closed port); the child has its logger print each failed attempt on stderr, which the reader
  reads (``ChildRead._relay``): the first ends the child, and the read fails with its reason. The reader
  has connected once already by then (``storage.sql``), so this is a failure of the child's connection
  alone (TLS, authentication, the server's connection limit, a server gone meanwhile).
- A server that takes the connection and says nothing fails the read after the source's
  ``connect_seconds``, as the reader's own connection does, not after the pool's 30 s: the driver takes no
  read timeout, so the reader times the connection. The child says on stderr when it starts to connect
  (``CONNECTING``), and its driver's logger when it has connected (its dispatcher's "Prepare", which comes
  before the query is described or run, so a slow query is waited for as long as it runs).

What the child writes on its stdout: ``STREAM`` and the IPC stream of the result (connectorx's batches,
TIMESTAMP columns typed as UTC), then one line of JSON, ``{"done": true}`` or ``{"error": message}`` (the
stream then cut short); or that line alone when the read failed before the result's schema was known. The
end of the pipe before that line is the child's death.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, TYPE_CHECKING, Any

from emrml.errors import DataError

if TYPE_CHECKING:
    # The reader's alone, imported where used: the child imports this module and ``storage.sql_errors``,
    # not ``storage.sql`` and what it pulls (TLS, the watcher's subprocess handling), which it has no use
    # for; its start is part of every MySQL read.
    import subprocess

    import pyarrow as pa

    from emrml.storage.sql import SqlSource

#: The child's first line when the result's IPC stream follows.
STREAM = b"stream\n"
#: The end of an Arrow IPC stream: a message of no length (the format's continuation marker, then 0).
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
#: prctl's option by which the kernel signals a process when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: A failed connection of connectorx's pool as its logger (env_logger) prints it on the child's stderr, e.g.
#: ``[2026-12-07T07:38:51Z ERROR r2d2] MySqlError { ERROR 1045 (28000): Access denied ... }``.
_POOL_ERROR = re.compile(rb"\[\S+ ERROR r2d2\] ([^\n]*)")
#: The child's line on stderr as its driver starts to connect.
CONNECTING = b"emrml: connecting\n"
#: What connectorx's dispatcher logs (at debug level, which the child asks of it), e.g.
#: ``[2026-12-07T13:26:36Z DEBUG connectorx::dispatcher] Prepare``: "Prepare" once connected.
_DISPATCHER = re.compile(rb"\[\S+ DEBUG connectorx::dispatcher\] ([^\n]*)")


class ChildRead:
    """``query`` read on ``source`` by a child process (``batches``), the driver's connection running the
    ``pre_execution`` statements first. ``stop``, from any thread, ends it, and a child not started by then
    never starts: once ``stop`` returns, the connection of the read has taken its lock, or never will."""

    def __init__(self, source: SqlSource, query: str, pre_execution: list[str]) -> None:
        self._source = source
        self._query = query
        self._pre_execution = pre_execution
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self._streaming = False  # the result's schema has come: the child connected
        self._refused: str | None = None  # why the child's connection failed, once it has
        self._connected = False  # the child's driver has connected (its dispatcher said so)
        self._deadline: threading.Timer | None = None  # for the child's connection, once it connects

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._process is not None:
                self._process.kill()
                self._process.wait()

    @contextmanager
    def batches(self, timestamps: list[str]) -> Iterator[pa.RecordBatchReader]:
        """The result, its columns ``timestamps`` (MySQL TIMESTAMPs) typed as UTC instants; DataError when
        the read fails, is stopped, or its process dies. The child is ended when the block is left."""
        import subprocess

        import pyarrow as pa

        from emrml.storage import sql_watch
        from emrml.storage.sql import BATCH_ROWS

        with self._lock:
            if self._stopped:
                raise self._stopped_error()
            process = sql_watch.start_module(
                "emrml.storage.sql_child", stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            self._process = process
        assert process.stdin is not None and process.stdout is not None
        relay = threading.Thread(
            target=self._relay, args=(process,), name="emrml-sql-child-stderr", daemon=True
        )
        relay.start()
        url = self._source.driver_url()
        # The TCP connection is bounded as the reader's is (``mysql_connect``); a server that takes it and
        # then says nothing, by the reader (``_await_connection``).
        milliseconds = round(self._source.connect_seconds * 1000)
        url += ("&" if "?" in url else "?") + f"tcp_connect_timeout_ms={milliseconds}"
        try:
            order = {
                # What the child needs of the source: it does without ``SqlSource`` (``storage.sql``).
                "url": url,
                "what": self._source.what,
                "batch_rows": BATCH_ROWS,
                "query": self._query,
                "pre_execution": self._pre_execution,
                "timestamps": timestamps,
                "pid": os.getpid(),
            }
            try:
                process.stdin.write(json.dumps(order).encode() + b"\n")
                process.stdin.close()
            except OSError:
                pass  # the child is gone: the end of its output says so
            first = process.stdout.readline()
            if first != STREAM:  # the read failed before its result's schema was known
                raise self._ending(process, first) or self._died(process)
            self._streaming = True
            try:
                stream = pa.ipc.open_stream(process.stdout)
            except (pa.ArrowInvalid, OSError):
                raise self._died(process) from None
            yield pa.RecordBatchReader.from_batches(stream.schema, self._streamed(process, stream))
        finally:
            # Not beside ``stop``'s: a pid one has reaped may be another process's by the other's kill.
            with self._lock:
                process.kill()
                process.wait()
            process.stdout.close()
            relay.join()  # at the end of the child's stderr, which has ended with it
            if self._deadline is not None:
                self._deadline.cancel()

    def _streamed(
        self, process: subprocess.Popen[bytes], stream: pa.RecordBatchReader
    ) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        assert process.stdout is not None
        try:
            yield from stream
        except (pa.ArrowInvalid, OSError):  # a batch cut short: the child died while it wrote it
            raise self._died(process) from None
        failure = self._ending(process, process.stdout.readline())
        if failure is not None:
            raise failure

    def _relay(self, process: subprocess.Popen[bytes]) -> None:
        """Copy the child's stderr to this process's (where it went before it was read: a driver's panic);
        a failed connection of the pool before the result came ends the child instead, its reason kept for
        the read's error (``_died``)."""
        from emrml.storage.sql_errors import pool_error

        assert process.stderr is not None
        with process.stderr, open(2, "wb", closefd=False) as stderr:
            for line in process.stderr:
                if line == CONNECTING:
                    self._await_connection(process)
                    continue
                logged = _DISPATCHER.match(line)
                if logged is not None:  # asked for by the child, not by whoever reads the server's stderr
                    if logged.group(1).strip() == b"Prepare":
                        self._connected = True
                        if self._deadline is not None:
                            self._deadline.cancel()
                    continue
                refused = None if self._streaming else _POOL_ERROR.match(line)
                if refused is None:
                    with suppress(OSError):  # a stderr closed: nowhere to tell
                        stderr.write(line)
                        stderr.flush()
                elif self._refused is None:
                    self._refused = pool_error(refused.group(1).decode(errors="replace"))
                    with self._lock:  # as ``stop``: never a pid ``batches`` has reaped
                        process.kill()

    def _await_connection(self, process: subprocess.Popen[bytes]) -> None:
        """Give the child's driver the source's ``connect_seconds`` to connect: past them, the child is
        ended and the read fails as it does on a refused connection."""

        def unanswered() -> None:
            from emrml.storage.sql_errors import unanswered

            with self._lock:  # as ``stop``: never a pid ``batches`` has reaped
                if self._connected or self._streaming or self._refused is not None:
                    return
                self._refused = unanswered(self._source.connect_seconds)
                process.kill()

        self._deadline = threading.Timer(self._source.connect_seconds, unanswered)
        self._deadline.daemon = True
        self._deadline.start()

    def _ending(self, process: subprocess.Popen[bytes], line: bytes) -> DataError | None:
        """The failure the child's last line tells, None when it read the whole result."""
        if not line:
            return self._died(process)
        ending = json.loads(line)
        return None if ending.get("done") else DataError(ending["error"])

    def _died(self, process: subprocess.Popen[bytes]) -> DataError:
        process.wait()  # its output is closed: it has ended, or is ending
        if self._stopped:
            return self._stopped_error()
        if self._refused is not None:
            return DataError(f"cannot connect to {self._source.what}: {self._refused}")
        code = process.returncode
        how = f"was ended by signal {-code} ({signal.strsignal(-code)})" if code < 0 else f"exited ({code})"
        return DataError(
            f"SelectSqlQuery failed on {self._source.what}: the process reading its result {how} before "
            "the end of it"
        )

    def _stopped_error(self) -> DataError:
        return stopped_error(self._source)


def stopped_error(source: SqlSource) -> DataError:
    """The failure of a read of ``source`` ended by its job's stop."""
    return DataError(f"SelectSqlQuery failed on {source.what}: its read was stopped")


def _utc_timestamps(reader: pa.RecordBatchReader, names: list[str]) -> pa.RecordBatchReader:
    """``reader`` with its columns ``names`` (MySQL TIMESTAMPs, read in the session's time zone, UTC) typed
    as UTC instants: staged as ``…Z``, as PostgreSQL's ``timestamptz`` is. A DATETIME has no time zone and
    stays as it is."""
    import pyarrow as pa

    utc = set(names)
    fields = [
        field.with_type(pa.timestamp(field.type.unit, "UTC"))
        if field.name in utc and pa.types.is_timestamp(field.type) and field.type.tz is None
        else field
        for field in reader.schema
    ]
    schema = pa.schema(fields, metadata=reader.schema.metadata)
    if schema.equals(reader.schema):
        return reader
    return pa.RecordBatchReader.from_batches(schema, (batch.cast(schema) for batch in reader))


def _read(order: dict[str, Any], out: IO[bytes]) -> dict[str, Any]:
    """Write the result of ``order``'s query on ``out`` (``STREAM`` and the IPC stream, ended early by an
    error); what ended it, the line that follows."""
    from emrml.storage.sql_errors import clean_error, missing_driver

    _log_connection_events()
    try:
        import connectorx
    except ImportError as exc:
        return {"error": missing_driver(exc.name or "connectorx").message}
    streaming = False
    os.write(2, CONNECTING)
    try:
        reader = connectorx.read_sql(
            order["url"],
            order["query"],
            return_type="arrow_stream",
            batch_size=order["batch_rows"],
            pre_execution_query=order["pre_execution"],
        )
        reader = _utc_timestamps(reader, order["timestamps"])
        # The schema at once, before the first batch (pyarrow's stream writer waits for it): the reader's
        # ``read_query`` returns as the query starts, as the driver's does.
        out.write(STREAM + reader.schema.serialize())
        out.flush()
        streaming = True
        for batch in reader:
            out.write(batch.serialize())
    # connectorx raises RuntimeError for a query the server refuses, and a pyo3 PanicException (a
    # BaseException) for one that fails while running. A reader that left is told nothing: the next write
    # fails too.
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        ending: dict[str, Any] = {"error": f"SelectSqlQuery failed on {order['what']}: {clean_error(exc)}"}
    else:
        ending = {"done": True}
    if streaming:
        out.write(_END_OF_STREAM)
    return ending


def _log_connection_events() -> None:
    """Have connectorx's logger (set up as connectorx is imported) print on stderr, plainly, without colour
    codes, for the reader (``ChildRead._relay``): its pool's failed connections (its default level, errors,
    does; a ``RUST_LOG`` of the server's that would leave them out has them back), and its dispatcher's
    steps, the first of which says the driver has connected. A panic of the driver's (a value it cannot
    convert) is its one line, not a backtrace of a hundred frames a ``RUST_BACKTRACE`` of the server's
    would ask for: the read fails with the panic's message, which says all a user can act on."""
    os.environ["RUST_LOG_STYLE"] = "never"
    os.environ["RUST_BACKTRACE"] = "0"
    levels = os.environ.get("RUST_LOG") or "error"
    if "r2d2" not in levels:
        levels += ",r2d2=error"
    os.environ["RUST_LOG"] = f"{levels},connectorx::dispatcher=debug"


def _die_with(reader: int) -> None:
    """Have the kernel kill this process when its reader dies (Linux): a reader killed by SIGKILL cannot.
    The kernel's parent is the thread that started the child, which waits in ``ChildRead.batches`` until
    it has ended."""
    if sys.platform.startswith("linux"):
        import ctypes  # here: the reader, and the watcher, which import this module, do without it

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != reader:  # it died before that
        sys.exit(1)


def main() -> None:
    # The output is the stream's alone: whatever else is printed (a driver's panic) goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    line = sys.stdin.buffer.readline()
    if not line:
        return  # the reader died before it said what to read
    order = json.loads(line)
    _die_with(order["pid"])
    try:
        ending = _read(order, out)
        out.write(json.dumps(ending).encode() + b"\n")
        out.flush()
    except BrokenPipeError:
        os._exit(1)  # the reader left the read: nothing to tell, or to flush at exit


if __name__ == "__main__":
    main()
