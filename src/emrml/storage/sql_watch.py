"""The watcher of a MySQL / MariaDB read (``storage.sql``): it ends the read's query on the server when the
process reading it dies, or leaves the read before its end (an error, or the job's stop: ``when_stopped``).

A job whose datasource is deleted, or that runs out of memory, has its worker killed. PostgreSQL 14 and
later notice within a second that the client of a query is gone (``sql._end_with_the_client``); MariaDB and
MySQL have no such check, and a query that sends nothing while it works (a sort, an aggregate, a join of
large tables, SLEEP) runs to its end all the same: hours of the database's time, perhaps. So each read runs
beside a small process of its own, which ends the read's connections with KILL (which a user may do to its
own connections, without privileges) when the reader dies or says it left the read.

- A process, because only another process outlives a reader killed by SIGKILL (by its runner, after its
  grace to stop, or by the kernel short of memory); one started by the read watches every way a read runs
  (a job's worker, the CLI, the library). Having the job runner issue the KILL after reaping its worker
  would need the read's credentials kept where the runner could read them, and would miss a read abandoned
  on an error, whose process lives on.
- Named locks, because the read's driver (connectorx) does not tell which connection it runs the query on.
  Each connection of the read takes one (``GET_LOCK``) before its query; ``IS_USED_LOCK`` tells any session
  which connection holds it, and the lock goes with the connection, so the one killed is the read's own
  even if it has ended meanwhile (the server does not reuse a connection id).
- Not ``max_statement_time``: a limit would end a long query the job still wants too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emrml.storage.sql import SqlSource

#: What the reader tells its watcher when the read ends: the query finished, or the read was left (an error,
#: a stop) while its query may still run. Anything else, or the end of the pipe, is the reader gone.
DONE = b"done\n"
LEFT = b"left\n"


def lock_name(token: str, connection: str) -> str:
    """The lock the read's ``connection`` ("describe" or "read") holds while it runs (at most 64
    characters, the server's limit)."""
    return f"emrml-read-{token}-{connection}"


#: Seconds between two looks at the ``stopped`` event of a read (``when_stopped``).
STOP_POLL_SECONDS = 0.2


def start_module(module: str, **options: Any) -> subprocess.Popen[bytes]:
    """A process running ``python -m module`` of this very emrml, given its orders on stdin (a command line
    is readable by every user of the machine, and the orders hold credentials), in a session of its own:
    Ctrl-C in the terminal of `emrml serve` is for the server, which ends its reads itself."""
    import emrml

    environment = dict(os.environ)
    # The process imports this very emrml, whatever path this process found it on.
    package_root = str(Path(emrml.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (package_root, environment.get("PYTHONPATH"))))
    return subprocess.Popen(
        # -P: not the working folder's modules (a job's may be anyone's), only the installed ones.
        [sys.executable, "-P", "-m", module],
        stdin=subprocess.PIPE,
        env=environment,
        start_new_session=True,
        **options,
    )


@contextmanager
def watched(source: SqlSource, token: str) -> Iterator[Callable[[], None]]:
    """The block's queries on ``source``, in connections holding ``lock_name(token, ...)``, are ended if this
    process dies while it runs, if it raises, or once the callable it is given is called: a read's stop
    (``when_stopped``), which ends a query that sends nothing while it works, though it gives the job no
    progress point to stop at (on a server's thread, the Spark engine, which is never killed, the query
    ran on to its end, hours perhaps, its thread given up on but busy meanwhile)."""
    watcher = start_module("emrml.storage.sql_watch")
    assert watcher.stdin is not None
    order = {"source": dataclasses.asdict(source), "token": token, "pid": os.getpid()}
    told = threading.Lock()  # the watcher is told one ending, by the read or by its stop

    def tell(ending: bytes) -> None:
        if told.acquire(blocking=False):
            assert watcher.stdin is not None
            with suppress(OSError):  # a watcher that died early has nothing to be told
                watcher.stdin.write(ending)
            with suppress(OSError):
                watcher.stdin.close()

    ending = LEFT
    try:
        watcher.stdin.write(json.dumps(order).encode() + b"\n")
        watcher.stdin.flush()
        yield lambda: tell(LEFT)
        ending = DONE
    finally:
        tell(ending)
        watcher.wait()  # once told the read was left: its query has ended when the error is reported


@contextmanager
def when_stopped(stopped: threading.Event | None, action: Callable[[], None]) -> Iterator[None]:
    """Call ``action`` (which ends the block's read) on a thread of its own once ``stopped`` is set while
    the block runs, and again every ``STOP_POLL_SECONDS`` until the block ends: a stop that came just before
    the block's query reached the server, which a cancel then finds nothing to end, still ends it.

    ``stopped``: a job's stop (its object deleted, its server stopping)."""
    if stopped is None:
        yield
        return
    finished = threading.Event()

    def stop_once_stopped() -> None:
        while not finished.is_set():
            if stopped.wait(STOP_POLL_SECONDS):
                action()
                finished.wait(STOP_POLL_SECONDS)

    stopping = threading.Thread(target=stop_once_stopped, name="emrml-sql-stop", daemon=True)
    stopping.start()
    try:
        yield
    finally:
        finished.set()
        stopping.join()


def _end_of_read(pid: int, pending: bytes) -> bytes:
    """What ended the read: ``DONE``, ``LEFT``, or b"" when the reader ``pid`` died (its end of the pipe
    closed, or the process gone: a process it forked may hold the pipe open)."""
    try:
        process = os.pidfd_open(pid)
    except ProcessLookupError:
        return pending
    except OSError:  # a kernel before 5.3: the pipe alone tells
        process = None
    watched = [0] if process is None else [0, process]
    while b"\n" not in pending:
        ready, _, _ = select.select(watched, [], [])
        if 0 not in ready:
            return b""
        chunk = os.read(0, 4096)
        if not chunk:
            return b""
        pending += chunk
    return pending


def _end_queries(source: SqlSource, token: str) -> None:
    """KILL the connections of the read that are still there."""
    import pymysql

    from emrml.storage.sql import mysql_connect

    connection = mysql_connect(source)
    try:
        with connection.cursor() as cursor:
            for name in ("describe", "read"):
                cursor.execute("SELECT IS_USED_LOCK(%s)", (lock_name(token, name),))
                row = cursor.fetchone()
                if row and row[0] is not None:
                    with suppress(pymysql.Error):  # it ended meanwhile
                        cursor.execute(f"KILL {int(row[0])}")
    finally:
        connection.close()


def main() -> None:
    from emrml.errors import DataError
    from emrml.storage.sql import SqlSource

    received = b""
    while b"\n" not in received:
        chunk = os.read(0, 65536)
        if not chunk:
            return  # the reader died before it said what to watch: nothing of it ran
        received += chunk
    line, _, pending = received.partition(b"\n")
    order = json.loads(line)
    if _end_of_read(order["pid"], pending) == DONE:
        return
    source = SqlSource(**order["source"])
    try:
        _end_queries(source, order["token"])
    except Exception as exc:
        reason = exc.message if isinstance(exc, DataError) else str(exc)
        print(f"emrml: the query of a MySQL read ended early may still run: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
