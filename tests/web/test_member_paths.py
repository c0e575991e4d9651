"""A request member refused after validation, by emrml's own checks (a rearrangement, a schema, a location),
is named as validation names it: by its path in the request (``DataSpec.DataRearrangement``), through the
API's JSON 1.1 protocol as boto3 sends it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import asgi_request

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.web.protocol import TARGET_PREFIX
from emrml.web.server import create_app
from raw_models import XY_SCHEMA

SCHEMA = json.dumps(XY_SCHEMA)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    # Every folder is a data root: the locations refused here are refused for their form, not their place.
    home = tmp_path_factory.mktemp("member-paths")
    service = EmrML(Settings.load(environ={}, home=home, data_roots=(Path("/"),)))
    yield create_app(service, auth=False, max_body_bytes=64 * 1024)
    service.close()


def refused(app: Any, target: str, body: dict[str, Any]) -> tuple[int, str, str]:
    """The status, error type and message of a request the API refuses."""
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET_PREFIX + target}
    response = asyncio.run(asgi_request(app, headers, json.dumps(body).encode()))
    answer = response.json()
    return response.status, answer["__type"], answer["message"]


def _rds_data(**members: Any) -> dict[str, Any]:
    return {
        "DatabaseInformation": {"InstanceIdentifier": "db", "DatabaseName": "d"},
        "SelectSqlQuery": "SELECT 1",
        "DatabaseCredentials": {"Username": "u", "Password": "password"},
        "S3StagingLocation": "s3://emrml-test/staging/",
        "ResourceRole": "r",
        "ServiceRole": "s",
        "SubnetId": "subnet-1",
        "SecurityGroupIds": ["sg-1"],
        **members,
    }


def _redshift_data(**members: Any) -> dict[str, Any]:
    return {
        "DatabaseInformation": {"ClusterIdentifier": "c", "DatabaseName": "d"},
        "SelectSqlQuery": "SELECT 1",
        "DatabaseCredentials": {"Username": "u", "Password": "password"},
        "S3StagingLocation": "s3://emrml-test/staging/",
        **members,
    }


BAD_SPLIT = '{"splitting": {"percentBegin": 90, "percentEnd": 10}}'
ROLE = "arn:aws:iam::000000000000:role/ml"


@pytest.mark.parametrize(
    ("target", "body", "start"),
    [
        (
            "CreateDataSourceFromS3",
            {"DataSpec": {"DataLocationS3": "/x.csv", "DataSchema": SCHEMA, "DataRearrangement": BAD_SPLIT}},
            "DataSpec.DataRearrangement member 'splitting.percentBegin' (90) must not be greater than",
        ),
        (
            "CreateDataSourceFromS3",
            {"DataSpec": {"DataLocationS3": "/x.csv", "DataSchema": '{"version": "1.0"}'}},
            "DataSpec.DataSchema is missing attributes",
        ),
        (
            "CreateDataSourceFromS3",
            {"DataSpec": {"DataLocationS3": "/x.csv", "DataSchemaLocationS3": "ftp://host/x.schema"}},
            "DataSpec.DataSchemaLocationS3: ",
        ),
        (
            "CreateDataSourceFromS3",
            {"DataSpec": {"DataLocationS3": "ftp://host/x.csv", "DataSchema": SCHEMA}},
            "DataSpec.DataLocationS3: ",
        ),
        (
            "CreateDataSourceFromRDS",
            {"RDSData": _rds_data(DataRearrangement=BAD_SPLIT), "RoleARN": ROLE},
            "RDSData.DataRearrangement member 'splitting.percentBegin' (90)",
        ),
        (
            "CreateDataSourceFromRDS",
            {"RDSData": _rds_data(DataSchema="[]"), "RoleARN": ROLE},
            "RDSData.DataSchema must be a JSON object, got an array",
        ),
        (
            "CreateDataSourceFromRDS",
            {"RDSData": _rds_data(S3StagingLocation="ftp://host/staging/"), "RoleARN": ROLE},
            "RDSData.S3StagingLocation: ",
        ),
        (
            "CreateDataSourceFromRedshift",
            {"DataSpec": _redshift_data(DataRearrangement=BAD_SPLIT), "RoleARN": ROLE},
            "DataSpec.DataRearrangement member 'splitting.percentBegin' (90)",
        ),
        (
            "CreateDataSourceFromRedshift",
            {"DataSpec": _redshift_data(DataSchemaUri="ftp://host/x.schema"), "RoleARN": ROLE},
            "DataSpec.DataSchemaUri: ",
        ),
    ],
)
def test_a_data_spec_member_refused_after_validation_is_named_by_its_path(
    app: Any, target: str, body: dict, start: str
) -> None:
    """The request's own path to the member, as validation names it (DataSpec.DataLocationS3 is required),
    not the bare member, which a request of a nested DataSpec or RDSData does not spell."""
    status, kind, message = refused(app, target, {"DataSourceId": f"p-{uuid.uuid4().hex[:8]}", **body})
    assert (status, kind) == (400, "InvalidInputException")
    assert message.startswith(start), message
