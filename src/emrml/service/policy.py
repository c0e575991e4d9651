"""Permission statements and how a user's statements decide a request, in the spirit of IAM policies.

A statement is a small JSON document::

    {"Effect": "Allow", "Action": ["machinelearning:Describe*", "Predict"], "Resource": ["mlmodel/ml-*"],
     "Owner": "self"}

* ``Effect``: ``Allow`` or ``Deny``.
* ``Action``: action names or patterns (``*`` any characters, ``?`` one), compared without regard to case.
  An action is ``<service>:<name>``: ``machinelearning:`` + an Amazon ML operation (the default service when
  a name has none), ``storage:Read`` / ``storage:Write`` (a location a request names), or ``iam:`` + a
  management action (``CreateUser``, ``AddUserToGroup``, ...).
* ``Resource`` (default ``*``): what the action is on. Objects are ``<kind>/<id>`` (kinds ``datasource``,
  ``mlmodel``, ``evaluation``, ``batchprediction``, ``stream``; IAM-style ARNs
  ``arn:aws:machinelearning:<region>:<account>:mlmodel/<id>`` are accepted and mean the same), locations
  are ``s3://bucket/key`` or absolute local paths, users ``user/<name>`` and groups ``group/<name>``. ``*``
  crosses ``/``, as in IAM.
* ``Owner`` (default ``any``): ``self`` restricts the statement to objects the caller created (their
  ``CreatedByIamUser``) and, for ``iam:`` actions, to the caller's own user.

A request is allowed when some Allow statement of the caller's groups matches it and no Deny statement
does: an explicit deny wins, and nothing is allowed by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, true

from emrml.core.json_text import load_json
from emrml.errors import InvalidInputException

EFFECTS = ("Allow", "Deny")
OWNERS = ("any", "self")
DEFAULT_SERVICE = "machinelearning"
STORAGE_ACTIONS = ("storage:Read", "storage:Write")
IAM_ACTIONS = tuple(
    f"iam:{name}"
    for name in (
        "ListUsers",
        "GetUser",
        "CreateUser",
        "UpdateUser",
        "DeleteUser",
        "ReassignObjects",
        "ListAccessKeys",
        "CreateAccessKey",
        "UpdateAccessKey",
        "DeleteAccessKey",
        "ListGroups",
        "GetGroup",
        "CreateGroup",
        "DeleteGroup",
        "AddUserToGroup",
        "RemoveUserFromGroup",
        "PutGroupPolicy",
        "DeleteGroupPolicy",
    )
)
#: Object kinds as resources name them, by the API's kind name.
RESOURCE_KINDS = {
    "DataSource": "datasource",
    "MLModel": "mlmodel",
    "Evaluation": "evaluation",
    "BatchPrediction": "batchprediction",
    "Stream": "stream",
}
_NAME = re.compile(r"[A-Za-z0-9*?]+")
_MAX_PATTERNS = 100
_MAX_PATTERN_LENGTH = 1024
_CACHE_LIMIT = 4096
#: A statement's number is below 10**9 (``Access.remove_statement``): a longer one names none.
_STATEMENT_DIGITS = 18


def glob_regex(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """``*`` any run of characters (``/`` included), ``?`` one character, everything else literal; for
    ``fullmatch``.

    Not one ``.*`` per star: with several stars the regular expression engine backtracks through every way
    of splitting the text among them, and a long location (``s3://a/a/a/...`` against ``s3://*/*/*/*/x``)
    held the server for minutes. A star followed by more pattern takes the first place where the text
    between it and the next star matches, in an atomic group (as ``fnmatch`` does): that place leaves the
    most text for the rest, which starts with a star too, so no other split can succeed where it failed.
    """

    def literal(text: str) -> str:
        return "".join("." if c == "?" else re.escape(c) for c in text)

    parts = pattern.split("*")
    regex = literal(parts[0])
    if len(parts) > 1:
        regex += "".join(f"(?>.*?{literal(part)})" for part in parts[1:-1]) + ".*" + literal(parts[-1])
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _strings(document: dict[str, Any], member: str, default: str | None) -> tuple[str, ...]:
    value = document.get(member, default)
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or len(value) > _MAX_PATTERNS
        or not all(isinstance(item, str) and 0 < len(item) <= _MAX_PATTERN_LENGTH for item in value)
    ):
        raise InvalidInputException(
            f"{member} must be a string or a list of 1-{_MAX_PATTERNS} non-empty strings "
            f"of at most {_MAX_PATTERN_LENGTH} characters"
        )
    return tuple(value)


def _action(pattern: str, known: Iterable[str]) -> str:
    service, _, name = pattern.rpartition(":")
    if pattern == "*":
        return pattern
    service = service or DEFAULT_SERVICE
    if not _NAME.fullmatch(service) or not _NAME.fullmatch(name):
        raise InvalidInputException(f"Action {pattern!r} is not <service>:<action name> (e.g. Describe*)")
    full = f"{service}:{name}"
    regex = glob_regex(full, ignore_case=True)
    if not any(regex.fullmatch(action) for action in known):
        raise InvalidInputException(
            f"Action {pattern!r} matches no action of machinelearning, storage or iam"
        )
    return full


def _resource(pattern: str) -> str:
    if pattern.startswith("arn:"):
        parts = pattern.split(":", 5)
        if len(parts) != 6 or not glob_regex(parts[2]).fullmatch(DEFAULT_SERVICE):
            raise InvalidInputException(
                f"Resource {pattern!r}: an ARN must be arn:aws:machinelearning:<region>:<account>:<kind>/<id>"
            )
        return parts[5]
    return pattern


#: How every location a ``storage:`` action is checked on starts (``Access.check_storage``: local paths
#: resolved to absolute ones, S3 and Kinesis URIs as written).
LOCATION_STARTS = ("/", "s3://", "kinesis://")


#: How the resources each service's actions are checked on start (``Access``): objects as ``kind/ID``, users
#: and groups as ``user/NAME`` and ``group/NAME``, locations as ``LOCATION_STARTS``; and how to say so.
RESOURCE_STARTS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "machinelearning": (
        tuple(f"{kind}/" for kind in RESOURCE_KINDS.values()),
        "object",
        "machinelearning actions act on objects "
        f"({', '.join(f'{kind}/ID' for kind in RESOURCE_KINDS.values())}, or their ARN)",
    ),
    "storage": (
        LOCATION_STARTS,
        "location",
        "storage actions are checked on absolute local paths (/srv/data/*), s3:// locations "
        "(s3://bucket/prefix/*) and kinesis:// streams",
    ),
    "iam": (
        ("user/", "group/"),
        "user or group",
        "iam actions act on users (user/NAME) and groups (group/NAME)",
    ),
}


def _check_resource_patterns(resources: Iterable[str], actions: Iterable[str], known: Iterable[str]) -> None:
    """Refuse a resource pattern that nothing the actions act on can match: its text before the first
    wildcard starts none of their services' ``RESOURCE_STARTS`` (``model/x`` for ``mlmodel/x``,
    ``relative/*`` or ``file:///srv/*`` for a location), so the statement would grant or deny nothing."""
    regexes = [glob_regex(action, ignore_case=True) for action in actions]
    services = sorted({name.partition(":")[0] for name in known if any(r.fullmatch(name) for r in regexes)})
    starts = [start for service in services for start in RESOURCE_STARTS[service][0]]
    for pattern in resources:
        literal = re.split(r"[*?]", pattern, maxsplit=1)[0]
        if not any(literal.startswith(start) or start.startswith(literal) for start in starts):
            noun = RESOURCE_STARTS[services[0]][1] if len(services) == 1 else "resource of its actions"
            raise InvalidInputException(
                f"Resource {pattern!r} can match no {noun}: "
                + "; ".join(RESOURCE_STARTS[service][2] for service in services)
            )
        if pattern.startswith(LOCATION_STARTS) and re.search(r"/\.\.?(/|$)", pattern):
            # Local paths are checked resolved, and an s3:// key with such a segment is refused as input.
            raise InvalidInputException(
                f"Resource {pattern!r} can match no location: it has a '.' or '..' segment, which no checked "
                "location has (local paths are resolved first; S3 keys with one are refused)"
            )


@dataclass(frozen=True)
class Statement:
    """One permission statement of a group; ``sid`` numbers it within the group (from 1)."""

    sid: int
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    owner: str = "any"
    _action_regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _resource_regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_action_regexes", tuple(glob_regex(a, ignore_case=True) for a in self.actions)
        )
        object.__setattr__(self, "_resource_regexes", tuple(glob_regex(r) for r in self.resources))

    @classmethod
    def parse(cls, document: object, sid: int, known_actions: Iterable[str]) -> Statement:
        """Validate a statement document; ``known_actions`` are the full names an Action must match one of.
        Raises InvalidInputException naming the member at fault."""
        if not isinstance(document, dict):
            raise InvalidInputException("a statement must be a JSON object with Effect, Action and Resource")
        if "Sid" in document:  # taken silently, it would be a number nobody can remove the statement by
            raise InvalidInputException(
                "a statement takes no Sid: its group numbers its statements (emrml groups show and the "
                "group's console page show the numbers)"
            )
        unknown = sorted(set(document) - {"Effect", "Action", "Resource", "Owner"})
        if unknown:
            raise InvalidInputException(
                f"unknown statement member {unknown[0]!r} (expected Effect, Action, Resource, Owner)"
            )
        effect = document.get("Effect")
        if effect not in EFFECTS:
            raise InvalidInputException(f"Effect must be Allow or Deny (got {effect!r})")
        owner = document.get("Owner", "any")
        if owner not in OWNERS:
            raise InvalidInputException(f"Owner must be 'any' or 'self' (got {owner!r})")
        known = tuple(known_actions)
        actions = tuple(_action(a, known) for a in _strings(document, "Action", None))
        resources = tuple(_resource(r) for r in _strings(document, "Resource", "*"))
        # Checked as a statement is added, not as stored ones are read (groups.stored_statement): a
        # statement stored before this check still loads.
        _check_resource_patterns(resources, actions, known)
        return cls(sid, effect, actions, resources, owner)

    def document(self) -> dict[str, Any]:
        """The statement as JSON (what ``parse`` reads back)."""
        return {
            "Effect": self.effect,
            "Action": list(self.actions),
            "Resource": list(self.resources),
            "Owner": self.owner,
        }

    def covers(self, action: str) -> bool:
        return any(regex.fullmatch(action) for regex in self._action_regexes)

    def matches(self, action: str, resource: str, own: bool) -> bool:
        return (
            (own or self.owner == "any")
            and self.covers(action)
            and any(regex.fullmatch(resource) for regex in self._resource_regexes)
        )

    def condition(self, kind: str, id_column: Any, owner_column: Any, caller: str) -> ColumnElement[bool]:
        """The SQL condition selecting the rows of ``kind`` this statement matches (its action matched)."""
        prefix = f"{RESOURCE_KINDS[kind]}/"
        ids = [
            _like(id_column, rest)
            for pattern in self.resources
            for rest in residual_patterns(pattern, prefix)
        ]
        matched = or_(*ids) if ids else false()
        return and_(matched, owner_column == caller) if self.owner == "self" else matched


def statement_document(text: str | bytes, what: str) -> object:
    """A statement as written (``what``: where, for errors), parsed; ``Statement.parse`` checks it. A member
    named twice is refused: JSON parsers keep the last, so ``"Effect": "Deny"`` followed by ``"Effect":
    "Allow"`` would silently be an Allow."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInputException(
                f"{what} is not UTF-8 text (byte {exc.start + 1} cannot be read): save it as UTF-8 JSON"
            ) from None
    return load_json(text, what, repeated=lambda key: f"{what} names the member {key!r} twice")


def statement_number(text: str) -> int:
    """A statement's number (its sid) as a user typed it: a form field, a command's argument."""
    number = text.strip()
    if not (number.isascii() and number.isdigit()):  # "\u00b2" is a digit to isdigit(), not to int()
        raise InvalidInputException(f"statement number {number!r} is not a whole number")
    digits = number.lstrip("0") or "0"
    if len(digits) > _STATEMENT_DIGITS:  # int() would refuse past 4,300 digits with a bare ValueError
        raise InvalidInputException(
            f"statement number {digits[:12]}... has {len(digits):,} digits, far past any statement's"
        )
    return int(digits)


def residual_patterns(pattern: str, prefix: str) -> set[str]:
    """The patterns the rest of a string must match once ``prefix`` matched the start of ``pattern``.

    ``mlmodel/ml-*`` after ``mlmodel/`` leaves ``ml-*``; ``*`` leaves ``*``; ``datasource/*`` leaves nothing.
    A glob is a small automaton: run it over the prefix, keep every position it may be in.
    """

    def closure(positions: set[int]) -> set[int]:
        result = set(positions)
        for position in positions:
            while position < len(pattern) and pattern[position] == "*":
                position += 1
                result.add(position)
        return result

    states = closure({0})
    for character in prefix:
        following = set()
        for position in states:
            if position < len(pattern):
                token = pattern[position]
                if token == "*":
                    following.add(position)
                elif token == "?" or token == character:
                    following.add(position + 1)
        states = closure(following)
        if not states:
            return set()
    return {pattern[position:] for position in states}


def _like(column: Any, pattern: str) -> ColumnElement[bool]:
    if pattern.strip("*") == "" and pattern:
        return true()
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")


class Policy:
    """Everything one user may do: the statements of its groups. ``allows`` answers are remembered."""

    def __init__(self, user_name: str, caller: str, enabled: bool, statements: Sequence[Statement]) -> None:
        self.user_name = user_name
        self.caller = caller
        self.enabled = enabled
        self.statements = tuple(statements)
        self._decisions: dict[tuple[str, str, bool, tuple[str, ...]], bool] = {}

    def __eq__(self, other: object) -> bool:
        """Policies are equal when they say the same (whatever decisions each has remembered)."""
        if not isinstance(other, Policy):
            return NotImplemented
        return (self.user_name, self.caller, self.enabled, self.statements) == (
            other.user_name,
            other.caller,
            other.enabled,
            other.statements,
        )

    def allows(self, action: str, resource: str, own: bool, *spellings: str) -> bool:
        """Whether ``action`` on ``resource`` (the caller's own when ``own``) is allowed: an Allow
        statement matches and no Deny statement does. ``spellings``: other names of the same resource (a
        location with and without its trailing slash), each matched too: an Allow may match any, a Deny
        matching any refuses."""
        key = (action, resource, own, spellings)
        decision = self._decisions.get(key)
        if decision is None:
            names = (resource, *spellings)
            matching = [s.effect for s in self.statements for n in names if s.matches(action, n, own)]
            decision = self.enabled and "Allow" in matching and "Deny" not in matching
            if len(self._decisions) >= _CACHE_LIMIT:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision

    def denies(self, action: str, resource: str, own: bool) -> bool:
        """Whether a Deny statement matches ``action`` on ``resource`` (an explicit refusal, which no Allow
        of another action lifts)."""
        return any(s.effect == "Deny" and s.matches(action, resource, own) for s in self.statements)

    def denied_below(self, action: str, folder: str) -> str | None:
        """A Deny pattern of ``action`` matching some location strictly below ``folder`` (which ends in
        ``/``), None when there is none. A location naming a folder reads (or writes) every file below it,
        which ``allows`` on the folder's own name cannot tell apart from what a Deny of a part of it
        (``/srv/data/private/*``) refuses. Owner-``self`` statements match no location."""
        if not self.enabled:
            return None
        for statement in self.statements:
            if statement.effect != "Deny" or statement.owner == "self" or not statement.covers(action):
                continue
            for pattern in statement.resources:
                # Some rest left to match after the folder: a pattern holding a character of its own
                # matches some name below the folder ("" would be the folder itself, checked by allows).
                if any(residual_patterns(pattern, folder)):
                    return pattern
        return None

    def granted_folders(self, action: str) -> list[str]:
        """The folders where the Allow statements naming ``action`` start: each resource pattern up to its
        first wildcard, cut back to its last ``/`` (``/srv/data/results/*`` gives ``/srv/data/results/``),
        where a user granted only part of the storage may start browsing. Patterns starting with a
        wildcard give none; Deny statements are not subtracted (the caller checks each folder)."""
        folders = set()
        for statement in self.statements:
            if statement.effect != "Allow" or not statement.covers(action):
                continue
            for pattern in statement.resources:
                literal = re.split(r"[*?]", pattern, maxsplit=1)[0]
                folder = literal[: literal.rfind("/") + 1]
                if folder and folder != "s3://":
                    folders.add(folder)
        return sorted(folders) if self.enabled else []

    def may_ever(self, action: str) -> bool:
        """Whether some Allow statement names ``action`` (on whatever resource)."""
        return self.enabled and any(s.effect == "Allow" and s.covers(action) for s in self.statements)

    def visible(self, action: str, kind: str, id_column: Any, owner_column: Any) -> ColumnElement[bool]:
        """The SQL condition selecting the objects of ``kind`` on which ``action`` is allowed."""
        if not self.enabled:
            return false()
        conditions: dict[str, list[ColumnElement[bool]]] = {effect: [] for effect in EFFECTS}
        for statement in self.statements:
            if statement.covers(action):
                conditions[statement.effect].append(
                    statement.condition(kind, id_column, owner_column, self.caller)
                )
        if not conditions["Allow"]:
            return false()
        allowed = or_(*conditions["Allow"])
        return and_(allowed, not_(or_(*conditions["Deny"]))) if conditions["Deny"] else allowed
