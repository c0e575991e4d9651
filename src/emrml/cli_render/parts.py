"""Formats and drawing parts the views share: numbers, times, bars, sparklines, key-value tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from emrml.core.readable import format_number

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

_EIGHTHS = " ▏▎▍▌▋▊▉"


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


def format_binary_bytes(size: int) -> str:
    """``size`` in KiB, MiB or GiB as Amazon ML states its limits in them (the 100 MiB default of
    sgd.maxMLModelSizeInBytes), then exactly: ``100 MiB (104,857,600 bytes)``; below 1 KiB the bytes."""
    value, unit = float(size), ""
    for larger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    if not unit:
        return f"{size:,} bytes"
    readable = f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    return f"{readable} {unit} ({size:,} bytes)"


def format_milliseconds(milliseconds: int | None) -> str | None:
    return None if milliseconds is None else f"{milliseconds:,} ms"


def format_metric(properties: dict[str, str] | None) -> str:
    """``PerformanceMetrics.Properties`` (one metric as a decimal string) as ``"BinaryAUC 0.9312"``."""
    return ", ".join(f"{name} {format_number(float(value))}" for name, value in (properties or {}).items())


def share_text(value: float) -> str:
    return f"{100 * value:.1f}%"


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
    from rich.text import Text

    counts = [[format_number(value) for value in values] for _, values in series]
    label_width = max(len(label) for label in labels)
    count_width = max(len(text) for column in counts for text in column)
    spare = width - label_width - 2 - len(series) * (count_width + 3)
    bar_width = max(8, spare // len(series))
    cell = bar_width + count_width + 3
    # A title longer than its chart ends in an ellipsis: cut bare, "Actual 1s (1,385" read as a number.
    titles = [title if len(title) < cell else title[: cell - 2] + "…" for title, _ in series]
    lines = [" " * (label_width + 2) + "".join(title.ljust(cell) for title in titles)]
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
    from rich.table import Table

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


def alerts_table(alerts: list[dict[str, Any]]) -> Table:
    """Alerts (``core.alerts``: name, passed, message), one row each, failed ones marked."""
    from rich.text import Text

    table = titled_table("Alerts", "", "Check", "Detail")
    for alert in alerts:
        passed = alert.get("passed")
        mark = Text("✓" if passed else "✗ alert", style="green" if passed else "bold red")
        table.add_row(mark, alert.get("name", ""), alert.get("message", ""))
    return table


def titled_table(title: str, *columns: str, right: Iterable[str] = ()) -> Table:
    """A table with a left-aligned bold title. The first column and the ``right`` (numeric) columns, which
    are right-aligned, never wrap; the other columns wrap, and fold a word longer than the column (a long
    feature name) rather than end it in an ellipsis, which lost its end, often what told two rows apart."""
    from rich import box
    from rich.table import Table

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
        table.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=numeric or position == 0,
            overflow="ellipsis" if numeric or position == 0 else "fold",
        )
    return table


def keep_numbers_whole(table: Table) -> Table:
    """Once its rows are in, keep every cell of ``table``'s right-aligned (numeric) columns whole: a narrow
    terminal folds the first column (a name or a path) instead of cutting numbers to ``0.0…``. Call after
    the rows are added."""
    for position, column in enumerate(table.columns):
        if column.justify == "right":
            cells = [str(column.header), *(str(cell) for cell in column.cells)]
            column.min_width = max(len(cell) for cell in cells)
        elif position == 0:
            column.no_wrap, column.overflow = False, "fold"
    return table


def status_text(entity: dict[str, Any]) -> str:
    """The status, with how far the job is (``INPROGRESS (40%)``) or got before it failed (``FAILED at
    40%``: "FAILED (0%)" read as a share of something failed)."""
    status = entity.get("Status", "")
    if "Progress" in entity:
        progress = f"{entity['Progress']:.0f}%"
        status += f" at {progress}" if status == "FAILED" else f" ({progress})"
    return status


def timing_rows(entity: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("Created", format_time(entity.get("CreatedAt"))),
        ("Started", format_time(entity.get("StartedAt"))),
        ("Finished", format_time(entity.get("FinishedAt"))),
        ("Compute time", format_milliseconds(entity.get("ComputeTime"))),
    ]


def records_text(item: dict[str, Any]) -> str:
    if item.get("TotalRecordCount") is None:
        return ""
    return f"{item['TotalRecordCount']:,} ({item.get('InvalidRecordCount') or 0:,} invalid)"
