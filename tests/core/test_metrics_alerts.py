"""Evaluation alerts: Amazon ML's five, and emrml's own (convergence, baseline, target range, leaks)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from metrics_helpers import dataset_columns

from emrml.core.alerts import NumericTarget, evaluation_alerts
from emrml.errors import InvalidInputException

# --------------------------------------------------------------------------------------- alerts

ALERT_NAMES = [
    "Evaluation done on held-out data",
    "Sufficient data used",
    "Schema matched",
    "All records used",
    "Distribution of target variable",
]


def alerts(**changes) -> dict[str, dict]:
    arguments = {
        "training_datasource_id": "ds-train",
        "evaluation_datasource_id": "ds-eval",
        "training_records": 1000,
        "evaluation_records": 300,
        "training_attributes": ["a", "b", "y"],
        "evaluation_attributes": ["y", "b", "a"],
        "invalid_evaluation_records": 0,
        "training_target": {"0": 700, "1": 300},
        "evaluation_target": {"0": 0.68, "1": 0.32},
    }
    arguments.update(changes)
    listed = evaluation_alerts(**arguments)
    assert [alert["name"] for alert in listed] == ALERT_NAMES
    return {alert["name"]: alert for alert in listed}


def test_alerts_all_pass_on_a_sound_evaluation() -> None:
    assert all(alert["passed"] for alert in alerts().values())


@pytest.mark.parametrize(
    ("changes", "name", "message"),
    [
        (
            {"evaluation_datasource_id": "ds-train"},
            "Evaluation done on held-out data",
            "same datasource ds-train",
        ),
        ({"evaluation_records": 99}, "Sufficient data used", "fewer than 10%"),
        ({"evaluation_attributes": ["a", "y", "c"]}, "Schema matched", r"missing \['b'\], extra \['c'\]"),
        ({"invalid_evaluation_records": 7}, "All records used", "7 evaluation records were invalid"),
        ({"evaluation_target": {"0": 55, "1": 45}}, "Distribution of target variable", "0.1500 .above"),
        ({"evaluation_target": {"0": 70, "2": 30}}, "Distribution of target variable", "0.3000"),
    ],
)
def test_each_alert_fires_alone(changes: dict, name: str, message: str) -> None:
    result = alerts(**changes)
    assert not result[name]["passed"]
    assert result[name]["message"] and re.search(message, result[name]["message"])
    assert all(alert["passed"] for other, alert in result.items() if other != name)


def test_sufficient_data_boundary_is_ten_percent() -> None:
    assert alerts(evaluation_records=100)["Sufficient data used"]["passed"]
    assert not alerts(evaluation_records=99)["Sufficient data used"]["passed"]


def test_alert_counts_have_thousands_separators() -> None:
    """Counts read as the CLI and the console write them: "12,000 records", not "12000 records"."""
    result = alerts(training_records=40_000, evaluation_records=12_000, invalid_evaluation_records=1_234)
    assert "used 12,000 records" in result["Sufficient data used"]["message"]
    assert "of the 40,000 training records" in result["Sufficient data used"]["message"]
    assert result["All records used"]["message"].startswith("1,234 evaluation records were invalid")
    numeric = alerts(
        training_target=NumericTarget(25_010.0, 900.0), evaluation_target=NumericTarget(26_000.0, 950)
    )
    assert (
        "Target mean 26,000 (evaluation) vs 25,010 (training)"
        in numeric["Distribution of target variable"]["message"]
    )


def test_numeric_target_rule() -> None:
    def passed(training: NumericTarget, evaluation: NumericTarget) -> bool:
        result = alerts(training_target=training, evaluation_target=evaluation)
        return result["Distribution of target variable"]["passed"]

    assert passed(NumericTarget(10.0, 2.0), NumericTarget(10.9, 2.5))
    assert not passed(NumericTarget(10.0, 2.0), NumericTarget(11.1, 2.0))  # shift > 0.5 std
    assert not passed(NumericTarget(10.0, 2.0), NumericTarget(10.0, 4.5))  # spread more than doubled
    with pytest.raises(InvalidInputException, match="same kind"):
        passed(NumericTarget(1.0, 1.0), {"a": 1})  # type: ignore[arg-type]


def test_bank_marketing_sequential_split_raises_the_target_alert() -> None:
    # Spec 12: the chronological file puts 5.6% positives in the first 70% and 24.6% in the last 30%.
    labels = dataset_columns("bank_marketing", "y")["y"]
    cut = int(labels.size * 0.7)

    def shares(part: np.ndarray) -> dict[str, int]:
        return {"0": int((part == 0).sum()), "1": int((part == 1).sum())}

    sequential = alerts(training_target=shares(labels[:cut]), evaluation_target=shares(labels[cut:]))
    assert not sequential["Distribution of target variable"]["passed"]
    shuffled = np.random.default_rng(42).permutation(labels)
    random_split = alerts(training_target=shares(shuffled[:cut]), evaluation_target=shares(shuffled[cut:]))
    assert random_split["Distribution of target variable"]["passed"]


# --- emrml's own alerts ------------------------------------------------------------------------------------


def _by_name(alerts: list[dict]) -> dict[str, dict]:
    return {alert["name"]: alert for alert in alerts}


def test_a_rising_loss_is_flagged() -> None:
    from emrml.core.alerts import quality_alerts

    rising = _by_name(quality_alerts("REGRESSION", {}, [0.1057, 0.1201]))["Training converged"]
    assert (
        not rising["passed"] and "0.1201" in rising["message"] and "sgd.shuffleType=auto" in rising["message"]
    )
    falling = _by_name(quality_alerts("REGRESSION", {}, [0.3, 0.2, 0.2005]))["Training converged"]
    assert falling["passed"]
    assert "Training converged" not in _by_name(quality_alerts("BINARY", {}, [0.3]))


@pytest.mark.parametrize(
    ("model_type", "result", "passed"),
    [
        ("BINARY", {"BinaryAUC": 0.93, "baseline": 0.5}, True),
        ("BINARY", {"BinaryAUC": 0.503, "baseline": 0.5}, False),
        ("MULTICLASS", {"MulticlassAvgFScore": 0.2, "baseline": 0.21}, False),
        ("REGRESSION", {"RegressionRMSE": 99.5, "baseline": 181.0}, True),
        ("REGRESSION", {"RegressionRMSE": 180.0, "baseline": 181.0}, False),
    ],
)
def test_a_metric_no_better_than_its_baseline_is_flagged(model_type: str, result: dict, passed: bool) -> None:
    from emrml.core.alerts import quality_alerts

    alert = _by_name(quality_alerts(model_type, result, []))["Better than the baseline"]
    assert alert["passed"] is passed


def test_a_metric_reads_in_its_alert_as_in_the_evaluation_summary() -> None:
    """The summary wrote "MulticlassAvgFScore 0.2263 (baseline 0.0871 ...)", the alert below it "0.226251
    against the baseline's 0.0870969": the alerts write numbers as the CLI does."""
    from emrml.core.alerts import quality_alerts

    result = {"MulticlassAvgFScore": 0.226251, "baseline": 0.0870969}
    alert = _by_name(quality_alerts("MULTICLASS", result, [1.41, 0.980549]))
    assert alert["Better than the baseline"]["message"].startswith(
        "MulticlassAvgFScore 0.2263 against the baseline's 0.0871:"
    )
    assert alert["Training converged"]["message"] == "The loss fell to 0.9805 over 2 passes."


def test_regression_predictions_outside_the_target_range_are_flagged() -> None:
    from emrml.core.alerts import quality_alerts

    result = {"RegressionRMSE": 1.0, "baseline": 2.0, "count": 16_219}
    negative = _by_name(quality_alerts("REGRESSION", result, [], (12.0, 500.0), (341, 341)))
    alert = negative["Predictions in the target's range"]
    assert not alert["passed"]
    assert (
        "341 of 16,219 predictions" in alert["message"]
        and "negative for a target that never was" in alert["message"]
    )
    few = _by_name(quality_alerts("REGRESSION", result, [], (-5.0, 500.0), (10, 3)))
    assert few["Predictions in the target's range"]["passed"]  # 0.06 %, and the target itself went negative


def _statistics(entropy: float | None, **correlations: float) -> dict:
    """Datasource statistics (``core.stats``) with these input attributes' target correlations."""
    attributes = [
        {"name": name, "role": "input", "targetCorrelation": mi} for name, mi in correlations.items()
    ]
    attributes.append({"name": "cnt", "role": "target"})
    return {"target": {"name": "cnt", "entropy": entropy}, "attributes": attributes}


def test_an_attribute_that_predicts_the_target_by_itself_is_a_possible_leak() -> None:
    from emrml.core.alerts import leak_alert

    # bike_sharing_hourly with `casual` and `registered` left in (their sum is the target): the figures
    # of its statistics, in nats, against the target's 10 bins' entropy.
    statistics = _statistics(2.3026, hr=0.549, casual=0.663, registered=1.558)
    alert = leak_alert(statistics)
    assert alert is not None and not alert["passed"]
    assert "Possible target leak: 'registered' (68%) alone carries" in alert["message"]
    assert "'casual'" not in alert["message"] and "excludedAttributeNames" in alert["message"]
    # A recipe that leaves `registered` out cannot leak it; the strongest remaining attribute is named.
    honest = leak_alert(statistics, used={"hr", "casual"})
    assert honest is not None and honest["passed"] and "'casual', carries 29%" in honest["message"]
    both = leak_alert(_statistics(1.0, a=0.9, b=0.5))
    assert both is not None and "'a' (90%), 'b' (50%) alone carry" in both["message"]


def test_no_leak_alert_without_correlations() -> None:
    from emrml.core.alerts import leak_alert

    assert leak_alert(_statistics(None, x=0.3)) is None  # statistics from before the target's entropy
    assert leak_alert(_statistics(0.0, x=0.0)) is None  # a constant target
    assert leak_alert({"target": None, "attributes": []}) is None
    assert leak_alert({"target": {"name": "y", "entropy": 0.7}, "attributes": []}) is None
