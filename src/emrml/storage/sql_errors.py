"""What a SQL datasource's driver errors say, as one line for the user: shared by ``storage.sql`` and the
process that reads a MySQL query (``storage.sql_child``), which imports this module and not ``storage.sql``
(its start is part of every MySQL read)."""

from __future__ import annotations

import re

from emrml.errors import DataError


def missing_driver(package: str) -> DataError:
    return DataError(f"SQL datasources need the {package} package: pip install 'emrml[sql]'")


def clean_error(error: BaseException) -> str:
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
    # negative): say what the user can do about it. Types it cannot read are refused before the read
    # (``storage.sql``).
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
    return text


def pool_error(logged: str) -> str:
    """The reason of a failed connection of connectorx's pool, as its logger prints it (``MySqlError { ERROR
    1045 (28000): Access denied … }``, ``DriverError { Could not connect to address `host:3306': Connection
    refused (os error 111) }``): the driver's message without its wrapping."""
    wrapped = re.fullmatch(r"\w+ \{ (.*) \}", logged.strip())
    return clean_error(wrapped.group(1) if wrapped else logged)


def unanswered(seconds: float) -> str:
    """Why a connection failed whose server took it and said nothing (a proxy or load balancer with no
    database behind it, a port of another protocol, a server hung), or never took it."""
    return f"no answer in {seconds:g} s (the time setting sql_connect_seconds gives to connect and sign in)"
