"""What a form's select offers: the newest COMPLETED objects of a kind, and the one the form was opened for.

A select lists ``CHOICES`` objects, newest first. The actions of an object's page ("Train a model on this
data", "Batch prediction", "Compare with another evaluation") open a form naming it; when it is older than
the newest ``CHOICES``, it is added, else the form could not choose the object it was opened for.
"""

from __future__ import annotations

from typing import Any

from emrml.console.app import Visit
from emrml.errors import AccessDeniedException, AmazonMLError

#: How many of the newest COMPLETED objects a select lists.
CHOICES = 100


def choices(visit: Visit, kind: str, *chosen: str) -> list[dict[str, Any]]:
    """The ``CHOICES`` newest COMPLETED objects of ``kind`` (DataSource, MLModel, Evaluation) the user may
    see, then those of ``chosen`` not among them that the user may read and that are COMPLETED. A user who
    may not list the kind at all is offered those of ``chosen`` (reading is not listing: the compare page
    opened from an evaluation must not be refused for want of DescribeEvaluations)."""
    request = {"FilterVariable": "Status", "EQ": "COMPLETED", "Limit": CHOICES, "SortOrder": "dsc"}
    try:
        listed: list[dict[str, Any]] = visit.call(f"Describe{kind}s", request)["Results"]
    except AccessDeniedException:
        listed = []
    member = f"{kind}Id"
    known = {item[member] for item in listed}
    for object_id in dict.fromkeys(chosen):
        if not object_id or object_id in known:
            continue
        try:
            described = visit.call(f"Get{kind}", {member: object_id})
        except AmazonMLError:
            continue  # unknown, or not the user's to read: sending the form says so
        if described.get("Status") == "COMPLETED":
            listed.append(described)
    return listed
