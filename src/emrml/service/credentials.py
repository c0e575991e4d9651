"""Database passwords of RDS and Redshift datasources, kept encrypted at rest and never returned.

A CreateDataSourceFromRDS / FromRedshift request carries ``DatabaseCredentials.Password``. The metastore
keeps the request (to tell a safe retry from a mismatch, spec 4.4) with a keyed digest in the password's
place, and the password itself encrypted with the home's ``secrets.key`` (``identity.SecretBox``) in the
datasource's ``database_password`` column, which only the job that runs the query decrypts. A retry with
the same password gives the same digest, so it is still the same request.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from emrml.service.identity import KEY_FILE_NAME, SecretBox

if TYPE_CHECKING:
    from emrml.config import Settings
    from emrml.service.rows import DataSource

#: The member holding DatabaseCredentials in each operation's request.
SPEC_MEMBER = {"CreateDataSourceFromRDS": "RDSData", "CreateDataSourceFromRedshift": "DataSpec"}


def secret_box(settings: Settings) -> SecretBox:
    return SecretBox(settings.home / KEY_FILE_NAME)


def _credentials(operation: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """The request's DatabaseCredentials object when it holds a password string (requests are checked
    after the idempotency lookup, so any shape may arrive here)."""
    spec = request.get(SPEC_MEMBER.get(operation, ""))
    credentials = spec.get("DatabaseCredentials") if isinstance(spec, dict) else None
    if isinstance(credentials, dict) and isinstance(credentials.get("Password"), str):
        return credentials
    return None


def seal(settings: Settings, operation: str, request: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``(request as stored, encrypted password)``: the password replaced by its digest, and encrypted;
    the request unchanged and None for an operation without a password."""
    if _credentials(operation, request) is None:
        return request, None
    return seal_with(secret_box(settings), operation, request)


def seal_with(box: SecretBox, operation: str, request: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``seal`` with the home's key at hand (migration 0011 seals the requests recorded before 0007)."""
    if _credentials(operation, request) is None:
        return request, None
    stored = copy.deepcopy(request)
    credentials = _credentials(operation, stored)
    assert credentials is not None
    password = credentials["Password"]
    credentials["Password"] = box.digest(password)
    return stored, box.encrypt(password)


def password(settings: Settings, entity: DataSource, stored: str) -> str:
    """The datasource's password for the job that runs its query. ``stored`` is the request's Password
    member, the password itself where no encrypted one is recorded (a request without a password string)."""
    if entity.database_password is None:
        return stored
    return secret_box(settings).decrypt(entity.database_password)
