"""``PlanCapacity`` (an extension of the Amazon ML API): the capacity planner of ``core.capacity`` for the
API, the CLI (``emrml plan``) and the console's Capacity page.

Request: ``Nodes`` (integer), ``DiskPerNode`` and ``Data`` (sizes such as ``"800GB"``, ``"3TB"``), optional
``Codec`` (measure only that one) and ``SampleLocation`` (a file of the user's data, read through the same
door as every location: confinement and storage grants); its first ``SAMPLE_BYTES`` of decompressed data
are compressed with each codec. Response: ``Plan`` and, with a sample, ``Codecs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emrml.core import capacity
from emrml.errors import DataError, InvalidInputException
from emrml.service.confinement import check_location, checked_as_opened
from emrml.service.operations import Request, Response, operation
from emrml.service.validation import optional_string, require_string

if TYPE_CHECKING:
    from emrml.service.app import EmrML

#: Bytes of the sample the codecs compress: enough for stable ratios, quick to measure.
SAMPLE_BYTES = 8 << 20


def _size(request: Request, member: str) -> int:
    try:
        return capacity.parse_size(require_string(request, member), member)
    except ValueError as exc:
        raise InvalidInputException(str(exc)) from None


@operation("PlanCapacity")
def plan_capacity(app: EmrML, request: Request) -> Response:
    nodes = request.get("Nodes")
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise InvalidInputException(f"Nodes must be a positive integer (got {nodes!r})")
    if nodes > capacity.MAX_NODES:  # core's own check would not name the member
        raise InvalidInputException(f"Nodes must be at most {capacity.MAX_NODES:,} (got {nodes:,})")
    disk, data = _size(request, "DiskPerNode"), _size(request, "Data")
    codec = optional_string(request, "Codec")
    if codec is not None and codec not in capacity.CODECS:
        raise InvalidInputException(f"Codec {codec!r} is not one of {', '.join(capacity.CODECS)}")
    try:
        plan = capacity.plan(nodes, disk, data)
    except ValueError as exc:
        raise InvalidInputException(str(exc)) from None
    response: Response = {"Plan": plan.to_dict()}
    location = optional_string(request, "SampleLocation")
    if location:
        check_location(app, location, member="SampleLocation")
        from emrml.engine.local import open_data

        with checked_as_opened(app), open_data(location, what="SampleLocation") as (_, stream):
            sample = stream.read(SAMPLE_BYTES)
        if not sample:
            raise DataError(f"SampleLocation '{location}' is empty")
        response["Codecs"] = [measure.to_dict() for measure in capacity.measure_codecs(sample, codec)]
    return response
