"""Data against a schema (header and first record checks) and schema inference from a sample."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from schema_helpers import B, C, N, T, dataset_sample, dataset_schema, inferred, types_of

from emrml.core.inference import infer_schema, infer_type
from emrml.core.schema import (
    Attribute,
    AttributeType,
    Schema,
    check_first_record,
    check_header,
    generated_names,
    header_names,
    parse_schema,
)
from emrml.core.values import InvalidValue, numeric_value
from emrml.errors import DataError, InvalidInputException

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
