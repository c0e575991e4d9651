"""The ``emrml`` model and evaluation commands, against the real service.

The quickstart's home (module scope) provides the trained sample model the binary tests build on; the
multiclass and regression tests train small models on subsamples of the shared datasets.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from cli_helpers import cli, cli_json, error_line, ids, quickstart_home
from emrml.cli_common import JOB_FAILED_EXIT_CODE
from emrml.cli_quickstart import (
    QUICKSTART_EVAL_ID,
    QUICKSTART_EVALUATION_ID,
    QUICKSTART_MODEL_ID,
    QUICKSTART_TRAIN_ID,
)
from emrml.samples import write_bank_sample


def chart_rows(output: str) -> list[list[str]]:
    """The bar-chart rows in ``output``: each row's label, then its counts (the numbers by the bars)."""
    rows = []
    for line in output.splitlines():
        if " │" in line:
            label, bars = line.split(" │", 1)
            rows.append([label.strip(), *bars.translate(str.maketrans("", "", "█▏▎▍▌▋▊▉")).split()])
    return rows


def number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result, dict[str, Any]]:
    return quickstart_home(tmp_path_factory)


def test_binary_evaluation_draws_histograms_cutoff_and_tradeoffs(
    quickstart: tuple[Path, Result, dict[str, Any]],
) -> None:
    home, _, _ = quickstart
    described = cli_json(home, "evaluation", "show", QUICKSTART_EVALUATION_ID)
    assert set(described) == {"GetEvaluation", "GetEvaluationInsights"}
    metrics = described["GetEvaluationInsights"]["Insights"]["metrics"]
    positive, negative = metrics["histograms"]["positive"], metrics["histograms"]["negative"]

    out = cli(home, "evaluation", "show", QUICKSTART_EVALUATION_ID, "--score-threshold", "0.33").stdout
    assert f"Actual 1s ({sum(positive):,})" in out and f"Actual 0s ({sum(negative):,})" in out
    assert "── cut-off 0.33: scores ≥ 0.33 are predicted 1 ─" in out
    rows = chart_rows(out)
    labels = [row[0] for row in rows]
    # 20 ranges of 0.05, the one holding the cut-off split at it.
    assert len(rows) == 21 and labels[0] == "0.00–0.05" and labels[-1] == "0.95–1.00"
    assert labels[6:8] == ["0.30–0.33", "0.33–0.35"]
    assert [number(row[1]) for row in rows][6] == sum(positive[30:33])
    assert sum(number(row[2]) for row in rows) == sum(negative)
    assert "█" in out
    marker = out.splitlines().index(next(line for line in out.splitlines() if "cut-off 0.33:" in line))
    assert out.splitlines()[marker + 1].startswith("0.33–0.35")

    # The counts at the cut-off, derived from the stored rates, match the histograms.
    actual_one = re.search(r"^Actual 1\s+([\d,]+)\s+([\d,]+)", out, re.MULTILINE)
    actual_zero = re.search(r"^Actual 0\s+([\d,]+)\s+([\d,]+)", out, re.MULTILINE)
    assert actual_one is not None and actual_zero is not None
    assert [number(n) for n in actual_one.groups()] == [sum(positive[33:]), sum(positive[:33])]
    assert [number(n) for n in actual_zero.groups()] == [sum(negative[33:]), sum(negative[:33])]

    table = {line.split()[0]: line for line in out.splitlines() if re.match(r"^\s+[01]\.\d\d\s", line)}
    assert list(table) == [
        "0.00",
        "0.10",
        "0.20",
        "0.30",
        "0.33",
        "0.40",
        "0.50",
        "0.60",
        "0.70",
        "0.80",
        "0.90",
        "1.00",
    ]
    row = metrics["thresholdTable"][33]
    # 0.33 is the cut-off tried; predictions still use the model's 0.5.
    assert "◀ tried" in table["0.33"] and "◀ current" in table["0.50"]
    assert table["0.33"].split()[1:7] == [
        *(f"{row[key]:.3f}" for key in ("accuracy", "precision", "recall", "falsePositiveRate", "f1")),
        f"{100 * row['predictedPositiveRate']:.1f}%",
    ]
    assert "Alerts" in out and "✓" in out and "Evaluation done on held-out data" in out

    # Bars grow with the terminal; lines never exceed it.
    narrow = cli(home, "evaluation", "show", QUICKSTART_EVALUATION_ID, columns=80).stdout
    wide = cli(home, "evaluation", "show", QUICKSTART_EVALUATION_ID, columns=140).stdout
    assert "cut-off 0.50" in narrow and "0.45–0.50" in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80
    longest_bar = max(line.count("█") for line in wide.splitlines())
    assert longest_bar > max(line.count("█") for line in narrow.splitlines())
    assert max(len(line) for line in wide.splitlines()) <= 140

    cli(home, "evaluation", "show", QUICKSTART_EVALUATION_ID, "--score-threshold", "1.5", code=2)
    not_a_number = cli(
        home, "evaluation", "show", QUICKSTART_EVALUATION_ID, "--score-threshold", "nan", code=2
    )
    assert "'nan' is not a number from 0 to 1" in not_a_number.stderr
    # Not click's "'abc' is not a valid float range"
    not_a_cut_off = cli(
        home, "evaluation", "show", QUICKSTART_EVALUATION_ID, "--score-threshold", "abc", code=2
    )
    assert "Invalid value for '--score-threshold': 'abc' is not a number from 0 to 1" in not_a_cut_off.stderr


def test_an_update_refused_names_the_option_given(quickstart: tuple[Path, Result, dict[str, Any]]) -> None:
    """The service's messages name the request members (ScoreThreshold, EvaluationName), which the user
    never typed: the option comes first, as for create."""
    home = quickstart[0]
    for args, start in (
        (
            ("model", "update", QUICKSTART_MODEL_ID, "--score-threshold", "2"),
            "--score-threshold: ScoreThreshold",
        ),
        (("model", "update", QUICKSTART_MODEL_ID, "--name", "n" * 1025), "--name: MLModelName"),
        (("evaluation", "update", QUICKSTART_EVALUATION_ID, "--name", "n" * 1025), "--name: EvaluationName"),
        (("datasource", "update", QUICKSTART_EVAL_ID, "--name", "n\x00"), "--name: DataSourceName"),
    ):
        assert error_line(cli(home, *args, code=2)).startswith(f"error: InvalidInputException: {start}")


def test_model_and_evaluation_lifecycle(
    quickstart: tuple[Path, Result, dict[str, Any]], tmp_path: Path
) -> None:
    home, _, _ = quickstart
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"outputs": ["ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,10)"]}))
    created = cli(
        home,
        "model",
        "create",
        "--id",
        "ml-small",
        "--type",
        "BINARY",
        "--datasource",
        QUICKSTART_TRAIN_ID,
        "--recipe",
        str(recipe),
        "--param",
        "sgd.maxPasses=3",
        "--param",
        "sgd.shuffleType = auto",
        "--name",
        "small model",
    ).stdout
    for text in ("Model ml-small", "COMPLETED", "Training parameters", "Loss by pass", "Top 20 features"):
        assert text in created

    shown = cli_json(home, "model", "show", "ml-small")
    model, insights = shown["GetMLModel"], shown["GetMLModelInsights"]
    assert model["TrainingParameters"]["sgd.maxPasses"] == "3"
    assert json.loads(model["Recipe"])["outputs"] == ["ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,10)"]
    assert 1 <= insights["TrainingReport"]["passes"] <= 3
    features = [item["feature"] for item in insights["TopFeatures"]]
    assert features and not any("notes" in feature for feature in features)  # no TEXT in this recipe
    table = cli(home, "model", "show", "ml-small").stdout
    assert "quantile_bin(ALL_NUMERIC,10)" in table and "small model" in table
    assert features[0] in table and "sgd.maxPasses" in table
    # The training data's alerts, passed here: no attribute of the sample gives its target away.
    assert [alert["passed"] for alert in insights["Alerts"]] == [True]
    assert "Alerts" in table and "No attribute predicts the target" in table

    assert ids(home, "model") == [QUICKSTART_MODEL_ID, "ml-small"]
    assert ids(home, "model", "--sort", "dsc") == ["ml-small", QUICKSTART_MODEL_ID]
    assert ids(home, "model", "--limit", "1") == [QUICKSTART_MODEL_ID]
    assert ids(home, "model", "--type", "REGRESSION") == []
    assert "No models." in cli(home, "model", "list", "--type", "MULTICLASS").stdout
    assert "ml-small" in cli(home, "model", "list", "--status", "COMPLETED").stdout
    both = cli(home, "model", "list", "--status", "COMPLETED", "--type", "BINARY", code=2)
    assert "--status and --type cannot be combined" in error_line(both)

    updated = cli(home, "model", "update", "ml-small", "--score-threshold", "0.7", "--name", "renamed")
    assert "Updated model ml-small: name 'renamed', score threshold 0.7." in updated.stdout
    model = cli_json(home, "model", "show", "ml-small")["GetMLModel"]
    assert model["ScoreThreshold"] == 0.7 and model["Name"] == "renamed"
    assert "nothing to update" in error_line(cli(home, "model", "update", "ml-small", code=2))
    out_of_range = cli(home, "model", "update", "ml-small", "--score-threshold", "1.5", code=2)
    assert "ScoreThreshold must be between 0 and 1" in error_line(out_of_range)
    cli(home, "model", "update", "ml-small", "--threshold", "0.6")  # the old name, still read
    assert cli_json(home, "model", "show", "ml-small")["GetMLModel"]["ScoreThreshold"] == 0.6
    cli(home, "model", "update", "ml-small", "--score-threshold", "0.7")

    evaluation = cli(
        home,
        "evaluation",
        "create",
        "--id",
        "ev-small",
        "--model",
        "ml-small",
        "--datasource",
        QUICKSTART_EVAL_ID,
        "--name",
        "small evaluation",
    ).stdout
    # The chart and table follow the model's new threshold.
    assert "cut-off 0.70: scores ≥ 0.70" in evaluation
    assert re.search(r"^\s+0\.70 .*◀ current", evaluation, re.MULTILINE)
    assert re.search(r"^BinaryAUC 0\.\d+ \(baseline 0\.5", evaluation, re.MULTILINE)

    assert ids(home, "evaluation", "--model", "ml-small") == ["ev-small"]
    listing = cli(home, "evaluation", "list").stdout
    assert "ev-small" in listing and "BinaryAUC 0." in listing
    cli(home, "evaluation", "update", "ev-small", "--name", "second look")
    assert cli_json(home, "evaluation", "show", "ev-small")["GetEvaluation"]["Name"] == "second look"
    assert cli_json(home, "evaluation", "delete", "ev-small") == {"EvaluationId": "ev-small"}
    assert ids(home, "evaluation", "--status", "DELETED") == ["ev-small"]
    assert "Deleted model ml-small." in cli(home, "model", "delete", "ml-small").stdout
    assert ids(home, "model", "--status", "DELETED") == ["ml-small"]
    # Deleted again: accepted, as Amazon ML's retries are (spec 4.4), but not reported as a deletion.
    again = cli(home, "model", "delete", "ml-small").stdout
    assert "Model ml-small was already deleted; it stays DELETED." in again and "Deleted" not in again
    assert "Evaluation ev-small was already deleted" in cli(home, "evaluation", "delete", "ev-small").stdout
    assert cli_json(home, "model", "delete", "ml-small") == {"MLModelId": "ml-small"}
    missing = cli(home, "model", "show", "ml-none", code=3)
    assert error_line(missing).startswith("error: ResourceNotFoundException:")


def test_param_syntax_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    base = ["model", "create", "--id", "ml-x", "--type", "BINARY", "--datasource", "ds-x"]
    for bad, expected in (
        ("sgd.maxPasses", "--param 'sgd.maxPasses': expected KEY=VALUE"),
        ("=10", "--param '=10': expected KEY=VALUE"),
        ("sgd.maxPasses=", "--param 'sgd.maxPasses=': expected KEY=VALUE"),
    ):
        line = error_line(cli(tmp_path / "home", *base, "--param", bad, code=2))
        assert line == f"error: InvalidInputException: {expected}, e.g. sgd.maxPasses=10"
    twice = cli(tmp_path / "home", *base, "--param", "sgd.maxPasses=1", "--param", "sgd.maxPasses=2", code=2)
    assert "--param sgd.maxPasses is given twice" in error_line(twice)
    # Checked before the service opens: no metastore was created.
    assert not (tmp_path / "home").exists()


def test_bad_parameters_and_recipes_are_refused_before_training(
    quickstart: tuple[Path, Result, dict[str, Any]], tmp_path: Path
) -> None:
    home, _, _ = quickstart
    base = ["model", "create", "--id", "ml-bad", "--type", "BINARY", "--datasource", QUICKSTART_TRAIN_ID]
    unknown = cli(home, *base, "--param", "sgd.bogus=1", code=2)
    assert "unknown key 'sgd.bogus'" in error_line(unknown)
    misspelt = cli(home, *base, "--param", "sgd.maxPass=10", code=2)
    assert "unknown key 'sgd.maxPass' (did you mean 'sgd.maxPasses'?)" in error_line(misspelt)

    recipe = tmp_path / "typo.recipe.json"
    recipe.write_text('{"outputs": ["ALL_CATEGORICAL", "quantile_bin(agee,10)"]}')
    line = error_line(cli(home, *base, "--recipe", str(recipe), code=2))
    assert line.startswith(f"error: InvalidInputException: --recipe {recipe}: Recipe outputs[1]")
    assert "unknown variable 'agee'" in line

    missing = tmp_path / "missing.json"
    line = error_line(cli(home, *base, "--recipe", str(missing), code=2))
    assert f"--recipe {missing}: cannot read the file" in line

    inline = error_line(cli(home, *base, "--recipe", '{"outputs": []}', code=2))
    assert inline.startswith("error: InvalidInputException: Recipe ")
    wrong_type = error_line(
        cli(
            home,
            "model",
            "create",
            "--id",
            "ml-bad",
            "--type",
            "REGRESSION",
            "--datasource",
            QUICKSTART_TRAIN_ID,
            code=2,
        )
    )
    assert "REGRESSION model needs a NUMERIC target" in wrong_type
    assert "ml-bad" not in ids(home, "model")


def test_a_model_that_fails_exits_2_with_its_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    schema = tmp_path / "three.schema.json"
    attributes = [("a", "NUMERIC"), ("b", "CATEGORICAL"), ("y", "BINARY")]
    schema.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "y",
                "dataFormat": "CSV",
                "dataFileContainsHeader": True,
                "attributes": [{"attributeName": n, "attributeType": t} for n, t in attributes],
            }
        )
    )
    sample = write_bank_sample(tmp_path / "bank.csv", 200)
    cli(
        home,
        "datasource",
        "create",
        "--id",
        "ds-broken",
        "--data",
        str(sample),
        "--schema",
        str(schema),
        "--no-wait",
    )
    accepted = cli(
        home, "model", "create", "--id", "ml-f", "--type", "BINARY", "--datasource", "ds-broken", "--no-wait"
    )
    assert "Accepted model ml-f; `emrml model wait ml-f` runs it." in accepted.stdout
    result = cli(home, "model", "wait", "ml-f", code=JOB_FAILED_EXIT_CODE)
    line = error_line(result)
    assert line.startswith("error: model ml-f is FAILED: DataSource 'ds-broken' is FAILED: ")
    assert "Model ml-f" in result.stdout and "FAILED" in result.stdout
    refused = cli(
        home, "evaluation", "create", "--id", "ev-f", "--model", "ml-f", "--datasource", "ds-broken", code=2
    )
    assert "MLModelId 'ml-f' is FAILED" in error_line(refused)


def _subsample(source: Path, target: Path, rows: int) -> Path:
    """``rows`` random data rows of ``source`` (header kept), so a sequential split mixes the classes."""
    header, *body = source.read_text().splitlines()
    random.Random(7).shuffle(body)
    target.write_text("\n".join([header, *body[:rows]]) + "\n")
    return target


def test_multiclass_evaluation_shows_the_confusion_matrix(tmp_path: Path, shared_datasets: Path) -> None:
    home = tmp_path / "home"
    wine = shared_datasets / "wine_quality"
    data = _subsample(wine / "data.csv", tmp_path / "wine.csv", 900)
    for datasource_id, begin, end, statistics in (
        ("ds-w-train", 0, 70, []),
        ("ds-w-eval", 70, 100, ["--no-statistics"]),
    ):
        split = json.dumps({"splitting": {"percentBegin": begin, "percentEnd": end}})
        cli(
            home,
            "datasource",
            "create",
            "--id",
            datasource_id,
            "--data",
            str(data),
            "--schema",
            str(wine / "data.csv.schema"),
            "--rearrangement",
            split,
            *statistics,
            "--no-wait",
        )
    cli(
        home,
        "model",
        "create",
        "--id",
        "ml-wine",
        "--type",
        "MULTICLASS",
        "--datasource",
        "ds-w-train",
        "--no-wait",
    )
    out = cli(
        home, "evaluation", "create", "--id", "ev-wine", "--model", "ml-wine", "--datasource", "ds-w-eval"
    ).stdout

    described = cli_json(home, "evaluation", "show", "ev-wine")
    metrics = described["GetEvaluationInsights"]["Insights"]["metrics"]
    view = metrics["consoleView"]
    score = float(described["GetEvaluation"]["PerformanceMetrics"]["Properties"]["MulticlassAvgFScore"])
    assert score > metrics["baseline"]
    assert f"MulticlassAvgFScore {score:.4g} (baseline {metrics['baseline']:.4g}" in out
    assert "Confusion matrix" in out and "Predicted share" in out
    header = next(line for line in out.splitlines() if line.startswith("True \\ predicted"))
    assert header.split()[3:] == [*view["classes"], "F1", "True", "share"]
    for position, name in enumerate(view["classes"]):
        line = next(line for line in out.splitlines() if line.split()[:1] == [name])
        cells = line.split()[1:]
        assert [int(cell) for cell in cells[: len(view["classes"])]] == view["counts"][position]
        assert cells[len(view["classes"])] == f"{view['f1'][position]:.3f}"
    assert "Alerts" in out

    no_cutoff = cli(home, "evaluation", "show", "ev-wine", "--score-threshold", "0.5", code=2)
    assert "--score-threshold applies to BINARY models; ev-wine evaluates a MULTICLASS model" in error_line(
        no_cutoff
    )
    model = cli(home, "model", "show", "ml-wine").stdout
    assert "Class" in model and "Training target" in model


def test_regression_evaluation_draws_the_residuals(tmp_path: Path, shared_datasets: Path) -> None:
    home = tmp_path / "home"
    housing = shared_datasets / "california_housing"
    data = _subsample(housing / "data.csv", tmp_path / "housing.csv", 800)
    cli(
        home,
        "datasource",
        "create",
        "--id",
        "ds-h",
        "--data",
        str(data),
        "--schema",
        str(housing / "data.csv.schema"),
        "--no-wait",
    )
    cli(home, "model", "create", "--id", "ml-h", "--type", "REGRESSION", "--datasource", "ds-h", "--no-wait")
    # Evaluated on its own training data, which the alerts point out.
    out = cli(home, "evaluation", "create", "--id", "ev-h", "--model", "ml-h", "--datasource", "ds-h").stdout

    insights = cli_json(home, "evaluation", "show", "ev-h")["GetEvaluationInsights"]["Insights"]
    metrics = insights["metrics"]
    assert re.search(
        r"^RegressionRMSE [\d,.]+ \(baseline [\d,.]+: always predicting the training mean\)$",
        out,
        re.MULTILINE,
    )
    assert "Residuals (actual − predicted)" in out and "█" in out
    rows = chart_rows(out)
    assert rows and all(" to " in row[0] or row[0].startswith(("below", "above")) for row in rows)
    histogram = metrics["residualHistogram"]
    assert (
        sum(number(row[1]) for row in rows)
        == sum(histogram["counts"]) + histogram["below"] + histogram["above"]
    )
    assert sum(number(row[1]) for row in rows) == insights["records"]
    assert re.search(r"✗ alert\s+Evaluation done on held-out data", out)

    model = cli(home, "model", "show", "ml-h").stdout
    assert "Training target" in model and "mean" in model
