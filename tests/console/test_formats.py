"""Numbers on the console's pages read as in the CLI, the notebook and the alert texts: one format."""

from __future__ import annotations

import pytest

from emrml.console.formats import FILTERS
from emrml.core.readable import format_number


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (12345.6, "12,346"),
        (68123.4, "68,123"),
        (-272494.2, "-272,494"),
        (0.94219, "0.9422"),
        (16219, "16,219"),
    ],
)
def test_a_number_on_a_page_reads_as_the_cli_writes_it(value: float, shown: str) -> None:
    # A regression's predicted value or RMSE read "1.235e+04" on the console and "12,346" in the CLI.
    assert FILTERS["number"](value) == shown == format_number(value)


def test_characters_that_draw_nothing_are_shown_by_code_point() -> None:
    assert FILTERS["visible"]("a\u202eb\u2066c\u200bd\ufeff") == "a[U+202E]b[U+2066]c[U+200B]d[U+FEFF]"
    # Letters of right-to-left scripts and emoji joined by U+200D are text, shown as they are.
    assert FILTERS["visible"]("שלום \U0001f469\u200d\U0001f4bb") == "שלום \U0001f469\u200d\U0001f4bb"
    assert FILTERS["visible"](None) is None


def test_an_absent_number_shows_nothing() -> None:
    assert FILTERS["number"](None) == ""
