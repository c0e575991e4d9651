"""The names S3 gives buckets and keys, checked before anything is read or written (``check_location``).

A location S3 would refuse, or that other clients would read otherwise than a policy matches it, is the
request's invalid input naming its member (``storage.locations.check_syntax``), where it was an S3 error
(``NoSuchBucket``, ``KeyTooLongError``) at the end of the job it started.

Bucket names follow S3's rules for general purpose buckets: 3 to 63 lowercase letters, digits, ``.`` and
``-``, beginning and ending with a letter or digit, no two periods in a row, not written as an IP address.
The legacy names of us-east-1 buckets created before March 2018 pass too (capitals and ``_``, up to 255
characters, under the same other rules): S3 creates no more of them but still serves those that exist, by
path-style requests, which botocore makes for a bucket it cannot name in a host name. The names S3
reserves for what it names itself (``…-s3alias`` access point aliases, ``…--x-s3`` directory buckets)
pass: a request names them where it names a bucket.
"""

from __future__ import annotations

import re
import unicodedata

from emrml.errors import InvalidInputException
from emrml.storage.s3 import split

#: S3's limit on a key: its UTF-8 encoding has at most 1,024 bytes.
MAX_KEY_BYTES = 1024
MIN_BUCKET_LENGTH, MAX_BUCKET_LENGTH = 3, 63
#: A legacy us-east-1 name (capitals or ``_``) may have up to 255 characters.
MAX_LEGACY_BUCKET_LENGTH = 255

_BUCKET_CHARACTER = re.compile(r"[a-z0-9.-]")
_LEGACY_BUCKET_CHARACTER = re.compile(r"[A-Za-z0-9._-]")
_IP_ADDRESS = re.compile(r"[0-9]+(?:\.[0-9]+){3}")


def bucket_problem(bucket: str) -> str | None:
    """What makes ``bucket`` no bucket name by S3's rules, as the end of a sentence naming it; None when
    it is one."""
    legacy = not all(_BUCKET_CHARACTER.fullmatch(char) for char in bucket)
    if legacy:
        other = next((char for char in bucket if not _LEGACY_BUCKET_CHARACTER.fullmatch(char)), None)
        if other is not None:
            return f"holds {other!r}, and a bucket name holds letters, digits, '.', '-' and '_' only"
    longest = MAX_LEGACY_BUCKET_LENGTH if legacy else MAX_BUCKET_LENGTH
    if not MIN_BUCKET_LENGTH <= len(bucket) <= longest:
        length = f"{MIN_BUCKET_LENGTH} to {longest}"
        kind = " legacy (capitals or '_')" if legacy else ""
        return f"has {len(bucket)} characters, and a{kind} bucket name has {length}"
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return "does not begin and end with a letter or digit, as a bucket name does"
    # A bucket '..' or 'a..b' would be read as a step of a path by a proxy that tidies paths.
    if ".." in bucket:
        return "has two periods in a row, which a bucket name has not"
    if _IP_ADDRESS.fullmatch(bucket):
        return "is written as an IP address, which a bucket name is not"
    return None


def key_problem(key: str) -> str | None:
    """What makes ``key`` no key a location may name, as the end of a sentence about it; None when there is
    nothing: one longer than S3 takes, with a ``.`` or ``..`` segment, or holding a control character."""
    # S3 refuses a longer key (KeyTooLongError): said of the request, not at the end of the job it starts.
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        return f"is {size} bytes long in UTF-8, and an S3 key has at most {MAX_KEY_BYTES}"
    # S3 keeps 'data/../secret.csv' as a key of its own, and policies match it as written, while HTTP
    # clients, proxies and S3-compatible stores may read it as 'secret.csv': a location a Deny or a grant
    # reads one way must not be read another way.
    dotted = next((segment for segment in key.split("/") if segment in (".", "..")), None)
    if dotted is not None:
        return f"has a '{dotted}' segment (name the object without '.' and '..')"
    # S3 stores them, but lists them only URL-encoded (XML 1.0 has no way to write most of them), and its
    # guidelines name them as characters to avoid; a local folder cannot hold NUL; in a key written into a
    # log line, a manifest or a CSV listing, a line break starts a line of its own.
    control = control_character_at(key)
    if control is not None:
        return (
            f"holds the control character U+{ord(key[control]):04X} at character {control + 1}, and a key "
            "emrml reads or writes holds none (U+0000-U+001F, U+007F-U+009F)"
        )
    return None


def control_character_at(text: str) -> int | None:
    """The index of the first control character (U+0000-U+001F, U+007F-U+009F) of ``text``; None when it
    holds none."""
    if text.isprintable():  # the usual key, checked at C speed (a space is printable, a control is not)
        return None
    return next((index for index, char in enumerate(text) if unicodedata.category(char) == "Cc"), None)


def check_location(location: str) -> None:
    """InvalidInputException unless the bucket and key of ``location`` (``s3://bucket[/key]``) are named
    as S3 names them (``bucket_problem``, ``key_problem``); nothing is read."""
    bucket, key = split(location)
    problem = bucket_problem(bucket)
    if problem is not None:
        raise InvalidInputException(
            f"'{shown(location)}' is not a valid S3 location: its bucket '{shown(bucket)}' {problem}"
        )
    problem = key_problem(key)
    if problem is not None:
        # A long location (a key too long to be one has 256 characters at least) is shown by its beginning.
        beginning = location if len(location) <= 128 else location[:64] + "…"
        raise InvalidInputException(f"'{shown(beginning)}' is not a valid S3 location: its key {problem}")


def shown(text: str) -> str:
    """``text`` with its control characters escaped (``\\x0d``): a message is one line of visible
    characters."""
    return "".join(f"\\x{ord(char):02x}" if unicodedata.category(char) == "Cc" else char for char in text)
