"""A storage grant matching files by their name (``/srv/data/*.csv``) grants those files, as an S3 object
ARN does: not a folder that happens to bear such a name, nor the files below it. A folder is granted by a
pattern of its files (``/srv/data/x.csv/*``, ``/srv/data/*``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emrml.errors import AccessDeniedException
from emrml.service.app import EmrML
from emrml.service.confinement import check_location
from emrml.service.operations import running_as

SCHEMA = json.dumps(
    {
        "version": "1.0",
        "dataFormat": "CSV",
        "dataFileContainsHeader": False,
        "attributes": [{"attributeName": "line", "attributeType": "CATEGORICAL"}],
    }
)


def _user(app: EmrML, name: str, action: str, pattern: str) -> str:
    access = app.access
    access.create_group(f"{name}-storage")
    access.add_statement(f"{name}-storage", {"Effect": "Allow", "Action": action, "Resource": pattern})
    access.create_user(name, ("users", f"{name}-storage"))
    return access.user_arn(name)


def _datasource(app: EmrML, caller: str, entity_id: str, location: str) -> None:
    spec = {"DataLocationS3": location, "DataSchema": SCHEMA}
    app.call("CreateDataSourceFromS3", {"DataSourceId": entity_id, "DataSpec": spec}, caller, remote=True)


@pytest.fixture
def root(sqlite_app: EmrML) -> Path:
    """The data root, holding a file ``plain.csv`` and a folder ``folder.csv/`` of files named otherwise."""
    root = sqlite_app.settings.data_roots[0]
    (root / "folder.csv").mkdir(parents=True)
    (root / "folder.csv" / "inner.txt").write_text("hidden\nrows\n")
    (root / "plain.csv").write_text("a\nb\n")
    return root


def test_a_grant_of_csv_files_reads_no_folder_named_like_one(sqlite_app: EmrML, root: Path) -> None:
    reader = _user(sqlite_app, "fay", "storage:Read", f"{root}/*.csv")
    _datasource(sqlite_app, reader, "ds-plain", str(root / "plain.csv"))  # a file the pattern names
    for spelling in (str(root / "folder.csv"), f"{root / 'folder.csv'}/"):
        with pytest.raises(AccessDeniedException, match="storage:Read") as refused:
            _datasource(sqlite_app, reader, "ds-folder", spelling)
        assert f"{root}/folder.csv/" in refused.value.message
    with pytest.raises(AccessDeniedException, match="storage:Read"):
        sqlite_app.call("InferDataSchema", {"DataLocationS3": str(root / "folder.csv")}, reader, remote=True)


def test_a_grant_of_a_folders_files_reads_the_folder(sqlite_app: EmrML, root: Path) -> None:
    reader = _user(sqlite_app, "gus", "storage:Read", f"{root}/folder.csv/*")
    for index, spelling in enumerate((str(root / "folder.csv"), f"{root / 'folder.csv'}/")):
        _datasource(sqlite_app, reader, f"ds-folder-{index}", spelling)


def test_a_grant_of_files_by_name_writes_no_output_folder_of_that_name(sqlite_app: EmrML, root: Path) -> None:
    """An output location is a folder whose files are yet to be made: granted as a folder, or not at all."""
    writer = _user(sqlite_app, "hal", "storage:Write", f"{root}/*.out")
    with running_as(writer, remote=True):
        check_location(sqlite_app, str(root / "single.out"), member="location", write=True)  # a file
        with pytest.raises(AccessDeniedException, match="storage:Write"):
            check_location(sqlite_app, str(root / "results.out"), member="OutputUri", write=True, below=True)
