"""A binary evaluation at one score threshold, as ``emrml evaluation show --score-threshold`` computes it.

The evaluation stores one row of rates per hundredth of score (``thresholdTable``) and the score
histograms; a requested threshold stands for the nearest stored cut-off, and the counts are the rates times
the records of each label. ``static/charts.js`` repeats this arithmetic in the browser while the threshold
line moves; the browser tests check the two against the CLI.
"""

from __future__ import annotations

from typing import Any

from emrml.console.numbers import decimal


def at_threshold(metrics: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The counts and rates at the stored cut-off nearest ``threshold`` (0 ≤ threshold ≤ 1)."""
    table = metrics["thresholdTable"]
    current = min(range(len(table)), key=lambda i: abs(table[i]["threshold"] - threshold))
    row = table[current]
    positives = sum(metrics["histograms"]["positive"])
    negatives = sum(metrics["histograms"]["negative"])
    whole = all(float(n).is_integer() for n in (positives, negatives))
    true_positives = row["recall"] * positives
    false_positives = row["falsePositiveRate"] * negatives

    def count(value: float) -> float:
        return round(value) if whole else value

    return {
        "threshold": row["threshold"],
        "truePositives": count(true_positives),
        "falseNegatives": count(positives - true_positives),
        "falsePositives": count(false_positives),
        "trueNegatives": count(negatives - false_positives),
        **{key: row[key] for key in ("accuracy", "precision", "recall", "falsePositiveRate", "f1")},
        "predictedPositiveRate": row["predictedPositiveRate"],
    }


def typed_threshold(text: str) -> float | None:
    """A threshold typed into a form or a query (``numbers.decimal``, from 0 to 1), or None."""
    value = decimal(text)
    return value if value is not None and 0.0 <= value <= 1.0 else None


def threshold_error(text: str) -> str:
    """The threshold field's message for ``text`` that ``typed_threshold`` refused."""
    return f"The threshold is a number from 0 to 1 (got {text!r})."
