"""``emrml jobs``: the jobs browser of the terminal, as the console's Jobs page: every object's job
(datasources, models, evaluations, batch predictions) in one list, newest first, with what a running job
does now or why one failed, then the streams. The same Describe* operations as each kind's ``list``."""

from __future__ import annotations

from typing import Any

import typer

from emrml.cli_common import limit_option, print_json, reports_errors, state
from emrml.cli_objects import KINDS, PAGE_LIMIT, Status
from emrml.cli_render.lists import Column, list_table
from emrml.cli_render.parts import format_time, status_text
from emrml.cli_stream import print_streams
from emrml.errors import AccessDeniedException

JOB_COLUMNS = (
    Column("Kind", lambda item: item["Kind"], 0),
    Column("Id", lambda item: item["Id"], 0),
    Column("Status", status_text, 0),
    Column("Created", lambda item: format_time(item.get("CreatedAt")), 2),
    # What a running job does now, or why a job failed.
    Column("Message", lambda item: item.get("Message") or item.get("ProgressMessage") or "", 1),
)


def register(app: typer.Typer) -> None:
    app.command("jobs")(reports_errors(jobs))


def jobs(
    ctx: typer.Context,
    status: Status | None = typer.Option(
        None, "--status", case_sensitive=False, help="Only the jobs of this status."
    ),
    limit: int = limit_option(50, "Show the newest N jobs", maximum=PAGE_LIMIT),
) -> None:
    """List every object's job, newest first (what a running job does, why one failed), then the streams."""
    current = state(ctx)
    service = current.service()
    request: dict[str, Any] = {"Limit": limit, "SortOrder": "dsc"}
    if status is not None:
        request.update(FilterVariable="Status", EQ=status.value)
    rows: list[dict[str, Any]] = []
    # A kind the caller may not list (AccessDenied on its Describe*) leaves the others to list: each kind
    # refused is named, with why, in one warning; only when nothing at all could be listed is it an error.
    # Any other error (the metastore down, say) is one, whatever the kind.
    refused: dict[str, AccessDeniedException] = {}
    for kind in KINDS.values():  # every kind of object has a job
        try:
            found = service.call(f"Describe{kind.kind}s", dict(request))["Results"]
        except AccessDeniedException as exc:
            refused[f"{kind.kind}s"] = exc
            continue
        rows.extend({"Kind": kind.kind, "Id": item[kind.id_member], **item} for item in found)
    # Newest first across the kinds; ``limit`` of each kind was read, so the newest ``limit`` are here.
    rows.sort(key=lambda row: row.get("CreatedAt") or 0.0, reverse=True)
    rows = rows[:limit]
    streams: list[dict[str, Any]] = []
    if status is None:
        try:
            streams = service.call("DescribeStreams", {})["Results"]
        except AccessDeniedException as exc:
            refused["Streams"] = exc
    listed = len(KINDS) + (status is None) - len(refused)
    if refused:
        if not listed:
            raise next(iter(refused.values()))
        reasons = "; ".join(f"{what} ({exc.type_name}: {exc.message})" for what, exc in refused.items())
        typer.echo("warning: left out " + " ".join(reasons.split()), err=True)  # one line, as errors are
    if current.json:
        print_json({"Jobs": rows, "Streams": streams})
        return
    if rows:
        current.console.print(list_table(JOB_COLUMNS, rows, current.console.width))
    else:
        current.console.print("No jobs." if status is None else f"No {status.value} jobs.")
    if streams:
        current.console.print()
        print_streams(current, streams)
