"""Reading the ``sgd.*`` training parameters as the Amazon ML API spells them (spec 7.2): CreateMLModel's
``Parameters`` map of strings into ``core.linear.TrainingParameters``, with an error naming the key for
anything out of place; and GetMLModel's echo of them (``echoed``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from emrml.core.linear import (
    KEY_ALGORITHM,
    KEY_L1,
    KEY_L2,
    KEY_MAX_PASSES,
    KEY_MAX_SIZE,
    KEY_SHUFFLE,
    PARAMETER_KEYS,
    TrainingParameters,
    format_float,
)
from emrml.core.schema import did_you_mean
from emrml.errors import InvalidInputException

_INT_RE = re.compile(r"^\+?[0-9]+$")
_FLOAT_RE = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")

MAX_PASSES_RANGE = (1, 10_000)
MAX_SIZE_RANGE = (100_000, 2_147_483_648)


def _parse_int(key: str, text: str, low: int, high: int) -> int:
    stripped = text.strip()
    if not _INT_RE.match(stripped):
        raise InvalidInputException(
            f"Parameters: {key} must be an integer from {low:,} to {high:,}; got {text!r}"
        )
    # Past Python's 4,300 digits int() raises: only a short number is read, a long one is out of range.
    digits = stripped.lstrip("+").lstrip("0") or "0"
    if len(digits) > len(str(high)):
        raise InvalidInputException(
            f"Parameters: {key} must be from {low:,} to {high:,}; got a number of {len(digits):,} digits"
        )
    value = int(digits)
    if not low <= value <= high:
        raise InvalidInputException(f"Parameters: {key} must be from {low:,} to {high:,}; got {value:,}")
    return value


def _parse_amount(key: str, text: str) -> float:
    stripped = text.strip()
    value = float(stripped) if _FLOAT_RE.match(stripped) else math.nan
    if not math.isfinite(value) or value < 0:
        raise InvalidInputException(
            f"Parameters: {key} must be a number from 0 to {format_float(np.finfo(np.float64).max)}; "
            f"got {text!r}"
        )
    return value


def parse_parameters(
    parameters: Mapping[str, str] | None, defaults: TrainingParameters | None = None
) -> TrainingParameters:
    """Parse CreateMLModel's ``Parameters`` map; missing keys take ``defaults`` (the API defaults), except
    that a regularization amount the caller set non-zero makes the other one 0 unless given too.

    ``"algorithm": "sgd"`` (echoed by GetMLModel) is accepted and ignored. Raises
    ``InvalidInputException`` naming the key for unknown keys, values that are not numbers, values out of
    range, and L1 and L2 both non-zero.
    """
    base = defaults or TrainingParameters()
    given = dict(parameters or {})
    for key, value in given.items():
        if not isinstance(value, str):
            raise InvalidInputException(f"Parameters: the value of {key} must be a string")
    unknown = sorted(set(given) - {*PARAMETER_KEYS, KEY_ALGORITHM})
    if unknown:
        raise InvalidInputException(
            f"Parameters: unknown key {unknown[0]!r}{did_you_mean(unknown[0], PARAMETER_KEYS)}; "
            f"allowed keys: {', '.join(PARAMETER_KEYS)}"
        )
    if KEY_ALGORITHM in given and given[KEY_ALGORITHM].strip() != "sgd":
        raise InvalidInputException(f"Parameters: algorithm must be 'sgd'; got {given[KEY_ALGORITHM]!r}")
    max_passes = base.max_passes
    if KEY_MAX_PASSES in given:
        max_passes = _parse_int(KEY_MAX_PASSES, given[KEY_MAX_PASSES], *MAX_PASSES_RANGE)
    max_size = base.max_model_size
    if KEY_MAX_SIZE in given:
        max_size = _parse_int(KEY_MAX_SIZE, given[KEY_MAX_SIZE], *MAX_SIZE_RANGE)
    shuffle = base.shuffle
    if KEY_SHUFFLE in given:
        text = given[KEY_SHUFFLE].strip()
        if text not in ("auto", "none"):
            raise InvalidInputException(
                f"Parameters: {KEY_SHUFFLE} must be 'auto' or 'none'; got {given[KEY_SHUFFLE]!r}"
            )
        shuffle = "auto" if text == "auto" else "none"
    l1 = _parse_amount(KEY_L1, given[KEY_L1]) if KEY_L1 in given else base.l1
    l2 = _parse_amount(KEY_L2, given[KEY_L2]) if KEY_L2 in given else base.l2
    # A default amount never conflicts with the one the caller chose: asking for L1 alone under the console
    # defaults (L2 1e-6) means L1 without L2, as the console's own L1 choice did.
    if KEY_L1 in given and KEY_L2 not in given and l1 > 0:
        l2 = 0.0
    if KEY_L2 in given and KEY_L1 not in given and l2 > 0:
        l1 = 0.0
    if l1 > 0 and l2 > 0:
        raise InvalidInputException(
            f"Parameters: {KEY_L1} and {KEY_L2} cannot both be non-zero; set one of them to 0"
        )
    return TrainingParameters(max_passes=max_passes, shuffle=shuffle, l1=l1, l2=l2, max_model_size=max_size)


def echoed(parameters: TrainingParameters, given: Mapping[str, str] | None) -> dict[str, str]:
    """GetMLModel's ``TrainingParameters``: every effective parameter (``to_api``: those the caller left out
    at their defaults, written by emrml), each ``sgd.*`` value the caller sent as sent, as Amazon ML echoed
    the strings (``1e-4`` stays ``1e-4``, not ``0.0001``). ``parameters``: ``given`` parsed."""
    sent = {key: value for key, value in (given or {}).items() if key in PARAMETER_KEYS}
    return {**parameters.to_api(), **sent}
