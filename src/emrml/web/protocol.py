"""The AWS JSON 1.1 protocol of Amazon ML: ``X-Amz-Target`` names the operation, bodies are JSON objects.

Requests are ``POST /`` with ``X-Amz-Target: AmazonML_20141212.<Operation>`` and a JSON object of the
operation's input members. Answers are HTTP 200 with the output members, or the error's HTTP status with
``{"__type": "<ErrorType>", "message": "..."}``, always as ``application/x-amz-json-1.1``. The errors of
the protocol itself, beside the operations' own:

* a target that is missing, outside the ``AmazonML_20141212.`` prefix or names no operation →
  400 ``UnknownOperationException``;
* a body that is not a JSON object (malformed, ``NaN``, nested too deep, invalid UTF-8, lone surrogates)
  → 400 ``SerializationException``, the error AWS's JSON services give for unparsable bodies;
* a body over the server's limit → 413 ``RequestEntityTooLargeException``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from emrml.errors import (
    AmazonMLError,
    SerializationException,
    UnknownOperationException,
)
from emrml.service.operations import NAMES

TARGET_PREFIX = "AmazonML_20141212."
CONTENT_TYPE = "application/x-amz-json-1.1"
#: Default request body limit: ten times the 100 KB record limit of Predict, whose JSON escapes can take up
#: to six bytes per character, and eight times the largest schema or recipe (131,071 characters).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def operation_name(target: str | None) -> str:
    """The operation an ``X-Amz-Target`` header names; UnknownOperationException if it names none."""
    if target in _KNOWN_TARGETS:
        return _KNOWN_TARGETS[target]
    if not target:
        raise UnknownOperationException("the X-Amz-Target header is missing")
    prefix, dot, name = target.partition(".")
    if not dot or prefix + dot != TARGET_PREFIX or name not in NAMES:
        raise UnknownOperationException(f"unknown operation {target[:120]!r}")
    _KNOWN_TARGETS[target] = name  # at most one entry per operation
    return name


#: The operations of the targets met so far: the usual request's is found by one lookup.
_KNOWN_TARGETS: dict[str, str] = {}
#: The operation of a target met before, else None (``operation_name`` then answers or refuses it): the
#: server's handler finds the usual request's without a Python-level call.
known_operation = _KNOWN_TARGETS.get


def decode_request(body: bytes) -> dict[str, Any]:
    """The request object of a JSON body; an empty body is ``{}``."""
    try:
        # orjson: strict JSON (no NaN or Infinity, no number out of float range, valid UTF-8, no lone
        # surrogate, escaped or not: every string can be stored and answered; at most 1024 levels), and
        # several times faster than the json module.
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body.strip():  # looked at only now: the usual body is not empty
            return {}
        near = body[exc.pos : exc.pos + 24].decode("utf-8", "replace")
        raise SerializationException(
            f"the request body is not valid JSON: {exc.msg} at byte {exc.pos} (near {near!r})"
        ) from None
    if not isinstance(request, dict):
        raise SerializationException(f"the request body must be a JSON object, not {type(request).__name__}")
    return request


def encode_response(response: dict[str, Any], operation: str = "") -> bytes:
    """The JSON body of an operation's answer. A number that is not finite is an error (a 500), never a
    silent ``null``; Predict's answer, whose numbers ``core.predict`` keeps finite, is encoded by orjson,
    25 times faster than the json module for it (3 us of every request)."""
    if operation == "Predict":
        return orjson.dumps(response)
    return json.dumps(response, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def encode_error(error: AmazonMLError) -> bytes:
    # A message quotes what it refuses: should that ever hold a lone surrogate (a file name that is not
    # UTF-8), the answer still goes out, the surrogate as U+FFFD, rather than no answer at all.
    text = json.dumps(error.to_wire(), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "replace")
