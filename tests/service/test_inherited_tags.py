"""A new object inherits the tags of the objects it is made from (spec 4.7) only from those its creator may
read the tags of (``DescribeTags``): another user's datasource it may train on does not hand it its tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emrml.service.app import EmrML

SCHEMA = json.dumps(
    {
        "version": "1.0",
        "dataFormat": "CSV",
        "dataFileContainsHeader": False,
        "targetAttributeName": "y",
        "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
)
TAGS = [{"Key": "cost-centre", "Value": "secret-4410"}]


@pytest.fixture
def shared(sqlite_app: EmrML, tmp_path: Path) -> str:
    """A datasource of the root's, tagged, which the users below may train on."""
    data = tmp_path / "data.csv"
    data.write_text("1,0\n2,1\n")
    spec = {"DataLocationS3": str(data), "DataSchema": SCHEMA}
    request = {"DataSourceId": "ds-shared", "DataSpec": spec, "ComputeStatistics": True}
    sqlite_app.call("CreateDataSourceFromS3", request)
    sqlite_app.call("AddTags", {"ResourceType": "DataSource", "ResourceId": "ds-shared", "Tags": TAGS})
    return "ds-shared"


def _trainer(app: EmrML, name: str, reads_tags_of: str) -> str:
    """A user who may create models on any datasource and read tags of ``reads_tags_of`` objects."""
    access = app.access
    access.create_group(f"{name}-group")
    access.add_statement(f"{name}-group", {"Effect": "Allow", "Action": "CreateMLModel", "Resource": "*"})
    statement = {"Effect": "Allow", "Action": "DescribeTags", "Resource": "*", "Owner": reads_tags_of}
    access.add_statement(f"{name}-group", statement)
    access.create_user(name, (f"{name}-group",))
    return access.user_arn(name)


def _model_tags(app: EmrML, caller: str, model_id: str, source: str) -> list[dict[str, str]]:
    request = {"MLModelId": model_id, "MLModelType": "BINARY", "TrainingDataSourceId": source}
    app.call("CreateMLModel", request, caller, remote=True)
    described = app.call("DescribeTags", {"ResourceType": "MLModel", "ResourceId": model_id}, caller)
    return described["Tags"]


def test_tags_the_creator_may_not_read_are_not_inherited(sqlite_app: EmrML, shared: str) -> None:
    caller = _trainer(sqlite_app, "ivy", reads_tags_of="self")
    assert _model_tags(sqlite_app, caller, "ml-ivy", shared) == []


def test_tags_the_creator_may_read_are_inherited(sqlite_app: EmrML, shared: str) -> None:
    caller = _trainer(sqlite_app, "jon", reads_tags_of="any")
    assert _model_tags(sqlite_app, caller, "ml-jon", shared) == TAGS
