"""The ``emrml`` command line's views of awkward data: records without a target or of a class the model
never saw in evaluations, statistics at 80 columns, residual charts and huge numbers."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from cli_helpers import binary_schema, cli, cli_json, write_binary_data


def test_evaluation_records_without_a_target_are_not_counted_as_used(tmp_path: Path) -> None:
    home = tmp_path / "home"
    schema = binary_schema(tmp_path / "schema.json")
    train = write_binary_data(tmp_path / "train.csv", 400)
    held_out = write_binary_data(tmp_path / "eval.csv", 200, blank_target_every=4, seed=8)
    cli(home, "datasource", "create", "--id", "ds-train", "--data", str(train), "--schema", str(schema))
    cli(home, "datasource", "create", "--id", "ds-eval", "--data", str(held_out), "--schema", str(schema))
    cli(home, "model", "create", "--id", "ml", "--type", "BINARY", "--datasource", "ds-train")

    out = cli(home, "evaluation", "create", "--id", "ev", "--model", "ml", "--datasource", "ds-eval").stdout
    insights = cli_json(home, "evaluation", "show", "ev")["GetEvaluationInsights"]["Insights"]
    assert (insights["records"], insights["invalidRecords"]) == (200, 50)
    # 150 records were scored; the 50 without a target were left out, not used.
    assert re.search(r"Records\s+150 used, 50 left out \(no usable target\)", out)
    alerts = {alert["name"]: alert for alert in insights["alerts"]}
    assert alerts["Sufficient data used"]["message"].startswith("The evaluation used 150 records")
    assert not alerts["All records used"]["passed"]

    # Evaluated on its training datasource: the alert names it (not a placeholder).
    cli(home, "evaluation", "create", "--id", "ev-same", "--model", "ml", "--datasource", "ds-train")
    same = cli_json(home, "evaluation", "show", "ev-same")["GetEvaluationInsights"]["Insights"]
    held = {alert["name"]: alert for alert in same["alerts"]}["Evaluation done on held-out data"]
    assert not held["passed"]
    assert "the same datasource ds-train;" in held["message"]
    shown = cli(home, "evaluation", "show", "ev-same").stdout
    assert re.search(r"Records\s+400 used\s*$", shown, re.MULTILINE)


def test_evaluation_records_that_cannot_be_read_fail_the_all_records_used_alert(tmp_path: Path) -> None:
    """A record of the evaluation data with a field too many is left out; the alert had said "Every
    evaluation record was used" since such records never reached the scoring."""
    home = tmp_path / "home"
    schema = binary_schema(tmp_path / "schema.json")
    train = write_binary_data(tmp_path / "train.csv", 400)
    held_out = write_binary_data(tmp_path / "eval.csv", 200, seed=8)
    lines = held_out.read_text().splitlines()
    lines[10] += ",extra"
    lines[20] += ",extra"
    held_out.write_text("\n".join(lines) + "\n")
    cli(home, "datasource", "create", "--id", "ds-train", "--data", str(train), "--schema", str(schema))
    cli(home, "datasource", "create", "--id", "ds-eval", "--data", str(held_out), "--schema", str(schema))
    cli(home, "model", "create", "--id", "ml", "--type", "BINARY", "--datasource", "ds-train")

    out = cli(home, "evaluation", "create", "--id", "ev", "--model", "ml", "--datasource", "ds-eval").stdout
    insights = cli_json(home, "evaluation", "show", "ev")["GetEvaluationInsights"]["Insights"]
    assert (insights["records"], insights["invalidRecords"], insights["unreadableRecords"]) == (198, 0, 2)
    assert re.search(r"Records\s+198 used, 2 unreadable", out)
    used = {alert["name"]: alert for alert in insights["alerts"]}["All records used"]
    assert not used["passed"] and used["message"].startswith("2 evaluation records were invalid")


def test_statistics_at_80_columns_keep_numbers_whole_and_count_targets_left_out(tmp_path: Path) -> None:
    """Long attribute names fold; numbers, MI and histograms are never cut to ``0.0…``; the target's
    missing and invalid values are shown beside its distribution, which leaves them out."""
    home = tmp_path / "home"
    rng = random.Random(3)
    names = ["a_rather_long_attribute_name_of_counts", "another_long_numeric_attribute_name", "y_target"]
    lines = [",".join(names)]
    for i in range(300):
        count, value = rng.randint(1, 2_000_000), rng.uniform(-180.0, -100.0)
        target = "" if i % 10 == 0 else ("maybe" if i == 5 else str(int(count > 1_000_000)))
        lines.append(f"{count},{value:.4f},{target}")
    data = tmp_path / "wide.csv"
    data.write_text("\n".join(lines) + "\n")
    schema = tmp_path / "wide.schema"
    types = ["NUMERIC", "NUMERIC", "BINARY"]
    schema.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "y_target",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": n, "attributeType": t} for n, t in zip(names, types, strict=True)
                ],
            }
        )
    )
    cli(home, "datasource", "create", "--id", "ds", "--data", str(data), "--schema", str(schema))
    stats = cli_json(home, "datasource", "show", "ds")["GetDataSourceStatistics"]["Statistics"]
    numeric = {a["name"]: a for a in stats["attributes"]}

    out = cli(home, "datasource", "show", "ds", columns=80).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    title = re.search(r"^NUMERIC attributes\s*$", out, re.MULTILINE)
    assert title is not None
    table = out[title.start() :]
    for name in names[:2]:
        for key in ("min", "max", "mean"):
            shown = f"{numeric[name][key]:,.0f}" if abs(numeric[name][key]) >= 1e4 else None
            shown = shown or f"{numeric[name][key]:,.4g}"
            assert shown in table, (key, shown)
        assert f"{numeric[name]['targetCorrelation']:,.2g}" in table
    assert "…" not in table

    target = out[out.index("Target distribution") : title.start()]
    assert re.search(r"^\(missing\)\s+30\s+left out", target, re.MULTILINE)
    assert re.search(r"^\(invalid\)\s+1\s+left out", target, re.MULTILINE)
    assert re.search(r"y_target \(target\)\s+[\d,]+\s+[\d,]+\s+[\d.]+\s+30/1", out)


def test_evaluation_records_of_a_class_the_model_never_saw_count_as_missed(tmp_path: Path) -> None:
    """Rare classes go missing from a training split: the evaluation still holds them. Leaving their
    records out made the macro F1 look better than the same model evaluated with them."""
    home = tmp_path / "home"
    rng = random.Random(11)

    def rows(count: int, classes: str) -> list[str]:
        out = []
        for _ in range(count):
            label = rng.choice(classes)
            out.append(f"{ord(label) - ord('a') + rng.gauss(0, 0.6):.3f},{label}")
        return out

    train, held_out = tmp_path / "train.csv", tmp_path / "eval.csv"
    train.write_text("\n".join(["x,k", *rows(300, "abc")]) + "\n")
    held_out.write_text("\n".join(["x,k", *rows(120, "abc"), *rows(30, "d")]) + "\n")
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "k",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [
                    {"attributeName": "x", "attributeType": "NUMERIC"},
                    {"attributeName": "k", "attributeType": "CATEGORICAL"},
                ],
            }
        )
    )
    cli(home, "datasource", "create", "--id", "ds-train", "--data", str(train), "--schema", str(schema))
    cli(home, "datasource", "create", "--id", "ds-eval", "--data", str(held_out), "--schema", str(schema))
    cli(home, "model", "create", "--id", "ml", "--type", "MULTICLASS", "--datasource", "ds-train")
    out = cli(home, "evaluation", "create", "--id", "ev", "--model", "ml", "--datasource", "ds-eval").stdout

    insights = cli_json(home, "evaluation", "show", "ev")["GetEvaluationInsights"]["Insights"]
    metrics = insights["metrics"]
    assert insights["invalidRecords"] == 0
    per_class = {entry["class"]: entry for entry in metrics["perClass"]}
    assert per_class["d"]["trueCount"] == 30 and per_class["d"]["f1"] == 0.0 and per_class["d"]["inAverage"]
    known = [per_class[c]["f1"] for c in "abc"]
    assert metrics["MulticlassAvgFScore"] == pytest.approx((sum(known) + 0.0) / 4)
    assert re.search(r"Records\s+150 used\s*$", out, re.MULTILINE)
    assert re.search(r"^d\s+\d+\s+\d+\s+\d+\s+0\s+0\.000", out, re.MULTILINE)


def test_residual_chart_leaves_no_range_out_between_below_and_the_bins() -> None:
    """Empty end bins are trimmed, but not between the "below"/"above" rows and the first/last non-empty
    bin: the chart would jump from "below -100" to "-80 to -60" as if -100 to -80 were not a range."""
    from rich.console import Console

    from emrml.cli_render import evaluation_view

    edges = [-100.0 + 10 * k for k in range(21)]  # 20 stored bins of 10, drawn two at a time
    counts = [0, 0, 0, 0, 5, 5, 9, 9, 20, 20, 20, 20, 9, 9, 3, 3, 0, 0, 0, 0]
    metrics = {
        "RegressionRMSE": 30.0,
        "baseline": 50.0,
        "meanResidual": 1.0,
        "residualHistogram": {"edges": edges, "counts": counts, "below": 4, "above": 0},
    }
    described = {
        "GetEvaluation": {"EvaluationId": "ev", "Status": "COMPLETED"},
        "GetEvaluationInsights": {"MLModelType": "REGRESSION", "Insights": {"metrics": metrics}},
    }
    console = Console(width=100, record=True)
    for section in evaluation_view(described, 100):
        console.print(section)
    labels = [line.split(" │")[0].strip() for line in console.export_text().splitlines() if " │" in line]
    assert labels[:3] == ["below -100", "-100 to -80", "-80 to -60"]
    assert labels[-1] == "40 to 60"  # no "above" records: the empty bins past the last are trimmed


def test_huge_numbers_are_written_in_scientific_notation(tmp_path: Path) -> None:
    """1e308 is a valid NUMERIC value: written out in full it took 309 digits, which no 80-column table
    can hold."""
    from emrml.core.readable import format_number

    assert [format_number(v) for v in (1e308, -1.7e308, 2.5e15, 1e14, 12345.678, 3)] == [
        "1e+308",
        "-1.7e+308",
        "2.5e+15",
        "100,000,000,000,000",
        "12,346",
        "3",
    ]
    home = tmp_path / "home"
    data = tmp_path / "big.csv"
    rows = ["x,big,y", *(f"{k / 100},{('1e308', '-1e308', '5')[k % 3]},{k % 2}" for k in range(90))]
    data.write_text("\n".join(rows) + "\n")
    cli(home, "datasource", "create", "--id", "ds", "--data", str(data), "--infer-schema", "--target", "y")
    out = cli(home, "datasource", "show", "ds", columns=80).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    line = next(line for line in out.splitlines() if line.startswith("big "))
    assert line.split()[:4] == ["big", "0/0", "-1e+308", "5"]
