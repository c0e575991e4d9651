"""Data schema parsing: the shared datasets' schema files, keys, aliases and defaults, and the round trip
of any valid schema."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schema_helpers import DATASET_NAMES, C, N, T, dataset_sample, dataset_schema, doc

from emrml.core.schema import MAX_NAME_LENGTH, Attribute, AttributeType, Schema, parse_schema, stored_target

# --- the shared datasets' schema files ---------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_every_dataset_schema_parses_and_round_trips(name: str) -> None:
    schema = dataset_schema(name)
    header, _ = dataset_sample(name)
    assert schema.names == header
    assert schema.has_header
    assert schema.target in schema
    assert parse_schema(schema.to_json()) == schema


def test_bike_sharing_roles_are_read() -> None:
    schema = dataset_schema("bike_sharing_hourly")
    assert schema.row_id == "instant"
    assert schema.target == "cnt"
    assert schema.row_weight is None
    assert schema.excluded == ("dteday", "casual", "registered")
    assert "instant" not in [a.name for a in schema.input_attributes]


def test_absent_optional_keys_take_their_defaults() -> None:
    schema = parse_schema('{"attributes": [{"attributeName": "a", "attributeType": "TEXT"}]}')
    assert schema == Schema(attributes=(Attribute("a", T),))
    assert schema.has_header is False


def test_null_roles_and_null_exclusions_mean_unset() -> None:
    text = doc(rowId=None, rowWeight=None, targetAttributeName=None, excludedAttributeNames=None)
    schema = parse_schema(text)
    assert (schema.row_id, schema.row_weight, schema.target, schema.excluded) == (None, None, None, ())


def test_api_reference_aliases_map_to_canonical_keys() -> None:
    aliased = {
        "version": "1.0",
        "recordAnnotationFieldName": "F1",
        "recordWeightFieldName": "F2",
        "targetFieldName": "F3",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "variables": [
            {"fieldName": "F1", "fieldType": "TEXT"},
            {"fieldName": "F2", "fieldType": "NUMERIC"},
            {"fieldName": "F3", "fieldType": "CATEGORICAL"},
            {"fieldName": "F4", "fieldType": "NUMERIC"},
            {"fieldName": "F5", "fieldType": "CATEGORICAL"},
            {"fieldName": "F6", "fieldType": "TEXT"},
        ],
        "excludedVariableNames": ["F6"],
    }
    schema = parse_schema(json.dumps(aliased))
    assert schema == Schema(
        attributes=(
            Attribute("F1", T),
            Attribute("F2", N),
            Attribute("F3", C),
            Attribute("F4", N),
            Attribute("F5", C),
            Attribute("F6", T),
        ),
        target="F3",
        row_id="F1",
        row_weight="F2",
        excluded=("F6",),
        has_header=True,
    )
    assert json.loads(schema.to_json())["targetAttributeName"] == "F3"


@pytest.mark.parametrize(
    ("flag", "expected"), [("true", True), ("FALSE", False), (True, True), (False, False)]
)
def test_header_flag_accepts_booleans_and_quoted_booleans(flag: object, expected: bool) -> None:
    assert parse_schema(doc(dataFileContainsHeader=flag)).has_header is expected


def test_byte_order_mark_is_ignored() -> None:
    assert parse_schema("\ufeff" + doc()) == parse_schema(doc())


# --- round trip ------------------------------------------------------------------------------------------

names_strategy = st.text(min_size=1, max_size=MAX_NAME_LENGTH).filter(lambda s: bool(s.strip()))


@st.composite
def valid_schemas(draw: st.DrawFn) -> Schema:
    names = draw(st.lists(names_strategy, min_size=1, max_size=12, unique=True))
    types = draw(st.lists(st.sampled_from(list(AttributeType)), min_size=len(names), max_size=len(names)))
    attributes = tuple(Attribute(n, t) for n, t in zip(names, types, strict=True))
    pool = list(names)
    target = draw(st.none() | st.sampled_from([a.name for a in attributes if a.type != T] or [None]))
    if target is not None:
        pool.remove(target)
    row_id = draw(st.none() | st.sampled_from(pool or [None]))
    numeric = [a.name for a in attributes if a.type == N and a.name not in (target, row_id)]
    row_weight = draw(st.none() | st.sampled_from(numeric or [None]))
    excluded = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool))) if pool else []
    return Schema(
        attributes=attributes,
        target=target,
        row_id=row_id,
        row_weight=row_weight,
        excluded=tuple(excluded),
        has_header=draw(st.booleans()),
    )


@settings(max_examples=200)
@given(valid_schemas())
def test_valid_schemas_round_trip(schema: Schema) -> None:
    text = schema.to_json()
    assert set(json.loads(text)) == {
        "version",
        "rowId",
        "rowWeight",
        "targetAttributeName",
        "dataFormat",
        "dataFileContainsHeader",
        "attributes",
        "excludedAttributeNames",
    }
    assert parse_schema(text) == schema
    # Read from its line, as Describe* answers read it; another spelling of the schema is read whole.
    assert stored_target(text) == schema.target
    assert stored_target(json.dumps(json.loads(text))) == schema.target
