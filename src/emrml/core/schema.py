"""The Amazon ML data schema: parse and validate its JSON, check data against it (``core.inference``
infers one from a sample).

Spec sections 5.2, 5.3 and 11; ``docs/schema.md`` states every rule. A ``Schema`` is immutable;
``Schema.to_json()`` gives the service-generated form with all eight keys, and
``parse_schema(schema.to_json()) == schema`` for every valid schema.

Errors are ``InvalidInputException`` (a bad schema or inference request) or ``DataError`` (data that does
not fit its schema), each naming the source, the JSON key or file, and the exact problem.
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from emrml.core.json_text import load_json
from emrml.errors import DataError, InvalidInputException

#: Longest attribute name, in characters (spec 5.2).
MAX_NAME_LENGTH = 64
#: Amazon ML's attribute limit per schema (spec 11): the default of ``Settings.max_attributes``.
DEFAULT_MAX_ATTRIBUTES = 1000
#: What an error about the limit points to: it is adjustable, and those who meet it may raise it.
LIMIT_SETTING = "the max_attributes setting"


class AttributeType(StrEnum):
    BINARY = "BINARY"
    CATEGORICAL = "CATEGORICAL"
    NUMERIC = "NUMERIC"
    TEXT = "TEXT"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: AttributeType


@dataclass(frozen=True)
class Schema:
    """Column layout and roles of a datasource's CSV files.

    ``attributes`` are in column order. ``target``, ``row_id`` and ``row_weight`` name attributes or are None.
    """

    attributes: tuple[Attribute, ...]
    target: str | None = None
    row_id: str | None = None
    row_weight: str | None = None
    excluded: tuple[str, ...] = ()
    has_header: bool = False
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {a.name: i for i, a in enumerate(self.attributes)})

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def attribute(self, name: str) -> Attribute:
        return self.attributes[self._index[name]]

    def position(self, name: str) -> int:
        return self._index[name]

    @property
    def input_attributes(self) -> list[Attribute]:
        """Attributes a model may use: all but target, rowId, rowWeight and excluded attributes."""
        roles = {self.target, self.row_id, self.row_weight, *self.excluded}
        return [a for a in self.attributes if a.name not in roles]

    def to_dict(self) -> dict[str, object]:
        return {
            "version": "1.0",
            "rowId": self.row_id,
            "rowWeight": self.row_weight,
            "targetAttributeName": self.target,
            "dataFormat": "CSV",
            "dataFileContainsHeader": self.has_header,
            "attributes": [{"attributeName": a.name, "attributeType": a.type.value} for a in self.attributes],
            "excludedAttributeNames": list(self.excluded),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


#: How ``Schema.to_json`` writes the target: a top-level key, two spaces in (nested keys are deeper).
_STORED_TARGET = '\n  "targetAttributeName": '


def stored_target(text: str | None) -> str | None:
    """The target attribute (None: none, or no schema stored yet) of a schema as ``Schema.to_json`` wrote
    it, read from its own line: Describe results name every listed object's target, and a whole schema of
    thousands of attributes takes milliseconds to read. Another text is read whole."""
    if not text:
        return None
    at = text.find(_STORED_TARGET)
    if at < 0:
        target = json.loads(text).get("targetAttributeName")
    else:
        target, _ = json.JSONDecoder().raw_decode(text, at + len(_STORED_TARGET))
    return target if isinstance(target, str) else None


# --- Parsing and validation -------------------------------------------------------------------------------

_TOP_LEVEL_KEYS = (
    "version",
    "rowId",
    "rowWeight",
    "targetAttributeName",
    "dataFormat",
    "dataFileContainsHeader",
    "attributes",
    "excludedAttributeNames",
)
# The API Reference's DataSchema example spells the keys differently (spec 5.2).
_TOP_LEVEL_ALIASES = {
    "recordAnnotationFieldName": "rowId",
    "recordWeightFieldName": "rowWeight",
    "targetFieldName": "targetAttributeName",
    "variables": "attributes",
    "excludedVariableNames": "excludedAttributeNames",
}
_ATTRIBUTE_KEYS = ("attributeName", "attributeType")
_ATTRIBUTE_ALIASES = {"fieldName": "attributeName", "fieldType": "attributeType"}
_UNSUPPORTED_TYPES = ("WEIGHTED_INT_SEQUENCE", "WEIGHTED_STRING_SEQUENCE")
_TYPE_LIST = "BINARY, CATEGORICAL, NUMERIC or TEXT"
_TARGET_TYPES = (AttributeType.BINARY, AttributeType.CATEGORICAL, AttributeType.NUMERIC)
# How much of an offending value or name an error message quotes.
_SHOWN_CHARS = 80
_SHOWN_NAMES = 20


def parse_schema(text: str, *, source: str = "DataSchema", max_attributes: int | None = None) -> Schema:
    """Parse and validate a data schema JSON document (spec 5.2).

    ``source`` starts every error message (e.g. the schema file's location). ``max_attributes`` is the
    attribute limit (spec 11, ``Settings.max_attributes``), given by the code that receives a schema from a
    user (a request, a schema file, an inference, a SQL query); a stored schema (a datasource's, a
    model's) was checked when it was accepted, and is parsed without one: a model trained under a higher
    limit still loads after the setting is lowered.

    Absent ``version``/``dataFormat`` default to ``"1.0"``/``"CSV"``, absent
    ``dataFileContainsHeader`` to false; absent or null ``rowId``/``rowWeight``/``targetAttributeName``
    mean unset and absent or null ``excludedAttributeNames`` means none. The API Reference's key aliases
    are accepted; any other key is an error. Raises ``InvalidInputException``.
    """
    document = _load_json(text, source)
    if not isinstance(document, dict):
        raise InvalidInputException(f"{source} must be a JSON object, got {json_type(document)}")
    top = _canonical_keys(document, _TOP_LEVEL_KEYS, _TOP_LEVEL_ALIASES, where=source)
    _expect_constant(top, "version", "1.0", source)
    _expect_constant(top, "dataFormat", "CSV", source)
    schema = Schema(
        attributes=_parse_attributes(top, source, max_attributes),
        target=_parse_role(top, "targetAttributeName", source),
        row_id=_parse_role(top, "rowId", source),
        row_weight=_parse_role(top, "rowWeight", source),
        excluded=_parse_excluded(top, source),
        has_header=_parse_header_flag(top.get("dataFileContainsHeader", False), source),
    )
    validate_schema(schema, source=source, max_attributes=max_attributes)
    return schema


def validate_schema(schema: Schema, *, source: str = "DataSchema", max_attributes: int | None = None) -> None:
    """Check the rules a parsed or hand-built ``Schema`` must obey; raise ``InvalidInputException``.

    ``max_attributes``: as for :func:`parse_schema`.
    Names: non-blank, at most 64 characters, unique. Roles: ``target``, ``row_id``, ``row_weight`` and every
    ``excluded`` entry name an attribute; excluded names are listed once; the row weight is NUMERIC; the
    target is not TEXT and is not also the row id, row weight or excluded; the row id is not the row weight.
    """
    _check_attribute_count(len(schema.attributes), source, max_attributes)
    if not schema.attributes:
        raise InvalidInputException(f"{source} has no attributes: it needs one attribute per CSV column")
    first_index: dict[str, int] = {}
    for index, attribute in enumerate(schema.attributes):
        where = f"{source} attributes[{index}]"
        name = attribute.name
        if not name.strip():
            raise InvalidInputException(f"{where}: attributeName is empty")
        where = f"{where} ({_quote_name(name)})"
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidInputException(
                f"{where}: attributeName is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
            )
        if name in first_index:
            raise InvalidInputException(f"{where}: attributeName duplicates attributes[{first_index[name]}]")
        first_index[name] = index
        _attribute_type(attribute.type, where)
    names = list(first_index)
    for key, value in (
        ("targetAttributeName", schema.target),
        ("rowId", schema.row_id),
        ("rowWeight", schema.row_weight),
    ):
        if value is not None and value not in first_index:
            raise InvalidInputException(
                f"{source} {key} {shown_name(value)} is not one of the attributes{did_you_mean(value, names)}"
            )
    listed: set[str] = set()
    for index, name in enumerate(schema.excluded):
        where = f"{source} excludedAttributeNames[{index}] {shown_name(name)}"
        if name not in first_index:
            raise InvalidInputException(f"{where} is not one of the attributes{did_you_mean(name, names)}")
        if name in listed:
            raise InvalidInputException(f"{where} is listed twice")
        listed.add(name)
    _check_roles(schema, source)


def _check_roles(schema: Schema, source: str) -> None:
    if schema.row_weight is not None:
        weight_type = schema.attribute(schema.row_weight).type
        if weight_type != AttributeType.NUMERIC:
            raise InvalidInputException(
                f"{source} rowWeight {shown_name(schema.row_weight)} must be a NUMERIC attribute, "
                f"but it is {weight_type}"
            )
    if schema.row_id is not None and schema.row_id == schema.row_weight:
        raise InvalidInputException(f"{source} rowId {shown_name(schema.row_id)} is also the rowWeight")
    target = schema.target
    if target is None:
        return
    where = f"{source} targetAttributeName {shown_name(target)}"
    if target == schema.row_id:
        raise InvalidInputException(f"{where} is also the rowId")
    if target == schema.row_weight:
        raise InvalidInputException(f"{where} is also the rowWeight")
    if target in schema.excluded:
        raise InvalidInputException(f"{where} is also listed in excludedAttributeNames")
    target_type = schema.attribute(target).type
    if target_type not in _TARGET_TYPES:
        raise InvalidInputException(
            f"{where} is {target_type}; a target must be BINARY (binary model), "
            "CATEGORICAL (multiclass model) or NUMERIC (regression model)"
        )


def _load_json(text: str, source: str) -> object:
    # A byte-order mark is what some editors put before the JSON; it is not part of the document.
    return load_json(
        text.removeprefix("\ufeff"),
        source,
        repeated=lambda key: f"{source} repeats the key {key!r} within one object",
    )


def _canonical_keys(
    obj: Mapping[str, object], known: tuple[str, ...], aliases: Mapping[str, str], *, where: str
) -> dict[str, object]:
    """``obj`` with aliases renamed to canonical keys; unknown keys and a key given twice are errors."""
    result: dict[str, object] = {}
    spelled: dict[str, str] = {}
    for key, value in obj.items():
        canonical = aliases.get(key, key)
        if canonical not in known:
            hint = did_you_mean(key, [*known, *aliases]) or f" (expected {', '.join(known)})"
            raise InvalidInputException(f"{where} has an unknown key {key!r}{hint}")
        if canonical in result:
            raise InvalidInputException(
                f"{where} gives {canonical} twice, as {spelled[canonical]!r} and as {key!r}"
            )
        result[canonical] = value
        spelled[canonical] = key
    return result


def _expect_constant(top: Mapping[str, object], key: str, expected: str, source: str) -> None:
    if key in top and not (isinstance(top[key], str) and top[key] == expected):
        raise InvalidInputException(f"{source} {key} must be {json.dumps(expected)}, got {_show(top[key])}")


def _parse_header_flag(value: object, source: str) -> bool:
    if isinstance(value, bool):
        return value
    # Hand-written schemas sometimes quote the boolean; the meaning is unambiguous, so accept it.
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInputException(f"{source} dataFileContainsHeader must be true or false, got {_show(value)}")


def _parse_attributes(
    top: Mapping[str, object], source: str, max_attributes: int | None
) -> tuple[Attribute, ...]:
    if "attributes" not in top:
        raise InvalidInputException(f"{source} is missing attributes (one entry per CSV column)")
    entries = top["attributes"]
    if not isinstance(entries, list):
        raise InvalidInputException(f"{source} attributes must be a JSON array, got {json_type(entries)}")
    if not entries:
        raise InvalidInputException(f"{source} attributes is empty: it needs one entry per CSV column")
    _check_attribute_count(len(entries), source, max_attributes)
    return tuple(_parse_attribute(entry, f"{source} attributes[{i}]") for i, entry in enumerate(entries))


def _parse_attribute(entry: object, where: str) -> Attribute:
    if not isinstance(entry, dict):
        raise InvalidInputException(f"{where} must be a JSON object, got {json_type(entry)}")
    fields = _canonical_keys(entry, _ATTRIBUTE_KEYS, _ATTRIBUTE_ALIASES, where=where)
    for key in _ATTRIBUTE_KEYS:
        if key not in fields:
            raise InvalidInputException(f"{where}: missing {key}")
    name = fields["attributeName"]
    if not isinstance(name, str):
        raise InvalidInputException(f"{where}: attributeName must be a string, got {json_type(name)}")
    if name.strip():
        where = f"{where} ({_quote_name(name)})"
    return Attribute(name, _attribute_type(fields["attributeType"], where))


def _attribute_type(value: object, where: str) -> AttributeType:
    if not isinstance(value, str):
        raise InvalidInputException(f"{where}: attributeType must be a string, got {json_type(value)}")
    if value in _UNSUPPORTED_TYPES:
        raise InvalidInputException(
            f"{where}: attributeType {value} is not supported (expected {_TYPE_LIST}; "
            "a sequence of words can be a TEXT attribute)"
        )
    try:
        return AttributeType(value)
    except ValueError:
        raise InvalidInputException(
            f"{where}: unknown attributeType {shown_name(value)} (expected {_TYPE_LIST})"
        ) from None


def _parse_role(top: Mapping[str, object], key: str, source: str) -> str | None:
    value = top.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InvalidInputException(f"{source} {key} must be an attribute name or null, got {json_type(value)}")


def _parse_excluded(top: Mapping[str, object], source: str) -> tuple[str, ...]:
    value = top.get("excludedAttributeNames")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInputException(
            f"{source} excludedAttributeNames must be a JSON array of attribute names, got {json_type(value)}"
        )
    for index, name in enumerate(value):
        if not isinstance(name, str):
            raise InvalidInputException(
                f"{source} excludedAttributeNames[{index}] must be a string, got {json_type(name)}"
            )
    return tuple(value)


def _check_attribute_count(count: int, source: str, max_attributes: int | None) -> None:
    if max_attributes is not None and count > max_attributes:
        raise InvalidInputException(
            f"{source} has {count:,} attributes; the limit is {max_attributes:,} ({LIMIT_SETTING})"
        )


def json_type(value: object) -> str:
    """How a JSON value is named in error messages: "an object", "a string", "null", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _show(value: object) -> str:
    return _clip(json.dumps(value, ensure_ascii=False))


def shown_name(name: str) -> str:
    return repr(_clip(name))


def _quote_name(name: str) -> str:
    return json.dumps(_clip(name), ensure_ascii=False)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, ignoring case; empty when none is close."""
    by_folded = {c.casefold(): c for c in candidates}
    match = difflib.get_close_matches(word.casefold(), list(by_folded), n=1)
    return f" (did you mean {by_folded[match[0]]!r}?)" if match else ""


def name_listing(names: Sequence[str]) -> str:
    shown = ", ".join(shown_name(n) for n in names[:_SHOWN_NAMES])
    more = len(names) - _SHOWN_NAMES
    return f"{shown}, … ({more} more)" if more > 0 else shown


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# --- Data against the schema ------------------------------------------------------------------------------


def generated_names(count: int) -> list[str]:
    """Names for the columns of a file without a header: ``Var01``, ``Var02``, … as the console showed.

    Numbers are zero-padded to at least two digits, more when there are over 99 columns, so the names sort
    in column order.
    """
    width = max(2, len(str(count)))
    return [f"Var{i:0{width}d}" for i in range(1, count + 1)]


def header_names(header: Sequence[str]) -> list[str]:
    """The attribute names a header line's fields make: trimmed (a leading byte-order mark dropped), a blank
    name its ``VarNN`` name (:func:`generated_names`), a name over :data:`MAX_NAME_LENGTH` characters cut,
    and a repeated name given a ``_2``, ``_3``, … suffix, so that they are always valid and distinct."""
    fallback = generated_names(len(header))
    names: list[str] = []
    taken: set[str] = set()
    for index, raw in enumerate(header):
        text = raw.removeprefix("\ufeff") if index == 0 else raw
        base = text.strip()[:MAX_NAME_LENGTH] or fallback[index]
        name, copy = base, 1
        while name in taken:
            copy += 1
            suffix = f"_{copy}"
            name = base[: MAX_NAME_LENGTH - len(suffix)] + suffix
        taken.add(name)
        names.append(name)
    return names


#: Held while raising the csv module's field size limit (``record_fields``).
_FIELD_LIMIT_LOCK = threading.Lock()


def record_fields(text: str) -> list[str]:
    """The fields of one record given as a CSV line (a stream's record, a record pasted in the console), read
    as a CSV file's records are: a quoted field may hold commas, quotes and line breaks. One line break at
    the end is allowed; raises ``ValueError`` with the reason when the text holds more than one record.

    A field may be as long as the text: the same record given as JSON is read whatever the length of its
    values, and a record of the same values must not be refused as CSV."""
    import csv
    import io

    with _FIELD_LIMIT_LOCK:
        # The csv module's limit on a field (128 Ki characters by default) guards readers of files of
        # unknown size; a field of this text, already in memory, is no larger than the text. The limit is
        # process-wide: raised only, under a lock, so that no other reader lowers it under this one.
        if csv.field_size_limit() < len(text):
            csv.field_size_limit(len(text))
    try:
        rows = list(csv.reader(io.StringIO(text.removesuffix("\n").removesuffix("\r"), newline="")))
    except csv.Error as exc:
        raise ValueError(f"the CSV line cannot be read: {exc}") from None
    if len(rows) > 1:
        raise ValueError(f"the text holds {len(rows)} CSV lines, not one record")
    return rows[0] if rows else []


#: Separators of delimited files that are not CSV, with the names messages give them.
OTHER_SEPARATORS = {";": "';'", "\t": "tab", "|": "'|'"}


def separator_hint(fields: Sequence[str], expected: int | None = None) -> str:
    """A sentence for a message about a line of ``fields`` (parsed as CSV) that looks separated by another
    character: it has fewer fields than ``expected`` (or than 2), and splitting them by ';', a tab or '|'
    gives ``expected`` fields (or more than one per field). Empty when nothing points to that."""
    if expected is not None and len(fields) >= expected:
        return ""
    for separator, name in OTHER_SEPARATORS.items():
        count = sum(len(field.split(separator)) for field in fields)
        if count > len(fields) and (expected is None or count == expected):
            return (
                f" (the line looks {name}-separated: emrml reads comma-separated files, as Amazon ML did; "
                "convert the file to CSV)"
            )
    return ""


def check_first_record(schema: Schema, record: Sequence[str], *, file: str) -> None:
    """Raise ``DataError`` when the first record of a file the schema says has no header is a header: its
    fields are the schema's attribute names, in order. Read as data it would be one more record, of
    invalid numbers and an invalid target, that nothing reports."""
    if schema.has_header or len(record) != len(schema.attributes):
        return
    names = [field.strip() for field in record]
    names[0] = names[0].removeprefix("\ufeff").strip()
    if names == list(schema.names):
        raise DataError(
            f"file {file} line 1 is a header (its fields are the schema's attribute names), but the schema's "
            "dataFileContainsHeader is false: set it to true, or the header would be read as a record"
        )


def _looks_like_a_record(schema: Schema, names: Sequence[str]) -> bool:
    """Whether a first line (of as many fields as attributes) names no attribute and holds a number under
    some NUMERIC attribute: a record where a header was expected."""
    from emrml.core.values import InvalidValue, numeric_value

    if any(name in schema for name in names):
        return False
    for name, attribute in zip(names, schema.attributes, strict=True):
        if attribute.type == AttributeType.NUMERIC and name:
            try:
                numeric_value(name)
            except InvalidValue:
                continue
            return True
    return False


def check_header(schema: Schema, header: Sequence[str], *, file: str) -> None:
    """Raise ``DataError`` unless ``file``'s header line names the schema's attributes, in order.

    Columns map to attributes by position, so a header whose names differ from the schema's (another
    spelling, another order, another file's schema) would silently feed each attribute the wrong column.
    Surrounding whitespace is ignored; case is not. The names :func:`header_names` makes of the header (a
    repeated name with its ``_2`` suffix, a blank one as ``VarNN``: the names of a schema inferred from the
    file) match too. When the counts differ the message lists the names on either side that have no
    counterpart; when they agree it lists each column whose name differs.
    """
    expected = len(schema.attributes)
    names = [h.strip() for h in header]
    if names == list(schema.names) or header_names(header) == list(schema.names):
        return  # the second: the names a schema inferred from this header gives its columns
    if len(header) != expected:
        heading = set(names)
        unknown = [h for h in header if h.strip() not in schema]
        absent = [n for n in schema.names if n not in heading]
        details = ""
        if unknown:
            details += f"; header columns not in the schema: {name_listing(unknown)}"
        if absent:
            details += f"; attributes not in the header: {name_listing(absent)}"
        raise DataError(
            f"file {file} line 1: the schema has {_plural(expected, 'attribute')} "
            f"but the header has {_plural(len(header), 'column')}{separator_hint(header, expected)}{details}"
        )
    differences = [
        f"column {i + 1} is {name!r} in the header but {attribute!r} in the schema"
        for i, (name, attribute) in enumerate(zip(names, schema.names, strict=True))
        if name != attribute
    ]
    shown = "; ".join(differences[:5]) + (
        f"; and {len(differences) - 5} more" if len(differences) > 5 else ""
    )
    if sorted(names) == sorted(schema.names):
        fix = (
            "To fix it, list the schema's attributes in the header's order (columns map to attributes by "
            "position)"
        )
    elif _looks_like_a_record(schema, names):
        # A file cut out of a larger one (split -l) keeps the header in its first part only.
        fix = (
            "The line looks like a record (numbers under NUMERIC attributes, no attribute's name): when "
            "dataFileContainsHeader is true every file starts with the header line, so add it to this "
            "file, or remove it from every file and set dataFileContainsHeader to false"
        )
    else:
        fix = (
            "To fix it, give the schema's attributes the header's names, in the header's order, or set "
            "dataFileContainsHeader to false if the first line is data"
        )
    raise DataError(
        f"file {file} line 1: the header's column names differ from the schema's attribute names: "
        f"{shown}. {fix}"
    )
