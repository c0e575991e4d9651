"""Evaluation alerts: the console's five validity checks (spec 8) and emrml's quality alerts, among them
the training data's (``leak_alert``), which a model keeps in its training report.

Each alert is ``{"name", "passed", "message"}``; the message says what was measured and, when an alert
fails, what it usually means.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from emrml.core.metrics import MODEL_METRIC
from emrml.core.readable import format_number
from emrml.errors import InvalidInputException

#: Alert rules (spec 8 table); ``evaluation_alerts`` documents each.
SUFFICIENT_DATA_SHARE = 0.1
CLASS_SHIFT_DISTANCE = 0.1
NUMERIC_SHIFT_STDS = 0.5
NUMERIC_SPREAD_RATIO = 2.0


@dataclass(frozen=True)
class NumericTarget:
    """Summary of a NUMERIC target's distribution (regression models)."""

    mean: float
    std: float


#: A target distribution: class name → count or share (binary, multiclass) or a numeric summary.
TargetDistribution = Mapping[str, float] | NumericTarget


def _number(value: float) -> str:
    """A count or a measure in a message, as the CLI writes numbers (``12,345``, ``0.1057``): a metric
    reads the same in an alert as in the evaluation's summary above it."""
    return format_number(value)


def _alert(name: str, passed: bool, message: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "message": message}


def _shares(label: str, distribution: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(distribution.values()))
    if total <= 0 or any(value < 0 for value in distribution.values()):
        raise InvalidInputException(
            f"the {label} target distribution needs non-negative counts with a positive sum"
        )
    return {name: value / total for name, value in distribution.items()}


def _target_alert(training: TargetDistribution, evaluation: TargetDistribution) -> dict[str, Any]:
    name = "Distribution of target variable"
    if isinstance(training, NumericTarget) and isinstance(evaluation, NumericTarget):
        shift = abs(evaluation.mean - training.mean)
        allowed = NUMERIC_SHIFT_STDS * training.std
        low, high = sorted((training.std, evaluation.std))
        spread_differs = high > NUMERIC_SPREAD_RATIO * low
        passed = shift <= allowed and not spread_differs
        return _alert(
            name,
            passed,
            f"Target mean {_number(evaluation.mean)} (evaluation) vs {_number(training.mean)} (training), "
            f"standard deviation {_number(evaluation.std)} vs {_number(training.std)}; "
            + (
                "the distributions are similar."
                if passed
                else f"they differ (mean shift above {NUMERIC_SHIFT_STDS} training standard deviations or "
                f"spreads differing by more than a factor {NUMERIC_SPREAD_RATIO:g})."
            ),
        )
    if isinstance(training, NumericTarget) or isinstance(evaluation, NumericTarget):
        raise InvalidInputException("training and evaluation target distributions must be of the same kind")
    p, q = _shares("training", training), _shares("evaluation", evaluation)
    distance = 0.5 * sum(abs(p.get(c, 0.0) - q.get(c, 0.0)) for c in set(p) | set(q))
    passed = distance <= CLASS_SHIFT_DISTANCE
    return _alert(
        name,
        passed,
        f"Total-variation distance between training and evaluation target shares is {distance:.4f}"
        + (" (within " if passed else " (above ")
        + f"{CLASS_SHIFT_DISTANCE}).",
    )


def evaluation_alerts(
    *,
    training_datasource_id: str,
    evaluation_datasource_id: str,
    training_records: int,
    evaluation_records: int,
    training_attributes: Collection[str],
    evaluation_attributes: Collection[str],
    invalid_evaluation_records: int,
    training_target: TargetDistribution,
    evaluation_target: TargetDistribution,
) -> list[dict[str, Any]]:
    """The console's five evaluation alerts (spec 8), each ``{"name", "passed", "message"}``, in table order.

    * Evaluation done on held-out data: the two datasource ids differ.
    * Sufficient data used: evaluation records ≥ 10% of training records.
    * Schema matched: the attribute name sets are equal.
    * All records used: no evaluation record was invalid.
    * Distribution of target variable: for classes, the total-variation distance ½·Σ|p_k − q_k| between
      training and evaluation class shares is ≤ 0.1; for numbers, the means differ by at most 0.5
      training standard deviations and neither standard deviation exceeds twice the other.
    """
    held_out = training_datasource_id != evaluation_datasource_id
    sufficient = evaluation_records >= SUFFICIENT_DATA_SHARE * training_records
    missing = sorted(set(training_attributes) - set(evaluation_attributes))
    extra = sorted(set(evaluation_attributes) - set(training_attributes))
    return [
        _alert(
            "Evaluation done on held-out data",
            held_out,
            "The model was evaluated on data it was not trained on."
            if held_out
            else f"Training and evaluation use the same datasource {evaluation_datasource_id}; "
            "the evaluation overstates the model's quality.",
        ),
        _alert(
            "Sufficient data used",
            sufficient,
            f"The evaluation used {_number(evaluation_records)} records, "
            f"{'at least' if sufficient else 'fewer than'} {SUFFICIENT_DATA_SHARE:.0%} of the "
            f"{_number(training_records)} training records.",
        ),
        _alert(
            "Schema matched",
            not missing and not extra,
            "The evaluation data has the training schema's attributes."
            if not missing and not extra
            else f"The evaluation schema differs from training: missing {missing}, extra {extra}.",
        ),
        _alert(
            "All records used",
            invalid_evaluation_records == 0,
            "Every evaluation record was used."
            if invalid_evaluation_records == 0
            else f"{_number(invalid_evaluation_records)} evaluation records were invalid (e.g. a missing "
            "target) and were left out.",
        ),
        _target_alert(training_target, evaluation_target),
    ]


#: A training whose last pass ends above its best loss by more than this share "stopped with the loss
#: rising"; a model no better than its baseline by this share is "no better than the baseline".
LOSS_RISE_SHARE = 0.01
BASELINE_MARGIN = 0.01
#: Regression predictions outside the training target's range, as a share of the records, tolerated.
OUT_OF_RANGE_SHARE = 0.01


def quality_alerts(
    model_type: str,
    result: Mapping[str, Any],
    losses: Sequence[float],
    target_range: tuple[float, float] | None = None,
    out_of_range: tuple[int, int] = (0, 0),
) -> list[dict[str, Any]]:
    """Alerts emrml adds to the console's five, for results that look right but are doubtful.

    * Training converged: the last pass's loss is within ``LOSS_RISE_SHARE`` of the best pass's; a rising
      loss usually means rows in a meaningful order without shuffling, or a learning rate too large.
    * Better than the baseline: the metric beats its baseline (AUC 0.5; the majority class's F1; the RMSE
      of always predicting the training mean) by ``BASELINE_MARGIN`` of the baseline.
    * Predictions in the target's range (REGRESSION, when ``target_range`` is known): at most
      ``OUT_OF_RANGE_SHARE`` of the predictions fall outside the training target's [min, max], and none is
      negative for a target that never was. ``out_of_range`` is (predictions outside, of which negative).
    """
    alerts = []
    if len(losses) >= 2:
        best, last = min(losses), losses[-1]
        rising = last > best + LOSS_RISE_SHARE * abs(best)
        alerts.append(
            _alert(
                "Training converged",
                not rising,
                f"Training ended with the loss rising: {_number(last)} after the last pass against "
                f"{_number(best)} at its best (pass {list(losses).index(best) + 1} of {len(losses)}). "
                "Shuffle the rows (sgd.shuffleType=auto) or give more passes."
                if rising
                else f"The loss fell to {_number(last)} over {len(losses)} passes.",
            )
        )
    key = MODEL_METRIC.get(model_type)
    if key in result and "baseline" in result:
        metric, baseline = float(result[key]), float(result["baseline"])
        lower_is_better = model_type == "REGRESSION"
        better = (
            metric < baseline * (1 - BASELINE_MARGIN)
            if lower_is_better
            else metric > baseline + BASELINE_MARGIN * abs(baseline)
        )
        alerts.append(
            _alert(
                "Better than the baseline",
                better,
                f"{key} {_number(metric)} against the baseline's {_number(baseline)}: the model "
                + ("predicts better than the baseline." if better else "is no better than the baseline."),
            )
        )
    if model_type == "REGRESSION" and target_range is not None:
        low, high = target_range
        outside, negative = out_of_range
        count = int(result.get("count", 0)) or 1
        passed = outside <= OUT_OF_RANGE_SHARE * count and not (negative and low >= 0)
        detail = (
            f"{_number(outside)} of {_number(count)} predictions fall outside the training target's range "
            f"[{_number(low)}, {_number(high)}]"
        )
        if negative and low >= 0:
            detail += f", {_number(negative)} of them negative for a target that never was"
        alerts.append(_alert("Predictions in the target's range", passed, detail + "."))
    return alerts


#: An input attribute whose mutual information with the target reaches this share of the target's entropy
#: "predicts the target almost perfectly". On the shared datasets the most informative honest attribute
#: reaches 0.25 (bike_sharing_hourly's hour), a part of the target's sum 0.68 (its ``registered``): the
#: statistics score a number by 10 quantile bins against 10 of the target, so even an exact copy of a
#: numeric target stays a little under 1.
LEAK_SHARE = 0.5


def leak_alert(statistics: Mapping[str, Any], used: Collection[str] | None = None) -> dict[str, Any] | None:
    """Whether an input attribute of the training data predicts the target almost perfectly by itself.

    ``statistics`` is a datasource's (``core.stats``): each input attribute's ``targetCorrelation`` (mutual
    information with the target, nats) is compared with the target's ``entropy``, the information there
    is to predict; a share of at least ``LEAK_SHARE`` fails the alert. Such an attribute is usually known
    only with or after the target (a part of a total, an outcome), so the evaluation overstates what the
    model will do on new records. ``used``: the attributes the model's recipe reads (None: every input).
    None when the statistics have no correlations (no usable target, or computed before the entropy was).
    """
    target = statistics.get("target") or {}
    ceiling = target.get("entropy")
    if not ceiling or ceiling <= 0:
        return None
    shares = sorted(
        (
            (float(a["targetCorrelation"]) / float(ceiling), a["name"])
            for a in statistics.get("attributes", [])
            if a.get("role") == "input"
            and a.get("targetCorrelation") is not None
            and (used is None or a["name"] in used)
        ),
        key=lambda pair: (-pair[0], pair[1]),
    )
    if not shares:
        return None
    name = "No attribute predicts the target by itself"
    suspects = [(share, attribute) for share, attribute in shares if share >= LEAK_SHARE]
    if not suspects:
        share, attribute = shares[0]
        return _alert(
            name,
            True,
            f"The attribute most informative about the target {target.get('name')!r}, {attribute!r}, "
            f"carries {share:.0%} of its information (mutual information against the target's entropy; "
            f"the alert is at {LEAK_SHARE:.0%}).",
        )
    listed = ", ".join(f"{attribute!r} ({share:.0%})" for share, attribute in suspects)
    return _alert(
        name,
        False,
        f"Possible target leak: {listed} alone carr{'ies' if len(suspects) == 1 else 'y'} most of the "
        f"information about the target {target.get('name')!r} (the alert is at {LEAK_SHARE:.0%}). An "
        "attribute known only with or after the target (a part of a total, an outcome) makes evaluations "
        "look better than predictions on new records will be; exclude it in the schema "
        "(excludedAttributeNames) unless its value is known when predicting.",
    )
