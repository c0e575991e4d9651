"""Rich displays for notebooks: the HTML that ``DataSource``, ``Model`` and ``Evaluation`` give Jupyter
(``_repr_html_``), with the console's charts drawn as inline SVG.

Self-contained on purpose: no script, no stylesheet or font to fetch, so a notebook shows them offline and
keeps them when saved. The numbers are the operations' own (``GetDataSourceStatistics``,
``GetMLModelInsights``, ``GetEvaluationInsights``), the ones the console and the CLI show; only the drawing
differs from the console's D3 charts. Every text from the data is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 420, 140
BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#888"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{escape(k)}</th><td>{_number(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def bars(
    series: Sequence[Sequence[float]],
    labels: Sequence[str] = (),
    *,
    title: str,
    colors: Sequence[str] = (BLUE, ORANGE),
    names: Sequence[str] = (),
) -> str:
    """A bar chart as SVG: one or more series over the same bins (overlaid, half transparent)."""
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
    legend = " ".join(
        f"<tspan fill='{color}'>■ {escape(name)}</tspan>" for name, color in zip(names, colors, strict=False)
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT + 34}' role='img' "
        f"aria-label='{escape(title)}'><text x='0' y='12' font-size='12'>{escape(title)} {legend}</text>"
        f"<g transform='translate(0,18)'>{''.join(shapes)}</g></svg>"
    )


def heat_map(classes: Sequence[str], counts: Sequence[Sequence[float]], *, title: str) -> str:
    """A confusion matrix as SVG: rows true classes, columns predicted, darker for more."""
    size = len(counts)
    names = [*classes, *["others"] * (size - len(classes))]
    cell = min(28.0, 300 / max(size, 1))
    peak = max((max(row, default=0) for row in counts), default=0) or 1
    shapes = []
    for i, row in enumerate(counts):
        for j, value in enumerate(row):
            shade = 0.08 + 0.92 * float(value) / peak
            tip = escape(f"true {names[i]}, predicted {names[j]}: {value:g}")
            shapes.append(
                f"<rect x='{j * cell:.1f}' y='{i * cell:.1f}' width='{cell - 1:.1f}' height='{cell - 1:.1f}' "
                f"fill='{BLUE}' fill-opacity='{shade:.3f}'><title>{tip}</title></rect>"
            )
    side = size * cell
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{side + 10:.0f}' height='{side + 30:.0f}' "
        f"role='img' aria-label='{escape(title)}'><text x='0' y='12' font-size='12'>{escape(title)}</text>"
        f"<g transform='translate(0,18)'>{''.join(shapes)}</g></svg>"
    )


def _section(title: str, *parts: str) -> str:
    return f"<div class='emrml'><h4>{escape(title)}</h4>{''.join(parts)}</div>"


def datasource_html(described: dict[str, Any], statistics: dict[str, Any] | None) -> str:
    rows = [(name, described.get(name)) for name in ("Status", "DataLocationS3", "DataSizeInBytes")]
    parts = [table([r for r in rows if r[1] is not None])]
    stats = (statistics or {}).get("Statistics") or {}
    if statistics:
        parts.append(table([("records", statistics.get("TotalRecordCount")),
                            ("invalid records", statistics.get("InvalidRecordCount"))]))  # fmt: skip
    target = stats.get("target")
    if target:
        counts = (target.get("distribution") or {}).get("counts") or {}
        if counts:
            labels = list(counts)
            parts.append(bars([[counts[k] for k in labels]], labels, title=f"target {target['name']}"))
    for attribute in stats.get("attributes", [])[:12]:
        name = attribute["name"]
        if "histogram" in attribute:
            histogram = attribute["histogram"]
            edges = [f"{e:.3g}" for e in histogram["edges"]]
            parts.append(bars([histogram["counts"]], edges, title=f"{name} (numeric)"))
        elif attribute.get("topValues"):
            top = attribute["topValues"][:10]
            parts.append(
                bars(
                    [[v["count"] for v in top]], [str(v["value"]) for v in top], title=f"{name} (top values)"
                )
            )
    return _section(f"DataSource {described.get('DataSourceId', '')}", *parts)


def model_html(described: dict[str, Any], insights: dict[str, Any] | None) -> str:
    rows = [
        (name, described.get(name)) for name in ("Status", "MLModelType", "SizeInBytes", "ScoreThreshold")
    ]
    parts = [table([r for r in rows if r[1] is not None])]
    if insights:
        report = insights.get("TrainingReport") or {}
        losses = [loss for loss in report.get("losses") or [] if loss is not None]
        if losses:
            parts.append(bars([losses], [f"pass {i + 1}" for i in range(len(losses))], title="loss by pass"))
        top = [f for f in insights.get("TopFeatures") or [] if isinstance(f.get("weight"), int | float)][:15]
        if top:
            parts.append(
                bars(
                    [[abs(f["weight"]) for f in top]],
                    [f["feature"] for f in top],
                    title="top features (|weight|)",
                )
            )
        parts += _alert_list(insights.get("Alerts") or [])
    return _section(f"MLModel {described.get('MLModelId', '')}", *parts)


def _alert_list(alerts: list[dict[str, Any]]) -> list[str]:
    """The alerts' messages as one list (none: nothing)."""
    if not alerts:
        return []
    items = "".join(f"<li>{escape(str(a.get('message', a)))}</li>" for a in alerts)
    return [f"<ul>{items}</ul>"]


def evaluation_html(described: dict[str, Any], insights: dict[str, Any] | None) -> str:
    properties = (described.get("PerformanceMetrics") or {}).get("Properties") or {}
    parts = [table([("Status", described.get("Status")), *properties.items()])]
    metrics = (insights or {}).get("metrics") or {}
    if "histograms" in metrics:
        histograms = metrics["histograms"]
        edges = [f"{e:.2f}" for e in histograms["edges"]]
        parts.append(bars([histograms["positive"], histograms["negative"]], edges, title="scores:",
                          names=("actual 1", "actual 0")))  # fmt: skip
    if "confusionMatrix" in metrics:
        matrix = metrics["consoleView"] if "consoleView" in metrics else metrics["confusionMatrix"]
        parts.append(
            heat_map(matrix["classes"], matrix["counts"], title="confusion matrix (rows: true class)")
        )
    if "residualHistogram" in metrics:
        residuals = metrics["residualHistogram"]
        edges = [f"{e:.3g}" for e in residuals["edges"]]
        parts.append(bars([residuals["counts"]], edges, title="residuals (actual − predicted)"))
    parts += _alert_list((insights or {}).get("alerts") or [])
    return _section(f"Evaluation {described.get('EvaluationId', '')}", *parts)
