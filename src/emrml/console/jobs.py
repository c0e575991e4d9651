"""The jobs browser: every object's job (datasource, model, evaluation, batch prediction) in one list, and
the stream consumers (``emrml stream``) with their totals and lag.

The page's JSON twin is what its script polls to move the progress bars without reloading.
"""

from __future__ import annotations

from typing import Any

from emrml.console.app import View, Visit
from emrml.console.objects import STATUSES, listable, readable

#: Most recent objects read per kind; the page shows the newest of all kinds together.
JOBS_PER_KIND = 50
#: The kind filter's value that shows only the stream consumers.
STREAMS = "Stream"
STREAM_MEMBERS = (
    "StreamId", "Name", "MLModelId", "InputStream", "Status", "Consumers", "Shards", "RecordsIn",
    "RecordsOut", "RecordsFailed", "RecordsPerSecond", "MillisBehindLatest", "CreatedAt", "Message",
)  # fmt: skip


def streams(visit: Visit, status: str) -> list[dict[str, Any]]:
    """The streams the user may see (none, and no error, for one who may not list them)."""
    if not visit.console.service.access.may(visit.user, "machinelearning:DescribeStreams"):
        return []
    found = visit.call("DescribeStreams")["Results"]
    return [
        {name: item.get(name) for name in STREAM_MEMBERS}
        for item in reversed(found)
        if not status or item.get("Status") == status
    ]


def jobs(visit: Visit) -> View:
    query = visit.query
    status = query.get("status", "")
    kinds = {kind.path: kind for kind in listable(visit)}
    chosen = [kind for kind in kinds.values() if query.get("kind", "") in ("", kind.kind)]
    if status and status not in STATUSES:
        chosen = []  # a stream's status (RUNNING, STOPPED...): no job has it
    rows: list[dict[str, Any]] = []
    more = False
    for kind in chosen:
        request: dict[str, Any] = {"Limit": JOBS_PER_KIND, "SortOrder": "dsc"}
        if status in STATUSES:
            request.update(FilterVariable="Status", EQ=status)
        found = visit.call(kind.describe, request)
        more = more or bool(found.get("NextToken"))
        for item in found["Results"]:
            rows.append(
                {
                    "Kind": kind.kind,
                    "Path": kind.path,
                    "Id": item[kind.id_member],
                    "Name": item.get("Name"),
                    "Status": item.get("Status"),
                    "Progress": 100.0 if item.get("Status") == "COMPLETED" else item.get("Progress", 0.0),
                    "CreatedAt": item.get("CreatedAt"),
                    "StartedAt": item.get("StartedAt"),
                    "FinishedAt": item.get("FinishedAt"),
                    "ComputeTime": item.get("ComputeTime"),
                    "SparkApplicationId": item.get("SparkApplicationId"),
                    "SparkJobIds": item.get("SparkJobIds", []),
                    # A running job's: what it does now.
                    "Message": item.get("Message") or item.get("ProgressMessage"),
                }
            )
    rows.sort(key=lambda row: row["CreatedAt"] or 0, reverse=True)
    # Older jobs than these exist: the page says so, and each kind's list pages through all of them.
    more = more or len(rows) > JOBS_PER_KIND * 2
    rows = rows[: JOBS_PER_KIND * 2]
    extra = {"query": query, "statuses": STATUSES, "kinds": kinds, "stream_kind": STREAMS, "more": more}
    data: dict[str, Any] = {"Jobs": rows, "OlderJobs": more}
    if query.get("kind", "") in ("", STREAMS):
        data["Streams"] = streams(visit, status)
    # A job's object may be listed to a user who may not open it: its row then names it without a link
    # (the twin's Readable, for the rows the page's script adds).
    shown = readable(
        visit,
        [(row["Kind"], row["Id"]) for row in rows]
        + [("MLModel", stream["MLModelId"]) for stream in data.get("Streams", [])],
    )
    for row in rows:
        row["Readable"] = f"{row['Path']}/{row['Id']}" in shown
    extra["readable"] = shown
    return View("jobs.html", data, extra=extra)
