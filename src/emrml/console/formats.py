"""Jinja filters: how numbers, times and sizes read on the console's pages."""

from __future__ import annotations

import re
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


#: Characters that draw nothing yet change what a name looks like: the bidirectional controls (a file
#: "report\u202eslx.exe" reads "reportexe.xls") and the zero-width spaces and joiners without a use in a
#: name (two names that look alike). Written in the syntax Python's and JavaScript's regular expressions
#: share (``\u`` escapes of four hex digits, and ranges): the pages give it to console.js (base.html),
#: whose rows added live show names as ``visible`` does from this one set.
INVISIBLE_CLASS = r"[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
_INVISIBLE = re.compile(INVISIBLE_CLASS)


def visible(text: Any) -> Any:
    """``text`` shown as it is: each invisible formatting character as its code point (``[U+202E]``).
    For names shown as text only; a form's field or link keeps the name as it is, to send it back."""
    if not isinstance(text, str):
        return text
    return _INVISIBLE.sub(lambda found: f"[U+{ord(found.group()):04X}]", text)


#: ``number``: the one format of numbers the CLI, the notebook and the alerts use (``core.readable``).
FILTERS = {"when": when, "number": format_number, "size": size, "millis": millis, "visible": visible}
