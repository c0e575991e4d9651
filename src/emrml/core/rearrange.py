"""DataRearrangement: which records of a datasource a split keeps (spec 5.4).

A rearrangement is ``{"splitting": {"percentBegin": b, "percentEnd": e, "complement": c, "strategy": s,
"strategyParams": {"randomSeed": seed}}}``; every member is optional (defaults 0, 100, false,
``sequential``, empty seed). Records are numbered over all files of the datasource in lexicographic key
order, header lines excluded, valid and invalid records alike.

* sequential: with N records, keep record indices i with floor(N·b/100) ≤ i < floor(N·e/100).
* random: u = 100 · h / 2^64 with h the first 8 bytes (big-endian) of
  SHA-256(seed ‖ 0x00 ‖ file key ‖ 0x00 ‖ decimal byte offset of the record); keep b ≤ u < e. The file key
  is the file's path relative to the datasource location (empty when the location is the file itself), so
  the same data splits the same wherever it is stored; datasources recorded before this rule keep theirs,
  the absolute object key (``relative_keys`` False).
* complement keeps exactly the records the same split without complement drops, so a split and its
  complement partition the data.

Both rules use exact rational arithmetic, so they do not depend on how records are batched.

Accepted spellings: percentages are whole numbers from 0 to 100, written as JSON integers, integral
numbers (``70.0``) or strings holding a whole number (``"70"``); AWS supports whole percentages only, so
``70.5`` is refused. ``complement`` is a JSON boolean or the string ``"true"``/``"false"`` (any case).
``strategyParams.randomSeed`` is a string and only allowed with the random strategy. A top-level
``randomSeed`` beside ``splitting`` is accepted too, as AWS's own social-media sample sends it
(``{"randomSeed":"0","splitting":{"percentBegin":0,"percentEnd":70}}``) and Amazon ML ran it: it seeds a
random split that gives no ``strategyParams.randomSeed`` (a different one there is refused); a sequential
split, which makes no random choice, is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from emrml.core.json_text import load_json
from emrml.core.schema import did_you_mean
from emrml.errors import InvalidInputException

if TYPE_CHECKING:
    import numpy as np

_SPLITTING_KEYS = ("percentBegin", "percentEnd", "complement", "strategy", "strategyParams")
_STRATEGIES = ("sequential", "random")
_HASH_SPACE = 1 << 64
#: Offsets hashed at a time by a random split.
_HASH_PIECE = 1 << 16


@dataclass(frozen=True)
class Rearrangement:
    """A parsed DataRearrangement. Percentages are in [0, 100] with ``percent_begin <= percent_end``."""

    percent_begin: float = 0.0
    percent_end: float = 100.0
    complement: bool = False
    strategy: Literal["sequential", "random"] = "sequential"
    seed: str = ""
    #: Random splits hash each file's path relative to the datasource location (True), or its absolute
    #: object key (False: how datasources recorded before relative keys were split).
    relative_keys: bool = True

    @property
    def needs_total(self) -> bool:
        """Whether the split depends on the total record count (sequential with real bounds)."""
        return (
            self.strategy == "sequential"
            and (self.percent_begin, self.percent_end) != (0, 100)
            and self.percent_begin != self.percent_end
        )


def parse_rearrangement(
    text: str | None, *, relative_keys: bool = True, member: str = "DataRearrangement"
) -> Rearrangement | None:
    """Parse and validate a DataRearrangement JSON string; None or "" means no rearrangement.

    ``relative_keys`` is the datasource's recorded key scheme (see ``Rearrangement.relative_keys``).
    Raises ``InvalidInputException`` naming the offending member; ``member`` is where the string lies, as a
    request spells its path (``DataSpec.DataRearrangement``), which starts every message.
    """
    try:
        return _parse_rearrangement(text, relative_keys)
    except InvalidInputException as exc:
        if member == "DataRearrangement":
            raise
        raise InvalidInputException(member + exc.message.removeprefix("DataRearrangement")) from None


def _parse_rearrangement(text: str | None, relative_keys: bool) -> Rearrangement | None:
    if not text:
        return None
    # "complement": true then false would otherwise select the other side of the split, silently.
    document = load_json(
        text, "DataRearrangement", repeated=lambda key: f"DataRearrangement has the member {key!r} twice"
    )
    if not isinstance(document, dict) or "splitting" not in document:
        others = sorted(document) if isinstance(document, dict) else []
        raise InvalidInputException(
            'DataRearrangement must be a JSON object {"splitting": {...}}, e.g. '
            '{"splitting":{"percentBegin":0,"percentEnd":70}}'
            + (
                f"; it has the unknown member {others[0]!r}{did_you_mean(others[0], ['splitting'])} instead"
                if others
                else ""
            )
        )
    unknown = sorted(set(document) - {"splitting", "randomSeed"})
    if unknown:
        raise InvalidInputException(
            f"DataRearrangement has an unknown member {unknown[0]!r}; allowed: splitting, randomSeed"
        )
    splitting = document["splitting"]
    if not isinstance(splitting, dict):
        raise InvalidInputException("DataRearrangement member 'splitting' must be a JSON object")
    unknown = sorted(set(splitting) - set(_SPLITTING_KEYS))
    if unknown:
        raise InvalidInputException(
            f"DataRearrangement has an unknown member 'splitting.{unknown[0]}'"
            f"{did_you_mean(unknown[0], _SPLITTING_KEYS)}; allowed: {', '.join(_SPLITTING_KEYS)}"
        )
    begin = _percent(splitting, "percentBegin", 0)
    end = _percent(splitting, "percentEnd", 100)
    if begin > end:
        raise InvalidInputException(
            f"DataRearrangement member 'splitting.percentBegin' ({begin}) must not be greater than "
            f"'splitting.percentEnd' ({end})"
        )
    strategy = splitting.get("strategy", "sequential")
    if strategy not in _STRATEGIES:
        raise InvalidInputException(
            f"DataRearrangement member 'splitting.strategy' must be 'sequential' or 'random', "
            f"got {_shown(strategy)}"
        )
    seed = _seed(splitting.get("strategyParams"), strategy)
    if "randomSeed" in document:
        seed = _top_level_seed(document["randomSeed"], splitting.get("strategyParams"), seed, strategy)
    return Rearrangement(
        percent_begin=float(begin),
        percent_end=float(end),
        complement=_complement(splitting.get("complement", False)),
        strategy=strategy,
        seed=seed,
        relative_keys=relative_keys,
    )


def _top_level_seed(value: Any, params: Any, seed: str, strategy: str) -> str:
    """The seed of a split given the top-level ``randomSeed`` ``value`` besides ``seed``, the one read from
    ``strategyParams`` (``params``)."""
    if not isinstance(value, str):
        raise InvalidInputException(
            f"DataRearrangement member 'randomSeed' must be a string, got {_shown(value)}"
        )
    if strategy != "random":
        return seed
    if isinstance(params, dict) and "randomSeed" in params and seed != value:
        raise InvalidInputException(
            f"DataRearrangement members 'randomSeed' ({_shown(value)}) and "
            f"'splitting.strategyParams.randomSeed' ({_shown(seed)}) name different seeds; give one"
        )
    return value


def _shown(value: Any) -> str:
    """A member's value as the request's JSON spells it (``null``, ``true``, ``"70"``)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def file_key(r: Rearrangement | None, key: str, name: str) -> str:
    """The key a random split hashes for one file: ``name`` (its path relative to the datasource
    location) or, for datasources recorded before relative keys, ``key`` (its absolute object key)."""
    return key if r is not None and not r.relative_keys else name


def _percent(splitting: dict[str, Any], key: str, default: int) -> int:
    value = splitting.get(key, default)
    number: Decimal | None = None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        number = Decimal(value)
    elif isinstance(value, str):
        # Decimal keeps an exponent as written; Fraction("1e999999999") would first build the integer
        # 10**999999999, minutes of CPU and gigabytes of memory for a 13-character member.
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            number = None
    if (
        number is None
        or not number.is_finite()
        or not 0 <= number <= 100
        or number != number.to_integral_value()
    ):
        raise InvalidInputException(
            f"DataRearrangement member 'splitting.{key}' must be a whole number from 0 to 100, "
            f"got {_shown(value)}"
        )
    return int(number)


def _complement(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInputException(
        f"DataRearrangement member 'splitting.complement' must be true or false, got {_shown(value)}"
    )


def _seed(params: Any, strategy: str) -> str:
    if params is None:
        return ""
    if not isinstance(params, dict):
        raise InvalidInputException(
            "DataRearrangement member 'splitting.strategyParams' must be a JSON object"
        )
    unknown = sorted(set(params) - {"randomSeed"})
    if unknown:
        raise InvalidInputException(
            f"DataRearrangement has an unknown member 'splitting.strategyParams.{unknown[0]}'"
            f"{did_you_mean(unknown[0], ['randomSeed'])}; allowed: randomSeed"
        )
    if "randomSeed" not in params:
        return ""
    seed = params["randomSeed"]
    if strategy != "random":
        raise InvalidInputException(
            "DataRearrangement member 'splitting.strategyParams.randomSeed' applies only to the "
            "'random' strategy"
        )
    if not isinstance(seed, str):
        raise InvalidInputException(
            "DataRearrangement member 'splitting.strategyParams.randomSeed' must be a string, "
            f"got {_shown(seed)}"
        )
    return seed


def random_mask(r: Rearrangement, key: str, offsets: np.ndarray) -> np.ndarray:
    """Kept rows (bool, shape of ``offsets``) of a random split, for records of the object ``key``."""
    import numpy as np  # here, as in the other selections: validating a request needs no numpy

    prefix = hashlib.sha256(r.seed.encode() + b"\0" + key.encode() + b"\0")
    fresh = prefix.copy

    def digest(offset: int) -> bytes:
        hasher = fresh()
        hasher.update(b"%d" % offset)
        return hasher.digest()

    offsets = np.asarray(offsets, dtype=np.int64)
    hashes = np.empty(len(offsets), dtype=np.uint64)
    # A piece at a time: a block of short records holds millions, and their digests and Python ints
    # cost about 150 bytes each while they live.
    for start in range(0, len(offsets), _HASH_PIECE):
        digests = b"".join(map(digest, offsets[start : start + _HASH_PIECE].tolist()))
        # The first 8 of each 32 digest bytes, as big-endian unsigned integers.
        hashes[start : start + _HASH_PIECE] = np.frombuffer(digests, dtype=">u8").reshape(-1, 4)[:, 0]
    # b <= 100·h/2^64  <=>  h >= ceil(b·2^64/100), exactly.
    low = math.ceil(Fraction(r.percent_begin) * _HASH_SPACE / 100)
    high = math.ceil(Fraction(r.percent_end) * _HASH_SPACE / 100)
    keep = hashes >= np.uint64(low) if low < _HASH_SPACE else np.zeros(len(hashes), dtype=bool)
    if high < _HASH_SPACE:
        keep &= hashes < np.uint64(high)
    return ~keep if r.complement else keep


def sequential_mask(r: Rearrangement, total: int, indices: np.ndarray) -> np.ndarray:
    """Kept rows (bool, shape of ``indices``) of a sequential split of ``total`` records.

    ``indices`` are global record indices over all files of the datasource.
    """
    import numpy as np

    low = math.floor(total * Fraction(r.percent_begin) / 100)
    high = math.floor(total * Fraction(r.percent_end) / 100)
    indices = np.asarray(indices, dtype=np.int64)
    keep = (indices >= low) & (indices < high)
    return ~keep if r.complement else keep


def select(
    r: Rearrangement | None,
    key: str,
    offsets: np.ndarray,
    global_indices: np.ndarray,
    total: int | None,
) -> np.ndarray:
    """Kept rows of one batch: ``offsets`` feed the random split, ``global_indices`` and ``total`` the
    sequential one (``total`` is needed only when ``r.needs_total``). No rearrangement keeps all."""
    import numpy as np

    if r is None:
        return np.ones(len(offsets), dtype=bool)
    if r.strategy == "random":
        return random_mask(r, key, offsets)
    if total is not None:
        return sequential_mask(r, total, global_indices)
    if r.needs_total:
        raise ValueError("a sequential split with these bounds needs the total record count")
    # Bounds 0..100 keep everything and an empty range nothing, whatever the count.
    keep = np.full(len(global_indices), r.percent_begin != r.percent_end)
    return ~keep if r.complement else keep
