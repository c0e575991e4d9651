"""JSON text a caller wrote, parsed: what json.loads lets through that no text may hold."""

from __future__ import annotations

import json

import pytest

from emrml.core.json_text import load_json
from emrml.errors import InvalidInputException

LONE = "\ud800"


@pytest.mark.parametrize(
    "document",
    [
        {"outputs": [LONE]},  # a value
        {"assignments": {"a" + LONE: "x"}},  # a key
        [["nested", {"deep": "\udfff"}]],  # a lone low surrogate, deep down
    ],
)
@pytest.mark.parametrize("pairs", [False, True])
def test_an_escaped_lone_surrogate_is_refused_naming_the_document(document: object, pairs: bool) -> None:
    """json.loads turns ``\\ud800`` into a string UTF-8 cannot encode: the metastore could not store it,
    nor an error message quote it (the answer itself failed). Refused, whatever the object hook keeps."""
    text = json.dumps(document)  # ensure_ascii: the surrogate as a \u escape
    hook = list if pairs else None
    with pytest.raises(
        InvalidInputException, match=r"^Recipe has a \\u escape of an unpaired UTF-16 surrogate"
    ):
        load_json(text, "Recipe", object_pairs_hook=hook)
    with pytest.raises(InvalidInputException, match="unpaired UTF-16 surrogate"):
        load_json(text.encode(), "Recipe", object_pairs_hook=hook)


def test_paired_surrogates_and_escaped_backslashes_are_text() -> None:
    assert load_json('{"a": "\\ud83d\\ude00"}', "Recipe") == {"a": "\U0001f600"}
    # An escaped backslash followed by "ud800" is six characters of text, not an escape.
    assert load_json('{"a": "\\\\ud800"}', "Recipe") == {"a": "\\ud800"}
