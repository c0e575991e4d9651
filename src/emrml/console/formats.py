"""Jinja filters: how numbers, times and sizes read on the console's pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from emrml.core.readable import format_number


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    amount = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:,.0f} {unit}" if unit == "bytes" else f"{amount:,.1f} {unit}"
        amount /= 1024
    return str(value)


def millis(value: Any) -> str:
    if not isinstance(value, int | float):
        return ""
    return f"{value / 1000:,.1f} s"


#: ``number``: the one format of numbers the CLI, the notebook and the alerts use (``core.readable``).
FILTERS = {"when": when, "number": format_number, "size": size, "millis": millis}
