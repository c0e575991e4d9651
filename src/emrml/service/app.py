"""The application object: settings, metastore, job runner, and the operations behind every interface."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.service.access import Access, Unseen
from emrml.service.confinement import prepare_home
from emrml.service.metastore import migrate, open_engine, out_of_service, session_factory
from emrml.service.mounted import MountedModels
from emrml.service.operations import CALLER, ID_MEMBER, registered, reused_id, running_as
from emrml.service.predicting import serve_predict
from emrml.storage.locations import configure as configure_storage

if TYPE_CHECKING:
    from emrml.service.jobs import JobRunner, ProgressCallback


class EmrML:
    """One emrml installation (a home folder and a metastore).

    ``call(operation, request)`` runs an Amazon ML operation by name with the API's JSON request and returns
    its JSON response; the CLI, the HTTP API and the console are thin callers of it.
    """

    def __init__(self, settings: Settings | None = None, *, rate_share: float = 1.0) -> None:
        """``rate_share``: the part of every real-time rate limit this process admits (1/N of N server
        processes)."""
        self.settings = settings or Settings.load()
        prepare_home(self.settings)
        configure_storage(self.settings)
        self.engine = open_engine(self.settings.database_url)
        migrate(self.engine, self.settings.home)
        self.sessions = session_factory(self.engine)
        #: The models whose real-time endpoints this process serves.
        self.mounted = MountedModels(
            self.sessions,
            total_requests_per_second=self.settings.total_requests_per_second,
            share=rate_share,
        )
        #: Who may do what (``service.access``): every operation is authorized there.
        self.access = Access(self.sessions, self.settings)

    @functools.cached_property
    def jobs(self) -> JobRunner:
        """The job runner, made by the first use: its code and the ORM it uses are not a server's start."""
        from emrml.service.jobs import JobRunner

        return JobRunner(self.settings, self.sessions)

    def call(
        self,
        operation: str,
        request: dict[str, Any] | None = None,
        caller: str | None = None,
        *,
        remote: bool = False,
    ) -> dict[str, Any]:
        """Run one operation; ``caller`` is the ARN of the authenticated user (default: the root user), whose
        groups must allow it (``service.access``: AccessDeniedException otherwise).

        ``remote``: the request arrived through ``emrml serve`` (the HTTP API, the console), so the local
        files it names must lie in the data roots (``service.confinement``); the CLI and the library working
        on their own home leave it False and read any file their user can.
        """
        if operation == "Predict":
            # Latency-critical and reads no file a request names: its own hand-checked path, authorized
            # from the mounted model's owner.
            return serve_predict(self, request or {}, caller)
        with running_as(caller, remote=remote):
            try:
                return self._call(operation, request)
            except DBAPIError as exc:
                error = out_of_service(exc, self.settings.database_url)
                if error is None:
                    raise
                raise error from None

    def _call(self, operation: str, request: dict[str, Any] | None) -> dict[str, Any]:
        function = registered().get(operation)
        if function is None:
            raise InvalidInputException(f"unknown operation {operation!r}")
        request = request or {}
        try:
            self.access.authorize(CALLER.get(), operation, request)
        except Unseen:
            from emrml.service.validation import validate_request

            # An id of no object is answered after validation, which refuses an invalid request first: so
            # is another user's object the caller may not read, or an invalid request would tell them apart.
            validate_request(operation, request)
            raise
        retry = reused_id(self, operation, request)
        if retry is not None:
            return retry
        from emrml.service.validation import validate_request  # with the operations (botocore's model)

        request = validate_request(operation, request)
        try:
            return function(self, request)
        except IntegrityError:
            # Another request inserted the same row between this one's check and its commit: a Create* of
            # the same id, an AddTags of the same key. Run again, seeing that row: the Create* is then a
            # safe retry or IdempotentParameterMismatchException (spec 4.4), the tag an overwrite.
            retry = reused_id(self, operation, request)
            return retry if retry is not None else function(self, request)

    def wait(self, kind: str, entity_id: str, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Run or await the entity's job until it ends; returns its Get* description."""
        self.jobs.wait(kind, entity_id, progress)
        return self.call(f"Get{kind}", {ID_MEMBER[kind]: entity_id})

    def close(self) -> None:
        self.engine.dispose()
