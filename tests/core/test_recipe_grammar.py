"""Recipe parsing: the DG's examples, group expansion, canonical texts, and errors that name their place."""

from __future__ import annotations

import json
import re

import pytest

from emrml.core.recipe.grammar import MAX_RECIPE_CHARS, OutputKind, Recipe, parse_recipe
from emrml.core.recipe.syntax import MAX_NESTING
from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.errors import InvalidInputException

T = AttributeType

# The attributes the DG's complete example uses, plus roles.
SCHEMA = Schema(
    (
        Attribute("customerId", T.CATEGORICAL),
        Attribute("title", T.TEXT),
        Attribute("subject", T.TEXT),
        Attribute("body", T.TEXT),
        Attribute("age", T.NUMERIC),
        Attribute("hours-per-week", T.NUMERIC),
        Attribute("country", T.CATEGORICAL),
        Attribute("gender", T.CATEGORICAL),
        Attribute("smoker", T.BINARY),
        Attribute("weight", T.NUMERIC),
        Attribute("secret", T.NUMERIC),
        Attribute("2nd score", T.NUMERIC),
        Attribute("y", T.BINARY),
    ),
    target="y",
    row_id="customerId",
    row_weight="weight",
    excluded=("secret",),
)

DG_EXAMPLE = """{
  "groups": {
    "LONGTEXT": "group_remove(ALL_TEXT, title, subject)",
    "SPECIALTEXT": "group(title, subject)",
    "BINCAT": "group(ALL_CATEGORICAL, ALL_BINARY)"
  },
  "assignments": {
    "binned_age": "quantile_bin(age,30)",
    "country_gender_interaction": "cartesian(country, gender)"
  },
  "outputs": [
    "lowercase(no_punct(LONGTEXT))",
    "ngram(lowercase(no_punct(SPECIALTEXT)),3)",
    "quantile_bin(hours-per-week, 10)",
    "hours-per-week // raw value kept as well",
    "cartesian(binned_age, quantile_bin(hours-per-week,10))",
    "country_gender_interaction",
    "BINCAT"
  ]
}"""


def _outputs(recipe: Recipe) -> list[tuple[str, OutputKind]]:
    return [(output.text, output.kind) for output in recipe.outputs]


def _parse(outputs: list[str], **sections: object) -> Recipe:
    return parse_recipe(json.dumps({**sections, "outputs": outputs}), SCHEMA)


def test_dg_complete_example() -> None:
    recipe = parse_recipe(DG_EXAMPLE, SCHEMA)
    assert _outputs(recipe) == [
        ("lowercase(no_punct(body))", OutputKind.TOKENS),
        ("ngram(lowercase(no_punct(title)),3)", OutputKind.TOKENS),
        ("ngram(lowercase(no_punct(subject)),3)", OutputKind.TOKENS),
        ("quantile_bin(hours-per-week,10)", OutputKind.CATEGORICAL),
        ("hours-per-week", OutputKind.NUMERIC),
        ("cartesian(quantile_bin(age,30),quantile_bin(hours-per-week,10))", OutputKind.TOKENS),
        ("cartesian(country,gender)", OutputKind.TOKENS),
        ("country", OutputKind.CATEGORICAL),
        ("gender", OutputKind.CATEGORICAL),
        ("smoker", OutputKind.BINARY),
    ]
    document = json.loads(recipe.text)
    assert list(document) == ["groups", "assignments", "outputs"]
    assert document["outputs"][3] == "hours-per-week // raw value kept as well"


def test_observed_suggested_recipe_parses() -> None:
    iris = Schema(
        (
            *(
                Attribute(name, T.NUMERIC)
                for name in ("sepal_length", "sepal_width", "petal_length", "petal_width")
            ),
            Attribute("species", T.CATEGORICAL),
            Attribute("class", T.CATEGORICAL),
        ),
        target="class",
    )
    text = """{"groups": {"NUMERIC_VARS_QB_50": "group('sepal_width')",
                          "NUMERIC_VARS_QB_20": "group('petal_width')",
                          "NUMERIC_VARS_QB_10": "group('petal_length','sepal_length')"},
               "assignments": {},
               "outputs": ["ALL_CATEGORICAL", "quantile_bin(NUMERIC_VARS_QB_50,50)",
                           "quantile_bin(NUMERIC_VARS_QB_20,20)", "quantile_bin(NUMERIC_VARS_QB_10,10)"]}"""
    assert [output.text for output in parse_recipe(text, iris).outputs] == [
        "species",
        "quantile_bin(sepal_width,50)",
        "quantile_bin(petal_width,20)",
        "quantile_bin(petal_length,10)",
        "quantile_bin(sepal_length,10)",
    ]


def test_echoed_dependencies_section_is_ignored() -> None:
    recipe = parse_recipe('{"groups": {}, "assignments": {}, "outputs": ["age"], "dependencies": {}}', SCHEMA)
    assert _outputs(recipe) == [("age", OutputKind.NUMERIC)]
    assert "dependencies" not in json.loads(recipe.text)


def test_names_bare_and_quoted() -> None:
    recipe = _parse(["'age'", '"title"', "  hours-per-week  ", "'2nd score'", "normalize( '2nd score' )"])
    assert [output.text for output in recipe.outputs] == [
        "age",
        "title",
        "hours-per-week",
        "'2nd score'",
        "normalize('2nd score')",
    ]


def test_canonical_texts_parse_back_to_themselves() -> None:
    recipe = parse_recipe(DG_EXAMPLE, SCHEMA)
    again = _parse([output.text for output in recipe.outputs])
    assert _outputs(again) == _outputs(recipe)
    quoted = _parse(["quantile_bin( '2nd score' , 5)", "cartesian(lowercase( country ),smoker)"])
    assert [output.text for output in quoted.outputs] == [
        "quantile_bin('2nd score',5)",
        "cartesian(lowercase(country),smoker)",
    ]
    assert _parse([output.text for output in quoted.outputs]).outputs == quoted.outputs


def test_an_attribute_no_recipe_can_write_is_refused_where_a_group_takes_it() -> None:
    # The model trained on ALL_TEXT, but its feature space, kept as canonical text, did not parse back:
    # every Predict and batch prediction of it failed on 'unexpected 'x' after the end of the expression'.
    name = 'it\'s "x"'
    schema = Schema(
        (Attribute(name, T.TEXT), Attribute("c", T.CATEGORICAL), Attribute("y", T.BINARY)), target="y"
    )
    recipe = json.dumps({"outputs": ["ALL_CATEGORICAL", "ngram(ALL_TEXT,2)"]})
    with pytest.raises(InvalidInputException) as raised:
        parse_recipe(recipe, schema)
    assert str(raised.value) == (
        'Recipe outputs[1] "ngram(ALL_TEXT,2)": it takes the attribute "it\'s \\"x\\"", whose name '
        "holds both ' and \": no recipe can write it, so a model could not name it in its features; rename "
        "the attribute, or list it in the schema's excludedAttributeNames"
    )
    excluded = Schema(schema.attributes, target="y", excluded=(name,))
    assert [output.text for output in parse_recipe(recipe, excluded).outputs] == ["c"]
    # A NUMERIC attribute named ALL_TEXT: its feature read back as the (empty) group; the model's loading
    # failed on "feature space outputs do not resolve to themselves with this schema".
    grouped = Schema((Attribute("ALL_TEXT", T.NUMERIC), Attribute("y", T.BINARY)), target="y")
    with pytest.raises(InvalidInputException) as raised:
        parse_recipe(json.dumps({"outputs": ["quantile_bin(ALL_NUMERIC,10)"]}), grouped)
    assert str(raised.value) == (
        'Recipe outputs[0] "quantile_bin(ALL_NUMERIC,10)": it takes the attribute "ALL_TEXT", whose name is '
        "a predefined group's: a recipe naming it means the group, so a model could not name it in its "
        "features; rename the attribute, or list it in the schema's excludedAttributeNames"
    )


def test_predefined_groups_leave_out_roles_and_excluded_attributes() -> None:
    names = [output.text for output in _parse(["ALL_INPUTS"]).outputs]
    assert names == [
        "title",
        "subject",
        "body",
        "age",
        "hours-per-week",
        "country",
        "gender",
        "smoker",
        "'2nd score'",
    ]
    assert [o.text for o in _parse(["ALL_NUMERIC"]).outputs] == ["age", "hours-per-week", "'2nd score'"]


def test_transformations_apply_to_each_member_and_cartesian_crosses_groups() -> None:
    recipe = _parse(
        ["osb(ALL_TEXT, 2)", "cartesian(G, ALL_BINARY)"], groups={"G": "group(country, gender, country)"}
    )
    assert [output.text for output in recipe.outputs] == [
        "osb(title,2)",
        "osb(subject,2)",
        "osb(body,2)",
        "cartesian(country,smoker)",
        "cartesian(gender,smoker)",
    ]


def test_duplicate_outputs_collapse_to_the_first() -> None:
    recipe = _parse(["age", "ALL_NUMERIC", "quantile_bin( age ,10)", "quantile_bin(age,10) // again"])
    assert [output.text for output in recipe.outputs] == [
        "age",
        "hours-per-week",
        "'2nd score'",
        "quantile_bin(age,10)",
    ]


def test_output_kinds_per_open_question_12() -> None:
    recipe = _parse(
        ["lowercase(country)", "no_punct(country)", "cartesian(country, smoker)", "normalize(age)", "title"]
    )
    assert [output.kind for output in recipe.outputs] == [
        OutputKind.CATEGORICAL,
        OutputKind.CATEGORICAL,
        OutputKind.TOKENS,
        OutputKind.NUMERIC,
        OutputKind.TOKENS,
    ]


def test_group_remove_and_chained_groups() -> None:
    recipe = _parse(
        ["B", "lowercase(A)"],
        groups={"A": "group(ALL_TEXT, country)", "B": "group_remove(A, title, country, age)"},
    )
    assert [output.text for output in recipe.outputs] == [
        "subject",
        "body",
        "lowercase(title)",
        "lowercase(subject)",
        "lowercase(body)",
        "lowercase(country)",
    ]


def test_empty_predefined_group_adds_nothing() -> None:
    schema = Schema((Attribute("n", T.NUMERIC), Attribute("y", T.BINARY)), target="y")
    recipe = parse_recipe('{"outputs": ["ALL_TEXT", "n", "lowercase(ALL_TEXT)"]}', schema)
    assert [output.text for output in recipe.outputs] == ["n"]


# --- Errors ---------------------------------------------------------------------------------------------

ERRORS: list[tuple[str, str, str]] = [
    # (case, recipe JSON, the message — a regular expression searched in it)
    (
        "unbalanced parentheses",
        '{"outputs": ["age", "title", "ngram(lowercase(title), 2"]}',
        re.escape(
            """Recipe outputs[2] "ngram(lowercase(title), 2": """
            "column 26: expected ')' but the expression ended"
        ),
    ),
    (
        "unclosed call",
        '{"outputs": ["lowercase(no_punct(title)"]}',
        r"outputs\[0\] .*column 26: expected ',' or '\)' but the expression ended",
    ),
    (
        "extra closing parenthesis",
        '{"outputs": ["lowercase(title))"]}',
        r"outputs\[0\] .*column 17: unexpected '\)': the parentheses are unbalanced",
    ),
    (
        "unknown transformation",
        '{"outputs": ["ngrm(title, 2)"]}',
        r"outputs\[0\] .*column 1: unknown transformation 'ngrm' \(did you mean 'ngram'\?\)",
    ),
    (
        "wrong arity",
        '{"outputs": ["lowercase(title, body)"]}',
        r"outputs\[0\] .*column 1: lowercase takes exactly 1 argument \(lowercase\(x\)\), got 2",
    ),
    (
        "cartesian needs two",
        '{"outputs": ["cartesian(country)"]}',
        r"column 1: cartesian takes at least 2 arguments",
    ),
    (
        "parameter missing",
        '{"outputs": ["age", "osb(title)"]}',
        r"outputs\[1\] .*column 1: osb needs an integer n from 2 to 10 as its last argument",
    ),
    (
        "parameter out of range",
        '{"outputs": ["ngram(title, 11)"]}',
        r"outputs\[0\] .*column 14: ngram's n must be from 2 to 10, got 11",
    ),
    (
        "bin count out of range",
        '{"outputs": ["quantile_bin(age, 4)"]}',
        r"column 19: quantile_bin's n must be from 5 to 1000, got 4",
    ),
    (
        # Past the 4,300 digits Python reads, it was a ValueError: an internal error, not bad input.
        "parameter of thousands of digits",
        '{"outputs": ["ngram(title, 1' + "0" * 5_000 + ')"]}',
        r"column 14: ngram's n must be an integer from 2 to 10, got an integer of 5,001 digits$",
    ),
    (
        "parameter not an integer",
        '{"outputs": ["ngram(title, 2.5)"]}',
        r"outputs\[0\] .*column 14: ngram's n must be an integer from 2 to 10, got '2.5'",
    ),
    (
        "parameter where none is taken",
        '{"outputs": ["lowercase(title, 2)"]}',
        r"column 18: lowercase takes no integer parameter",
    ),
    (
        "parameter not last",
        '{"outputs": ["ngram(2, title)"]}',
        r"column 7: the integer parameter 2 must be the last argument",
    ),
    (
        "quantile_bin on TEXT",
        '{"outputs": ["quantile_bin(title, 10)"]}',
        r"outputs\[0\] .*column 1: quantile_bin applies to NUMERIC attributes, not title \(TEXT\)",
    ),
    (
        "ngram on NUMERIC",
        '{"outputs": ["ngram(age, 2)"]}',
        r"column 1: ngram applies to TEXT values, not age \(NUMERIC\)",
    ),
    (
        "lowercase on a token set",
        '{"outputs": ["lowercase(ngram(title, 2))"]}',
        r"lowercase applies to TEXT or CATEGORICAL values, not ngram\(title,2\) \(a token set\)",
    ),
    (
        "cartesian with a number",
        '{"outputs": ["cartesian(age, country)"]}',
        r"cartesian combines .* not age \(NUMERIC\); bin a number first with quantile_bin",
    ),
    (
        "normalize of a transformation",
        '{"outputs": ["quantile_bin(normalize(age), 10)"]}',
        r"quantile_bin applies to NUMERIC attributes, not normalize\(age\)",
    ),
    (
        "type mismatch inside a group",
        '{"groups": {"G": "group(age, title)"}, "outputs": ["normalize(G)"]}',
        r"outputs\[0\] .*column 1: normalize applies to NUMERIC attributes, not title \(TEXT\)",
    ),
    (
        "unknown variable",
        '{"outputs": ["lowercase(titel)"]}',
        r"outputs\[0\] .*column 11: unknown variable 'titel' \(did you mean 'title'\?\)",
    ),
    (
        "target used as input",
        '{"outputs": ["y"]}',
        r"outputs\[0\] .*column 1: 'y' is the target attribute; it cannot be an input",
    ),
    (
        "rowId used as input",
        '{"outputs": ["cartesian(customerId, country)"]}',
        r"column 11: 'customerId' is the rowId; it cannot be an input",
    ),
    (
        "excluded attribute used",
        '{"groups": {"G": "group(secret)"}, "outputs": ["G"]}',
        r'groups "G" "group\(secret\)": column 7: \'secret\' is excluded',
    ),
    (
        "rowWeight used as input",
        '{"outputs": ["weight"]}',
        r"'weight' is the rowWeight; it cannot be an input",
    ),
    (
        "duplicate group name",
        '{"groups": {"G": "group(age)", "G": "group(title)"}, "outputs": ["G"]}',
        r'Recipe groups "G": the name is defined twice in groups',
    ),
    (
        "group and assignment share a name",
        '{"groups": {"G": "group(age)"}, "assignments": {"G": "lowercase(title)"}, "outputs": ["G"]}',
        r'Recipe assignments "G": the name is defined in groups and in assignments',
    ),
    (
        "name clashes with an attribute",
        '{"assignments": {"title": "lowercase(title)"}, "outputs": ["title"]}',
        r"Recipe assignments \"title\": the name clashes with the attribute 'title'",
    ),
    (
        "name clashes with a predefined group",
        '{"groups": {"ALL_TEXT": "group(title)"}, "outputs": ["ALL_TEXT"]}',
        r'Recipe groups "ALL_TEXT": ALL_TEXT is a predefined group',
    ),
    (
        "name too long",
        json.dumps({"groups": {"G" * 65: "group(age)"}, "outputs": ["age"]}),
        r"the name is 65 characters long; the limit is 64",
    ),
    ("empty outputs", '{"groups": {}, "outputs": []}', r"Recipe outputs is empty"),
    ("missing outputs", '{"groups": {"G": "group(age)"}}', r"Recipe has no outputs section"),
    (
        "sections out of order",
        '{"outputs": ["age"], "groups": {}}',
        r"Recipe sections are out of order: 'groups' comes after 'outputs'",
    ),
    (
        "unknown section",
        '{"output": ["age"]}',
        r"Recipe has an unknown section 'output' \(did you mean 'outputs'\?\)",
    ),
    (
        "section twice",
        '{"outputs": ["age"], "outputs": ["title"]}',
        r"Recipe has the section 'outputs' twice",
    ),
    (
        "non-empty dependencies",
        '{"outputs": ["age"], "dependencies": {"a": "b"}}',
        r"Recipe dependencies must be an empty object",
    ),
    (
        "unterminated quote",
        '{"outputs": ["age", "lowercase(\'title)"]}',
        r"outputs\[1\] .*column 11: unterminated quote: the name starting with ' has no closing '",
    ),
    (
        "name starting with a digit",
        '{"outputs": ["2nd score"]}',
        r"outputs\[0\] .*column 1: '2nd' is not a name: names that do not start with a letter must be quoted",
    ),
    (
        "group name starting with a digit",
        '{"groups": {"1G": "group(age)"}, "outputs": ["age"]}',
        r'Recipe groups "1G": a group name must start with a letter',
    ),
    (
        "ALL_INPUTS inside a group",
        '{"groups": {"G": "group(ALL_INPUTS)"}, "outputs": ["G"]}',
        r'groups "G" "group\(ALL_INPUTS\)": column 7: ALL_INPUTS may only be used in outputs',
    ),
    (
        "ALL_INPUTS in an assignment",
        '{"assignments": {"a": "lowercase(ALL_INPUTS)"}, "outputs": ["a"]}',
        r'assignments "a" .*column 11: ALL_INPUTS may only be used in outputs',
    ),
    ("not JSON", '{"outputs": ["age",]}', r"Recipe is not valid JSON: .* at line 1 column 20"),
    ("not an object", '["age"]', r"Recipe must be a JSON object, got an array"),
    (
        "outputs not an array",
        '{"outputs": "age"}',
        r"Recipe outputs must be a JSON array of strings, got a string",
    ),
    ("output not a string", '{"outputs": ["age", 3]}', r"Recipe outputs\[1\] must be a string, got a number"),
    (
        "group not a string",
        '{"groups": {"G": ["age"]}, "outputs": ["G"]}',
        r'Recipe groups "G" must be a string',
    ),
    (
        "malformed comment",
        '{"outputs": ["age", "// only a comment"]}',
        r"outputs\[1\] .*column 1: malformed comment: an expression must come before '//'",
    ),
    (
        "comment outside outputs",
        '{"groups": {"G": "group(age) // numbers"}, "outputs": ["G"]}',
        r"groups \"G\" .*column 12: comments \('//'\) are only allowed at the end of an output",
    ),
    ("empty expression", '{"outputs": ["age", "  "]}', r'Recipe outputs\[1\] "  ": the expression is empty'),
    (
        "trailing garbage",
        '{"outputs": ["lowercase(title) body"]}',
        r"outputs\[0\] .*column 18: unexpected 'b' after the end of the expression",
    ),
    (
        "group() outside groups",
        '{"outputs": ["group(age, title)"]}',
        r"column 1: group\(\.\.\.\) may only define a group in the groups section",
    ),
    (
        "group of transformations",
        '{"groups": {"G": "group(lowercase(title))"}, "outputs": ["G"]}',
        r"column 7: a group lists names of attributes and groups, not transformations",
    ),
    (
        "group defined by a transformation",
        '{"groups": {"G": "lowercase(title)"}, "outputs": ["G"]}',
        r"a group is defined with group\(\.\.\.\) or group_remove\(\.\.\.\)",
    ),
    (
        "group_remove of an attribute",
        '{"groups": {"G": "group_remove(age, title)"}, "outputs": ["G"]}',
        r"column 14: group_remove's first argument must be a group, not 'age'",
    ),
    (
        "used before its definition",
        '{"groups": {"A": "group(B)", "B": "group(age)"}, "outputs": ["A"]}',
        r"column 7: 'B' is used before its definition in groups",
    ),
    (
        "no output variable at all",
        '{"outputs": ["ALL_TEXT"]}',
        r"Recipe outputs yield no variable",
    ),
]


@pytest.mark.parametrize(
    ("recipe", "message"), [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS]
)
def test_errors_name_their_place(recipe: str, message: str) -> None:
    schema = SCHEMA
    if message == r"Recipe outputs yield no variable":
        schema = Schema((Attribute("n", T.NUMERIC), Attribute("y", T.BINARY)), target="y")
    with pytest.raises(InvalidInputException) as caught:
        parse_recipe(recipe, schema)
    assert re.search(message, caught.value.message), caught.value.message
    assert caught.value.message.startswith("Recipe")


def test_output_count_limit() -> None:
    with pytest.raises(
        InvalidInputException, match=r"more than 3 output variables \(the limit\) by outputs\[1\]"
    ):
        parse_recipe('{"outputs": ["age", "ALL_TEXT"]}', SCHEMA, max_outputs=3)
    assert len(parse_recipe('{"outputs": ["ALL_TEXT"]}', SCHEMA, max_outputs=3).outputs) == 3
    with pytest.raises(
        InvalidInputException, match=r"column 1: cartesian over these groups yields 27 variables"
    ):
        parse_recipe('{"outputs": ["cartesian(ALL_TEXT, ALL_TEXT, ALL_TEXT)"]}', SCHEMA, max_outputs=20)


def test_recipe_size_limit() -> None:
    text = json.dumps({"outputs": ["age"] * (MAX_RECIPE_CHARS // 7 + 1)})
    with pytest.raises(InvalidInputException, match=f"the limit is {MAX_RECIPE_CHARS}"):
        parse_recipe(text, SCHEMA)


def test_transformations_nest_at_most_the_limit_in_an_output_and_through_assignments() -> None:
    def nested(depth: int) -> str:
        return "lowercase(" * depth + "title" + ")" * depth

    assert (
        parse_recipe(json.dumps({"outputs": [nested(MAX_NESTING)]}), SCHEMA).outputs[0].expression.depth
        == MAX_NESTING
    )
    # Deeper than Python's stack: refused at the column of the first transformation past the limit.
    with pytest.raises(InvalidInputException, match=r"column 321: transformations are nested more than 32"):
        parse_recipe(json.dumps({"outputs": [nested(10_000)]}), SCHEMA)
    # A chain of assignments each nesting one more: every entry is shallow, the substituted output is not.
    chain = {"a0": "title", **{f"a{i}": f"lowercase(a{i - 1})" for i in range(1, 3_000)}}
    with pytest.raises(
        InvalidInputException, match=r'assignments "a33" .*would nest transformations 33 deep'
    ):
        parse_recipe(json.dumps({"assignments": chain, "outputs": ["a2999"]}), SCHEMA)


def test_a_long_expression_is_shortened_in_messages() -> None:
    expression = "lowercase(" + ", ".join(["title"] * 60) + ")"
    with pytest.raises(InvalidInputException) as caught:
        parse_recipe(json.dumps({"outputs": [expression]}), SCHEMA)
    assert "…" in caught.value.message and len(caught.value.message) < 300
