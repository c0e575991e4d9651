"""Data schema: parsing and validation messages, checks of data against a schema, and inference."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrml.core.inference import infer_schema, infer_type
from emrml.core.schema import (
    MAX_NAME_LENGTH,
    Attribute,
    AttributeType,
    Schema,
    check_first_record,
    check_header,
    generated_names,
    header_names,
    parse_schema,
    stored_target,
    validate_schema,
)
from emrml.core.values import InvalidValue, numeric_value
from emrml.errors import DataError, InvalidInputException

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
DATASET_NAMES = ["bank_marketing", "bike_sharing_hourly", "california_housing", "sms_spam", "wine_quality"]
SAMPLE_ROWS = 10_000

B, C, N, T = AttributeType.BINARY, AttributeType.CATEGORICAL, AttributeType.NUMERIC, AttributeType.TEXT


@cache
def dataset_schema(name: str) -> Schema:
    path = DATASETS / name / "data.csv.schema"
    return parse_schema(path.read_text(), source=str(path))


@cache
def dataset_sample(name: str) -> tuple[list[str], list[list[str]]]:
    with open(DATASETS / name / "data.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [row for _, row in zip(range(SAMPLE_ROWS), reader, strict=False)]
    return header, rows


def inferred(name: str, **kwargs: object) -> Schema:
    header, rows = dataset_sample(name)
    return infer_schema(header, rows, **kwargs)  # type: ignore[arg-type]


def types_of(schema: Schema) -> dict[str, AttributeType]:
    return {a.name: a.type for a in schema.attributes}


def doc(**top: object) -> str:
    """A schema document: two attributes (id CATEGORICAL, y BINARY) overridden by ``top``."""
    base: dict[str, object] = {
        "version": "1.0",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "id", "attributeType": "CATEGORICAL"},
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
    base.update(top)
    return json.dumps({k: v for k, v in base.items() if v is not OMIT})


OMIT = object()


def rejected(text: str, **kwargs: object) -> str:
    with pytest.raises(InvalidInputException) as info:
        parse_schema(text, **kwargs)  # type: ignore[arg-type]
    return info.value.message


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


# --- data against the schema -----------------------------------------------------------------------------


def test_check_header_accepts_the_schemas_names_in_order() -> None:
    schema = dataset_schema("wine_quality")
    header, _ = dataset_sample("wine_quality")
    check_header(schema, header, file="data.csv")
    check_header(schema, [f" {h} " for h in header], file="data.csv")  # spaces around names are not names


def test_check_header_names_each_column_that_differs() -> None:
    schema = dataset_schema("wine_quality")
    header, _ = dataset_sample("wine_quality")
    renamed = [h for h in header if h != "pH"] + ["colour"]
    with pytest.raises(DataError) as info:
        check_header(schema, renamed, file="w.csv")
    message = info.value.message
    assert message.startswith("file w.csv line 1: the header's column names differ from the schema's")
    assert "column 10 is 'sulphates' in the header but 'pH' in the schema" in message
    assert "column 13 is 'colour' in the header but" in message
    assert message.endswith("or set dataFileContainsHeader to false if the first line is data")
    with pytest.raises(DataError, match=r"column 1 is 'C0' in the header but 'c0'.*and 8 more\."):
        check_header(
            Schema(tuple(Attribute(f"c{i}", N) for i in range(13))), [f"C{i}" for i in range(13)], file="x"
        )


def test_check_header_of_a_file_that_starts_with_a_record_says_to_add_the_header() -> None:
    # A file cut out of a larger one (split -l) has no header: its first record was compared name by name
    # and the advice was to set dataFileContainsHeader to false, which the other files' headers forbid.
    schema = dataset_schema("wine_quality")
    _, rows = dataset_sample("wine_quality")
    with pytest.raises(DataError) as info:
        check_header(schema, rows[5], file="part-ab")
    message = info.value.message
    assert message.startswith("file part-ab line 1: the header's column names differ")
    assert message.endswith(
        ". The line looks like a record (numbers under NUMERIC attributes, no attribute's name): when "
        "dataFileContainsHeader is true every file starts with the header line, so add it to this file, "
        "or remove it from every file and set dataFileContainsHeader to false"
    )


def test_check_header_of_a_file_separated_by_another_character_says_so() -> None:
    schema = dataset_schema("wine_quality")
    header, _ = dataset_sample("wine_quality")
    for separator, name in ((";", "';'"), ("\t", "tab"), ("|", "'|'")):
        with pytest.raises(DataError) as info:
            check_header(schema, [separator.join(header)], file="w.csv")
        assert info.value.message.startswith(
            "file w.csv line 1: the schema has 13 attributes but the header has 1 column (the line looks "
            f"{name}-separated: emrml reads comma-separated files, as Amazon ML did; convert the file to CSV)"
        )
    # A header short of columns for another reason gets no such guess.
    with pytest.raises(DataError) as info:
        check_header(schema, header[:5], file="w.csv")
    assert "separated" not in info.value.message
    with pytest.raises(InvalidInputException, match="the line looks ';'-separated"):
        infer_schema([";".join(header)], [], target="quality")


def test_check_first_record_refuses_a_header_the_schema_does_not_announce() -> None:
    schema = Schema(tuple(Attribute(n, t) for n, t in (("x", N), ("c", C), ("y", B))), target="y")
    with pytest.raises(DataError) as info:
        check_first_record(schema, ["\ufeffx", " c", "y"], file="d.csv")
    assert info.value.message == (
        "file d.csv line 1 is a header (its fields are the schema's attribute names), but the schema's "
        "dataFileContainsHeader is false: set it to true, or the header would be read as a record"
    )
    check_first_record(schema, ["1.5", "a", "1"], file="d.csv")  # data: no error
    check_first_record(schema, ["x", "c"], file="d.csv")  # another width: the record check reports it
    with_header = Schema(schema.attributes, target="y", has_header=True)
    check_first_record(with_header, ["x", "c", "y"], file="d.csv")  # check_header's business


def test_check_header_accepts_the_names_inference_gives_a_header() -> None:
    header = ["\ufeffx", "x", " ", "y"]
    schema = infer_schema(header, [["1", "2", "a", "0"], ["3", "4", "b", "1"]], target="y")
    assert schema.names == ["x", "x_2", "Var03", "y"]
    check_header(schema, header, file="f.csv")  # no error
    assert header_names(header) == schema.names
    with pytest.raises(DataError, match="column 2 is 'x' in the header but 'x_3' in the schema"):
        check_header(Schema(tuple(Attribute(n, N) for n in ["x", "x_3", "Var03", "y"])), header, file="f")


def test_check_header_in_another_order_says_to_reorder() -> None:
    schema = dataset_schema("wine_quality")
    header, _ = dataset_sample("wine_quality")
    swapped = [header[1], header[0], *header[2:]]
    with pytest.raises(DataError) as info:
        check_header(schema, swapped, file="w.csv")
    assert info.value.message.endswith(
        "list the schema's attributes in the header's order (columns map to attributes by position)"
    )
    assert "column 1 is " in info.value.message and "column 3" not in info.value.message


def test_check_header_count_mismatch_names_the_gap() -> None:
    schema = dataset_schema("wine_quality")
    header, _ = dataset_sample("wine_quality")
    with pytest.raises(DataError) as info:
        check_header(schema, [h for h in header if h != "pH"] + ["colour", "grape"], file="w.csv")
    assert info.value.message == (
        "file w.csv line 1: the schema has 13 attributes but the header has 14 columns; "
        "header columns not in the schema: 'colour', 'grape'; attributes not in the header: 'pH'"
    )
    with pytest.raises(
        DataError, match=r"^file w\.csv line 1: the schema has 13 attributes but the header has 12"
    ):
        check_header(schema, header[:-1], file="w.csv")


# --- inference -------------------------------------------------------------------------------------------


def test_bank_marketing_inference_matches_its_schema_file() -> None:
    assert inferred("bank_marketing", target="y") == dataset_schema("bank_marketing")


def test_sms_spam_inference() -> None:
    schema = inferred("sms_spam", target="is_spam")
    assert types_of(schema) == {"is_spam": B, "message": T}
    assert schema.target == "is_spam"


def test_wine_quality_inference() -> None:
    types = types_of(inferred("wine_quality", target="quality"))
    assert types.pop("color") == C
    # The schema file declares quality CATEGORICAL (a multiclass target); inference sees numbers.
    assert types.pop("quality") == N
    assert set(types.values()) == {N}
    assert len(types) == 11


def test_california_housing_inference_matches_its_schema_file() -> None:
    assert inferred("california_housing", target="median_house_value") == dataset_schema("california_housing")


def test_bike_sharing_inference() -> None:
    schema = inferred("bike_sharing_hourly", target="cnt", row_id="instant")
    types = types_of(schema)
    assert {n for n, t in types.items() if t == B} == {"yr", "holiday", "workingday"}
    assert types["dteday"] == C
    assert {n for n, t in types.items() if t == N} == set(types) - {"yr", "holiday", "workingday", "dteday"}
    assert (schema.target, schema.row_id, schema.has_header) == ("cnt", "instant", True)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], C),
        (["", "  ", None], C),
        (["0", "1", "1", ""], B),
        ([" Y", "n ", "y"], B),
        (["true", "FALSE"], B),
        (["no", "1"], B),
        (["0", "0", ""], N),  # one value seen: a number, not a binary attribute
        (["no", "no"], C),
        (["yes", "no", "unknown"], C),
        (["t", "y", "n"], C),  # two true spellings: letter codes rather than a flag
        (["0", "1", "2"], N),
        (["0", "1", "yes"], C),
        ([" 1.5", "-2", ".5", "1.3E4", "", "+7"], N),
        (["1", "NaN"], C),  # half markers: not a column of numbers
        (["41", "NA", "38", " n/a", "57"], N),  # R's NA and other missing markers among numbers
        (["0.5", "?", "1.5", "2.5"], N),  # the UCI datasets' marker
        (["3", "-", "4", "NULL", "#N/A", "7", "8"], N),
        (["41", "NA", "38", "none given", "57"], C),  # text that is no marker
        (["1", "NA", "?"], C),  # mostly markers
        (["0", "1", "NA", "1", "0"], B),  # a flag with R's NA
        (["yes", "no", "?", "no"], B),
        (["0", "NA"], C),  # half markers
        (["1", "1e999"], C),
        (["1,000", "2"], C),
        (["0.0", "1.0"], N),
        (["red", "white", "red"], C),
        (["NEAR BAY", "INLAND", "NEAR BAY", "<1H OCEAN", "INLAND", "NEAR OCEAN"] * 10, C),
        (["one two three four"] * 20, T),  # more than 3 words on average
        (["one two three"] * 20, C),  # 3 words, all alike
        ([f"word{i} other" for i in range(10)], T),  # 2 words, all distinct
        ([f"word{i} other" for i in range(4)] * 3, C),  # 2 words, a third distinct
        ([f"https://example.com/page/{i}" for i in range(50)], C),  # long but one word each
    ],
)
def test_infer_type_rules(values: list[str | None], expected: AttributeType) -> None:
    assert infer_type(values) == expected
    assert infer_type(pa.array(values, pa.string())) == expected


@given(st.text(max_size=12))
def test_infer_type_numeric_agrees_with_numeric_value(text: str) -> None:
    try:
        numeric_value(text)
        is_number = True
    except InvalidValue:
        is_number = False
    column = [text, "17"]
    assert (infer_type(column) == N) == is_number


def test_headerless_sample_gets_console_names() -> None:
    rows = [["1", "a", "0"], ["2", "b", "1"], ["3", "c"], ["4", "a", "1"]]
    schema = infer_schema(None, rows)
    assert schema.names == ["Var01", "Var02", "Var03"]
    assert [a.type for a in schema.attributes] == [N, C, B]
    assert schema.has_header is False


def test_generated_names_pad_to_sort_in_column_order() -> None:
    assert generated_names(3) == ["Var01", "Var02", "Var03"]
    names = generated_names(150)
    assert names[0] == "Var001" and names[-1] == "Var150"
    assert sorted(names) == names


def test_header_names_are_repaired_into_a_valid_schema() -> None:
    header = ["\ufeff id ", "", "x", "x", "L" * 70, "L" * 64, "Var02"]
    schema = infer_schema(header, [["1"] * 7])
    assert schema.names == ["id", "Var02", "x", "x_2", "L" * 64, "L" * 62 + "_2", "Var02_2"]
    assert parse_schema(schema.to_json()) == schema


def test_rows_of_another_width_are_ignored() -> None:
    rows = [["1", "2"], ["x", "y", "z"], ["3", "4"]]
    assert [a.type for a in infer_schema(["a", "b"], rows).attributes] == [N, N]


def test_header_without_rows_gives_categorical_columns() -> None:
    schema = infer_schema(["a", "b"], [], target="b")
    assert [a.type for a in schema.attributes] == [C, C]
    assert schema.has_header is True


def test_text_target_becomes_categorical() -> None:
    rows = [[f"a long sentence number {i}", str(i)] for i in range(20)]
    schema = infer_schema(["label", "n"], rows, target="label")
    assert schema.attribute("label").type == C
    assert infer_schema(["label", "n"], rows).attribute("label").type == T


def test_explicit_names_for_headerless_data() -> None:
    schema = infer_schema(["a", "b"], [["1", "2"]], has_header=False)
    assert schema.names == ["a", "b"]
    assert schema.has_header is False


@pytest.mark.parametrize("as_table", [False, True])
def test_a_header_in_data_said_to_have_none_is_refused(as_table: bool) -> None:
    # Read as a record, the header's words made every column under them CATEGORICAL.
    rows = [["age", "job", "y"], ["30", "admin", "0"], ["41", "technician", "1"]]
    sample = (
        pa.table({str(i): list(column) for i, column in enumerate(zip(*rows, strict=True))})
        if as_table
        else rows
    )
    with pytest.raises(InvalidInputException) as info:
        infer_schema(None, sample)
    assert "its first record looks like one: its fields are names ('age', 'job', 'y')" in info.value.message
    assert "column 1 (Var01, 'age' in that line) is NUMERIC below it but CATEGORICAL" in info.value.message
    assert "Set DataFileContainsHeader to true" in info.value.message
    assert [a.type for a in infer_schema(None, rows[1:]).attributes] == [N, C, B]


@pytest.mark.parametrize(
    "first",
    [
        ["red", "small", "no"],  # every column holds words: nothing tells a header from a record
        ["NA", "small", "yes"],  # a missing value, not a name
        ["3", "small", "no"],  # a number, not a name
        ["", "small", "no"],  # a blank field, not a name
    ],
)
def test_a_first_record_that_need_not_be_a_header_is_kept(first: list[str]) -> None:
    rows = [first, ["blue", "large", "yes"], ["green", "small", "no"]]
    if first[0] != "red":
        rows[1:] = [["4", "large", "yes"], ["5", "small", "no"]]
    schema = infer_schema(None, rows)
    assert schema.has_header is False and len(schema.attributes) == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: inferred("bank_marketing", target="yy"),
            "target 'yy' is not one of the columns (did you mean 'y'?); the columns are 'age', 'job'",
        ),
        (
            lambda: infer_schema(["a", "b"], [], row_id="c"),
            "row_id 'c' is not one of the columns; the columns are 'a', 'b'",
        ),
        (
            lambda: infer_schema(None, [["1"]], has_header=True),
            "has_header is true but no header columns were given",
        ),
        (lambda: infer_schema(None, []), "cannot infer a schema: there is no header and no sample row"),
        (lambda: infer_schema([], [["1"]]), "cannot infer a schema: the header has no columns"),
        (
            lambda: infer_schema(["a", "b"], [["1"], ["2", "3", "4"]]),
            "cannot infer a schema: none of the 2 sample rows has the header's 2 columns (the first has 1)",
        ),
        (
            lambda: infer_schema(None, [["1"] * 1001], max_attributes=1000),
            "cannot infer a schema: the data has 1,001 columns; the limit is 1,000 attributes "
            "(the max_attributes setting)",
        ),
        (
            lambda: infer_schema(["a", "b"], [["1", "x"]], target="a", row_id="a"),
            "inferred schema targetAttributeName 'a' is also the rowId",
        ),
    ],
)
def test_inference_errors(call: object, message: str) -> None:
    with pytest.raises(InvalidInputException) as info:
        call()  # type: ignore[operator]
    assert info.value.message.startswith(message)


def test_target_error_lists_at_most_twenty_columns() -> None:
    header = [f"c{i}" for i in range(30)]
    with pytest.raises(InvalidInputException) as info:
        infer_schema(header, [], target="nope")
    assert info.value.message.endswith("'c18', 'c19', … (10 more)")


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
