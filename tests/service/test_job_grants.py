"""A job checks its creator's grants again as it starts, before it reads or writes anything: a queued job
of a creator since disabled, or whose grant was taken back, or whose data became a link to what the creator
may not read after the request was checked, fails saying so."""

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
        "targetAttributeName": "label",
        "attributes": [
            {"attributeName": "line", "attributeType": "CATEGORICAL"},
            {"attributeName": "label", "attributeType": "BINARY"},
        ],
    }
)
SECRET = "secret-7c41"


@pytest.fixture
def ana(sqlite_app: EmrML) -> str:
    """A user of its own objects granted storage:Read and storage:Write on public/ of the data root only
    (its statement sid 1), whose ARN is returned."""
    root = sqlite_app.settings.data_roots[0]
    (root / "public").mkdir(parents=True)
    (root / "private").mkdir()
    (root / "private" / "secret.csv").write_text(f"{SECRET},1\n{SECRET},0\n")
    (root / "public" / "data.csv").write_text("a,0\nb,1\n" * 20)
    access = sqlite_app.access
    access.create_group("ana-storage")
    statement = {"Effect": "Allow", "Action": ["storage:*"], "Resource": f"{root}/public/*"}
    access.add_statement("ana-storage", statement)
    access.create_user("ana", ("users", "ana-storage"))
    return access.user_arn("ana")


def _queue_datasource(app: EmrML, caller: str, entity_id: str) -> None:
    location = str(app.settings.data_roots[0] / "public" / "data.csv")
    spec = {"DataLocationS3": location, "DataSchema": SCHEMA}
    request = {"DataSourceId": entity_id, "DataSpec": spec, "ComputeStatistics": True}
    app.call("CreateDataSourceFromS3", request, caller, remote=True)


def _refused(app: EmrML, entity_id: str) -> str:
    described = app.wait("DataSource", entity_id)
    assert described["Status"] == "FAILED", described
    assert "checked again as the job started" in described["Message"]
    statistics = app.call("GetDataSourceStatistics", {"DataSourceId": entity_id})
    assert "TotalRecordCount" not in described and "Statistics" not in statistics
    assert SECRET not in json.dumps(described)
    return described["Message"]


def test_the_job_of_a_creator_disabled_since_its_request_fails(sqlite_app: EmrML, ana: str) -> None:
    _queue_datasource(sqlite_app, ana, "ds-disabled")
    sqlite_app.access.set_user_enabled("ana", False)
    assert "is disabled" in _refused(sqlite_app, "ds-disabled")


def test_the_job_of_a_creator_whose_grant_was_taken_back_fails(sqlite_app: EmrML, ana: str) -> None:
    _queue_datasource(sqlite_app, ana, "ds-ungranted")
    sqlite_app.access.remove_statement("ana-storage", 1)
    assert "storage:Read" in _refused(sqlite_app, "ds-ungranted")


def test_data_made_a_link_to_what_the_creator_may_not_read_is_not_read(sqlite_app: EmrML, ana: str) -> None:
    """The link stays inside the data roots: the roots' confinement does not refuse it, the grants do."""
    _queue_datasource(sqlite_app, ana, "ds-linked")
    root = sqlite_app.settings.data_roots[0]
    data = root / "public" / "data.csv"
    data.unlink()
    data.symlink_to(root / "private" / "secret.csv")
    message = _refused(sqlite_app, "ds-linked")
    assert "storage:Read" in message and "private/secret.csv" in message


def test_a_batch_prediction_whose_write_grant_was_taken_back_writes_nothing(
    sqlite_app: EmrML, ana: str, tmp_path: Path
) -> None:
    _queue_datasource(sqlite_app, ana, "ds-ok")
    assert sqlite_app.wait("DataSource", "ds-ok")["Status"] == "COMPLETED"  # its grants still hold
    output = sqlite_app.settings.data_roots[0] / "public" / "out"
    model = {"MLModelId": "ml-ok", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-ok"}
    sqlite_app.call("CreateMLModel", model, ana, remote=True)
    assert sqlite_app.wait("MLModel", "ml-ok")["Status"] == "COMPLETED"
    batch = {
        "BatchPredictionId": "bp-ungranted",
        "MLModelId": "ml-ok",
        "BatchPredictionDataSourceId": "ds-ok",
        "OutputUri": f"{output}/",
    }
    sqlite_app.call("CreateBatchPrediction", batch, ana, remote=True)
    sqlite_app.access.remove_statement("ana-storage", 1)
    described = sqlite_app.wait("BatchPrediction", "bp-ungranted")
    assert described["Status"] == "FAILED" and "storage:Write" in described["Message"]
    assert "checked again as the job started" in described["Message"]
    assert not output.exists()
