"""Request validation against botocore's model of the Amazon ML API.

boto3 checks only required members, JSON types and minimums (spec 1.2); the server must enforce every
constraint of the model (lengths, patterns, enums, ranges) and answer ``InvalidInputException`` naming the
member. Reading the constraints from botocore's own service model keeps us exact for all 28 operations.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import botocore.session
from botocore.model import OperationModel, Shape

from emrml.errors import InvalidInputException, InvalidTagException

_TAG_CHARS = set("_.:/=+-@")
#: Bad tag keys and values are InvalidTagException, not InvalidInputException (spec 4.7).
_TAG_SHAPES = ("TagKey", "TagValue")
#: Locations may be local paths and file:// URIs as well as s3:// URIs (storage.locations checks them), and
#: endpoint URLs point at this server, not at amazonaws.com (spec 1.3).
_LOCAL_OR_S3 = ("S3Url", "VipURL")


@functools.cache
def service_model() -> Any:
    return botocore.session.get_session().get_service_model("machinelearning")


def operation_model(name: str) -> OperationModel | None:
    model = service_model()
    return model.operation_model(name) if name in model.operation_names else None


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


def _check_range(shape: Shape, value: Any, where: str) -> None:
    metadata = shape.metadata
    if shape.type_name in ("string", "list", "map"):
        size, unit = len(value), "characters" if shape.type_name == "string" else "items"
        if "min" in metadata and size < metadata["min"]:
            raise InvalidInputException(f"{where} must have at least {metadata['min']} {unit}")
        if "max" in metadata and size > metadata["max"]:
            raise InvalidInputException(f"{where} must have at most {metadata['max']} {unit}")
    elif shape.type_name in ("integer", "long", "float", "double"):
        if "min" in metadata and value < metadata["min"]:
            raise InvalidInputException(f"{where} must be at least {metadata['min']}")
        if "max" in metadata and value > metadata["max"]:
            raise InvalidInputException(f"{where} must be at most {metadata['max']}")


def _validate(shape: Shape, value: Any, where: str) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise InvalidInputException(f"{where} must be an object")
        for name in shape.required_members:
            if value.get(name) is None:
                raise InvalidInputException(f"{_join(where, name)} is required")
        for name, member_value in value.items():
            if name not in shape.members:
                raise InvalidInputException(f"{_join(where, name)} is not a member of {shape.name}")
            if member_value is not None:
                _validate(shape.members[name], member_value, _join(where, name))
        return
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidInputException(f"{where} must be a string")
        if shape.enum and value not in shape.enum:
            raise InvalidInputException(f"{where} must be one of {', '.join(shape.enum)} (got {value!r})")
        try:
            _check_range(shape, value, where)
        except InvalidInputException as exc:
            if shape.name in _TAG_SHAPES:
                raise InvalidTagException(exc.message) from None
            raise
        pattern = shape.metadata.get("pattern")
        if pattern and shape.name not in _LOCAL_OR_S3 and not _matches(pattern, value):
            error = InvalidTagException if shape.name in _TAG_SHAPES else InvalidInputException
            raise error(f"{where} {value[:80]!r} does not match the pattern {pattern}")
    elif kind in ("integer", "long"):
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
            _validate(shape.member, item, f"{where}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict):
            raise InvalidInputException(f"{where} must be an object")
        _check_range(shape, value, where)
        for key, item in value.items():
            _validate(shape.key, key, f"{where} key")
            _validate(shape.value, item, f"{where}[{key!r}]")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def validate_request(operation: str, request: Any) -> dict[str, Any]:
    """Check ``request`` against the input shape of an Amazon ML operation; returns it unchanged."""
    model = operation_model(operation)
    if not isinstance(request, dict):
        raise InvalidInputException(f"the {operation} request must be a JSON object")
    if model is not None and model.input_shape is not None:
        _validate(model.input_shape, request, "")
    return request


def optional_string(request: dict[str, Any], member: str) -> str | None:
    """For the extension operations: a string member, or None when absent."""
    value = request.get(member)
    if value is not None and not isinstance(value, str):
        raise InvalidInputException(f"{member} must be a string")
    return value


def require_string(request: dict[str, Any], member: str) -> str:
    """For the extension operations: a string member that must be there."""
    value = optional_string(request, member)
    if value is None:
        raise InvalidInputException(f"{member} is required")
    return value
