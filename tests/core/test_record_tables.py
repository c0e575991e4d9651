"""The record scorer's tables of remembered terms hold string keys only (so CPython searches them by its
string comparison), and a record that lacks an attribute is scored as one whose value is empty."""

from __future__ import annotations

from emrml.core.features.record import _category_table, _number_table, record_number


def test_a_category_table_holds_strings_and_scores_a_missing_value_as_zero() -> None:
    name, table, weight = _category_table("job", {"admin.": 0.25, "retired": -1.5}, share=8)
    assert name == "job" and all(type(key) is str for key in table)
    assert table.get(None) is None  # looked up as the scorer does: not found, so weight() answers
    assert weight(None, []) == 0.0 == table[""]
    assert weight(" retired ", []) == -1.5
    assert table[" retired "] == -1.5 and all(type(key) is str for key in table)


def test_a_number_table_holds_strings_and_scores_a_missing_value_as_missing() -> None:
    name, table, term = _number_table("age", record_number, lambda value: 2.0 * value, -0.75, share=8)
    assert name == "age" and all(type(key) is str for key in table)
    unparsed: list[str] = []
    assert term(None, unparsed) == -0.75 == table[""]
    assert term("21", unparsed) == 42.0 and table["21"] == 42.0
    assert term("heavy", unparsed) == -0.75 and unparsed == ["age"]
    assert "heavy" not in table and all(type(key) is str for key in table)
