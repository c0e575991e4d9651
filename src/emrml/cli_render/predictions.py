"""Batch predictions, real-time endpoints, one prediction and tags."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emrml.cli_render.parts import (
    format_time,
    key_values,
    records_text,
    status_text,
    timing_rows,
)
from emrml.core.readable import format_number

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table


def _unparsed(prediction: dict[str, Any]) -> str | None:
    count = prediction.get("UnparsedRecordCount")
    if not count:
        return None
    return f"{count:,} records had a value not readable as its type; it was scored as missing"


def batch_prediction_view(described: dict[str, Any]) -> list[RenderableType]:
    """``GetBatchPrediction``: status, progress, record counts and where the results are."""
    prediction = described["GetBatchPrediction"]
    return [
        key_values(
            f"Batch prediction {prediction.get('BatchPredictionId')}",
            [
                ("Name", prediction.get("Name")),
                ("Status", status_text(prediction)),
                ("Message", prediction.get("Message")),
                ("Model", prediction.get("MLModelId")),
                ("Datasource", prediction.get("BatchPredictionDataSourceId")),
                ("Input", prediction.get("InputDataLocationS3")),
                ("Records", records_text(prediction) or None),
                ("Unreadable values", _unparsed(prediction)),
                ("Output", prediction.get("OutputUri")),
                ("Manifest", prediction.get("ManifestLocation")),
                *timing_rows(prediction),
            ],
        )
    ]


def batch_prediction_summary(described: dict[str, Any]) -> str:
    prediction = described["GetBatchPrediction"]
    records = records_text(prediction)
    return f"Batch prediction {prediction['BatchPredictionId']}: {status_text(prediction)}" + (
        f", {records}" if records else ""
    )


def endpoint_view(model_id: str, info: dict[str, Any]) -> Table:
    """A model's real-time endpoint: status, URL, capacity."""
    return key_values(
        f"Real-time endpoint of {model_id}",
        [
            ("Status", info.get("EndpointStatus")),
            ("URL", info.get("EndpointUrl")),
            ("Requests per second", info.get("PeakRequestsPerSecond")),
            ("Created", format_time(info.get("CreatedAt"))),
        ],
    )


def prediction_view(prediction: dict[str, Any]) -> Table:
    """One Predict answer: the label or value, and the scores.

    A BINARY answer's one score is keyed by the predicted label but is always the probability of 1 (the
    API's shape): shown as ``Score {label}`` it would read as the probability of a predicted 0."""
    rows: list[tuple[str, Any]] = []
    if "predictedLabel" in prediction:
        rows.append(("Predicted label", prediction["predictedLabel"]))
    if "predictedValue" in prediction:
        rows.append(("Predicted value", format_number(prediction["predictedValue"], 6)))
    scores = prediction.get("predictedScores") or {}
    if (prediction.get("details") or {}).get("PredictiveModelType") == "BINARY":
        rows += [("Score (probability of 1)", format_number(score, 6)) for score in scores.values()]
    else:
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        rows += [(f"Score {label}", format_number(score, 6)) for label, score in ranked]
    return key_values("Prediction", rows)


def tags_table(tags: list[dict[str, str]]) -> Table:
    """DescribeTags tags, one row each."""
    from rich.table import Table

    table = Table("Key", "Value", box=None, header_style="bold")
    for tag in tags:
        table.add_row(tag["Key"], tag.get("Value", ""))
    return table
