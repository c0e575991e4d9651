"""Describe*: filter, sort and page through entities (spec 4.8).

One generic implementation; each entity module registers its operation with ``register``.

``NextToken`` names the last object of the page (its sort value and id), not a position: the next page
starts after that object, so objects deleted, created or changed between two calls never make a page skip
others (a loop deleting what each page lists, the usual cleanup, deletes every object).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import operator
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)

from emrml.core.json_text import load_json
from emrml.errors import InvalidInputException
from emrml.service.metastore import SORTED_TEXT, sort_key_column, sort_key_index
from emrml.service.operations import Request, Response, canonical, operation
from emrml.service.rows import ENTITY_CLASSES

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from emrml.service.app import EmrML

COMPARATORS = ("EQ", "NE", "GT", "GE", "LT", "LE", "Prefix")
ALGORITHM = "sgd"
TIME_VARIABLES = ("CreatedAt", "LastUpdatedAt")
COMMON_FILTERS = {
    "CreatedAt": "created_at",
    "LastUpdatedAt": "last_updated_at",
    "Status": "status",
    "Name": "name",
    "IAMUser": "created_by",
}
FILTERS: dict[str, dict[str, str]] = {
    "DataSource": {**COMMON_FILTERS, "DataLocationS3": "data_location"},
    "MLModel": {
        **COMMON_FILTERS,
        "TrainingDataSourceId": "training_data_source_id",
        "RealtimeEndpointStatus": "endpoint_status",
        "MLModelType": "model_type",
        "Algorithm": "",  # every model's is ALGORITHM
        "TrainingDataURI": "input_data_location",
    },
    "Evaluation": {
        **COMMON_FILTERS,
        "MLModelId": "ml_model_id",
        "DataSourceId": "evaluation_data_source_id",
        "DataURI": "input_data_location",
    },
    "BatchPrediction": {
        **COMMON_FILTERS,
        "MLModelId": "ml_model_id",
        "DataSourceId": "batch_prediction_data_source_id",
        "DataURI": "input_data_location",
    },
}


def _time_value(text: str, comparator: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            # A time without an offset is UTC, as every time of the API is: not the server's local time.
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    else:
        if math.isfinite(seconds):  # "nan" or "inf" would compare differently on each database
            return seconds
    raise InvalidInputException(
        f"{comparator} {text!r}: a time must be epoch seconds or ISO-8601 (e.g. 2024-05-01T12:00:00Z)"
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts_with(column: Any, prefix: str) -> ColumnElement[bool]:
    """Whether ``column`` starts with ``prefix``, case and trailing blanks included, on every metastore:
    LIKE is exact on PostgreSQL and MariaDB, and on SQLite with ``case_sensitive_like`` (metastore)."""
    return column.like(_escape_like(prefix) + "%", escape="\\")


#: Each comparator, for a column and a value (or, for Algorithm, two strings).
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "EQ": operator.eq,
    "NE": operator.ne,
    "GT": operator.gt,
    "GE": operator.ge,
    "LT": operator.lt,
    "LE": operator.le,
    "Prefix": lambda left, prefix: (
        left.startswith(prefix) if isinstance(left, str) else _starts_with(left, prefix)
    ),
}


def _compared(comparator: str, column: Any, value: Any, nullable: bool) -> ColumnElement[bool]:
    """``column comparator value``, an object without a value (NULL) counting as "": the plain column
    compared, not COALESCE(column, ''), so that an index of the column's own is used."""
    condition = _COMPARE[comparator](column, value)
    if nullable and _COMPARE[comparator]("", value):
        condition = or_(condition, column.is_(None))
    return condition


#: ``compare(comparator, value=value)``: the objects whose sort value compares so with ``value``.
Compare = Callable[[str, Any], ColumnElement[bool]]


def _conditions(kind: str, request: Request, dialect: str) -> tuple[Any, list[ColumnElement[bool]], Compare]:
    """The value each object is sorted by, the conditions on the objects to list, and how to compare the
    sort value in the form the metastore's indexes serve.

    Text compares and sorts by code point on every metastore: the columns' collation is "C" on PostgreSQL
    and binary without padding on MySQL and MariaDB (migration 0018), so plain comparisons, which their
    indexes serve, compare as SQLite's do."""
    table = ENTITY_CLASSES[kind]
    variable = request.get("FilterVariable")
    used = [c for c in COMPARATORS if request.get(c) is not None]
    if variable is None:
        if used:
            raise InvalidInputException(f"{', '.join(used)} needs a FilterVariable to compare with")
        compare_time = functools.partial(_compared, column=table.created_at, nullable=False)
        return table.created_at, [table.status != "DELETED"], compare_time
    column_name = FILTERS[kind][variable]
    column: Any = getattr(table, column_name) if column_name else literal(ALGORITHM)
    nullable = bool(column_name) and table.__table__.c[column_name].nullable
    # An object without a name (or location) sorts as "": NULL would sort first on one database, last on
    # another. The "" is written out, not a parameter: SQLite uses an index on an expression (migration
    # 0020's) only for the very same expression, constants included.
    value_column = func.coalesce(column, literal_column("''")) if nullable else column
    compare: Compare
    if dialect in ("mysql", "mariadb"):
        # No index on the expression there (0020), but the column's own (its first characters: 0018).
        compare = functools.partial(_compared, column=column, nullable=nullable)
    else:
        # The sort value itself, which SQLite's and PostgreSQL's index on it and the id (0020) serves, in
        # the order listed.
        compare = functools.partial(_compared, column=value_column, nullable=False)
    conditions: list[ColumnElement[bool]] = []
    if variable in TIME_VARIABLES and "Prefix" in used:
        raise InvalidInputException(f"Prefix compares text; {variable} is a time (use GT, GE, LT or LE)")
    for comparator in used:
        value: Any = request[comparator]
        if variable in TIME_VARIABLES:
            value = _time_value(value, comparator)
        if not column_name:
            # Algorithm: every model's is "sgd", so the comparison holds for all or none, decided here rather
            # than by each database's rules for comparing two constants (MariaDB's ignore case).
            conditions.append(true() if _COMPARE[comparator](ALGORITHM, value) else false())
        else:
            conditions.append(compare(comparator, value=value))
    # DELETED objects stay hidden unless asked for by status, so that waiters can see them (spec 4.8).
    if not (variable == "Status" and request.get("EQ") == "DELETED"):
        conditions.append(table.status != "DELETED")
    return value_column, conditions, compare


def _query(kind: str, request: Request) -> str:
    """The arguments a NextToken is tied to: the kind of object listed and all but the token and the page
    size (a token of one Describe operation is no cursor for another's objects)."""
    return canonical({"kind": kind, **{k: v for k, v in request.items() if k not in ("NextToken", "Limit")}})


def _token(kind: str, last: tuple[Any, str], request: Request) -> str:
    payload = json.dumps({"after": list(last), "query": _query(kind, request)})
    return base64.urlsafe_b64encode(payload.encode()).decode()


def _sort_value(value: object, time_sorted: bool) -> float | str | None:
    """A token's sort value as the sort column holds it, None when it cannot be one: a number for a time
    column, text for the others, as this server writes them. Anything else is a forged token, which a
    database would compare by rules of its own or refuse (PostgreSQL: an error for text against a number,
    for an integer past 64 bits and for text holding NUL)."""
    if time_sorted:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return value if isinstance(value, str) and "\x00" not in value else None


def _kind_of(query: object) -> str | None:
    """The kind of object a token's query lists, when it names one this server lists."""
    try:
        kind = json.loads(query).get("kind") if isinstance(query, str) else None
    except (ValueError, AttributeError, RecursionError):
        return None
    return kind if kind in FILTERS else None


def _after(kind: str, token: str | None, request: Request) -> tuple[Any, str] | None:
    """The sort value and id of the object the previous page ended with; None for the first page."""
    if not token:
        return None
    forged = InvalidInputException("NextToken is not a token returned by a previous call")
    try:
        # load_json: a forged token may hold JSON nested too deeply to read, or a lone surrogate that no
        # query can compare (the metastore's driver could not encode it).
        payload = load_json(base64.urlsafe_b64decode(token.encode()), "NextToken")
        value, last_id = payload["after"]
        query = payload["query"]
    except (InvalidInputException, ValueError, KeyError, TypeError, binascii.Error):
        raise forged from None
    if query != _query(kind, request):
        other = _kind_of(query)
        if other is not None and other != kind:
            raise InvalidInputException(
                f"NextToken was returned by Describe{other}s; it pages that operation's results only"
            )
        raise InvalidInputException("NextToken belongs to a request with other filter or sort arguments")
    time_sorted = request.get("FilterVariable") in (None, *TIME_VARIABLES)
    sort_value = _sort_value(value, time_sorted)
    if sort_value is None or not isinstance(last_id, str) or "\x00" in last_id:
        raise forged
    return sort_value, last_id


def _past(
    dialect: str, column: Any, object_id: Any, compare: Compare, after: tuple[Any, str], descending: bool
) -> ColumnElement[bool]:
    """The objects after ``after`` (the sort value and id the previous page ended with) in the order listed.

    ``value > v OR (value = v AND id > last)`` kept every metastore from using an index and read every
    object before. On PostgreSQL, the row value ``(value, id) > (v, last)``: its index on the sort value and
    id (migration 0020) starts the page's scan at the last object listed. SQLite uses no index for a row
    value on an expression, nor MySQL and MariaDB for any row value: there, the same objects as a range on
    the sort value, which the index serves, and the ties after it, ``value >= v AND (value > v OR id >
    last)``."""
    value, last_id = after
    if dialect == "postgresql":
        row = tuple_(column, object_id)
        return row < tuple_(value, last_id) if descending else row > tuple_(value, last_id)
    if descending:
        return and_(compare("LE", value=value), or_(column < value, object_id < last_id))
    return and_(compare("GE", value=value), or_(column > value, object_id > last_id))


#: The characters of a sort value, COALESCE(column, ''), that MySQL and MariaDB keep in the indexed virtual
#: column ``<column>_sort`` of each text column Describe* sorts by (``metastore.SORTED_TEXT``, migration
#: 0020).
SORT_KEY_LENGTH = 255


def _key_compared(key: Any, comparator: str, value: str) -> ColumnElement[bool]:
    """What ``value comparator text`` says of the value's key, its first SORT_KEY_LENGTH characters."""
    cut = value[:SORT_KEY_LENGTH]
    if comparator == "Prefix":
        return _starts_with(key, value) if len(value) <= SORT_KEY_LENGTH else key == cut
    # A value after (before) the text has a key after (before) or equal to the text's.
    return _COMPARE[{"GT": "GE", "LT": "LE"}.get(comparator, comparator)](key, cut)


def _sort_key_range(
    session: Session,
    kind: str,
    request: Request,
    conditions: list[ColumnElement[bool]],
    after: tuple[Any, str] | None,
    limit: int,
    descending: bool,
) -> tuple[list[ColumnElement[bool]], list[ColumnElement[bool]]]:
    """MySQL and MariaDB: the range of sort keys the page's objects lie in, which their index serves: the
    conditions on where it starts, and on where it ends (none when the objects left fit in the page).

    Neither uses an index for ``ORDER BY COALESCE(name, ''), id`` (nor could it: a LONGTEXT column is
    indexed by its first characters only), so each page read and sorted every object. The key, the sort
    value's first characters, sorts as the value does, so the objects listed first have the smallest keys:
    the key of the page's object after its last, found by reading the key's index in order up to it, bounds
    the objects the page may hold, which are then all that is read and sorted."""
    table = ENTITY_CLASSES[kind]
    column_name = FILTERS[kind].get(request.get("FilterVariable") or "", "")
    if column_name not in dict(SORTED_TEXT[table.__table__.name]):
        return [], []
    key = literal_column(f"{table.__table__.name}.{sort_key_column(column_name)}", String())
    # What the filters and the previous page say of the value, said of its key (which every object whose
    # value holds them has): the range the key's index is read in.
    bounds = [
        _key_compared(key, comparator, request[comparator])
        for comparator in ("EQ", "GT", "GE", "LT", "LE", "Prefix")
        if request.get(comparator) is not None
    ]
    if after is not None:
        bounds.append(_key_compared(key, "LE" if descending else "GE", after[0]))
    ordered = key.desc() if descending else key.asc()
    query = (
        select(key).select_from(table).where(*conditions, *bounds).order_by(ordered).offset(limit).limit(1)
    )
    # Read in the key's order, stopping at the object after the page: what a planner unsure of the table's
    # size or of its filters' share (MariaDB's, on a few thousand objects) may otherwise read whole and sort.
    hint = f"FORCE INDEX FOR ORDER BY ({sort_key_index(table.__table__.name, column_name)})"
    query = query.with_hint(table, hint, "mysql").with_hint(table, hint, "mariadb")
    end = session.execute(query).scalar()
    if end is None:
        return bounds, []
    return bounds, [key >= end if descending else key <= end]


def describe(
    app: EmrML, kind: str, request: Request, view: Callable[[Any], Response], operation_name: str = ""
) -> Response:
    table = ENTITY_CLASSES[kind]
    dialect = app.engine.dialect.name
    column, conditions, compare = _conditions(kind, request, dialect)
    # Only what the caller may describe: others' objects are not there for it (service.access).
    visible = app.access.visible(operation_name or f"Describe{kind}s", kind)
    if visible is not None:
        conditions.append(visible)
    limit = request.get("Limit", 100)
    descending = request.get("SortOrder", "asc") == "dsc"
    after = _after(kind, request.get("NextToken"), request)
    object_id = table.id  # ties go by id, "A" before "a" on every metastore
    if after is not None:
        conditions.append(_past(dialect, column, table.id, compare, after, descending))
    order = [column.desc(), object_id.desc()] if descending else [column.asc(), object_id.asc()]
    query = select(table, column).where(and_(*conditions)).order_by(*order).limit(limit + 1)
    with app.sessions() as session:
        if dialect in ("mysql", "mariadb"):
            start, end = _sort_key_range(session, kind, request, conditions, after, limit, descending)
            query = query.where(*start)
            rows = list(session.execute(query.where(*end)))
            if end and len(rows) <= limit:
                # Objects deleted between the two reads left the range short of a page (possible at READ
                # COMMITTED; the default REPEATABLE READ reads both in one snapshot): read on to the end.
                rows = list(session.execute(query))
        else:
            rows = list(session.execute(query))
    response: Response = {"Results": [view(entity) for entity, _ in rows[:limit]]}
    if len(rows) > limit:
        last, value = rows[limit - 1]
        response["NextToken"] = _token(kind, (value, last.id), request)
    return response


def register(operation_name: str, kind: str, view: Callable[[Any], Response]) -> None:
    def run(app: EmrML, request: Request) -> Response:
        return describe(app, kind, request, view, operation_name)

    operation(operation_name)(run)
