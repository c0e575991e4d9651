"""Requests through ``emrml serve`` read local files only inside the data roots, never the home's own files.

The probes of issue 9, performed through boto3 against the live server (data roots: the shared datasets and
the tests' temporary folders, which hold the server's home).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

#: A one-column CATEGORICAL schema: the statistics of a datasource over any text file list its lines.
LINES_SCHEMA = json.dumps(
    {
        "version": "1.0",
        "dataFormat": "CSV",
        "dataFileContainsHeader": False,
        "attributes": [{"attributeName": "line", "attributeType": "CATEGORICAL"}],
    }
)
SECRET = "top-secret-line-7f3a"


@pytest.fixture(scope="module")
def outside() -> Iterator[Path]:
    """A file outside every data root (not below the tests' temporary folders), holding ``SECRET``."""
    folder = Path(tempfile.mkdtemp(prefix="emrml-outside-", dir="/var/tmp"))
    secret = folder / "secret.csv"
    secret.write_text(f"{SECRET}\n{SECRET}-2\n")
    yield secret
    secret.unlink()
    folder.rmdir()


def _refused(client: Any, location: str, **spec: Any) -> str:
    """Create a datasource over ``location``: it must be refused; returns the message."""
    with pytest.raises(ClientError) as raised:
        client.create_data_source_from_s3(
            DataSourceId=f"conf-{uuid.uuid4().hex[:8]}",
            DataSpec={"DataLocationS3": location, "DataSchema": LINES_SCHEMA, **spec},
            ComputeStatistics=True,
        )
    error = raised.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Message"]


def _wait(client: Any, data_source_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = client.get_data_source(DataSourceId=data_source_id)
        if described["Status"] in ("COMPLETED", "FAILED"):
            return described
        time.sleep(0.2)
    raise AssertionError(f"{data_source_id} did not finish")


def test_a_file_outside_the_data_roots_is_refused(live_server: Any, outside: Path) -> None:
    client = live_server.client()
    for location in ("/etc/shadow", "/etc/passwd", str(outside), f"file://{outside}"):
        message = _refused(client, location)
        assert "EMRML_DATA_ROOTS" in message and location in message
        assert SECRET not in message and "root:" not in message


def test_the_homes_own_files_are_refused_though_a_root_holds_the_home(live_server: Any) -> None:
    home = live_server.service.settings.home
    assert (home / "secrets.key").is_file()  # the key that encrypts every stored secret
    (home / "admin-credentials.json").write_text('{"aws_secret_access_key": "admin-secret-9b1c"}')
    # The home lies inside a data root (the tests' temporary folders): its files are refused all the same.
    assert any(home.is_relative_to(root) for root in live_server.service.settings.data_roots)
    client = live_server.client()
    key = (home / "secrets.key").read_text().strip()
    for name in ("secrets.key", "admin-credentials.json", "metastore.db", "metastore.db-wal", "datasources/"):
        message = _refused(client, str(home / name))
        assert "emrml's own files" in message
        assert key not in message and "admin-secret" not in message
    # ... whichever member names them.
    data = live_server.service.settings.data_roots[-1] / "conf-data.csv"
    data.write_text("a\nb\n")
    _refused(client, str(data), DataSchemaLocationS3=str(home / "secrets.key"))


def test_dot_dot_cannot_leave_a_root(live_server: Any, outside: Path) -> None:
    root = live_server.service.settings.data_roots[-1]
    climbing = str(root) + "/.." * len(root.parts) + str(outside)
    assert os.path.realpath(climbing) == str(outside)
    assert "EMRML_DATA_ROOTS" in _refused(live_server.client(), climbing)
    home = live_server.service.settings.home
    assert "emrml's own files" in _refused(live_server.client(), f"{home}/data/../secrets.key")


def test_a_symlink_inside_a_root_cannot_point_outside(
    live_server: Any, outside: Path, tmp_path: Path
) -> None:
    client = live_server.client()
    (tmp_path / "shadow.csv").symlink_to("/etc/shadow")
    (tmp_path / "secret.csv").symlink_to(outside)
    (tmp_path / "key.csv").symlink_to(live_server.service.settings.home / "secrets.key")
    (tmp_path / "outside-folder").symlink_to(outside.parent, target_is_directory=True)
    for name in ("shadow.csv", "secret.csv", "key.csv", "outside-folder/", "outside-folder/secret.csv"):
        message = _refused(client, str(tmp_path / name))
        assert SECRET not in message


def test_a_prefix_holding_a_symlink_to_outside_fails_without_reading_it(
    live_server: Any, outside: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "prefix"
    folder.mkdir()
    (folder / "a.csv").write_text("x\ny\n")
    (folder / "b.csv").symlink_to(outside)  # listed at job time: the request names only the folder
    client = live_server.client()
    client.create_data_source_from_s3(
        DataSourceId="conf-prefix",
        DataSpec={"DataLocationS3": f"{folder}/", "DataSchema": LINES_SCHEMA},
        ComputeStatistics=True,
    )
    described = _wait(client, "conf-prefix")
    assert described["Status"] == "FAILED"
    assert str(folder / "b.csv") in described["Message"] and "EMRML_DATA_ROOTS" in described["Message"]
    assert SECRET not in json.dumps(described, default=str)
    statistics = live_server.service.call("GetDataSourceStatistics", {"DataSourceId": "conf-prefix"})
    assert SECRET not in json.dumps(statistics)


def test_a_file_inside_a_root_is_read(live_server: Any, tmp_path: Path) -> None:
    data = tmp_path / "inside.csv"
    data.write_text("red\ngreen\nred\n")
    client = live_server.client()
    client.create_data_source_from_s3(
        DataSourceId="conf-inside",
        DataSpec={"DataLocationS3": str(data), "DataSchema": LINES_SCHEMA},
        ComputeStatistics=True,
    )
    assert _wait(client, "conf-inside")["Status"] == "COMPLETED"
    statistics = live_server.service.call("GetDataSourceStatistics", {"DataSourceId": "conf-inside"})
    assert statistics["TotalRecordCount"] == 3


def test_outputs_recipes_and_schemas_are_confined_too(live_server: Any, outside: Path) -> None:
    client = live_server.client()
    with pytest.raises(ClientError) as raised:
        client.create_batch_prediction(
            BatchPredictionId="conf-bp",
            MLModelId="no-such-model",
            BatchPredictionDataSourceId="no-such-ds",
            OutputUri=f"{outside.parent}/out/",
        )
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "OutputUri" in raised.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as raised:
        client.create_ml_model(
            MLModelId="conf-model",
            MLModelType="BINARY",
            TrainingDataSourceId="conf-inside",
            RecipeUri=str(outside),
        )
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "RecipeUri" in raised.value.response["Error"]["Message"]
    message = _refused(
        client, str(live_server.service.settings.data_roots[0]), DataSchemaLocationS3="/etc/shadow"
    )
    assert "DataSchemaLocationS3" in message


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("", "must not be empty"),
        ("http://example.com/data.csv", "unsupported scheme 'http'"),
        ("S3://bucket/data.csv", "unsupported scheme 'S3'"),
        ("s3:///data.csv", "is not a valid S3 location"),
        ("file://elsewhere/data.csv", "is not a local file URI"),
        # Resolved against the server's working folder or its user's home, not the caller's.
        ("data.csv", "is not an absolute path"),
        ("~/data.csv", "is not an absolute path"),
    ],
)
def test_a_malformed_location_is_invalid_input_not_access_denied(
    live_server: Any, tmp_path: Path, location: str, message: str
) -> None:
    """A location no storage can serve is refused for what is wrong with it, naming the member, before any
    data-root check (which called it "outside the data roots" and sent the caller after permissions)."""
    client = live_server.client()
    # An empty schema location or recipe URI means none (the schema beside the data, the suggested recipe).
    for member in ("DataLocationS3", "DataSchemaLocationS3") if location else ("DataLocationS3",):
        spec = {"DataLocationS3": str(tmp_path / "d.csv"), member: location}
        with pytest.raises(client.exceptions.InvalidInputException, match=f"{member}: .*{message}"):
            client.create_data_source_from_s3(DataSourceId=f"conf-{uuid.uuid4().hex[:8]}", DataSpec=spec)
    if location:
        with pytest.raises(client.exceptions.InvalidInputException, match=f"RecipeUri: .*{message}"):
            client.create_ml_model(
                MLModelId=f"conf-{uuid.uuid4().hex[:8]}",
                MLModelType="BINARY",
                TrainingDataSourceId="x",
                RecipeUri=location,
            )
