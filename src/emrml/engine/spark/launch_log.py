"""What the Spark driver's log says of an application that did not start: read back after the start failed,
because pyspark itself says only that the gateway exited or that the context is stopped."""

from __future__ import annotations

import re
from pathlib import Path

from emrml.config import Settings

#: A line of the driver's log4j log (the JVM's own output has no date), and a spark-submit failure's.
_LOG_LINE = re.compile(r"\d\d/\d\d/\d\d \d\d:\d\d:\d\d ")
_MAIN_FAILED = re.compile(r'Exception in thread "main" [\w.$]+: (.+)')


def launch_failure(log: Path, start: int) -> str | None:
    """Why the driver's JVM exited, from what it wrote to the log after byte ``start``: spark-submit's
    exception, else the JVM's first line of its own ("Invalid maximum heap size: -Xmxlots"); None when it
    wrote nothing (pyspark's "Java gateway process exited" is all there is then)."""
    lines = _log_lines(log, start)
    for line in lines:
        if found := _MAIN_FAILED.fullmatch(line.strip()):
            return found.group(1)[:500]
    own, entry = [], False
    for line in lines:
        # A log entry's exception follows it on lines of its own ("org.apache…Exception: …", "Caused by:",
        # "\tat …"): Spark's, not the JVM's. Taken for the JVM's, the master's refusal of the application
        # read "Exception thrown in awaitResult:".
        entry = bool(_LOG_LINE.match(line)) or (entry and not line.startswith("WARNING: "))
        if line.strip() and not entry and not line.startswith(("WARNING: ", "\t", " ")):
            own.append(line.strip())
    return own[0][:500] if own else None


def _log_lines(log: Path, start: int) -> list[str]:
    """The first megabyte the driver's log holds after byte ``start``, by line."""
    try:
        with log.open("rb") as text:
            text.seek(start)
            return text.read(1 << 20).decode("utf-8", "replace").splitlines()
    except OSError:
        return []


#: Why the application could not register with a ``spark://`` address where another Spark process (a
#: worker, another application's driver) answers: it has no endpoint named Master.
_NO_MASTER = re.compile(r"Caused by: org\.apache\.spark\.rpc\.RpcEndpointNotFoundException: (.+)")


def no_master(settings: Settings, log: Path, start: int) -> str | None:
    """Why the application did not start when the driver's log after byte ``start`` says that no master
    runs at the address, only another Spark process; None otherwise."""
    found = next(
        (match for line in _log_lines(log, start) if (match := _NO_MASTER.match(line.strip()))), None
    )
    if found is None:
        return None
    return (
        f"a Spark process answers at {settings.spark_master}, but no master ({found.group(1)[:200]}): the "
        "address of a worker or of another application's driver? Check setting spark_master: a standalone "
        "master takes applications at the spark:// URL its web UI shows at the top (port 7077 by default)"
    )
