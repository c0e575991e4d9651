"""Strings that are not text: Python hands over bytes that are not UTF-8 (a file name, a command-line
argument) as lone surrogates, and a JSON ``\\u`` escape can make one. UTF-8 cannot encode them, so no
metastore, message, page or answer can hold them: every door that takes such a string refuses it (or, in a
listing, leaves it out) with these checks.
"""

from __future__ import annotations

import os


def lone_surrogate_at(value: str) -> int | None:
    """The index of the first lone surrogate in ``value``; None when ``value`` is text."""
    if value.isascii():  # the usual string, checked without an encoding
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def is_text(value: str) -> bool:
    """Whether ``value`` holds no lone surrogate."""
    return lone_surrogate_at(value) is None


def shown_bytes(value: str) -> str:
    """``value`` as a message shows it: bytes that are not UTF-8 (surrogate-escaped) as ``\\xNN``."""
    return os.fsencode(value).decode("utf-8", "backslashreplace")
