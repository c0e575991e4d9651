"""The Capacity page: the capacity planner (``PlanCapacity``) as a form, its answer as text and a table.

A GET form (it changes nothing): the plan appears for the values in the query string; the JSON twin is
the operation's answer. A value the operation refuses marks its field with the operation's message.
"""

from __future__ import annotations

from typing import Any

from emrml.console.app import View, Visit
from emrml.console.numbers import whole
from emrml.core.capacity import CODECS, plan_lines
from emrml.errors import AccessDeniedException, InvalidInputException

#: Form field → the PlanCapacity member it fills.
FIELDS = {
    "nodes": "Nodes",
    "disk": "DiskPerNode",
    "data": "Data",
    "codec": "Codec",
    "sample": "SampleLocation",
}


def capacity(visit: Visit) -> View:
    query = visit.query
    # Nodes as typed: a number is its digits alone (``numbers.whole``), as everywhere in the console.
    form = {name: query.get(name, "") if name == "nodes" else query.get(name, "").strip() for name in FIELDS}
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    refused = False
    if form["nodes"] or form["disk"] or form["data"]:
        request: dict[str, Any] = {FIELDS[name]: value for name, value in form.items() if value}
        nodes = whole(form["nodes"])
        if nodes is None:
            errors["nodes"] = f"Nodes must be a positive integer (got {form['nodes']!r})"
        else:
            request["Nodes"] = nodes
            try:
                data = visit.call("PlanCapacity", request)
            except (InvalidInputException, AccessDeniedException) as exc:
                field = next((name for name, member in FIELDS.items() if member in exc.message), "general")
                errors[field] = exc.message
                # A user who may not plan is refused (403), not told its values are wrong.
                refused = isinstance(exc, AccessDeniedException)
    lines = plan_lines(data["Plan"]) if "Plan" in data else []
    # The planner is offered disabled, saying why, to a user it would refuse (no planning permission).
    may = visit.console.service.access.may(visit.user, "machinelearning:PlanCapacity")
    extra = {
        "form": form,
        "errors": errors,
        "lines": lines,
        "codecs": CODECS,
        "refused": {} if may else {"PlanCapacity": "plan a cluster"},
    }
    status = 403 if refused else 400 if errors else 200
    return View("capacity.html", data, status=status, extra=extra)
