"""A model: overview, training report and its strongest features."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from emrml.cli_render.parts import (
    alerts_table,
    format_binary_bytes,
    format_bytes,
    format_milliseconds,
    format_time,
    key_values,
    status_text,
    timing_rows,
    titled_table,
)
from emrml.core.readable import format_number

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

#: How many of a model's strongest features ``model show`` lists.
TOP_FEATURES_SHOWN = 20


def model_view(described: dict[str, Any]) -> list[RenderableType]:
    """``GetMLModel`` (verbose) and ``GetMLModelInsights``: overview, parameters, training report, recipe,
    the features with the largest weights and the alerts about the training data."""
    from rich.text import Text

    model = described["GetMLModel"]
    insights = described.get("GetMLModelInsights") or {}
    parameters = model.get("TrainingParameters") or {}
    sections: list[RenderableType] = [
        _model_overview(model),
        key_values(
            "Training parameters",
            [(key, _parameter_text(key, parameters[key])) for key in sorted(parameters)],
        ),
    ]
    if insights.get("TrainingReport"):
        sections.append(_training_report(insights["TrainingReport"], insights.get("FeatureCount")))
    if model.get("Recipe"):
        sections.append(Text.assemble(("Recipe", "bold"), "\n", model["Recipe"]))
    if insights.get("TopFeatures"):
        sections.append(_top_features_table(insights["TopFeatures"]))
    if insights.get("Alerts"):
        sections.append(alerts_table(insights["Alerts"]))
    return sections


def _parameter_text(key: str, value: str) -> str:
    """A training parameter's value; a size in bytes (``sgd.maxMLModelSizeInBytes``) in binary units
    followed by the exact count, as the API documents it (``100 MiB (104,857,600 bytes)``)."""
    if key.endswith("InBytes") and value.isdigit():
        return format_binary_bytes(int(value))
    return value


def model_summary(described: dict[str, Any]) -> str:
    """One line: id, type, status, size and training time."""
    model = described["GetMLModel"]
    details = [
        text
        for text in (format_bytes(model.get("SizeInBytes")), format_milliseconds(model.get("ComputeTime")))
        if text
    ]
    extra = f" ({', '.join(details)})" if details else ""
    return f"Model {model['MLModelId']}: {model.get('MLModelType')} {status_text(model)}{extra}"


def _model_overview(model: dict[str, Any]) -> Table:
    threshold = model.get("ScoreThreshold")
    if threshold is not None and model.get("ScoreThresholdLastUpdatedAt"):
        threshold = f"{threshold} (set {format_time(model['ScoreThresholdLastUpdatedAt'])})"
    endpoint = (model.get("EndpointInfo") or {}).get("EndpointStatus")
    return key_values(
        f"Model {model.get('MLModelId')}",
        [
            ("Name", model.get("Name")),
            ("Type", model.get("MLModelType")),
            ("Status", status_text(model)),
            ("Message", model.get("Message")),
            ("Training data", model.get("TrainingDataSourceId")),
            ("Location", model.get("InputDataLocationS3")),
            ("Score threshold", threshold),
            ("Size", format_bytes(model.get("SizeInBytes"))),
            ("Endpoint", endpoint if endpoint != "NONE" else None),
            *timing_rows(model),
        ],
    )


def _training_report(report: dict[str, Any], feature_count: int | None) -> Table:
    losses = report.get("losses") or []
    loss = f"{format_number(losses[0])} → {format_number(losses[-1])}" if losses else None
    validation = report.get("validation_losses") or []
    target = report.get("trainingTarget") or {}
    if "classCounts" in target:
        target_text = ", ".join(f"{label}: {format_number(n)}" for label, n in target["classCounts"].items())
    elif "mean" in target:
        target_text = f"mean {format_number(target['mean'])}, std {format_number(target.get('std'))}"
    else:
        target_text = None
    passes = report.get("passes")
    if passes is not None and report.get("stopped_early"):
        passes = f"{passes} (stopped early: the loss stopped improving)"
    return key_values(
        "Training",
        [
            ("Records", report.get("rows")),
            ("Passes", passes),
            ("Learning rate", report.get("learning_rate")),
            ("Loss by pass", loss),
            ("Validation loss", format_number(validation[-1]) if validation else None),
            ("Features", feature_count),
            ("Non-zero weights", report.get("nonzero_features")),
            ("Pruned to fit size", report.get("pruned_features")),
            ("Training target", target_text),
        ],
    )


def _top_features_table(features: list[dict[str, Any]]) -> Table:
    multiclass = any(isinstance(item.get("weight"), dict) for item in features)
    shown = features[:TOP_FEATURES_SHOWN]
    columns = ["#", "Feature", "Class", "Weight"] if multiclass else ["#", "Feature", "Weight"]
    table = titled_table(f"Top {len(shown)} features by weight", *columns, right=["#", "Weight"])
    for position, item in enumerate(shown, start=1):
        weight = item.get("weight")
        if isinstance(weight, dict):
            label, value = max(weight.items(), key=lambda pair: abs(pair[1]))
            table.add_row(str(position), item.get("feature", ""), label, _weight(value))
        else:
            table.add_row(str(position), item.get("feature", ""), _weight(weight))
    return table


def _weight(value: Any) -> str:
    """A weight with 4 significant digits, trailing zeros kept (-1.850 over -1.863, not -1.85), so that a
    column of them reads digit under digit."""
    if not isinstance(value, float) or not math.isfinite(value) or abs(value) >= 10_000:
        return format_number(value)
    return f"{value:#.4g}".rstrip(".")
