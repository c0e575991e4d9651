"""Schema inference from a sample of the data (spec 5.3; ``docs/schema.md`` states the rules): each
attribute's type from its values, names from the header (or generated), the target and row id checked.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emrml.core.schema import (
    LIMIT_SETTING,
    Attribute,
    AttributeType,
    Schema,
    did_you_mean,
    generated_names,
    header_names,
    name_listing,
    separator_hint,
    shown_name,
    validate_schema,
)
from emrml.core.values import NUMBER_PATTERN, binary_spellings
from emrml.errors import InvalidInputException

#: A column is TEXT when its values have more than this many whitespace-separated words on average ...
TEXT_MEAN_WORDS = 3.0
#: ... or at least this many words on average and more than ``TEXT_DISTINCT_RATIO`` of them distinct.
TEXT_MIN_MEAN_WORDS_IF_DISTINCT = 2.0
TEXT_DISTINCT_RATIO = 0.5
#: Spellings of "no value" that tools write (R's ``NA``, Excel's ``#N/A``, the UCI datasets' ``?``, SAS's
#: ``.``). A column of numbers, or of 0/1 flags, holding a minority of these besides is NUMERIC, or
#: BINARY, and reading counts them as invalid values, as Amazon ML did for any other text there.
MISSING_MARKERS = ("na", "n/a", "#n/a", "nan", "null", "none", "nil", "missing", "?", "-", "--", ".")


def infer_type(values: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> AttributeType:
    """The attribute type of one column of sampled string values; rules in :func:`infer_schema`."""
    column = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, pa.string())
    trimmed = pc.utf8_trim_whitespace(column)
    # Comparing a null yields null, which filter() drops: nulls and empty strings both go.
    present = trimmed.filter(pc.not_equal(trimmed, ""))
    if len(present) == 0:
        return AttributeType.CATEGORICAL
    values = _without_markers(present)
    spellings = pc.unique(pc.utf8_lower(values))
    false_set, true_set = binary_spellings()
    false_forms = pc.sum(pc.is_in(spellings, value_set=false_set)).as_py() or 0
    true_forms = pc.sum(pc.is_in(spellings, value_set=true_set)).as_py() or 0
    if false_forms == 1 and true_forms == 1 and len(spellings) == 2:
        return AttributeType.BINARY
    if _all_numeric(values):
        return AttributeType.NUMERIC
    mean_words = pc.mean(pc.list_value_length(pc.utf8_split_whitespace(present))).as_py()
    distinct_ratio = pc.count_distinct(present).as_py() / len(present)
    if mean_words > TEXT_MEAN_WORDS or (
        mean_words >= TEXT_MIN_MEAN_WORDS_IF_DISTINCT and distinct_ratio > TEXT_DISTINCT_RATIO
    ):
        return AttributeType.TEXT
    return AttributeType.CATEGORICAL


def _without_markers(present: pa.Array) -> pa.Array:
    """``present`` without its missing markers (:data:`MISSING_MARKERS`) when they are a minority: what
    decides between BINARY and NUMERIC. Mostly markers, the values stay whole (reading would count most
    of them invalid and refuse the attribute)."""
    markers = pc.is_in(pc.utf8_lower(present), value_set=pa.array(MISSING_MARKERS))
    count = pc.sum(markers).as_py() or 0
    if count == 0 or 2 * count >= len(present):
        return present
    return present.filter(pc.invert(markers))


def _all_numeric(trimmed: pa.Array) -> bool:
    """Whether every (trimmed, non-null) value is a valid NUMERIC value: the ``emrml.core.values`` rules."""
    if not pc.all(pc.match_substring_regex(trimmed, NUMBER_PATTERN)).as_py():
        return False
    # The pattern admits digit strings too long for a double; those overflow and are invalid.
    return bool(np.isfinite(pc.cast(trimmed, pa.float64()).to_numpy(zero_copy_only=False)).all())


def _refuse_a_header_read_as_a_record(
    values: Sequence[Sequence[str] | pa.ChunkedArray], types: list[AttributeType], names: list[str]
) -> None:
    """Raise ``InvalidInputException`` when the first sample row of data said to have no header looks like
    a header line: every field a name (not blank, not a number, not a missing marker), and some column
    NUMERIC or BINARY below it but not with it. Taken as a record, its words made every column they
    spoiled CATEGORICAL (or TEXT), and the datasource then read the header as one more record."""
    if not values or len(values[0]) < 2:
        return
    first = [_first_value(column) for column in values]
    if not all(_looks_like_a_name(value) for value in first):
        return
    for index, (column, kind) in enumerate(zip(values, types, strict=True)):
        if kind in (AttributeType.NUMERIC, AttributeType.BINARY):
            continue
        below = infer_type(column[1:])
        if below in (AttributeType.NUMERIC, AttributeType.BINARY):
            column_name = f"{names[index]}, {first[index]!r} in that line"
            raise InvalidInputException(
                "cannot infer a schema: the data is said to have no header line (DataFileContainsHeader "
                f"false), but its first record looks like one: its fields are names ({name_listing(first)}), "
                f"and column {index + 1} ({column_name}) is {below} below it but {kind} with it. Set "
                "DataFileContainsHeader to true to take the line as the column names (if it is a record, "
                "write the schema yourself)"
            )


def _first_value(column: Sequence[str] | pa.ChunkedArray) -> str:
    value = column[0].as_py() if isinstance(column, pa.ChunkedArray) else column[0]
    return (value or "").strip()


def _looks_like_a_name(value: str) -> bool:
    return bool(value) and not re.match(NUMBER_PATTERN, value) and value.lower() not in MISSING_MARKERS


def _columns_of(
    rows: Sequence[Sequence[str]] | pa.Table, width: int
) -> Sequence[Sequence[str] | pa.ChunkedArray]:
    """The sample's values column by column, leaving out rows of another width than ``width``."""
    if isinstance(rows, pa.Table):
        if rows.num_columns != width:
            raise InvalidInputException(
                f"cannot infer a schema: the sample has {rows.num_columns} columns and the header {width}"
            )
        return rows.columns
    sample = [row for row in rows if len(row) == width]
    if rows and not sample:
        raise InvalidInputException(
            f"cannot infer a schema: none of the {len(rows)} sample rows has the header's {width} columns "
            f"(the first has {len(rows[0])})"
        )
    return list(zip(*sample, strict=True)) if sample else [() for _ in range(width)]


def check_width(width: int, max_attributes: int | None) -> None:
    """InvalidInputException when data of ``width`` columns has more than ``max_attributes`` (None: no
    limit), which no schema inferred from it could hold."""
    if max_attributes is not None and width > max_attributes:
        raise InvalidInputException(
            f"cannot infer a schema: the data has {width:,} columns; the limit is {max_attributes:,} "
            f"attributes ({LIMIT_SETTING})"
        )


def infer_schema(
    columns: Sequence[str] | None,
    rows: Sequence[Sequence[str]] | pa.Table,
    *,
    target: str | None = None,
    row_id: str | None = None,
    has_header: bool | None = None,
    max_attributes: int | None = None,
    named: tuple[str, str] = ("target", "row_id"),
) -> Schema:
    """Propose a schema from a header and a sample of rows (the caller passes up to ~10,000 rows).

    ``columns`` is the header line's fields, or None for a file without one: the column count is then the
    most common row length and the names are ``Var01``, ``Var02``, … (:func:`generated_names`). Header names
    are trimmed (and a leading byte-order mark dropped); a blank name becomes its ``VarNN`` name, a name
    over 64 characters is cut to 64, and a repeated name gets a ``_2``, ``_3``, … suffix, so the result is
    always a valid schema. Rows with a different field count are ignored (reading would reject them).
    ``rows`` may be an Arrow table of string columns instead, one per column (a file's sample as the reader
    gives it: a tenth of the memory of Python lists of strings, which held 900 MB for 10,000 rows of 1,000
    columns).
    ``has_header`` (default: whether ``columns`` was given) is recorded as ``dataFileContainsHeader``.
    ``max_attributes`` is the attribute limit (``Settings.max_attributes``), None for none.
    ``named``: what the caller calls ``target`` and ``row_id`` (e.g. the API's request members), for the
    error naming one that is not among the columns.

    Types, per column, from its non-empty values (surrounding whitespace ignored):

    1. no value at all → CATEGORICAL;
    2. exactly two spellings, one false and one true form of BINARY (``0 n no f false`` /
       ``1 y yes t true``, any case) → BINARY; so ``0``/``1`` columns are BINARY, while a column holding
       only ``0`` is NUMERIC and one holding only ``no`` is CATEGORICAL;
    3. every value a NUMERIC number (``emrml.core.values`` rules) → NUMERIC;
    4. free text → TEXT: more than 3 whitespace-separated words per value on average, or at least 2 words
       on average with more than half the values distinct;
    5. otherwise → CATEGORICAL.

    Rules 2 and 3 leave out a minority of missing markers (``NA``, ``?``, ``null``, …
    :data:`MISSING_MARKERS`), which reading counts as invalid values.

    ``target`` and ``row_id`` must name columns; a target that would be TEXT becomes CATEGORICAL (a TEXT
    target cannot be trained on). Raises ``InvalidInputException``.
    """
    if has_header is None:
        has_header = columns is not None
    elif has_header and columns is None:
        raise InvalidInputException("has_header is true but no header columns were given")
    if columns is not None:
        width = len(columns)
        if width == 0:
            raise InvalidInputException("cannot infer a schema: the header has no columns")
    elif isinstance(rows, pa.Table) and rows.num_columns:
        width = rows.num_columns
    elif not isinstance(rows, pa.Table) and rows:
        width = Counter(len(row) for row in rows).most_common(1)[0][0]
    else:
        raise InvalidInputException("cannot infer a schema: there is no header and no sample row")
    check_width(width, max_attributes)
    names = header_names(columns) if columns is not None else generated_names(width)
    values = _columns_of(rows, width)
    types = [infer_type(column) for column in values]
    if not has_header:
        _refuse_a_header_read_as_a_record(values, types, names)
    for role, name in zip(named, (target, row_id), strict=True):
        if name is not None and name not in names:
            hint = separator_hint(columns) if columns is not None and len(columns) == 1 else ""
            raise InvalidInputException(
                f"{role} {shown_name(name)} is not one of the columns{did_you_mean(name, names)}; "
                f"the columns are {name_listing(names)}{hint}"
            )
    if target is not None and types[names.index(target)] == AttributeType.TEXT:
        types[names.index(target)] = AttributeType.CATEGORICAL
    schema = Schema(
        attributes=tuple(Attribute(n, t) for n, t in zip(names, types, strict=True)),
        target=target,
        row_id=row_id,
        has_header=has_header,
    )
    validate_schema(schema, source="inferred schema")
    return schema
