"""Rich displays for notebooks: the HTML that ``DataSource``, ``Model`` and ``Evaluation`` give Jupyter
(``_repr_html_``), with the console's charts drawn as inline SVG.

Self-contained on purpose: no script, no stylesheet or font to fetch, so a notebook shows them offline and
keeps them when saved. The numbers are the operations' own (``GetDataSourceStatistics``,
``GetMLModelInsights``, ``GetEvaluationInsights``), the ones the console and the CLI show; only the drawing
differs from the console's D3 charts. Every text from the data is escaped.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from html import escape
from typing import Any

from emrml.cli_render.evaluations import bias_text
from emrml.cli_render.parts import format_bytes
from emrml.core.readable import format_number

WIDTH, HEIGHT = 420, 140
BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#888"
#: Space between charts that a notebook lays out side by side, tops aligned.
GAP, SVG_STYLE = 16, "vertical-align:top"


def _number(value: Any) -> str:
    """A number as the CLI writes it (``core.readable``), other values as text; escaped for HTML."""
    return escape(format_number(value))


def _size(size: int | None) -> str | None:
    """A size as the CLI writes it; None (the row left out) when there is none."""
    return format_bytes(size) or None


def table(rows: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of the rows that have a value."""
    cells = "".join(
        f"<tr><th style='text-align:left'>{escape(k)}</th><td>{_number(v)}</td></tr>"
        for k, v in rows
        if v is not None
    )
    return f"<table>{cells}</table>"


def bars(
    series: Sequence[Sequence[float]],
    labels: Sequence[str] = (),
    *,
    title: str,
    colors: Sequence[str] = (BLUE, ORANGE),
    names: Sequence[str] = (),
    marker: tuple[int, str] | None = None,
) -> str:
    """A bar chart as SVG: one or more series over the same bins (overlaid, half transparent).

    ``marker`` (bin index, text) draws a dashed vertical line at the left edge of that bin, e.g. a cut-off.
    """
    count = max((len(values) for values in series), default=0)
    peak = max((max(values, default=0) for values in series), default=0) or 1
    width = WIDTH / max(count, 1)
    shapes = []
    for values, color in zip(series, colors, strict=False):
        for i, value in enumerate(values):
            height = HEIGHT * float(value) / peak
            tip = escape(f"{labels[i] if i < len(labels) else i}: {value:g}")
            shapes.append(
                f"<rect x='{i * width:.2f}' y='{HEIGHT - height:.2f}' width='{max(width - 1, 0.5):.2f}' "
                f"height='{height:.2f}' fill='{color}' fill-opacity='0.6'><title>{tip}</title></rect>"
            )
    if marker is not None:
        x = marker[0] * width
        shapes.append(
            f"<line x1='{x:.2f}' y1='0' x2='{x:.2f}' y2='{HEIGHT}' stroke='{GREY}' stroke-dasharray='4 3'>"
            f"<title>{escape(marker[1])}</title></line>"
        )
    legend = " ".join(
        f"<tspan fill='{color}'>■ {escape(name)}</tspan>" for name, color in zip(names, colors, strict=False)
    )
    axis = ""
    if labels:
        # The first and last bins' labels: the range the bars span, readable without hovering.
        axis = (
            f"<text x='0' y='{HEIGHT + 30}' font-size='10' fill='{GREY}'>{escape(labels[0])}</text>"
            f"<text x='{WIDTH}' y='{HEIGHT + 30}' font-size='10' fill='{GREY}' text-anchor='end'>"
            f"{escape(labels[-1])}</text>"
        )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH + GAP}' height='{HEIGHT + 34}' role='img' "
        f"style='{SVG_STYLE}' aria-label='{escape(title)}'>"
        f"<text x='0' y='12' font-size='12'>{escape(title)} {legend}</text>"
        f"<g transform='translate(0,18)'>{''.join(shapes)}</g>{axis}</svg>"
    )


#: Room for the labels of a labelled bar chart, and the height of each of its rows.
LABEL_WIDTH, ROW_HEIGHT = 220, 16


def labelled_bars(labels: Sequence[str], values: Sequence[float], *, title: str) -> str:
    """Horizontal bars as SVG, one row per label with its name and value written out: for categories and
    features, whose names a reader needs to see (not only on hover). Negative values are drawn in orange,
    to the same scale as positive ones."""
    peak = max((abs(float(v)) for v in values), default=0) or 1
    span = WIDTH - LABEL_WIDTH - 60
    rows = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 18 + i * ROW_HEIGHT
        # Long names lose their middle: a feature's end (its bin, its class) matters as much as its start.
        shown = label if len(label) <= 38 else label[:18] + "…" + label[-19:]
        length = span * abs(float(value)) / peak
        color = BLUE if value >= 0 else ORANGE
        rows.append(
            f"<text x='{LABEL_WIDTH - 4}' y='{y + 11}' font-size='11' text-anchor='end'>{escape(shown)}"
            f"<title>{escape(label)}</title></text>"
            f"<rect x='{LABEL_WIDTH}' y='{y + 2}' width='{max(length, 0.5):.2f}' height='{ROW_HEIGHT - 4}' "
            f"fill='{color}' fill-opacity='0.6'><title>{escape(label)}: {value:g}</title></rect>"
            f"<text x='{LABEL_WIDTH + length + 4:.2f}' y='{y + 11}' font-size='10'>{_number(value)}</text>"
        )
    height = 18 + len(labels) * ROW_HEIGHT + 4
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH + GAP}' height='{height}' role='img' "
        f"style='{SVG_STYLE}' aria-label='{escape(title)}'>"
        f"<text x='0' y='12' font-size='12'>{escape(title)}</text>{''.join(rows)}</svg>"
    )


def heat_map(classes: Sequence[str], counts: Sequence[Sequence[float]], *, title: str) -> str:
    """A confusion matrix as SVG: rows true classes, columns predicted, darker for more, each cell's count
    written in it and each row and column named (the classes' order is the API's, not sorted)."""
    size = len(counts)
    names = [*classes, *["others"] * (size - len(classes))]
    cell = max(22.0, min(36.0, 360 / max(size, 1)))
    shown = [name if len(name) <= 12 else name[:11] + "…" for name in names]
    margin = 8 + 7 * max((len(name) for name in shown), default=1)  # the row names, about 7 px a character
    top = 34  # the title, then the column names
    peak = max((max(row, default=0) for row in counts), default=0) or 1
    shapes = []
    for j, name in enumerate(shown):
        x = margin + (j + 0.5) * cell
        shapes.append(
            f"<text x='{x:.1f}' y='{top - 4}' font-size='10' text-anchor='middle'>{escape(name)}"
            f"<title>predicted {escape(names[j])}</title></text>"
        )
    for i, row in enumerate(counts):
        y = top + i * cell
        shapes.append(
            f"<text x='{margin - 4}' y='{y + cell / 2 + 4:.1f}' font-size='10' text-anchor='end'>"
            f"{escape(shown[i])}<title>true {escape(names[i])}</title></text>"
        )
        for j, value in enumerate(row):
            share = float(value) / peak
            tip = escape(f"true {names[i]}, predicted {names[j]}: {value:g}")
            x = margin + j * cell
            shapes.append(
                f"<rect x='{x:.1f}' y='{y:.1f}' width='{cell - 1:.1f}' height='{cell - 1:.1f}' "
                f"fill='{BLUE}' fill-opacity='{0.08 + 0.92 * share:.3f}'><title>{tip}</title></rect>"
                f"<text x='{x + cell / 2:.1f}' y='{y + cell / 2 + 3:.1f}' font-size='9' text-anchor='middle' "
                f"fill='{'white' if share > 0.5 else 'black'}'>{_number(value)}</text>"
            )
    width, height = margin + size * cell + GAP, top + size * cell + 4
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' role='img' "
        f"style='{SVG_STYLE}' aria-label='{escape(title)}'>"
        f"<text x='0' y='12' font-size='12'>{escape(title)}</text>{''.join(shapes)}</svg>"
    )


def _section(title: str, *parts: str) -> str:
    return f"<div class='emrml'><h4>{escape(title)}</h4>{''.join(parts)}</div>"


def unavailable_html(title: str, error: Exception) -> str:
    """What a display shows of an object it could not read: the error's type and message."""
    return _section(title, f"<p>{escape(type(error).__name__)}: {escape(str(error))}</p>")


#: Attributes a datasource's display draws a chart for (the target's first); the others are named.
ATTRIBUTES_DRAWN = 12


def datasource_html(described: dict[str, Any], statistics: dict[str, Any] | None) -> str:
    parts = [
        table(
            [
                ("Name", described.get("Name")),  # as the CLI's views: the name a user gave, if any
                ("Status", described.get("Status")),
                ("Message", described.get("Message")),
                ("Location", described.get("DataLocationS3")),
                ("Size", _size(described.get("DataSizeInBytes"))),
                ("Records", (statistics or {}).get("TotalRecordCount")),
                ("Invalid records", (statistics or {}).get("InvalidRecordCount")),
            ]
        )
    ]
    stats = (statistics or {}).get("Statistics") or {}
    target = stats.get("target")
    attributes = stats.get("attributes", [])
    if target:
        counts = (target.get("distribution") or {}).get("counts") or {}
        if counts:
            parts.append(labelled_bars(list(counts), list(counts.values()), title=f"target {target['name']}"))
        # A NUMERIC target has no counts: its histogram comes first among the attributes'.
        first = [a for a in attributes if a.get("role") == "target" and not counts]
        attributes = first + [a for a in attributes if a.get("role") != "target"]
    for attribute in attributes[:ATTRIBUTES_DRAWN]:
        name = attribute["name"]
        if "histogram" in attribute:
            histogram = attribute["histogram"]
            edges = [format_number(e) for e in histogram["edges"]]
            parts.append(bars([histogram["counts"]], edges, title=f"{name} (numeric)"))
        elif attribute.get("topValues"):
            top = attribute["topValues"][:10]
            parts.append(
                labelled_bars(
                    [str(v["value"]) for v in top], [v["count"] for v in top], title=f"{name} (top values)"
                )
            )
        elif attribute.get("prominentWords"):
            # A TEXT attribute: its words most telling of the target (else most frequent), with their counts.
            words = [w for w in attribute["prominentWords"][:10] if isinstance(w, dict)]
            parts.append(
                labelled_bars(
                    [str(w.get("word", "")) for w in words],
                    [w.get("count", 0) for w in words],
                    title=f"{name} (prominent words)",
                )
            )
    rest = [str(attribute.get("name", "")) for attribute in attributes[ATTRIBUTES_DRAWN:]]
    if rest:
        # Said, not silently dropped: a reader looks for an attribute's chart that is not there.
        parts.append(
            f"<p>{len(rest)} more attributes, not drawn: {escape(', '.join(rest))} "
            "(<code>statistics()</code> has every attribute's numbers)</p>"
        )
    return _section(f"DataSource {described.get('DataSourceId', '')}", *parts)


def model_html(described: dict[str, Any], insights: dict[str, Any] | None) -> str:
    parts = [
        table(
            [
                ("Name", described.get("Name")),  # as the CLI's views: the name a user gave, if any
                ("Status", described.get("Status")),
                ("Message", described.get("Message")),
                ("Type", described.get("MLModelType")),
                ("Training data", described.get("TrainingDataSourceId")),
                ("Size", _size(described.get("SizeInBytes"))),
                ("Score threshold", described.get("ScoreThreshold")),
            ]
        )
    ]
    if insights:
        report = insights.get("TrainingReport") or {}
        losses = [loss for loss in report.get("losses") or [] if loss is not None]
        if losses:
            # Bars from zero make a loss falling from 0.2312 to 0.2148 look flat: the title says by how much.
            title = f"loss by pass ({format_number(losses[0], 4)} → {format_number(losses[-1], 4)})"
            parts.append(bars([losses], [f"pass {i + 1}" for i in range(len(losses))], title=title))
        top = [_strongest(f) for f in (insights.get("TopFeatures") or [])[:15]]
        if top:
            parts.append(labelled_bars([f for f, _ in top], [w for _, w in top], title="top features"))
        parts += _alert_list(insights.get("Alerts") or [])
    return _section(f"MLModel {described.get('MLModelId', '')}", *parts)


def _strongest(feature: dict[str, Any]) -> tuple[str, float]:
    """A top feature's name and weight; a MULTICLASS one has a weight per class: its largest in size, the
    class named after the feature (as the CLI's Class column)."""
    weight = feature.get("weight")
    if isinstance(weight, dict):
        label, value = max(weight.items(), key=lambda pair: abs(pair[1]))
        return f"{feature.get('feature', '')} → {label}", float(value)
    return str(feature.get("feature", "")), float(weight or 0)


def _alert_list(alerts: list[dict[str, Any]]) -> list[str]:
    """The checks' messages as one list, a failed one (an alert) marked as the CLI and console mark it."""
    if not alerts:
        return []
    items = "".join(
        f"<li>✓ {escape(str(a.get('message', a)))}</li>"
        if a.get("passed", True)
        else f"<li style='color:#b00020'><b>✗ alert:</b> {escape(str(a.get('message', a)))}</li>"
        for a in alerts
    )
    return [f"<ul style='list-style:none;padding-left:0'>{items}</ul>"]


def evaluation_html(
    described: dict[str, Any], insights: dict[str, Any] | None, score_threshold: float | None = None
) -> str:
    """``score_threshold``: the model's cut-off now, marked on the score histograms (default: the one it
    had when evaluated)."""
    properties = (described.get("PerformanceMetrics") or {}).get("Properties") or {}
    metrics = (insights or {}).get("metrics") or {}
    baseline = 0.5 if "BinaryAUC" in properties else metrics.get("baseline")
    parts = [
        table(
            [
                ("Name", described.get("Name")),  # as the CLI's views: the name a user gave, if any
                ("Status", described.get("Status")),
                ("Message", described.get("Message")),
                ("Model", described.get("MLModelId")),
                ("Evaluation data", described.get("EvaluationDataSourceId")),
                *((name, float(value)) for name, value in properties.items()),
                ("Baseline", baseline),
            ]
        )
    ]
    if "histograms" in metrics:
        parts += _score_histograms(metrics, score_threshold)
        parts += _cut_off_tables(metrics, score_threshold)
    if "confusionMatrix" in metrics:
        matrix = metrics["consoleView"] if "consoleView" in metrics else metrics["confusionMatrix"]
        parts.append(
            heat_map(matrix["classes"], matrix["counts"], title="confusion matrix (rows: true class)")
        )
    if "residualHistogram" in metrics:
        residuals = metrics["residualHistogram"]
        edges = [format_number(e, 3) for e in residuals["edges"]]
        parts.append(bars([residuals["counts"]], edges, title="residuals (actual − predicted)"))
        mean = metrics.get("meanResidual")
        if mean is not None and "RegressionRMSE" in metrics:  # whether the model under- or over-predicts
            bias = bias_text(mean, metrics["RegressionRMSE"])
            parts.append(f"<p>Mean residual {_number(mean)}: {escape(bias)}.</p>")
    parts += _alert_list((insights or {}).get("alerts") or [])
    return _section(f"Evaluation {described.get('EvaluationId', '')}", *parts)


def _score_histograms(metrics: dict[str, Any], score_threshold: float | None) -> list[str]:
    """The scores of the actual 1s and of the actual 0s, one chart each: on one scale the far more numerous
    class (usually the 0s) flattens the other's bars to nothing. The dashed line is the cut-off."""
    histograms = metrics["histograms"]
    edges = histograms["edges"]
    labels = [f"{low:.2f}–{high:.2f}" for low, high in itertools.pairwise(edges)]
    threshold = score_threshold if score_threshold is not None else metrics.get("threshold")
    marker = None
    if threshold is not None:
        bin_index = min(range(len(edges)), key=lambda i: abs(edges[i] - threshold))
        marker = (bin_index, f"cut-off {threshold:g}: scores at or above it are predicted 1")
    return [
        bars(
            [counts],
            labels,
            title=f"scores of the actual {label}s ({sum(counts):,})",
            colors=(color,),
            marker=marker,
        )
        for label, counts, color in (
            ("1", histograms["positive"], BLUE),
            ("0", histograms["negative"], ORANGE),
        )
    ]


#: The trade-off table's rows: every tenth hundredth (0.0, 0.1, ... 1.0), and the cut-off.
TRADE_OFF_STEP = 10
_RATES = (
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("falsePositiveRate", "FPR"),
    ("f1", "F1"),
)


def _cut_off_tables(metrics: dict[str, Any], score_threshold: float | None) -> list[str]:
    """What the CLI's ``evaluation show`` gives under the histograms: the records on each side of the
    cut-off by actual class, and accuracy, precision, recall, FPR, F1 and the share predicted 1 at every
    tenth, the cut-off's row marked (where a reader chooses the score threshold)."""
    table = metrics.get("thresholdTable") or []
    histograms = metrics["histograms"]
    if not table:
        return []
    threshold = score_threshold if score_threshold is not None else metrics.get("threshold", 0.5)
    current = min(range(len(table)), key=lambda i: abs(table[i]["threshold"] - threshold))
    row = table[current]
    positives, negatives = sum(histograms["positive"]), sum(histograms["negative"])
    true_positives = row["recall"] * positives
    false_positives = row["falsePositiveRate"] * negatives
    whole = all(float(n).is_integer() for n in (positives, negatives))  # else weighted records

    def count(value: float) -> str:
        return _number(round(value) if whole else value)

    right = "style='text-align:right;padding-left:12px'"
    counts = (
        f"<table style='display:inline-table;vertical-align:top;margin-right:{GAP}px'>"
        f"<caption style='text-align:left'>at cut-off {row['threshold']:.2f}</caption>"
        f"<tr><th></th><th {right}>predicted 1</th><th {right}>predicted 0</th></tr>"
        f"<tr><th style='text-align:left'>actual 1</th><td {right}>{count(true_positives)}</td>"
        f"<td {right}>{count(positives - true_positives)}</td></tr>"
        f"<tr><th style='text-align:left'>actual 0</th><td {right}>{count(false_positives)}</td>"
        f"<td {right}>{count(negatives - false_positives)}</td></tr></table>"
    )
    header = "".join(f"<th {right}>{label}</th>" for label in ("cut-off", *(n for _, n in _RATES)))
    rows = []
    for index in sorted({*range(0, len(table), TRADE_OFF_STEP), current}):
        entry = table[index]
        cells = [f"{entry['threshold']:.2f}", *(f"{entry[key]:.3f}" for key, _ in _RATES)]
        cells.append(f"{100 * entry['predictedPositiveRate']:.1f}%")
        mark = "◀ cut-off" if index == current else ""
        style = " style='font-weight:bold'" if index == current else ""
        rows.append(f"<tr{style}>{''.join(f'<td {right}>{cell}</td>' for cell in cells)}<td>{mark}</td></tr>")
    trade_off = (
        "<table style='display:inline-table;vertical-align:top'>"
        "<caption style='text-align:left'>trade-off by cut-off</caption>"
        f"<tr>{header}<th {right}>predicted 1</th><th></th></tr>{''.join(rows)}</table>"
    )
    return [f"<div>{counts}{trade_off}</div>"]


def batch_prediction_html(described: dict[str, Any]) -> str:
    total, invalid = described.get("TotalRecordCount"), described.get("InvalidRecordCount")
    return _section(
        f"BatchPrediction {described.get('BatchPredictionId', '')}",
        table(
            [
                ("Name", described.get("Name")),  # as the CLI's views: the name a user gave, if any
                ("Status", described.get("Status")),
                ("Message", described.get("Message")),
                ("Model", described.get("MLModelId")),
                ("Datasource", described.get("BatchPredictionDataSourceId")),
                ("Records", total),
                ("Invalid records", invalid if total is not None else None),
                ("Output", described.get("OutputUri")),
                ("Manifest", described.get("ManifestLocation")),
            ]
        ),
    )
