"""The jobs browser: every object's job (datasource, model, evaluation, batch prediction) in one list.

The page's JSON twin is what its script polls to move the progress bars without reloading.
"""

from __future__ import annotations

from typing import Any

from emrml.console.app import View, Visit
from emrml.console.objects import KINDS, STATUSES

#: Most recent objects read per kind; the page shows the newest of all kinds together.
JOBS_PER_KIND = 50


def jobs(visit: Visit) -> View:
    query = visit.query
    status = query.get("status", "")
    chosen = [kind for kind in KINDS.values() if query.get("kind", "") in ("", kind.kind)]
    rows: list[dict[str, Any]] = []
    for kind in chosen:
        request: dict[str, Any] = {"Limit": JOBS_PER_KIND, "SortOrder": "dsc"}
        if status in STATUSES:
            request.update(FilterVariable="Status", EQ=status)
        for item in visit.call(kind.describe, request)["Results"]:
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
                    "Message": item.get("Message"),
                }
            )
    rows.sort(key=lambda row: row["CreatedAt"] or 0, reverse=True)
    extra = {"query": query, "statuses": STATUSES, "kinds": KINDS}
    return View("jobs.html", {"Jobs": rows[: JOBS_PER_KIND * 2]}, extra=extra)
