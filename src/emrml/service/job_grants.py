"""A job's grants, checked again as its worker starts it, before it reads or writes anything.

Its request was checked when it was made (``confinement.check_location``), as its creator; the job runs
later, perhaps much later (queued behind others, retried). By then its creator may have been disabled, a
grant of its groups taken back, or a file or folder it names replaced by a link to a place the creator may
not read: the job must not read or write for a creator who may no longer. So the locations its request
named are checked again, as it named them, as its creator, and a job of a disabled creator is refused
whatever it names. A refusal fails the job with AccessDeniedException's message; nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emrml.errors import AccessDeniedException
from emrml.service.confinement import check_location, check_schema_beside
from emrml.service.operations import running_as

if TYPE_CHECKING:
    from emrml.config import Settings
    from emrml.service.access import Access
    from emrml.service.metastore import Sessions


@dataclass(frozen=True)
class _Checking:
    """What ``check_location`` uses of an ``EmrML``, in a worker, which has none."""

    access: Access
    settings: Settings


def check_job_grants(settings: Settings, sessions: Sessions, kind: str, entity: Any) -> None:
    """Raise AccessDeniedException unless the creator of ``entity`` (of ``kind``) may still have its job
    read and write what its request named."""
    from emrml.service.access import Access, user_name_of

    app = _Checking(Access(sessions, settings), settings)
    creator = entity.created_by
    try:
        if user_name_of(creator) is not None and not app.access.policy(creator).enabled:
            raise AccessDeniedException(f"User: {creator} is disabled or does not exist")
        with running_as(creator, remote=entity.confined):
            _check_locations(app, kind, entity)
    except AccessDeniedException as exc:
        raise AccessDeniedException(
            f"{exc.message} (checked again as the job started, before it read or wrote anything)"
        ) from None


def _check_locations(app: _Checking, kind: str, entity: Any) -> None:
    """The checks of ``kind``'s Create* request on the locations it named (``service.datasources``,
    ``service.models``, ``service.batch_predictions``)."""
    request = json.loads(entity.request)
    if kind == "DataSource":
        within = "RDSData" if "RDSData" in request else "DataSpec"
        spec = request.get(within) or {}
        for member in ("DataSchemaLocationS3", "DataSchemaUri"):
            if spec.get(member):
                check_location(app, spec[member], member=f"{within}.{member}")
        staging = spec.get("S3StagingLocation")
        if staging:  # a SQL datasource: its query's result is written there, then read
            check_location(app, staging, member=f"{within}.S3StagingLocation", write=True, below=True)
            return
        check_location(app, entity.data_location, member="DataSpec.DataLocationS3", below=True)
        if not (spec.get("DataSchema") or spec.get("DataSchemaLocationS3")):
            check_schema_beside(app, entity.data_location)
    elif kind == "MLModel" and entity.recipe_uri:
        check_location(app, entity.recipe_uri, member="RecipeUri")
    elif kind == "BatchPrediction":
        check_location(app, entity.output_uri, member="OutputUri", write=True, below=True)
