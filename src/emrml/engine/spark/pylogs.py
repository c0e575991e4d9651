"""What py4j and pyspark log on the Python side goes to the driver's log (``<home>/logs/spark.log``, where
the JVM's own output goes), not to the terminal of the CLI or the server.

A driver JVM that dies (killed, most often by the kernel short of memory) fails the job with emrml's own
one-line message (``session.driver_exit_error``); without this, the terminal also showed py4j's
"ERROR:root:Exception while sending command." with its traceback, and the EOFError traceback of pyspark's
accumulator server (a ``socketserver`` prints its handlers' errors to stderr), which read as a crash of
emrml. Two of them do not go through a logger of their own, hence the two adjustments below:

* py4j's ``java_gateway`` logs its failed commands with the ``logging`` module's functions, on the root
  logger (whose first use without handlers also gives it a stderr handler, ``logging.basicConfig``): its
  ``logging`` name is given one that sends those calls to the ``py4j.java_gateway`` logger instead.
* The accumulator server of each SparkContext has its ``handle_error`` log to ``pyspark.accumulators``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

#: The Python loggers whose records go to the driver's log, not to the root logger's handlers.
LOGGERS = ("py4j", "pyspark")
#: As the JVM's lines in the same file (session._LOG_CONFIG), so that the log reads as one.
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT = "%y/%m/%d %H:%M:%S"


class _LoggerAsModule:
    """Stands for the ``logging`` module in py4j's ``java_gateway``: its module-level log calls go to
    ``logger``, everything else to the module."""

    _CALLS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger if name in self._CALLS else logging, name)


_handler: logging.FileHandler | None = None


def route_to(log: Path) -> None:
    """Send py4j's and pyspark's log records to ``log`` (again for another home's log); idempotent."""
    global _handler
    import py4j.java_gateway

    if not isinstance(py4j.java_gateway.logging, _LoggerAsModule):
        py4j.java_gateway.logging = _LoggerAsModule(logging.getLogger("py4j.java_gateway"))  # type: ignore[assignment]
    if _handler is not None and Path(_handler.baseFilename) == log.absolute():
        return
    handler = logging.FileHandler(log, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(_FORMAT, _DATE_FORMAT))
    handler.setLevel(logging.WARNING)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _handler is not None:
            logger.removeHandler(_handler)
        logger.addHandler(handler)
        logger.propagate = False
    if _handler is not None:
        _handler.close()
    _handler = handler


def quiet_accumulator_server(context: Any) -> None:
    """Have ``context``'s accumulator server log a failed connection (its JVM gone) instead of printing it."""
    server = getattr(context, "_accumulatorServer", None)
    if server is None:
        return
    logger = logging.getLogger("pyspark.accumulators")

    def handle_error(_request: Any, client_address: Any) -> None:
        logger.warning("accumulator updates from %s ended", client_address, exc_info=True)

    server.handle_error = handle_error
