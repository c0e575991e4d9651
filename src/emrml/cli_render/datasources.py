"""A datasource: overview, schema, invalid records and the statistics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emrml.cli_render.parts import (
    format_bytes,
    keep_numbers_whole,
    key_values,
    share_text,
    sparkline,
    status_text,
    timing_rows,
    titled_table,
)
from emrml.core.readable import format_number

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table


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
    return f"Datasource {source['DataSourceId']}: {status_text(source)}, {records} records"


def _datasource_overview(source: dict[str, Any], stats: dict[str, Any]) -> Table:
    records = None
    if "TotalRecordCount" in stats:
        records = f"{stats['TotalRecordCount']:,} total, {stats.get('InvalidRecordCount', 0):,} invalid"
    return key_values(
        f"Datasource {source.get('DataSourceId')}",
        [
            ("Name", source.get("Name")),
            ("Status", status_text(source)),
            ("Message", source.get("Message")),
            ("Location", source.get("DataLocationS3")),
            ("Rearrangement", source.get("DataRearrangement")),
            ("Records", records),
            ("Size", format_bytes(source.get("DataSizeInBytes"))),
            ("Files", source.get("NumberOfFiles")),
            ("Statistics", _statistics_state(source)),
            *timing_rows(source),
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
    return keep_numbers_whole(table)


def _statistics_tables(statistics: dict[str, Any]) -> list[Table]:
    if not statistics:
        return []
    type_counts = statistics.get("attributeTypeCounts") or {}
    tables = [
        key_values(
            "Data insights",
            # The statistics count the records that could be read: "Records 7" under "9 total, 2 invalid".
            [("Valid records", statistics.get("recordCount"))]
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
            table.add_row(str(item.get("value")), format_number(count), share_text(count / total))
        # Records without a usable target are not in the shares: training and evaluation leave them out.
        for label, key in (("(missing)", "missingCount"), ("(invalid)", "invalidCount")):
            if distribution.get(key):
                table.add_row(label, format_number(distribution[key]), "left out", style="dim")
        return keep_numbers_whole(table)
    return key_values(title, [(label, distribution.get(key)) for key, label in _NUMERIC_TARGET_ROWS])


#: A NUMERIC target's summary: the statistics' members, in the words of the NUMERIC attributes' table.
_NUMERIC_TARGET_ROWS = (
    ("validCount", "Values"),
    ("missingCount", "Missing (left out)"),
    ("invalidCount", "Invalid (left out)"),
    ("min", "Min"),
    ("median", "Median"),
    ("mean", "Mean"),
    ("max", "Max"),
    ("stddev", "Standard deviation"),
)


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
    return keep_numbers_whole(table)


def _binary_table(attributes: list[dict[str, Any]]) -> Table:
    numbers = ["0", "1", "% true", "Miss/inv", "MI"]
    table = titled_table("BINARY attributes", "Attribute", *numbers, right=numbers)
    for a in attributes:
        counts = a.get("counts") or {}
        table.add_row(
            _name(a),
            format_number(counts.get("0")),
            format_number(counts.get("1")),
            format_number(a.get("percentTrue")),
            f"{format_number(a.get('missingCount') or 0)}/{format_number(a.get('invalidCount') or 0)}",
            format_number(a.get("targetCorrelation"), 2),
        )
    return keep_numbers_whole(table)


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
            _counted(a.get("distinctCount"), a.get("distinctCountExact")),
            format_number(a.get("targetCorrelation"), 2),
            ", ".join(f"{v.get('value')} ({format_number(v.get('count'))})" for v in top),
        )
    return keep_numbers_whole(table)


def _counted(count: int | None, exact: bool | None) -> str:
    """A distinct count, marked ``≈`` when the statistics estimated it (a sketch past its exact size): a
    row id's 12,179 distinct values next to 12,190 records read as 11 duplicates."""
    return ("" if exact in (True, None) or count is None else "≈") + format_number(count)


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
            _counted(a.get("uniqueWords"), a.get("uniqueWordsExact")),
            span,
            format_number(a.get("targetCorrelation"), 2),
            ", ".join(words[:6]),
        )
    return keep_numbers_whole(table)


_ATTRIBUTE_TABLES: dict[str, Callable[[list[dict[str, Any]]], Table]] = {
    "NUMERIC": _numeric_table,
    "BINARY": _binary_table,
    "CATEGORICAL": _categorical_table,
    "TEXT": _text_table,
}
