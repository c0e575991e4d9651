"""Request validation against botocore's model of the Amazon ML API.

boto3 checks only required members, JSON types and minimums (spec 1.2); the server must enforce every
constraint of the model (lengths, patterns, enums, ranges) and answer ``InvalidInputException`` naming the
member. Reading the constraints from botocore's own service model keeps us exact for all 28 operations.
The model's JSON file is read directly: importing botocore to parse it would cost every command and every
server start about half a second.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from emrml.core.surrogates import lone_surrogate_at
from emrml.errors import InvalidInputException, InvalidTagException

_TAG_CHARS = set("_.:/=+-@")
#: Bad tag keys and values are InvalidTagException, not InvalidInputException (spec 4.7).
_TAG_SHAPES = ("TagKey", "TagValue")
#: Locations may be local paths and file:// URIs as well as s3:// URIs (storage.locations checks them), and
#: endpoint URLs point at this server, not at amazonaws.com (spec 1.3).
_LOCAL_OR_S3 = ("S3Url", "VipURL")
#: Predict's record and endpoint are scored and compared, never stored: the only text that may hold NUL
#: (Predict's fast path, service/endpoints.py, does not look for it).
_UNSTORED_TEXT = ("VariableName", "VariableValue", "VipURL")
#: The members each extension operation reads: the service model has no shape for them, and a member not
#: listed is refused, as the Amazon operations refuse one their shape lacks, rather than ignored (a
#: misspelt StartingTimestamp would start a stream at TRIM_HORIZON, a misspelt TargetAttributeName infer
#: a schema without a target). (tests/service/test_operations_api_requests.py holds it to the registry.)
EXTENSION_MEMBERS: dict[str, tuple[str, ...]] = {
    "InferDataSchema": (
        "DataLocationS3",
        "TargetAttributeName",
        "RowId",
        "DataFileContainsHeader",
        "UseSchemaBeside",
    ),
    "GetDataSourceStatistics": ("DataSourceId",),
    "GetMLModelInsights": ("MLModelId",),
    "GetMLModelInputs": ("MLModelId",),
    "GetEvaluationInsights": ("EvaluationId",),
    "PlanCapacity": ("Nodes", "DiskPerNode", "Data", "SampleLocation", "Codec"),
    "StartStream": (
        "StreamId",
        "MLModelId",
        "InputStream",
        "OutputUri",
        "DeadLetterUri",
        "StartingPosition",
        "StartingTimestamp",
        "RecordFormat",
        "Consumers",
        "StreamName",
    ),
    "StopStream": ("StreamId",),
    "GetStream": ("StreamId",),
    "DescribeStreams": (),
}
#: A shape of the service model as its JSON has it: ``type``, and per type ``members`` / ``required``,
#: ``member``, ``key`` / ``value``, ``enum``, ``min`` / ``max``, ``pattern``.
Shape = dict[str, Any]


#: The smallest magnitude a JSON integer literal takes that orjson reads as a float (past int64).
_BEYOND_INT64 = 2.0**63


@functools.cache
def service_model() -> dict[str, Any]:
    """botocore's ``machinelearning`` service model (``service-2.json``), newest API version."""
    spec = importlib.util.find_spec("botocore")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("botocore is not installed: its Amazon ML service model is needed")
    folder = Path(spec.submodule_search_locations[0]) / "data" / "machinelearning"
    path = max(folder.glob("*/service-2.json*"))
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)


def input_shape(operation: str) -> str | None:
    """The name of an operation's input shape; None for operations the model does not have."""
    found = service_model()["operations"].get(operation)
    return None if found is None or "input" not in found else found["input"]["shape"]


def _tag_text(value: str) -> bool:
    # The model's tag pattern uses \p{L}\p{Z}\p{N}, which Python's re does not know.
    return all(c in _TAG_CHARS or unicodedata.category(c)[0] in "LZN" for c in value)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def _matches(pattern: str, value: str) -> bool:
    if "\\p{" in pattern:
        return _tag_text(value)
    return _compiled(pattern).fullmatch(value) is not None


def _counted(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _check_range(shape: Shape, value: Any, where: str) -> None:
    kind = shape["type"]
    if kind in ("string", "list", "map"):
        size, unit = len(value), "character" if kind == "string" else "item"
        if "min" in shape and size < shape["min"]:
            raise InvalidInputException(f"{where} must have at least {_counted(shape['min'], unit)}")
        if "max" in shape and size > shape["max"]:
            raise InvalidInputException(f"{where} must have at most {_counted(shape['max'], unit)}")
    elif kind in ("integer", "long", "float", "double"):
        if "min" in shape and value < shape["min"]:
            raise InvalidInputException(f"{where} must be at least {shape['min']}")
        if "max" in shape and value > shape["max"]:
            raise InvalidInputException(f"{where} must be at most {shape['max']}")


def _validate(name: str, value: Any, where: str) -> None:
    shape = service_model()["shapes"][name]
    kind = shape["type"]
    if kind == "structure":
        if not isinstance(value, dict):
            raise InvalidInputException(f"{where} must be an object")
        members = shape.get("members", {})
        for member in shape.get("required", ()):
            if value.get(member) is None:
                raise InvalidInputException(f"{_join(where, member)} is required")
        for member, member_value in value.items():
            if member not in members:
                raise InvalidInputException(f"{_join(where, member)} is not a member of {name}")
            if member_value is not None:
                _validate(members[member]["shape"], member_value, _join(where, member))
        return
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidInputException(f"{where} must be a string")
        if name not in _UNSTORED_TEXT:
            _check_storable(value, where)
        enum = shape.get("enum")
        if enum and value not in enum:
            raise InvalidInputException(f"{where} must be one of {', '.join(enum)} (got {value!r})")
        try:
            _check_range(shape, value, where)
        except InvalidInputException as exc:
            if name in _TAG_SHAPES:
                raise InvalidTagException(exc.message) from None
            raise
        pattern = shape.get("pattern")
        if pattern and name not in _LOCAL_OR_S3 and not _matches(pattern, value):
            error = InvalidTagException if name in _TAG_SHAPES else InvalidInputException
            raise error(f"{where} {value[:80]!r} does not match the pattern {pattern}")
    elif kind in ("integer", "long"):
        if isinstance(value, float) and abs(value) >= _BEYOND_INT64 and value.is_integer():
            # The API's JSON reader (orjson) reads an integer beyond 64 bits as a float: such a number is
            # out of every integer member's range, which says more than "not an integer". (Checked here,
            # where a member is known to be an integer, rather than by scanning every request body.)
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputException(f"{where} must be an integer")
        _check_range(shape, value, where)
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputException(f"{where} must be a number")
        _check_range(shape, value, where)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidInputException(f"{where} must be true or false")
    elif kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputException(f"{where} must be a timestamp in epoch seconds")
    elif kind == "list":
        if not isinstance(value, list):
            raise InvalidInputException(f"{where} must be a list")
        _check_range(shape, value, where)
        for i, item in enumerate(value):
            _validate(shape["member"]["shape"], item, f"{where}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict):
            raise InvalidInputException(f"{where} must be an object")
        _check_range(shape, value, where)
        for key, item in value.items():
            _validate(shape["key"]["shape"], key, f"{where} key")
            _validate(shape["value"]["shape"], item, f"{where}[{key!r}]")


def _check_storable(value: str, where: str) -> None:
    # PostgreSQL's text columns refuse NUL (the request would fail with a 500 there), and no Amazon ML
    # value means one: refused from every door (API, console, CLI) and on every metastore alike.
    if "\x00" in value:
        raise InvalidInputException(f"{where} holds a NUL character (U+0000), which no text may hold")
    # A lone surrogate: the JSON API's reader refuses it, but a CLI argument of bytes that are not UTF-8
    # (or a library caller) carries one, and no metastore could store it (an internal UnicodeEncodeError).
    at = lone_surrogate_at(value)
    if at is not None:
        raise InvalidInputException(
            f"{where} holds U+{ord(value[at]):04X}, a lone surrogate code point (what stands for a byte that "
            "is not UTF-8), which no text may hold"
        )


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def validate_request(operation: str, request: Any) -> dict[str, Any]:
    """Check ``request`` against the input shape of an Amazon ML operation; returns it unchanged."""
    shape = input_shape(operation)
    if not isinstance(request, dict):
        raise InvalidInputException(f"the {operation} request must be a JSON object")
    if shape is not None:
        _validate(shape, request, "")
    elif operation in EXTENSION_MEMBERS:
        known = EXTENSION_MEMBERS[operation]
        for member in request:
            if member not in known:
                allowed = f"; its members are {', '.join(known)}" if known else "; it takes no member"
                raise InvalidInputException(f"{member} is not a member of the {operation} request{allowed}")
    return request


def optional_string(request: dict[str, Any], member: str) -> str | None:
    """For the extension operations: a string member, or None when absent."""
    value = request.get(member)
    if value is not None and not isinstance(value, str):
        raise InvalidInputException(f"{member} must be a string")
    if value is not None:
        _check_storable(value, member)
    return value


def require_string(request: dict[str, Any], member: str) -> str:
    """For the extension operations: a string member that must be there."""
    value = optional_string(request, member)
    if value is None:
        raise InvalidInputException(f"{member} is required")
    return value


def require_id(request: dict[str, Any], member: str) -> str:
    """For the extension operations: an object id, checked as the Amazon operations check theirs (the
    EntityId shape), so that a malformed id is an input error naming the member, not a missing object."""
    value = require_string(request, member)
    _validate("EntityId", value, member)
    return value
