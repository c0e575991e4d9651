"""The jobs browser: every object's job (datasource, model, evaluation, batch prediction) in one list, and
the stream consumers (``emrml stream``) with their totals and lag.

The page's JSON twin is what its script polls to move the progress bars without reloading.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse

from emrml.console.app import View, Visit
from emrml.console.deleting import deletes
from emrml.console.numbers import whole
from emrml.console.objects import STATUSES, listable, readable_names, reference_names, refused_actions
from emrml.errors import AmazonMLError, InvalidInputException
from emrml.service.validation import require_id

#: Most recent objects read per kind; the page shows the newest of all kinds together.
JOBS_PER_KIND = 50
#: The statuses of a job still to end, which the page offers to cancel.
RUNNING = ("PENDING", "INPROGRESS")
#: The kind filter's value that shows only the stream consumers.
STREAMS = "Stream"
STREAM_MEMBERS = (
    "StreamId", "Name", "MLModelId", "InputStream", "Status", "Consumers", "Shards", "RecordsIn",
    "RecordsOut", "RecordsFailed", "RecordsPerSecond", "MillisBehindLatest", "CreatedAt", "Message",
)  # fmt: skip


#: The operation behind a stream's start button.
START_ACTIONS = {"StartStream": "start its consumers"}
#: Most consumers the start button's field asks for (StartStream starts at most one per open shard).
MAX_CONSUMERS = 64


def startable(stream: dict[str, Any]) -> bool:
    """Whether no consumer runs the stream, so that StartStream would start some: STOPPED, FAILED (its
    consumers ended), or RUNNING with a message saying its last consumer stopped."""
    status = stream.get("Status")
    return status in ("STOPPED", "FAILED") or (
        status == "RUNNING" and not stream.get("Consumers") and bool(stream.get("Message"))
    )


def streams(visit: Visit, status: str) -> list[dict[str, Any]]:
    """The streams the user may see (none, and no error, for one who may not list them); ``Startable``:
    the page offers to start its consumers (no consumer runs it, and the user may start it)."""
    if not visit.console.service.access.may(visit.user, "machinelearning:DescribeStreams"):
        return []
    found = visit.call("DescribeStreams")["Results"]
    rows = []
    for item in reversed(found):
        if status and item.get("Status") != status:
            continue
        row = {name: item.get(name) for name in STREAM_MEMBERS}
        request = {"StreamId": item["StreamId"], "MLModelId": item["MLModelId"]}
        row["Startable"] = startable(item) and not refused_actions(visit, START_ACTIONS, request)
        rows.append(row)
    return rows


def start_stream(visit: Visit) -> RedirectResponse:
    """Start a stream's consumers again with the parameters it was started with (GetStream's
    ``StartParameters``): the same StartStream, and the same checks, as the API's."""
    stream_id = visit.params["stream_id"]
    text = visit.field("consumers", "1").strip()
    # ``numbers.whole``: ASCII digits alone ("\u00b2" is a digit to isdigit(), not to int()), and no more
    # of them than int() reads.
    consumers = whole(text)
    if consumers is None or not 1 <= consumers <= MAX_CONSUMERS:
        raise InvalidInputException(
            f"Consumers must be a whole number from 1 to {MAX_CONSUMERS} (got {text!r})"
        )
    described = visit.call("GetStream", {"StreamId": stream_id})
    started = visit.call("StartStream", {**described["StartParameters"], "Consumers": consumers})
    url = visit.console.url("jobs", kind=STREAMS, stream=stream_id, started=started["ConsumersStarted"])
    return RedirectResponse(url, status_code=303)


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
    for row in rows:
        # A running job is cancelled as Amazon ML cancels one, by deleting its object (its job stops):
        # offered to who the service would let delete it; the twin's for the rows the page's script fills.
        running = row["Status"] in RUNNING
        row["Cancels"] = deletes(visit, row["Path"], row["Id"], row["Status"])["deletes"] if running else None
    extra = {"query": query, "statuses": STATUSES, "kinds": kinds, "stream_kind": STREAMS, "more": more}
    extra.update(started=_started_notice(visit, query), max_consumers=MAX_CONSUMERS)
    data: dict[str, Any] = {"Jobs": rows, "OlderJobs": more}
    if query.get("kind", "") in ("", STREAMS):
        data["Streams"] = streams(visit, status)
    # A job's object may be listed to a user who may not open it: its row then names it without a link
    # (the twin's Readable, for the rows the page's script adds).
    models = [("MLModel", stream["MLModelId"]) for stream in data.get("Streams", [])]
    shown = readable_names(visit, [(row["Kind"], row["Id"]) for row in rows] + models)
    for row in rows:
        row["Readable"] = f"{row['Path']}/{row['Id']}" in shown
    for stream in data.get("Streams", []):
        stream["ModelReadable"] = f"models/{stream['MLModelId']}" in shown
    extra["readable"] = set(shown)
    if models:
        # The streams' models by name, as on an object's page (the twin's too, for the rows its script adds).
        data["ReferenceNames"] = extra["names"] = reference_names(models, shown)
    return View("jobs.html", data, extra=extra)


def _started_notice(visit: Visit, query: dict[str, str]) -> str:
    """What the page says after its start button (the redirect's ``stream`` and ``started``)."""
    stream_id, started = query.get("stream", ""), query.get("started", "")
    # Said only of what the start button's redirect can name: a link carrying any other text would have
    # the page say it ("Stream <whatever prose>: 3 consumer process(es) started").
    try:
        require_id({"StreamId": stream_id}, "StreamId")
    except InvalidInputException:
        return ""
    if whole(started) is None:
        return ""
    if started == "0":
        # None started: consumers run it already, or those started died before they ran (StartStream
        # then records the stream FAILED, saying why).
        try:
            described = visit.call("GetStream", {"StreamId": stream_id})
        except AmazonMLError:  # deleted since, or not for this user to read: the start's own answer
            described = {}
        if described.get("Status") == "FAILED":
            return f"Stream {stream_id}: no consumer started; it is FAILED: {described.get('Message')}"
        return f"Stream {stream_id}: no consumer started, consumers run it already."
    return f"Stream {stream_id}: {started} consumer process(es) started; it shows RUNNING once they report."
