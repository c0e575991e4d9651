"""Data schema validation: the error messages of malformed documents, attributes and roles."""

from __future__ import annotations

import json

import pytest
from schema_helpers import OMIT, doc, rejected

from emrml.core.schema import Attribute, Schema, parse_schema, validate_schema
from emrml.errors import InvalidInputException

# --- error messages --------------------------------------------------------------------------------------


def test_malformed_json_names_position() -> None:
    text = '{\n  "version": "1.0",\n  "attributes": []\n  "dataFormat": "CSV"\n}'
    assert rejected(text) == "DataSchema is not valid JSON: Expecting ',' delimiter at line 4 column 3"


def test_source_starts_the_message() -> None:
    assert rejected("", source="s3://b/data.csv.schema").startswith(
        "s3://b/data.csv.schema is not valid JSON"
    )


def test_deeply_nested_json_is_reported_not_crashing() -> None:
    assert "nested too deeply" in rejected("[" * 100_000 + "]" * 100_000)


def test_duplicate_json_key_is_an_error() -> None:
    text = '{"attributes": [{"attributeName": "a", "attributeType": "TEXT"}], "rowId": "a", "rowId": null}'
    assert rejected(text) == "DataSchema repeats the key 'rowId' within one object"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "DataSchema must be a JSON object, got an array"),
        ('"x"', "DataSchema must be a JSON object, got a string"),
        (doc(version="2.0"), 'DataSchema version must be "1.0", got "2.0"'),
        (doc(version=1.0), 'DataSchema version must be "1.0", got 1.0'),
        (doc(dataFormat="JSON"), 'DataSchema dataFormat must be "CSV", got "JSON"'),
        (
            doc(dataFileContainsHeader="yes"),
            'DataSchema dataFileContainsHeader must be true or false, got "yes"',
        ),
        (doc(dataFileContainsHeader=1), "DataSchema dataFileContainsHeader must be true or false, got 1"),
        (
            doc(dataFileContainsHeader=None),
            "DataSchema dataFileContainsHeader must be true or false, got null",
        ),
        (doc(attributes=OMIT), "DataSchema is missing attributes (one entry per CSV column)"),
        (doc(attributes=[]), "DataSchema attributes is empty: it needs one entry per CSV column"),
        (doc(attributes={"a": "TEXT"}), "DataSchema attributes must be a JSON array, got an object"),
        (doc(attributes=None), "DataSchema attributes must be a JSON array, got null"),
    ],
)
def test_top_level_errors(text: str, message: str) -> None:
    assert rejected(text) == message


def test_unknown_top_level_key_is_named_with_a_suggestion() -> None:
    assert rejected(doc(targetAttribute="y")) == (
        "DataSchema has an unknown key 'targetAttribute' (did you mean 'targetAttributeName'?)"
    )


def test_unknown_top_level_key_without_close_match_lists_the_keys() -> None:
    message = rejected(doc(comment="hello"))
    assert message.startswith("DataSchema has an unknown key 'comment' (expected version, rowId, rowWeight")
    assert "excludedAttributeNames)" in message


def test_key_given_as_alias_and_canonical_is_an_error() -> None:
    assert rejected(doc(targetAttributeName="y", targetFieldName="y")) == (
        "DataSchema gives targetAttributeName twice, as 'targetAttributeName' and as 'targetFieldName'"
    )


def attrs(*entries: object) -> str:
    return doc(attributes=list(entries))


A = {"attributeName": "a", "attributeType": "NUMERIC"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (attrs(A, A, A, {"attributeName": "age"}), "DataSchema attributes[3]: missing attributeType"),
        (attrs({"attributeType": "TEXT"}), "DataSchema attributes[0]: missing attributeName"),
        (attrs(A, "age"), "DataSchema attributes[1] must be a JSON object, got a string"),
        (
            attrs({"attributeName": 7, "attributeType": "TEXT"}),
            "DataSchema attributes[0]: attributeName must be a string, got a number",
        ),
        (
            attrs({"attributeName": "age", "attributeType": ["NUMERIC"]}),
            'DataSchema attributes[0] ("age"): attributeType must be a string, got an array',
        ),
        (
            attrs(
                {"attributeName": "a", "attributeType": "TEXT"},
                {"attributeName": "b", "attributeType": "TEXT"},
                {"attributeName": "c", "attributeType": "TEXT"},
                {"attributeName": "age", "attributeType": "INTEGER"},
            ),
            "DataSchema attributes[3] (\"age\"): unknown attributeType 'INTEGER' "
            "(expected BINARY, CATEGORICAL, NUMERIC or TEXT)",
        ),
        (
            attrs({"attributeName": "age", "attributeType": "numeric"}),
            "DataSchema attributes[0] (\"age\"): unknown attributeType 'numeric' "
            "(expected BINARY, CATEGORICAL, NUMERIC or TEXT)",
        ),
        (
            attrs({"attributeName": "a", "attributeType": "NUMERIC", "description": "x"}),
            "DataSchema attributes[0] has an unknown key 'description' "
            "(expected attributeName, attributeType)",
        ),
        (
            attrs({"attributeName": "", "attributeType": "TEXT"}),
            "DataSchema attributes[0]: attributeName is empty",
        ),
        (
            attrs({"attributeName": "   ", "attributeType": "TEXT"}),
            "DataSchema attributes[0]: attributeName is empty",
        ),
        (
            attrs(
                {"attributeName": "a", "attributeType": "TEXT"},
                {"attributeName": "b", "attributeType": "TEXT"},
                {"attributeName": "a", "attributeType": "NUMERIC"},
            ),
            'DataSchema attributes[2] ("a"): attributeName duplicates attributes[0]',
        ),
    ],
)
def test_attribute_entry_errors(text: str, message: str) -> None:
    assert rejected(text) == message


@pytest.mark.parametrize("weighted", ["WEIGHTED_INT_SEQUENCE", "WEIGHTED_STRING_SEQUENCE"])
def test_weighted_sequence_types_are_rejected_specifically(weighted: str) -> None:
    message = rejected(attrs(A, {"fieldName": "F7", "fieldType": weighted}))
    assert message.startswith(f'DataSchema attributes[1] ("F7"): attributeType {weighted} is not supported')


def test_name_longer_than_64_characters() -> None:
    assert parse_schema(attrs({"attributeName": "n" * 64, "attributeType": "TEXT"})).names == ["n" * 64]
    message = rejected(attrs({"attributeName": "n" * 65, "attributeType": "TEXT"}))
    assert (
        message
        == f'DataSchema attributes[0] ("{"n" * 65}"): attributeName is 65 characters long; the limit is 64'
    )


def test_too_many_attributes() -> None:
    many = [{"attributeName": f"a{i}", "attributeType": "NUMERIC"} for i in range(1001)]
    assert (
        rejected(doc(attributes=many), max_attributes=1000)
        == "DataSchema has 1,001 attributes; the limit is 1,000 (the max_attributes setting)"
    )
    assert len(parse_schema(doc(attributes=many[:1000]), max_attributes=1000).attributes) == 1000
    assert rejected(doc(attributes=many[:3]), max_attributes=2).startswith("DataSchema has 3 attributes;")
    # A stored schema, parsed without a limit, loads whatever the limit was when it was accepted.
    assert len(parse_schema(doc(attributes=many)).attributes) == 1001


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (
            {"targetAttributeName": "yy"},
            "DataSchema targetAttributeName 'yy' is not one of the attributes (did you mean 'y'?)",
        ),
        (
            {"targetAttributeName": "zzzz"},
            "DataSchema targetAttributeName 'zzzz' is not one of the attributes",
        ),
        ({"rowId": "ID"}, "DataSchema rowId 'ID' is not one of the attributes (did you mean 'id'?)"),
        ({"rowWeight": "w"}, "DataSchema rowWeight 'w' is not one of the attributes"),
        (
            {"excludedAttributeNames": ["x", "q"]},
            "DataSchema excludedAttributeNames[1] 'q' is not one of the attributes",
        ),
        ({"excludedAttributeNames": ["x", "x"]}, "DataSchema excludedAttributeNames[1] 'x' is listed twice"),
        (
            {"excludedAttributeNames": "x"},
            "DataSchema excludedAttributeNames must be a JSON array of attribute names, got a string",
        ),
        (
            {"excludedAttributeNames": [3]},
            "DataSchema excludedAttributeNames[0] must be a string, got a number",
        ),
        (
            {"targetAttributeName": 2},
            "DataSchema targetAttributeName must be an attribute name or null, got a number",
        ),
        ({"rowId": ["id"]}, "DataSchema rowId must be an attribute name or null, got an array"),
        ({"rowWeight": "id"}, "DataSchema rowWeight 'id' must be a NUMERIC attribute, but it is CATEGORICAL"),
        ({"rowId": "x", "rowWeight": "x"}, "DataSchema rowId 'x' is also the rowWeight"),
        (
            {"targetAttributeName": "id", "rowId": "id"},
            "DataSchema targetAttributeName 'id' is also the rowId",
        ),
        (
            {"targetAttributeName": "x", "rowWeight": "x"},
            "DataSchema targetAttributeName 'x' is also the rowWeight",
        ),
        (
            {"targetAttributeName": "y", "excludedAttributeNames": ["y"]},
            "DataSchema targetAttributeName 'y' is also listed in excludedAttributeNames",
        ),
    ],
)
def test_role_errors(top: dict[str, object], message: str) -> None:
    assert rejected(doc(**top)) == message


def test_text_target_is_rejected() -> None:
    text = attrs({"attributeName": "msg", "attributeType": "TEXT"})
    message = rejected(json.dumps({**json.loads(text), "targetAttributeName": "msg"}))
    assert message.startswith("DataSchema targetAttributeName 'msg' is TEXT; a target must be BINARY")


def test_valid_roles_are_kept() -> None:
    schema = parse_schema(
        doc(targetAttributeName="y", rowId="id", rowWeight="x", excludedAttributeNames=["id"])
    )
    assert (schema.target, schema.row_id, schema.row_weight, schema.excluded) == ("y", "id", "x", ("id",))
    assert schema.input_attributes == []


def test_validate_schema_checks_hand_built_schemas() -> None:
    bad_type = Schema(attributes=(Attribute("a", "INT"),))  # type: ignore[arg-type]
    with pytest.raises(
        InvalidInputException, match=r"custom attributes\[0\] \(\"a\"\): unknown attributeType"
    ):
        validate_schema(bad_type, source="custom")
    with pytest.raises(InvalidInputException, match=r"^DataSchema has no attributes"):
        validate_schema(Schema(attributes=()))
