"""How the ``emrml`` command line draws objects: rich tables and block-character charts.

Each ``*_view`` function takes the raw operation outputs a command fetched (the same dict ``--output json``
prints) and returns the sections to print, in order. Nothing here calls the service.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

#: Bins of the binary score histograms as drawn: 20 of width 0.05, aggregated from the stored 100.
SCORE_BIN_HUNDREDTHS = 5
#: Stored residual bins merged into one drawn bin (50 stored → 25 drawn).
RESIDUAL_BIN_GROUP = 2
#: Cut-offs of the binary threshold table besides the current one.
THRESHOLD_TABLE_STEP = 10
#: How many of a model's strongest features ``model show`` lists.
TOP_FEATURES_SHOWN = 20
_EIGHTHS = " ▏▎▍▌▋▊▉"


# ---------------------------------------------------------------------------------------------- formats


def format_time(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def format_bytes(size: int | None) -> str:
    if size is None:
        return ""
    value, unit = float(size), "B"
    for larger in ("KB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size:,} B" if unit == "B" else f"{value:,.1f} {unit}"


def format_number(value: Any, digits: int = 4) -> str:
    """Counts with thousands separators, other numbers with ``digits`` significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.{digits}g}" if abs(value) < 10**digits else f"{value:,.0f}"
    return str(value)


def format_milliseconds(milliseconds: int | None) -> str | None:
    return None if milliseconds is None else f"{milliseconds:,} ms"


def format_metric(properties: dict[str, str] | None) -> str:
    """``PerformanceMetrics.Properties`` (one metric as a decimal string) as ``"BinaryAUC 0.9312"``."""
    return ", ".join(f"{name} {format_number(float(value))}" for name, value in (properties or {}).items())


def _share(value: float) -> str:
    return f"{100 * value:.1f}%"


# ---------------------------------------------------------------------------------------------- parts


def sparkline(counts: list[int], width: int = 10) -> str:
    """Counts of a histogram as one line of block characters, merged down to at most ``width`` bins."""
    if not counts:
        return ""
    group = -(-len(counts) // width)
    merged = [sum(counts[i : i + group]) for i in range(0, len(counts), group)]
    top = max(merged) or 1
    return "".join(" ▁▂▃▄▅▆▇█"[round(8 * c / top)] for c in merged)


def _bar(value: float, top: float, width: int) -> str:
    """A horizontal bar of ``value / top`` of ``width`` cells, in eighths of a cell; never empty when
    ``value`` is positive, so a bin with a few records stays visible."""
    if value <= 0 or top <= 0:
        return ""
    eighths = max(1, round(8 * width * value / top))
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    width: int,
    marker: tuple[int, str] | None = None,
) -> Text:
    """Horizontal bar charts side by side, one row per label, each series scaled to its own largest bin
    and to the ``width`` columns available.

    ``series`` is (title, one count per label); ``marker`` (row index, text) draws a ruled line with the
    text just above that row (index ``len(labels)``: below the last row).
    """
    counts = [[format_number(value) for value in values] for _, values in series]
    label_width = max(len(label) for label in labels)
    count_width = max(len(text) for column in counts for text in column)
    spare = width - label_width - 2 - len(series) * (count_width + 3)
    bar_width = max(8, spare // len(series))
    cell = bar_width + count_width + 3
    lines = [" " * (label_width + 2) + "".join(title[: cell - 1].ljust(cell) for title, _ in series)]
    for row, label in enumerate(labels):
        if marker is not None and marker[0] == row:
            lines.append(_rule(marker[1], label_width, len(series) * cell))
        cells = []
        for (_, values), texts in zip(series, counts, strict=True):
            bar = _bar(values[row], max(values), bar_width)
            cells.append(f"{bar.ljust(bar_width)} {texts[row].rjust(count_width)}  ")
        lines.append(f"{label.rjust(label_width)} │" + "".join(cells))
    if marker is not None and marker[0] == len(labels):
        lines.append(_rule(marker[1], label_width, len(series) * cell))
    return Text("\n".join(line.rstrip() for line in lines), no_wrap=True)


def _rule(text: str, label_width: int, width: int) -> str:
    return "─" * (label_width + 1) + "┼" + f"── {text} ".ljust(width, "─")


def key_values(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of the rows that have a value."""
    table = Table(
        title=title,
        title_justify="left",
        show_header=False,
        box=None,
        title_style="bold",
        min_width=len(title),
    )
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        if value not in (None, ""):
            table.add_row(key, value if isinstance(value, str) else format_number(value))
    return table


def titled_table(title: str, *columns: str, right: Iterable[str] = ()) -> Table:
    """A table with a left-aligned bold title. The first column and the ``right`` (numeric) columns, which
    are right-aligned, never wrap."""
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
        min_width=len(title),
    )
    aligned = set(right)
    for position, column in enumerate(columns):
        numeric = column in aligned
        table.add_column(column, justify="right" if numeric else "left", no_wrap=numeric or position == 0)
    return table


def _status(entity: dict[str, Any]) -> str:
    status = entity.get("Status", "")
    if "Progress" in entity:
        status += f" ({entity['Progress']:.0f}%)"
    return status


def _timing(entity: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("Created", format_time(entity.get("CreatedAt"))),
        ("Started", format_time(entity.get("StartedAt"))),
        ("Finished", format_time(entity.get("FinishedAt"))),
        ("Compute time", format_milliseconds(entity.get("ComputeTime"))),
    ]


# ---------------------------------------------------------------------------------------------- lists


@dataclass(frozen=True)
class Column:
    """One column of a list: its header, how to read a cell from a Describe* result, and its priority
    (0: always shown; on a narrow terminal the largest numbers are dropped first)."""

    header: str
    value: Callable[[dict[str, Any]], str]
    priority: int = 1


#: Spaces between the columns of a list.
_GAP = 2
#: The narrowest a column that does not fit whole is shown, ellipsis included.
_MIN_SHORTENED = 12


def list_table(columns: Sequence[Column], results: list[dict[str, Any]], width: int) -> Table:
    """Describe* results, one line per object, fitted to ``width`` terminal columns.

    Columns are kept by priority while their contents fit; cells that are still too long end in an
    ellipsis, the first column (the id) last of all, so every row stays one readable line.
    """
    cells = [[column.value(item) or "" for column in columns] for item in results]
    widths = [max([len(column.header)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]
    kept: set[int] = set()
    used = 0
    for i in sorted(range(len(columns)), key=lambda i: (columns[i].priority, i)):
        needed = widths[i] + (_GAP if kept else 0)
        if columns[i].priority == 0 or used + needed <= width:
            kept.add(i)
            used += needed
    dropped = [
        i for i in sorted(range(len(columns)), key=lambda i: (columns[i].priority, i)) if i not in kept
    ]
    if dropped and width - used - _GAP >= _MIN_SHORTENED:
        # The most important column that did not fit whole still shows its beginning.
        widths[dropped[0]] = width - used - _GAP
        kept.add(dropped[0])
        used = width
    shown = sorted(kept)
    table = Table(
        box=None, header_style="bold", padding=(0, _GAP, 0, 0), pad_edge=False, width=min(used, width)
    )
    for position, i in enumerate(shown):
        table.add_column(
            columns[i].header,
            no_wrap=True,
            overflow="ellipsis",
            min_width=widths[i] if position == 0 else None,
            max_width=widths[i],
        )
    for row in cells:
        table.add_row(*(row[i] for i in shown))
    return table


def _metric(item: dict[str, Any]) -> str:
    return format_metric((item.get("PerformanceMetrics") or {}).get("Properties"))


def _get(member: str) -> Callable[[dict[str, Any]], str]:
    return lambda item: str(item.get(member) or "")


def _created(item: dict[str, Any]) -> str:
    return format_time(item.get("CreatedAt"))


#: The columns of each kind's list, in display order.
DATASOURCE_COLUMNS = (
    Column("Id", _get("DataSourceId"), 0),
    Column("Name", _get("Name"), 2),
    Column("Status", _status, 0),
    Column("Created", _created, 1),
    Column("Location", _get("DataLocationS3"), 4),
    Column("Size", lambda item: format_bytes(item.get("DataSizeInBytes")), 3),
)
MODEL_COLUMNS = (
    Column("Id", _get("MLModelId"), 0),
    Column("Name", _get("Name"), 3),
    Column("Type", _get("MLModelType"), 1),
    Column("Status", _status, 0),
    Column("Created", _created, 2),
    Column("Training data", _get("TrainingDataSourceId"), 4),
    Column("Size", lambda item: format_bytes(item.get("SizeInBytes")), 5),
)
EVALUATION_COLUMNS = (
    Column("Id", _get("EvaluationId"), 0),
    Column("Name", _get("Name"), 3),
    Column("Status", _status, 0),
    Column("Created", _created, 4),
    Column("Model", _get("MLModelId"), 2),
    Column("Datasource", _get("EvaluationDataSourceId"), 5),
    Column("Metric", _metric, 1),
)
BATCH_PREDICTION_COLUMNS = (
    Column("Id", _get("BatchPredictionId"), 0),
    Column("Name", _get("Name"), 4),
    Column("Status", _status, 0),
    Column("Created", _created, 3),
    Column("Model", _get("MLModelId"), 2),
    Column("Datasource", _get("BatchPredictionDataSourceId"), 5),
    Column("Records", lambda item: _records(item), 1),
    Column("Output", _get("OutputUri"), 6),
)


def _records(item: dict[str, Any]) -> str:
    if item.get("TotalRecordCount") is None:
        return ""
    return f"{item['TotalRecordCount']:,} ({item.get('InvalidRecordCount') or 0:,} invalid)"


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
                ("Status", _status(prediction)),
                ("Message", prediction.get("Message")),
                ("Model", prediction.get("MLModelId")),
                ("Datasource", prediction.get("BatchPredictionDataSourceId")),
                ("Input", prediction.get("InputDataLocationS3")),
                ("Records", _records(prediction) or None),
                ("Unreadable values", _unparsed(prediction)),
                ("Output", prediction.get("OutputUri")),
                ("Manifest", prediction.get("ManifestLocation")),
                *_timing(prediction),
            ],
        )
    ]


def batch_prediction_summary(described: dict[str, Any]) -> str:
    prediction = described["GetBatchPrediction"]
    records = _records(prediction)
    return f"Batch prediction {prediction['BatchPredictionId']}: {_status(prediction)}" + (
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
    """One Predict answer: the label or value, and the scores."""
    rows: list[tuple[str, Any]] = []
    if "predictedLabel" in prediction:
        rows.append(("Predicted label", prediction["predictedLabel"]))
    if "predictedValue" in prediction:
        rows.append(("Predicted value", format_number(prediction["predictedValue"], 6)))
    for label, score in (prediction.get("predictedScores") or {}).items():
        rows.append((f"Score {label}", format_number(score, 6)))
    return key_values("Prediction", rows)


def tags_table(tags: list[dict[str, str]]) -> Table:
    """DescribeTags tags, one row each."""
    table = Table("Key", "Value", box=None, header_style="bold")
    for tag in tags:
        table.add_row(tag["Key"], tag.get("Value", ""))
    return table


# ---------------------------------------------------------------------------------------------- datasource


def datasource_view(described: dict[str, Any]) -> list[RenderableType]:
    """``GetDataSource`` (verbose) and ``GetDataSourceStatistics``: status, schema, invalid records and the
    statistics tables."""
    source = described["GetDataSource"]
    stats = described["GetDataSourceStatistics"]
    sections: list[RenderableType] = [_datasource_overview(source, stats)]
    if source.get("DataSourceSchema"):
        sections.append(_schema_table(source["DataSourceSchema"]))
    if stats.get("InvalidRecordExamples"):
        sections.append(
            _invalid_records_table(stats["InvalidRecordExamples"], stats.get("InvalidRecordCount"))
        )
    sections += _statistics_tables(stats.get("Statistics") or {})
    if stats.get("Statistics"):
        sections.append('MI: mutual information with the target, Amazon ML\'s "correlation to target".')
    return sections


def datasource_summary(described: dict[str, Any]) -> str:
    """One line: id, status and record counts."""
    source, stats = described["GetDataSource"], described["GetDataSourceStatistics"]
    records = format_number(stats.get("TotalRecordCount"))
    return f"Datasource {source['DataSourceId']}: {_status(source)}, {records} records"


def _datasource_overview(source: dict[str, Any], stats: dict[str, Any]) -> Table:
    records = None
    if "TotalRecordCount" in stats:
        records = f"{stats['TotalRecordCount']:,} total, {stats.get('InvalidRecordCount', 0):,} invalid"
    return key_values(
        f"Datasource {source.get('DataSourceId')}",
        [
            ("Name", source.get("Name")),
            ("Status", _status(source)),
            ("Message", source.get("Message")),
            ("Location", source.get("DataLocationS3")),
            ("Rearrangement", source.get("DataRearrangement")),
            ("Records", records),
            ("Size", format_bytes(source.get("DataSizeInBytes"))),
            ("Files", source.get("NumberOfFiles")),
            ("Statistics", _statistics_state(source)),
            *_timing(source),
        ],
    )


def _statistics_state(source: dict[str, Any]) -> str:
    """Whether statistics exist: only a COMPLETED datasource that was asked for them has any."""
    if not source.get("ComputeStatistics"):
        return "not requested"
    status = source.get("Status")
    if status == "COMPLETED":
        return "computed"
    if status in ("PENDING", "INPROGRESS"):
        return "requested (computed when the job completes)"
    return f"none (the datasource is {status})"


def _schema_table(schema_json: str) -> Table:
    schema = json.loads(schema_json)
    roles = {
        schema.get("targetAttributeName"): "target",
        schema.get("rowId"): "row id",
        schema.get("rowWeight"): "row weight",
    } | dict.fromkeys(schema.get("excludedAttributeNames") or [], "excluded")
    header = "with header row" if schema.get("dataFileContainsHeader") else "no header row"
    table = titled_table(f"Schema ({header})", "#", "Attribute", "Type", "Role", right=["#"])
    for position, attribute in enumerate(schema.get("attributes", []), start=1):
        name = attribute.get("attributeName", "")
        table.add_row(str(position), name, attribute.get("attributeType", ""), roles.get(name, ""))
    return table


def _invalid_records_table(examples: list[dict[str, Any]], count: int | None) -> Table:
    title = f"Invalid records ({format_number(count)}; first {len(examples)} shown)"
    table = titled_table(title, "File", "Line", "Offset", "Reason", right=["Line", "Offset"])
    for example in examples:
        table.add_row(
            str(example.get("File", "")),
            format_number(example.get("Line")),
            format_number(example.get("Offset")),
            str(example.get("Reason", "")),
        )
    return table


def _statistics_tables(statistics: dict[str, Any]) -> list[Table]:
    if not statistics:
        return []
    type_counts = statistics.get("attributeTypeCounts") or {}
    tables = [
        key_values(
            "Data insights",
            [("Records", statistics.get("recordCount"))]
            + [(f"{kind} attributes", count) for kind, count in type_counts.items()],
        )
    ]
    if statistics.get("target"):
        tables.append(_target_table(statistics["target"]))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for attribute in statistics.get("attributes", []):
        by_type.setdefault(attribute.get("type", ""), []).append(attribute)
    for kind, render in _ATTRIBUTE_TABLES.items():
        if by_type.get(kind):
            tables.append(render(by_type[kind]))
    return tables


def _target_table(target: dict[str, Any]) -> Table:
    """Counts per value for a BINARY or CATEGORICAL target, the summary numbers for a NUMERIC one."""
    distribution = target.get("distribution") or target
    title = f"Target distribution: {target.get('name', '')} ({target.get('type', '')})"
    counts = distribution.get("counts")
    if isinstance(counts, dict):
        counts = [{"value": value, "count": count} for value, count in counts.items()]
    counts = counts or distribution.get("topValues")
    if isinstance(counts, list):
        total = sum(item.get("count", 0) for item in counts) or 1
        table = titled_table(title, "Value", "Count", "Share", right=["Count", "Share"])
        for item in counts:
            count = item.get("count", 0)
            table.add_row(str(item.get("value")), format_number(count), f"{100 * count / total:.1f} %")
        return table
    scalars = [(key, value) for key, value in distribution.items() if not isinstance(value, dict | list)]
    return key_values(title, scalars)


def _name(attribute: dict[str, Any]) -> str:
    role = attribute.get("role")
    suffix = f" ({role})" if role and role != "input" else ""
    return attribute.get("name", "") + suffix


def _numeric_table(attributes: list[dict[str, Any]]) -> Table:
    # Narrow columns so the table fits 80 characters; the JSON output has every statistic.
    numbers = ["Miss/inv", "Min", "Median", "Mean", "Max", "MI", "Histogram"]
    table = titled_table("NUMERIC attributes", "Attribute", *numbers, right=numbers)
    for a in attributes:
        table.add_row(
            _name(a),
            f"{format_number(a.get('missingCount'))}/{format_number(a.get('invalidCount'))}",
            *(format_number(a.get(key)) for key in ("min", "median", "mean", "max")),
            format_number(a.get("targetCorrelation"), 2),
            sparkline((a.get("histogram") or {}).get("counts") or []),
        )
    return table


def _binary_table(attributes: list[dict[str, Any]]) -> Table:
    numbers = ["0", "1", "% true", "Invalid", "MI"]
    table = titled_table("BINARY attributes", "Attribute", *numbers, right=numbers)
    for a in attributes:
        counts = a.get("counts") or {}
        table.add_row(
            _name(a),
            format_number(counts.get("0")),
            format_number(counts.get("1")),
            format_number(a.get("percentTrue")),
            format_number(a.get("invalidCount")),
            format_number(a.get("targetCorrelation"), 2),
        )
    return table


def _categorical_table(attributes: list[dict[str, Any]]) -> Table:
    numbers = ["Distinct", "MI"]
    table = titled_table(
        "CATEGORICAL attributes",
        "Attribute",
        *numbers,
        "Most frequent values",
        right=numbers,
    )
    for a in attributes:
        top = (a.get("topValues") or [])[:4]
        table.add_row(
            _name(a),
            format_number(a.get("distinctCount")),
            format_number(a.get("targetCorrelation"), 2),
            ", ".join(f"{v.get('value')} ({format_number(v.get('count'))})" for v in top),
        )
    return table


def _text_table(attributes: list[dict[str, Any]]) -> Table:
    numbers = ["Words", "Unique", "Per row", "MI"]
    table = titled_table("TEXT attributes", "Attribute", *numbers, "Prominent words", right=numbers)
    for a in attributes:
        per_row = a.get("wordsPerRow") or {}
        span = "–".join(format_number(per_row.get(key)) for key in ("min", "max")) if per_row else ""
        words = [w.get("word", "") if isinstance(w, dict) else str(w) for w in a.get("prominentWords") or []]
        table.add_row(
            _name(a),
            format_number(a.get("totalWords")),
            format_number(a.get("uniqueWords")),
            span,
            format_number(a.get("targetCorrelation"), 2),
            ", ".join(words[:6]),
        )
    return table


_ATTRIBUTE_TABLES: dict[str, Callable[[list[dict[str, Any]]], Table]] = {
    "NUMERIC": _numeric_table,
    "BINARY": _binary_table,
    "CATEGORICAL": _categorical_table,
    "TEXT": _text_table,
}


# ---------------------------------------------------------------------------------------------- model


def model_view(described: dict[str, Any]) -> list[RenderableType]:
    """``GetMLModel`` (verbose) and ``GetMLModelInsights``: overview, parameters, training report, recipe
    and the features with the largest weights."""
    model = described["GetMLModel"]
    insights = described.get("GetMLModelInsights") or {}
    parameters = model.get("TrainingParameters") or {}
    sections: list[RenderableType] = [
        _model_overview(model),
        key_values("Training parameters", sorted(parameters.items())),
    ]
    if insights.get("TrainingReport"):
        sections.append(_training_report(insights["TrainingReport"], insights.get("FeatureCount")))
    if model.get("Recipe"):
        sections.append(Text.assemble(("Recipe", "bold"), "\n", model["Recipe"]))
    if insights.get("TopFeatures"):
        sections.append(_top_features_table(insights["TopFeatures"]))
    return sections


def model_summary(described: dict[str, Any]) -> str:
    """One line: id, type, status, size and training time."""
    model = described["GetMLModel"]
    details = [
        text
        for text in (format_bytes(model.get("SizeInBytes")), format_milliseconds(model.get("ComputeTime")))
        if text
    ]
    extra = f" ({', '.join(details)})" if details else ""
    return f"Model {model['MLModelId']}: {model.get('MLModelType')} {_status(model)}{extra}"


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
            ("Status", _status(model)),
            ("Message", model.get("Message")),
            ("Training data", model.get("TrainingDataSourceId")),
            ("Location", model.get("InputDataLocationS3")),
            ("Score threshold", threshold),
            ("Size", format_bytes(model.get("SizeInBytes"))),
            ("Endpoint", endpoint if endpoint != "NONE" else None),
            *_timing(model),
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
            table.add_row(str(position), item.get("feature", ""), label, format_number(value))
        else:
            table.add_row(str(position), item.get("feature", ""), format_number(weight))
    return table


# ---------------------------------------------------------------------------------------------- evaluation


def evaluation_view(
    described: dict[str, Any], width: int, threshold: float | None = None
) -> list[RenderableType]:
    """``GetEvaluation`` and ``GetEvaluationInsights``: overview, the metric against its baseline, the
    type's charts, and the alerts.

    ``threshold`` is the binary cut-off to draw (default: the model's ScoreThreshold); it is shown at the
    nearest stored cut-off (a multiple of 0.01). ``width`` is the terminal width the charts fill.
    """
    evaluation = described["GetEvaluation"]
    insights = described.get("GetEvaluationInsights") or {}
    model_type = insights.get("MLModelType")
    data = insights.get("Insights") or {}
    metrics = data.get("metrics") or {}
    sections: list[RenderableType] = [_evaluation_overview(evaluation, model_type, data)]
    if metrics:
        sections.append(Text(evaluation_headline(model_type, metrics), style="bold"))
    if model_type == "BINARY" and "thresholdTable" in metrics:
        chosen = threshold if threshold is not None else insights.get("ScoreThreshold", metrics["threshold"])
        sections += _binary_sections(metrics, chosen, width)
    elif model_type == "MULTICLASS" and "consoleView" in metrics:
        sections += _multiclass_sections(metrics)
    elif model_type == "REGRESSION" and "residualHistogram" in metrics:
        sections += _regression_sections(metrics, width)
    if data.get("alerts"):
        sections.append(_alerts_table(data["alerts"]))
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
    return f"Evaluation {evaluation['EvaluationId']}: {_status(evaluation)}" + (
        f", {metric}" if metric else ""
    )


def _evaluation_overview(evaluation: dict[str, Any], model_type: str | None, data: dict[str, Any]) -> Table:
    model = evaluation.get("MLModelId", "")
    records = None
    if "records" in data:
        records = f"{data['records']:,} used, {data.get('invalidRecords', 0):,} invalid"
    return key_values(
        f"Evaluation {evaluation.get('EvaluationId')}",
        [
            ("Name", evaluation.get("Name")),
            ("Status", _status(evaluation)),
            ("Message", evaluation.get("Message")),
            ("Model", f"{model} ({model_type})" if model_type else model),
            ("Evaluation data", evaluation.get("EvaluationDataSourceId")),
            ("Location", evaluation.get("InputDataLocationS3")),
            ("Records", records),
            ("Metric", format_metric((evaluation.get("PerformanceMetrics") or {}).get("Properties"))),
            *_timing(evaluation),
        ],
    )


def _binary_sections(metrics: dict[str, Any], threshold: float, width: int) -> list[RenderableType]:
    table = metrics["thresholdTable"]
    # The stored table has one row per hundredth; the nearest row stands for the requested cut-off.
    current = min(range(len(table)), key=lambda i: abs(table[i]["threshold"] - threshold))
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
        _threshold_table(table, current),
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


def _threshold_table(table: list[dict[str, Any]], current: int) -> Table:
    numbers = ["Cut-off", "Accuracy", "Precision", "Recall", "FPR", "F1", "Predicted 1"]
    out = titled_table("Trade-off by cut-off", *numbers, "", right=numbers)
    for index in sorted({*range(0, len(table), THRESHOLD_TABLE_STEP), current}):
        row = table[index]
        out.add_row(
            f"{row['threshold']:.2f}",
            *(f"{row[key]:.3f}" for key in ("accuracy", "precision", "recall", "falsePositiveRate", "f1")),
            _share(row["predictedPositiveRate"]),
            "◀ current" if index == current else "",
            style="bold" if index == current else None,
        )
    return out


def _multiclass_sections(metrics: dict[str, Any]) -> list[RenderableType]:
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
        table.add_row(name, *cells, f"{view['f1'][row]:.3f}", _share(view["trueFrequencies"][row]))
    table.add_row(
        "Predicted share", *(_share(share) for share in view["predictedFrequencies"]), "", "", style="dim"
    )
    sections: list[RenderableType] = [table]
    if view.get("othersClasses"):
        sections.append(f"others: {', '.join(view['othersClasses'])}")
    return sections


def _regression_sections(metrics: dict[str, Any], width: int) -> list[RenderableType]:
    histogram = metrics["residualHistogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    spans = [(i, min(i + RESIDUAL_BIN_GROUP, len(counts))) for i in range(0, len(counts), RESIDUAL_BIN_GROUP)]
    merged = [sum(counts[low:high]) for low, high in spans]
    # Empty bins at the ends add rows without information: the labels show the range anyway.
    used = [i for i, count in enumerate(merged) if count > 0] or [0]
    spans, merged = spans[used[0] : used[-1] + 1], merged[used[0] : used[-1] + 1]
    digits = max(0, 1 - math.floor(math.log10(edges[spans[0][1]] - edges[spans[0][0]])))
    labels = [f"{edges[low]:,.{digits}f} to {edges[high]:,.{digits}f}" for low, high in spans]
    if histogram.get("below"):
        labels, merged = [f"below {edges[0]:,.{digits}f}", *labels], [histogram["below"], *merged]
    if histogram.get("above"):
        labels, merged = [*labels, f"above {edges[-1]:,.{digits}f}"], [*merged, histogram["above"]]
    mean = metrics.get("meanResidual")
    direction = "under-predicts" if (mean or 0) > 0 else "over-predicts"
    return [
        Text(
            f"Residuals (actual − predicted): mean {format_number(mean)}; on average the model {direction}",
            style="bold",
        ),
        bar_chart(labels, [("Records", merged)], width),
    ]


def _alerts_table(alerts: list[dict[str, Any]]) -> Table:
    table = titled_table("Alerts", "", "Check", "Detail")
    for alert in alerts:
        passed = alert.get("passed")
        mark = Text("✓" if passed else "✗ alert", style="green" if passed else "bold red")
        table.add_row(mark, alert.get("name", ""), alert.get("message", ""))
    return table
