"""The ``emrml`` command line: a thin layer over ``EmrML.call`` that renders results with rich.

Every command builds an Amazon ML request, calls the service and prints either rich tables
(``--output table``, the default) or the operations' raw JSON output (``--output json``, for scripts).
Errors are one line on stderr, ``error: <ErrorType>: <message>``, and the exit code tells scripts what
happened (see ``EXIT_CODES_HELP``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from emrml.config import Settings
from emrml.core.schema import parse_schema
from emrml.errors import AmazonMLError, InvalidInputException
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.storage import locations

if TYPE_CHECKING:
    from emrml.service.app import EmrML

#: Exit code when the request was accepted but its job ended FAILED (or the object is DELETED): the
#: same as for invalid input, since a failed datasource means its data or schema cannot be used.
JOB_FAILED_EXIT_CODE = InvalidInputException.exit_code
EXIT_CODES_HELP = (
    "Exit codes: 0 success, 1 internal error, 2 invalid input (including a datasource that ended FAILED), "
    "3 object not found, 4 idempotency mismatch, 5 limit exceeded."
)
QUICKSTART_ID = "ds-quickstart-bank"
QUICKSTART_ROWS = 5_000
#: Largest page the Describe* operations return.
PAGE_LIMIT = 100


class Output(StrEnum):
    table = "table"
    json = "json"


class Status(StrEnum):
    PENDING = "PENDING"
    INPROGRESS = "INPROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DELETED = "DELETED"


class SortOrder(StrEnum):
    asc = "asc"
    dsc = "dsc"


class ResourceType(StrEnum):
    DataSource = "DataSource"
    MLModel = "MLModel"
    Evaluation = "Evaluation"
    BatchPrediction = "BatchPrediction"


@dataclass
class _State:
    """Per-invocation options and the service, opened on first use and closed when the command ends."""

    output: Output
    home: Path | None
    # No markup: names and messages are user text and may contain square brackets.
    console: Console = field(default_factory=lambda: Console(markup=False))
    _service: EmrML | None = None

    @property
    def json(self) -> bool:
        return self.output is Output.json

    def service(self) -> EmrML:
        if self._service is None:
            # Imported here so that --help and argument errors do not pay for the service's imports.
            from emrml.service.app import EmrML

            self._service = EmrML(Settings.load(home=self.home))
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


app = typer.Typer(
    name="emrml",
    help="emrml: a self-hosted Amazon Machine Learning.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasource_app = typer.Typer(help="Create, list, show, rename and delete datasources.", no_args_is_help=True)
tags_app = typer.Typer(help="Add, list and delete tags of an object.", no_args_is_help=True)
app.add_typer(datasource_app, name="datasource")
app.add_typer(tags_app, name="tags")

P = ParamSpec("P")
R = TypeVar("R")


def _fail(message: str, exit_code: int) -> typer.Exit:
    """Print ``error: <message>`` as one stderr line; return the Exit for the caller to raise."""
    # Plain echo, not rich: rich would wrap a long message over several lines.
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    return typer.Exit(exit_code)


def _reports_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Turn service errors into one stderr line and their exit code; never show a traceback."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except AmazonMLError as exc:
            raise _fail(f"{exc.type_name}: {exc.message}", exc.exit_code) from None
        except Exception as exc:
            raise _fail(f"internal error: {type(exc).__name__}: {exc}", 1) from None

    return run


def _state(ctx: typer.Context) -> _State:
    return ctx.obj


@app.callback()
def main(
    ctx: typer.Context,
    output: Output = typer.Option(
        Output.table, "--output", "-o", help="table for people, json (the raw operation output) for scripts."
    ),
    home: Path | None = typer.Option(
        None,
        "--home",
        envvar="EMRML_HOME",
        help="emrml home folder (metastore, samples); default ~/.emrml.",
        file_okay=False,
    ),
) -> None:
    state = _State(output=output, home=home)
    ctx.obj = state
    ctx.call_on_close(state.close)


# ---------------------------------------------------------------------------------------------- datasource


@datasource_app.command("create")
@_reports_errors
def datasource_create(
    ctx: typer.Context,
    datasource_id: str = typer.Option(..., "--id", help="Datasource id (letters, digits, - _ .)."),
    data: str = typer.Option(..., "--data", help="CSV file or folder (a local path or an s3:// URI)."),
    schema: Path | None = typer.Option(None, "--schema", help="Data schema JSON file.", dir_okay=False),
    infer_schema: bool = typer.Option(False, "--infer-schema", help="Infer the schema from the data."),
    target: str | None = typer.Option(None, "--target", help="Target attribute (with --infer-schema)."),
    row_id: str | None = typer.Option(None, "--row-id", help="Row id attribute (with --infer-schema)."),
    name: str | None = typer.Option(None, "--name", help="Datasource name."),
    rearrangement: str | None = typer.Option(
        None, "--rearrangement", help="DataRearrangement JSON, e.g. '{\"splitting\":{...}}'."
    ),
    no_statistics: bool = typer.Option(False, "--no-statistics", help="Do not compute statistics."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Create a datasource from a CSV file, wait for it (with a progress bar) and show it."""
    state = _state(ctx)
    location = _data_location(data)
    if (schema is None) == (not infer_schema):
        raise InvalidInputException("give exactly one of --schema FILE and --infer-schema")
    if not infer_schema and (target or row_id):
        raise InvalidInputException("--target and --row-id go with --infer-schema; a schema file names them")
    service = state.service()
    if schema is not None:
        schema_text = _read_schema_file(schema, service.settings)
    else:
        request = {"DataLocationS3": location, "TargetAttributeName": target, "RowId": row_id}
        schema_text = service.call("InferDataSchema", _present(request))["DataSchema"]
    spec = {"DataLocationS3": location, "DataSchema": schema_text, "DataRearrangement": rearrangement}
    request = {
        "DataSourceId": datasource_id,
        "DataSourceName": name,
        "DataSpec": _present(spec),
        "ComputeStatistics": not no_statistics,
    }
    created = service.call("CreateDataSourceFromS3", _present(request))
    if no_wait:
        if state.json:
            _print_json(created)
        else:
            state.console.print(
                f"Accepted datasource {datasource_id}; `emrml datasource wait {datasource_id}` runs it."
            )
        return
    _wait_and_show(state, datasource_id)


@datasource_app.command("wait")
@_reports_errors
def datasource_wait(
    ctx: typer.Context, datasource_id: str = typer.Argument(..., help="Datasource id.")
) -> None:
    """Run or await a datasource's job (e.g. after create --no-wait), then show it."""
    _wait_and_show(_state(ctx), datasource_id)


@datasource_app.command("list")
@_reports_errors
def datasource_list(
    ctx: typer.Context,
    status: Status | None = typer.Option(None, "--status", help="Only datasources with this status."),
    name_prefix: str | None = typer.Option(None, "--name-prefix", help="Only names starting with this."),
    sort: SortOrder = typer.Option(
        SortOrder.asc, "--sort", help="Order by the filtered field (creation time without a filter)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Show at most this many."),
) -> None:
    """List datasources (all pages), oldest first."""
    if status is not None and name_prefix is not None:
        raise InvalidInputException("--status and --name-prefix cannot be combined: filter on one field")
    request: dict[str, Any] = {"SortOrder": sort.value}
    if status is not None:
        request |= {"FilterVariable": "Status", "EQ": status.value}
    if name_prefix is not None:
        request |= {"FilterVariable": "Name", "Prefix": name_prefix}
    state = _state(ctx)
    results = _all_pages(state.service(), "DescribeDataSources", request, limit)
    if state.json:
        _print_json({"Results": results})
        return
    table = Table("Id", "Name", "Status", "Created", "Location", "Size", box=None, header_style="bold")
    for item in results:
        status_text = item.get("Status", "")
        if "Progress" in item:
            status_text += f" {item['Progress']:.0f}%"
        table.add_row(
            item.get("DataSourceId"),
            item.get("Name", ""),
            status_text,
            _time(item.get("CreatedAt")),
            item.get("DataLocationS3", ""),
            _bytes(item.get("DataSizeInBytes")),
        )
    state.console.print(table if results else "No datasources.")


@datasource_app.command("show")
@_reports_errors
def datasource_show(
    ctx: typer.Context, datasource_id: str = typer.Argument(..., help="Datasource id.")
) -> None:
    """Show a datasource: status, schema, record counts, invalid records and statistics."""
    state = _state(ctx)
    _show(state, _describe(state.service(), datasource_id))


@datasource_app.command("update")
@_reports_errors
def datasource_update(
    ctx: typer.Context,
    datasource_id: str = typer.Argument(..., help="Datasource id."),
    name: str = typer.Option(..., "--name", help="The new name."),
) -> None:
    """Rename a datasource."""
    state = _state(ctx)
    result = state.service().call("UpdateDataSource", {"DataSourceId": datasource_id, "DataSourceName": name})
    if state.json:
        _print_json(result)
    else:
        state.console.print(f"Renamed datasource {datasource_id} to {name!r}.")


@datasource_app.command("delete")
@_reports_errors
def datasource_delete(
    ctx: typer.Context, datasource_id: str = typer.Argument(..., help="Datasource id.")
) -> None:
    """Delete a datasource (its status becomes DELETED; the id stays reserved)."""
    state = _state(ctx)
    result = state.service().call("DeleteDataSource", {"DataSourceId": datasource_id})
    if state.json:
        _print_json(result)
    else:
        state.console.print(f"Deleted datasource {datasource_id}.")


@app.command("quickstart")
@_reports_errors
def quickstart(ctx: typer.Context) -> None:
    """Write a 5,000-row bank-marketing sample and create datasource ds-quickstart-bank from it.

    Safe to run again: the sample is rewritten with identical bytes and the datasource is reused.
    """
    state = _state(ctx)
    service = state.service()
    sample = write_bank_sample(service.settings.home / "samples" / "bank-sample.csv", QUICKSTART_ROWS)
    if not state.json:
        state.console.print(f"Sample data: {sample} ({QUICKSTART_ROWS:,} rows)")
    service.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": QUICKSTART_ID,
            "DataSourceName": "Bank marketing sample",
            "DataSpec": {"DataLocationS3": str(sample), "DataSchema": bank_sample_schema().to_json()},
            "ComputeStatistics": True,
        },
    )
    _wait_and_show(state, QUICKSTART_ID)


# ---------------------------------------------------------------------------------------------- tags


@tags_app.command("add")
@_reports_errors
def tags_add(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", help="Object id."),
    resource_type: ResourceType = typer.Option(ResourceType.DataSource, "--type", help="Object type."),
    tags: list[str] = typer.Argument(..., help="KEY=VALUE pairs (KEY alone: a tag without value)."),
) -> None:
    """Add tags to an object; an existing key gets the new value."""
    state = _state(ctx)
    request = {"ResourceId": resource_id, "ResourceType": resource_type.value, "Tags": _parse_tags(tags)}
    result = state.service().call("AddTags", request)
    if state.json:
        _print_json(result)
    else:
        state.console.print(f"Tagged {resource_type.value} {resource_id} with {len(tags)} tag(s).")


@tags_app.command("list")
@_reports_errors
def tags_list(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", help="Object id."),
    resource_type: ResourceType = typer.Option(ResourceType.DataSource, "--type", help="Object type."),
) -> None:
    """List an object's tags."""
    state = _state(ctx)
    result = state.service().call(
        "DescribeTags", {"ResourceId": resource_id, "ResourceType": resource_type.value}
    )
    if state.json:
        _print_json(result)
        return
    table = Table("Key", "Value", box=None, header_style="bold")
    for tag in result.get("Tags", []):
        table.add_row(tag["Key"], tag.get("Value", ""))
    state.console.print(table if result.get("Tags") else f"{resource_type.value} {resource_id} has no tags.")


@tags_app.command("delete")
@_reports_errors
def tags_delete(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", help="Object id."),
    resource_type: ResourceType = typer.Option(ResourceType.DataSource, "--type", help="Object type."),
    keys: list[str] = typer.Argument(..., help="Tag keys to remove (unknown keys are ignored)."),
) -> None:
    """Delete tags of an object by key."""
    state = _state(ctx)
    request = {"ResourceId": resource_id, "ResourceType": resource_type.value, "TagKeys": keys}
    result = state.service().call("DeleteTags", request)
    if state.json:
        _print_json(result)
    else:
        state.console.print(f"Removed {len(keys)} tag key(s) from {resource_type.value} {resource_id}.")


# ---------------------------------------------------------------------------------------------- helpers


def _present(members: Mapping[str, Any]) -> dict[str, Any]:
    """The members that have a value: absent and None mean different things to the API."""
    return {key: value for key, value in members.items() if value is not None}


def _data_location(data: str) -> str:
    """A URI unchanged, or an absolute local path: it is stored and read later from other folders.

    Checked here so that a typo does not leave a FAILED datasource holding the id.
    """
    location = data if "://" in data else str(Path(data).expanduser().resolve())
    if not locations.exists(location):
        raise InvalidInputException(f"--data {data}: no such file or folder")
    return location


def _read_schema_file(path: Path, settings: Settings) -> str:
    """The schema file's text, checked before anything is created so a mistake costs no job."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputException(f"--schema {path}: cannot read the file ({exc})") from None
    parse_schema(text, source=str(path), max_attributes=settings.max_attributes)
    return text


def _parse_tags(pairs: Iterable[str]) -> list[dict[str, str]]:
    tags = []
    for pair in pairs:
        key, separator, value = pair.partition("=")
        tags.append({"Key": key, "Value": value} if separator else {"Key": key})
    return tags


def _all_pages(service: EmrML, operation: str, request: dict[str, Any], limit: int | None) -> list[Any]:
    """Follow NextToken until the last page (pages may be short or empty) or ``limit`` results."""
    results: list[Any] = []
    token: str | None = None
    while limit is None or len(results) < limit:
        page_limit = PAGE_LIMIT if limit is None else min(PAGE_LIMIT, limit - len(results))
        page = service.call(operation, _present({**request, "Limit": page_limit, "NextToken": token}))
        results.extend(page.get("Results", []))
        token = page.get("NextToken")
        if not token:
            break
    return results if limit is None else results[:limit]


def _wait_and_show(state: _State, datasource_id: str) -> None:
    """Wait for the datasource's job with a progress bar, show it, and fail unless it COMPLETED."""
    service = state.service()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=state.json,
    )
    with progress:
        task = progress.add_task(f"datasource {datasource_id}", total=1.0)

        def report(fraction: float, message: str | None) -> None:
            progress.update(task, completed=fraction, description=message or f"datasource {datasource_id}")

        service.wait("DataSource", datasource_id, progress=report)
    described = _describe(service, datasource_id)
    _show(state, described)
    source = described["GetDataSource"]
    if source.get("Status") != "COMPLETED":
        detail = f": {source['Message']}" if source.get("Message") else ""
        raise _fail(f"datasource {datasource_id} is {source.get('Status')}{detail}", JOB_FAILED_EXIT_CODE)


def _describe(service: EmrML, datasource_id: str) -> dict[str, Any]:
    """The two raw outputs ``show`` renders, keyed by operation name (also its JSON output)."""
    return {
        "GetDataSource": service.call("GetDataSource", {"DataSourceId": datasource_id, "Verbose": True}),
        "GetDataSourceStatistics": service.call("GetDataSourceStatistics", {"DataSourceId": datasource_id}),
    }


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


# ---------------------------------------------------------------------------------------------- rendering


def _time(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _bytes(size: int | None) -> str:
    if size is None:
        return ""
    value, unit = float(size), "B"
    for larger in ("KB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size:,} B" if unit == "B" else f"{value:,.1f} {unit}"


def _number(value: Any, digits: int = 4) -> str:
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


def _sparkline(counts: list[int], width: int = 10) -> str:
    """Counts of a histogram as one line of block characters, merged down to at most ``width`` bins."""
    if not counts:
        return ""
    group = -(-len(counts) // width)
    merged = [sum(counts[i : i + group]) for i in range(0, len(counts), group)]
    top = max(merged) or 1
    return "".join(" ▁▂▃▄▅▆▇█"[round(8 * c / top)] for c in merged)


def _key_values(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
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
            table.add_row(key, value if isinstance(value, str) else _number(value))
    return table


def _table(title: str, *columns: str, right: Iterable[str] = ()) -> Table:
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


def _show(state: _State, described: dict[str, Any]) -> None:
    if state.json:
        _print_json(described)
        return
    source = described["GetDataSource"]
    stats = described["GetDataSourceStatistics"]
    sections = [_overview(source, stats)]
    if source.get("DataSourceSchema"):
        sections.append(_schema_table(source["DataSourceSchema"]))
    if stats.get("InvalidRecordExamples"):
        sections.append(
            _invalid_records_table(stats["InvalidRecordExamples"], stats.get("InvalidRecordCount"))
        )
    sections += _statistics_tables(stats.get("Statistics") or {})
    for section in sections:
        state.console.print(section)
        state.console.print()
    if stats.get("Statistics"):
        state.console.print('MI: mutual information with the target, Amazon ML\'s "correlation to target".')


def _overview(source: dict[str, Any], stats: dict[str, Any]) -> Table:
    status = source.get("Status", "")
    if "Progress" in source:
        status += f" ({source['Progress']:.0f}%)"
    records = None
    if "TotalRecordCount" in stats:
        records = f"{stats['TotalRecordCount']:,} total, {stats.get('InvalidRecordCount', 0):,} invalid"
    return _key_values(
        f"Datasource {source.get('DataSourceId')}",
        [
            ("Name", source.get("Name")),
            ("Status", status),
            ("Message", source.get("Message")),
            ("Location", source.get("DataLocationS3")),
            ("Rearrangement", source.get("DataRearrangement")),
            ("Records", records),
            ("Size", _bytes(source.get("DataSizeInBytes"))),
            ("Files", source.get("NumberOfFiles")),
            ("Statistics", "computed" if source.get("ComputeStatistics") else "not computed"),
            ("Created", _time(source.get("CreatedAt"))),
            ("Started", _time(source.get("StartedAt"))),
            ("Finished", _time(source.get("FinishedAt"))),
            ("Compute time", f"{source['ComputeTime']:,} ms" if "ComputeTime" in source else None),
        ],
    )


def _schema_table(schema_json: str) -> Table:
    schema = json.loads(schema_json)
    roles = {
        schema.get("targetAttributeName"): "target",
        schema.get("rowId"): "row id",
        schema.get("rowWeight"): "row weight",
    } | dict.fromkeys(schema.get("excludedAttributeNames") or [], "excluded")
    header = "with header row" if schema.get("dataFileContainsHeader") else "no header row"
    table = _table(f"Schema ({header})", "#", "Attribute", "Type", "Role", right=["#"])
    for position, attribute in enumerate(schema.get("attributes", []), start=1):
        name = attribute.get("attributeName", "")
        table.add_row(str(position), name, attribute.get("attributeType", ""), roles.get(name, ""))
    return table


def _invalid_records_table(examples: list[dict[str, Any]], count: int | None) -> Table:
    title = f"Invalid records ({_number(count)}; first {len(examples)} shown)"
    table = _table(title, "File", "Line", "Offset", "Reason", right=["Line", "Offset"])
    for example in examples:
        table.add_row(
            str(example.get("File", "")),
            _number(example.get("Line")),
            _number(example.get("Offset")),
            str(example.get("Reason", "")),
        )
    return table


def _statistics_tables(statistics: dict[str, Any]) -> list[Table]:
    if not statistics:
        return []
    type_counts = statistics.get("attributeTypeCounts") or {}
    tables = [
        _key_values(
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
        table = _table(title, "Value", "Count", "Share", right=["Count", "Share"])
        for item in counts:
            count = item.get("count", 0)
            table.add_row(str(item.get("value")), _number(count), f"{100 * count / total:.1f} %")
        return table
    scalars = [(key, value) for key, value in distribution.items() if not isinstance(value, dict | list)]
    return _key_values(title, scalars)


def _name(attribute: dict[str, Any]) -> str:
    role = attribute.get("role")
    suffix = f" ({role})" if role and role != "input" else ""
    return attribute.get("name", "") + suffix


def _numeric_table(attributes: list[dict[str, Any]]) -> Table:
    # Narrow columns so the table fits 80 characters; the JSON output has every statistic.
    numbers = ["Miss/inv", "Min", "Median", "Mean", "Max", "MI", "Histogram"]
    table = _table("NUMERIC attributes", "Attribute", *numbers, right=numbers)
    for a in attributes:
        table.add_row(
            _name(a),
            f"{_number(a.get('missingCount'))}/{_number(a.get('invalidCount'))}",
            *(_number(a.get(key)) for key in ("min", "median", "mean", "max")),
            _number(a.get("targetCorrelation"), 2),
            _sparkline((a.get("histogram") or {}).get("counts") or []),
        )
    return table


def _binary_table(attributes: list[dict[str, Any]]) -> Table:
    numbers = ["0", "1", "% true", "Invalid", "MI"]
    table = _table("BINARY attributes", "Attribute", *numbers, right=numbers)
    for a in attributes:
        counts = a.get("counts") or {}
        table.add_row(
            _name(a),
            _number(counts.get("0")),
            _number(counts.get("1")),
            _number(a.get("percentTrue")),
            _number(a.get("invalidCount")),
            _number(a.get("targetCorrelation"), 2),
        )
    return table


def _categorical_table(attributes: list[dict[str, Any]]) -> Table:
    numbers = ["Distinct", "MI"]
    table = _table(
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
            _number(a.get("distinctCount")),
            _number(a.get("targetCorrelation"), 2),
            ", ".join(f"{v.get('value')} ({_number(v.get('count'))})" for v in top),
        )
    return table


def _text_table(attributes: list[dict[str, Any]]) -> Table:
    numbers = ["Words", "Unique", "Per row", "MI"]
    table = _table("TEXT attributes", "Attribute", *numbers, "Prominent words", right=numbers)
    for a in attributes:
        per_row = a.get("wordsPerRow") or {}
        span = "–".join(_number(per_row.get(key)) for key in ("min", "max")) if per_row else ""
        words = [w.get("word", "") if isinstance(w, dict) else str(w) for w in a.get("prominentWords") or []]
        table.add_row(
            _name(a),
            _number(a.get("totalWords")),
            _number(a.get("uniqueWords")),
            span,
            _number(a.get("targetCorrelation"), 2),
            ", ".join(words[:6]),
        )
    return table


_ATTRIBUTE_TABLES: dict[str, Callable[[list[dict[str, Any]]], Table]] = {
    "NUMERIC": _numeric_table,
    "BINARY": _binary_table,
    "CATEGORICAL": _categorical_table,
    "TEXT": _text_table,
}
