"""``list`` tables that fit the terminal, dropping the least important columns first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emrml.cli_render.parts import (
    format_bytes,
    format_metric,
    format_time,
    records_text,
    status_text,
)

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class Column:
    """One column of a list: its header, how to read a cell from a Describe* result, and its priority
    (0: always shown; on a narrow terminal the largest numbers are dropped first)."""

    header: str
    value: Callable[[dict[str, Any]], str]
    priority: int = 1
    #: Cut a cell that does not fit at its start, not its end: a path's last part (the file) tells
    #: datasources apart, its first part (``/home/me/data/…``) is the same on every row.
    keep_end: bool = False
    #: A count: right-aligned, and never cut short (``1,250,…`` would read as another number): a count
    #: that does not fit is left out whole.
    number: bool = False


#: Spaces between the columns of a list.
_GAP = 2
#: The narrowest a column that does not fit whole is shown, ellipsis included.
_MIN_SHORTENED = 12


def list_table(columns: Sequence[Column], results: list[dict[str, Any]], width: int) -> Table:
    """Describe* results, one line per object, fitted to ``width`` terminal columns.

    Columns are kept by priority while their contents fit; cells that are still too long end in an
    ellipsis (``keep_end`` columns start with one), the first column (the id) last of all, so every row
    stays one readable line. A column empty on every row (no object has a name) is left out.
    """
    from rich.table import Table

    cells = [[column.value(item) or "" for column in columns] for item in results]
    widths = [max([len(column.header)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]
    kept: set[int] = set()
    used = 0
    empty = {i for i, column in enumerate(columns) if column.priority and not any(row[i] for row in cells)}
    for i in sorted(set(range(len(columns))) - empty, key=lambda i: (columns[i].priority, i)):
        needed = widths[i] + (_GAP if kept else 0)
        if columns[i].priority == 0 or used + needed <= width:
            kept.add(i)
            used += needed
    dropped = [
        i
        for i in sorted(range(len(columns)), key=lambda i: (columns[i].priority, i))
        if i not in kept and i not in empty
    ]
    shortened = [i for i in dropped if not columns[i].number]
    if shortened and width - used - _GAP >= _MIN_SHORTENED:
        # The most important column that did not fit whole still shows its beginning.
        widths[shortened[0]] = width - used - _GAP
        kept.add(shortened[0])
        used = width
    shown = sorted(kept)
    table = Table(
        box=None, header_style="bold", padding=(0, _GAP, 0, 0), pad_edge=False, width=min(used, width)
    )
    for position, i in enumerate(shown):
        table.add_column(
            columns[i].header,
            justify="right" if columns[i].number else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=widths[i] if position == 0 else None,
            max_width=widths[i],
        )
    for row in cells:
        table.add_row(*(_end_of(row[i], widths[i]) if columns[i].keep_end else row[i] for i in shown))
    return table


def _end_of(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


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
    Column("Status", status_text, 0),
    Column("Created", _created, 1),
    Column("Location", _get("DataLocationS3"), 4, keep_end=True),
    Column("Size", lambda item: format_bytes(item.get("DataSizeInBytes")), 3),
)
MODEL_COLUMNS = (
    Column("Id", _get("MLModelId"), 0),
    Column("Name", _get("Name"), 3),
    Column("Type", _get("MLModelType"), 1),
    Column("Status", status_text, 0),
    Column("Created", _created, 2),
    Column("Training data", _get("TrainingDataSourceId"), 4),
    Column("Size", lambda item: format_bytes(item.get("SizeInBytes")), 5),
)
EVALUATION_COLUMNS = (
    Column("Id", _get("EvaluationId"), 0),
    Column("Name", _get("Name"), 3),
    Column("Status", status_text, 0),
    Column("Created", _created, 4),
    Column("Model", _get("MLModelId"), 2),
    Column("Datasource", _get("EvaluationDataSourceId"), 5),
    Column("Metric", _metric, 1),
)
BATCH_PREDICTION_COLUMNS = (
    Column("Id", _get("BatchPredictionId"), 0),
    Column("Name", _get("Name"), 4),
    Column("Status", status_text, 0),
    Column("Created", _created, 3),
    Column("Model", _get("MLModelId"), 2),
    Column("Datasource", _get("BatchPredictionDataSourceId"), 5),
    Column("Records", lambda item: records_text(item), 1),
    Column("Output", _get("OutputUri"), 6, keep_end=True),
)
