"""An evaluation: the metric, the alerts and each model type's charts."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

from emrml.cli_render.parts import (
    alerts_table,
    bar_chart,
    format_metric,
    keep_numbers_whole,
    key_values,
    share_text,
    status_text,
    timing_rows,
    titled_table,
)
from emrml.core.readable import format_number

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

#: Bins of the binary score histograms as drawn: 20 of width 0.05, aggregated from the stored 100.
SCORE_BIN_HUNDREDTHS = 5
#: Stored residual bins merged into one drawn bin (50 stored → 25 drawn).
RESIDUAL_BIN_GROUP = 2
#: The mean residual is called a bias ("on average the model under-predicts") only when its square is at
#: least this share of the mean squared error (MSE = mean residual² + the residuals' variance): below it,
#: taking the bias off every prediction would lower the RMSE by under 0.5%, and |mean| < 0.1 RMSE is about
#: a tenth of the residuals' standard deviation, well inside their spread.
MATERIAL_BIAS_SHARE = 0.01
#: Cut-offs of the binary threshold table besides the current one.
THRESHOLD_TABLE_STEP = 10


def evaluation_view(
    described: dict[str, Any], width: int, threshold: float | None = None
) -> list[RenderableType]:
    """``GetEvaluation`` and ``GetEvaluationInsights``: overview, the metric against its baseline, the
    type's charts, and the alerts.

    ``threshold`` is the binary cut-off to draw (default: the model's ScoreThreshold); it is shown at the
    nearest stored cut-off (a multiple of 0.01). ``width`` is the terminal width the charts fill.
    """
    from rich.text import Text

    evaluation = described["GetEvaluation"]
    insights = described.get("GetEvaluationInsights") or {}
    model_type = insights.get("MLModelType")
    data = insights.get("Insights") or {}
    metrics = data.get("metrics") or {}
    sections: list[RenderableType] = [_evaluation_overview(evaluation, model_type, data)]
    if metrics:
        sections.append(Text(evaluation_headline(model_type, metrics), style="bold"))
    if model_type == "BINARY" and "thresholdTable" in metrics:
        model_threshold = insights.get("ScoreThreshold", metrics["threshold"])
        chosen = threshold if threshold is not None else model_threshold
        sections += _binary_sections(metrics, chosen, model_threshold, width)
    elif model_type == "MULTICLASS" and "consoleView" in metrics:
        sections += _multiclass_sections(metrics)
    elif model_type == "REGRESSION" and "residualHistogram" in metrics:
        sections += _regression_sections(metrics, width)
    if data.get("alerts"):
        sections.append(alerts_table(data["alerts"]))
    return sections


def evaluation_headline(model_type: str | None, metrics: dict[str, Any]) -> str:
    """The metric and its baseline in one line, e.g. ``BinaryAUC 0.9312 (baseline 0.5: random scores)``."""
    if model_type == "BINARY":
        return f"BinaryAUC {format_number(metrics.get('BinaryAUC'))} (baseline 0.5: random scores)"
    if model_type == "MULTICLASS":
        return (
            f"MulticlassAvgFScore {format_number(metrics.get('MulticlassAvgFScore'))} "
            f"(baseline {format_number(metrics.get('baseline'))}: always the most frequent training class, "
            f"{metrics.get('baselineClass')!r})"
        )
    return (
        f"RegressionRMSE {format_number(metrics.get('RegressionRMSE'))} "
        f"(baseline {format_number(metrics.get('baseline'))}: always predicting the training mean)"
    )


def evaluation_summary(described: dict[str, Any]) -> str:
    """One line: id, status and metric."""
    evaluation = described["GetEvaluation"]
    metric = format_metric((evaluation.get("PerformanceMetrics") or {}).get("Properties"))
    return f"Evaluation {evaluation['EvaluationId']}: {status_text(evaluation)}" + (
        f", {metric}" if metric else ""
    )


def _evaluation_overview(evaluation: dict[str, Any], model_type: str | None, data: dict[str, Any]) -> Table:
    model = evaluation.get("MLModelId", "")
    records = None
    if "records" in data:
        # ``records`` counts every record read; the invalid ones (no usable target) were left out, as were
        # the unreadable ones, which were not read.
        invalid = data.get("invalidRecords") or 0
        unreadable = data.get("unreadableRecords") or 0
        records = (
            f"{data['records'] - invalid:,} used"
            + (f", {invalid:,} left out (no usable target)" if invalid else "")
            + (f", {unreadable:,} unreadable" if unreadable else "")
        )
    return key_values(
        f"Evaluation {evaluation.get('EvaluationId')}",
        [
            ("Name", evaluation.get("Name")),
            ("Status", status_text(evaluation)),
            ("Message", evaluation.get("Message")),
            ("Model", f"{model} ({model_type})" if model_type else model),
            ("Evaluation data", evaluation.get("EvaluationDataSourceId")),
            ("Location", evaluation.get("InputDataLocationS3")),
            ("Records", records),
            ("Metric", format_metric((evaluation.get("PerformanceMetrics") or {}).get("Properties"))),
            *timing_rows(evaluation),
        ],
    )


def _binary_sections(
    metrics: dict[str, Any], threshold: float, model_threshold: float, width: int
) -> list[RenderableType]:
    from rich.text import Text

    table = metrics["thresholdTable"]

    def nearest(cut_off: float) -> int:
        # The stored table has one row per hundredth; the nearest row stands for a cut-off.
        return min(range(len(table)), key=lambda i: abs(table[i]["threshold"] - cut_off))

    current = nearest(threshold)
    cut = table[current]["threshold"]
    histograms = metrics["histograms"]
    hundredths = len(histograms["positive"])
    bounds = sorted({*range(0, hundredths + 1, SCORE_BIN_HUNDREDTHS), current})
    spans = list(itertools.pairwise(bounds))
    labels = [f"{low / hundredths:.2f}–{high / hundredths:.2f}" for low, high in spans]
    positives = [sum(histograms["positive"][low:high]) for low, high in spans]
    negatives = [sum(histograms["negative"][low:high]) for low, high in spans]
    chart = bar_chart(
        labels,
        [
            (f"Actual 1s ({format_number(sum(positives))})", positives),
            (f"Actual 0s ({format_number(sum(negatives))})", negatives),
        ],
        width,
        marker=(bounds.index(current), f"cut-off {cut:.2f}: scores ≥ {cut:.2f} are predicted 1"),
    )
    return [
        Text("Score distribution (records per score range)", style="bold"),
        chart,
        _confusion_table(table[current], sum(positives), sum(negatives)),
        _threshold_table(table, current, nearest(model_threshold), width),
    ]


def _confusion_table(row: dict[str, Any], positives: float, negatives: float) -> Table:
    """TP/FN/FP/TN at one cut-off, from its stored rates and the records of each label."""
    true_positives = row["recall"] * positives
    false_positives = row["falsePositiveRate"] * negatives
    whole = all(float(n).is_integer() for n in (positives, negatives))

    def count(value: float) -> str:
        return format_number(round(value) if whole else value)

    table = titled_table(
        f"At cut-off {row['threshold']:.2f}",
        "",
        "Predicted 1",
        "Predicted 0",
        right=["Predicted 1", "Predicted 0"],
    )
    table.add_row("Actual 1", count(true_positives), count(positives - true_positives))
    table.add_row("Actual 0", count(false_positives), count(negatives - false_positives))
    return table


#: The marks of the trade-off table's rows: in words in a last column where the table leaves room for it,
#: else one character before the cut-off, explained in a caption (rich drops a last column that does not
#: fit, and with it the only sign of which row is current).
_MARKS = {"current": "◀ current", "shown": "◀ tried"}
_SHORT_MARKS = {"current": "◀", "shown": "◁"}
#: The trade-off table's width without its marks column.
_TRADE_OFF_WIDTH = 65


def _threshold_table(table: list[dict[str, Any]], shown: int, current: int, width: int) -> Table:
    """Every tenth cut-off, the one drawn (``shown``, bold) and the model's score threshold (``current``):
    a cut-off tried with ``--score-threshold`` is not the one predictions use, and the marks say which is
    which."""
    numbers = ["Cut-off", "Accuracy", "Precision", "Recall", "FPR", "F1", "Predicted 1"]
    words = width >= _TRADE_OFF_WIDTH + 2 + max(len(mark) for mark in _MARKS.values())
    out = titled_table("Trade-off by cut-off", *numbers, *([""] if words else []), right=numbers)
    for index in sorted({*range(0, len(table), THRESHOLD_TABLE_STEP), shown, current}):
        row = table[index]
        role = "current" if index == current else "shown" if index == shown else None
        cut_off = f"{row['threshold']:.2f}"
        if role and not words:
            cut_off = f"{_SHORT_MARKS[role]} {cut_off}"
        out.add_row(
            cut_off,
            *(f"{row[key]:.3f}" for key in ("accuracy", "precision", "recall", "falsePositiveRate", "f1")),
            share_text(row["predictedPositiveRate"]),
            *([_MARKS[role] if role else ""] if words else []),
            style="bold" if index == shown else None,
        )
    if not words:
        legend = [f"{_SHORT_MARKS['current']} the model's score threshold"]
        if shown != current:
            legend.append(f"{_SHORT_MARKS['shown']} the --score-threshold tried")
        out.caption, out.caption_justify = "; ".join(legend), "left"
    return keep_numbers_whole(out)


def _multiclass_sections(metrics: dict[str, Any]) -> list[RenderableType]:
    from rich.text import Text

    view = metrics["consoleView"]
    classes = view["classes"]
    table = titled_table(
        "Confusion matrix (rows: true class; columns: predicted class; cells: records)",
        "True \\ predicted",
        *classes,
        "F1",
        "True share",
        right=[*classes, "F1", "True share"],
    )
    for row, name in enumerate(classes):
        cells = [
            Text(format_number(value), style="bold green" if column == row else "")
            for column, value in enumerate(view["counts"][row])
        ]
        table.add_row(name, *cells, f"{view['f1'][row]:.3f}", share_text(view["trueFrequencies"][row]))
    table.add_row(
        "Predicted share", *(share_text(share) for share in view["predictedFrequencies"]), "", "", style="dim"
    )
    sections: list[RenderableType] = [table]
    if view.get("othersClasses"):
        sections.append(f"others: {', '.join(view['othersClasses'])}")
    return sections


def _regression_sections(metrics: dict[str, Any], width: int) -> list[RenderableType]:
    from rich.text import Text

    histogram = metrics["residualHistogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    spans = [(i, min(i + RESIDUAL_BIN_GROUP, len(counts))) for i in range(0, len(counts), RESIDUAL_BIN_GROUP)]
    merged = [sum(counts[low:high]) for low, high in spans]
    # Empty bins at the ends add rows without information: the labels show the range anyway. Not next to
    # a "below" or "above" row, though: the chart would skip a range between the two.
    used = [i for i, count in enumerate(merged) if count > 0] or [0]
    first = 0 if histogram.get("below") else used[0]
    last = len(merged) - 1 if histogram.get("above") else used[-1]
    spans, merged = spans[first : last + 1], merged[first : last + 1]
    digits = max(0, 1 - math.floor(math.log10(edges[spans[0][1]] - edges[spans[0][0]])))
    labels = [f"{edges[low]:,.{digits}f} to {edges[high]:,.{digits}f}" for low, high in spans]
    if histogram.get("below"):
        labels, merged = [f"below {edges[0]:,.{digits}f}", *labels], [histogram["below"], *merged]
    if histogram.get("above"):
        labels, merged = [*labels, f"above {edges[-1]:,.{digits}f}"], [*merged, histogram["above"]]
    title = "Residuals (actual − predicted)"
    mean = metrics.get("meanResidual")
    if mean is not None:
        title += f": mean {format_number(mean)}; {bias_text(mean, metrics['RegressionRMSE'])}"
    return [
        Text(title, style="bold"),
        bar_chart(labels, [("Records", merged)], width),
    ]


def bias_text(mean: float, rmse: float) -> str:
    """Whether the model predicts too low or too high on average, when that is a material part of its error
    (``MATERIAL_BIAS_SHARE``)."""
    if mean and mean * mean >= MATERIAL_BIAS_SHARE * rmse * rmse:
        return f"on average the model {'under' if mean > 0 else 'over'}-predicts"
    return f"the model is unbiased (|mean| under {math.sqrt(MATERIAL_BIAS_SHARE):.0%} of the RMSE)"
