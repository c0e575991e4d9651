"""Jinja filters: how numbers, times and sizes read on the console's pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:.{digits}g}"
    return str(value)


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


FILTERS = {"when": when, "number": number, "size": size, "millis": millis}
