"""Confinement in the service layer: remote requests are checked once, their jobs again at every file.

The probes through boto3 against a real server are in tests/web/test_data_roots_through_boto3.py; these
cover what a request cannot time: a file swapped for a symbolic link after its request was checked, and the
CLI and library on their own home, which stay unconfined.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import invoke_json
from emrml.config import Settings
from emrml.errors import AccessDeniedException, InvalidInputException, ResourceNotFoundException
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service import capacity
from emrml.service.app import EmrML
from emrml.service.confinement import job_guard
from emrml.service.rows import DataSource
from emrml.storage import local, locations

LINES_SCHEMA = json.dumps(
    {
        "version": "1.0",
        "dataFormat": "CSV",
        "dataFileContainsHeader": False,
        "attributes": [{"attributeName": "line", "attributeType": "CATEGORICAL"}],
    }
)
SECRET = "confidential-5d2e"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the data roots (the default root is <home>/data, the home <tmp>/home)."""
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    secret.write_text(f"{SECRET}\n{SECRET}\n")
    return secret


def _create(app: EmrML, entity_id: str, location: str, *, remote: bool) -> None:
    spec = {"DataLocationS3": location, "DataSchema": LINES_SCHEMA}
    request = {"DataSourceId": entity_id, "DataSpec": spec, "ComputeStatistics": True}
    app.call("CreateDataSourceFromS3", request, remote=remote)


def test_a_file_swapped_for_a_symlink_after_the_request_is_not_read(sqlite_app: EmrML, outside: Path) -> None:
    root = sqlite_app.settings.data_roots[0]
    assert root == sqlite_app.settings.home / "data"  # the default
    data = root / "swapped.csv"
    data.parent.mkdir(parents=True)
    data.write_text("a\nb\n")
    _create(sqlite_app, "ds-swapped", str(data), remote=True)  # checked: a plain file in the root
    data.unlink()
    data.symlink_to(outside)
    described = sqlite_app.wait("DataSource", "ds-swapped")
    assert described["Status"] == "FAILED"
    assert "EMRML_DATA_ROOTS" in described["Message"] and str(data) in described["Message"]
    statistics = sqlite_app.call("GetDataSourceStatistics", {"DataSourceId": "ds-swapped"})
    assert SECRET not in json.dumps(described) + json.dumps(statistics)


def test_what_a_request_reads_itself_is_checked_file_by_file_as_opened(
    sqlite_app: EmrML, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """InferDataSchema lists and reads a folder now, PlanCapacity reads a sample: a link in the folder to a
    file out of the roots is refused, naming it, and nothing of it comes back (its header would be the
    attribute names)."""
    folder = sqlite_app.settings.data_roots[0] / "mine"
    folder.mkdir(parents=True)
    (folder / "a.csv").symlink_to(outside)
    (folder / "b.csv").write_text("x,y\n1,2\n")
    with pytest.raises(AccessDeniedException, match="EMRML_DATA_ROOTS") as refused:
        sqlite_app.call("InferDataSchema", {"DataLocationS3": f"{folder}/"}, remote=True)
    assert str(folder / "a.csv") in refused.value.message and SECRET not in refused.value.message
    swapped = folder / "sample.csv"
    swapped.write_text("x,y\n1,2\n")
    request = {"Nodes": 1, "DiskPerNode": "1TB", "Data": "1GB", "SampleLocation": str(swapped)}
    assert "Codecs" in sqlite_app.call("PlanCapacity", request, remote=True)
    checked = capacity.check_location

    def check_then_swap(*args: Any, **kwargs: Any) -> None:
        checked(*args, **kwargs)
        swapped.unlink()  # swapped for a link between the request's check and its read
        swapped.symlink_to(outside)

    monkeypatch.setattr(capacity, "check_location", check_then_swap)
    with pytest.raises(AccessDeniedException, match="EMRML_DATA_ROOTS"):
        sqlite_app.call("PlanCapacity", request, remote=True)
    # The CLI and the library on their own home are not confined.
    inferred = sqlite_app.call("InferDataSchema", {"DataLocationS3": f"{folder}/"})["DataSchema"]
    assert SECRET in inferred


def test_objects_record_whether_a_remote_request_created_them(sqlite_app: EmrML, outside: Path) -> None:
    data = sqlite_app.settings.data_roots[0] / "plain.csv"
    data.parent.mkdir(parents=True)
    data.write_text("a\n")
    _create(sqlite_app, "ds-remote", str(data), remote=True)
    _create(sqlite_app, "ds-local", str(data), remote=False)
    with sqlite_app.sessions() as session:
        assert session.get(DataSource, "ds-remote").confined is True
        assert session.get(DataSource, "ds-local").confined is False


def test_the_library_on_its_own_home_reads_any_file(sqlite_app: EmrML, outside: Path) -> None:
    with pytest.raises(AccessDeniedException, match="EMRML_DATA_ROOTS"):
        _create(sqlite_app, "ds-outside-remote", str(outside), remote=True)
    _create(sqlite_app, "ds-outside", str(outside), remote=False)
    assert sqlite_app.wait("DataSource", "ds-outside")["Status"] == "COMPLETED"


def test_the_cli_on_its_own_home_reads_any_file(tmp_path: Path, outside: Path) -> None:
    schema = tmp_path / "lines.schema"
    schema.write_text(LINES_SCHEMA)
    shown = invoke_json(
        "--home", str(tmp_path / "home"), "datasource", "create", "--id", "ds-cli",
        "--data", str(outside), "--schema", str(schema),
    )  # fmt: skip
    assert shown["GetDataSource"]["Status"] == "COMPLETED"
    assert shown["GetDataSourceStatistics"]["TotalRecordCount"] == 2


def test_the_opened_descriptor_is_checked_not_only_the_path(tmp_path: Path, outside: Path) -> None:
    """A file swapped between the path's check and the open is refused through what was opened."""
    settings = Settings.load(environ={}, home=tmp_path / "home", data_roots=(tmp_path / "root",))
    data = tmp_path / "root" / "racy.csv"
    data.parent.mkdir()
    data.write_text("harmless\n")
    guard, checked = job_guard(settings), []

    def swap_after_the_first_check(path: str, named: str) -> None:
        guard(path, named)
        checked.append(path)
        if len(checked) == 1:  # the race, made certain: the path passed, then becomes a link
            data.unlink()
            data.symlink_to(outside)

    with local.guarded(swap_after_the_first_check), pytest.raises(AccessDeniedException) as refused:
        locations.open_binary(str(data))
    assert str(data) in refused.value.message and SECRET not in refused.value.message
    assert len(checked) == 1 and os.path.islink(data)


def test_data_roots_come_from_the_environment_or_default_to_the_homes_data(tmp_path: Path) -> None:
    default = Settings.load(environ={}, home=tmp_path / "home")
    assert default.data_roots == (tmp_path / "home" / "data",)
    listed = Settings.load(environ={"EMRML_DATA_ROOTS": f"/srv/a{os.pathsep}~/b"}, home=tmp_path / "home")
    assert listed.data_roots == (Path("/srv/a"), Path("~/b").expanduser())


def test_an_output_folder_swapped_for_a_symlink_is_not_written(sqlite_app: EmrML, tmp_path: Path) -> None:
    root = sqlite_app.settings.data_roots[0]
    data = write_bank_sample(root / "bank.csv", 300)
    spec = {"DataLocationS3": str(data), "DataSchema": bank_sample_schema().to_json()}
    sqlite_app.call(
        "CreateDataSourceFromS3", {"DataSourceId": "ds-bank", "DataSpec": spec, "ComputeStatistics": True}
    )
    model = {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"}
    sqlite_app.call("CreateMLModel", model)
    assert sqlite_app.wait("MLModel", "ml-bank")["Status"] == "COMPLETED"
    request = {
        "BatchPredictionId": "bp-swapped",
        "MLModelId": "ml-bank",
        "BatchPredictionDataSourceId": "ds-bank",
        "OutputUri": f"{root}/out/",
    }
    sqlite_app.call("CreateBatchPrediction", request, remote=True)  # checked: a new folder in the root
    elsewhere = tmp_path / "elsewhere-out"
    elsewhere.mkdir()
    (root / "out").symlink_to(elsewhere, target_is_directory=True)
    described = sqlite_app.wait("BatchPrediction", "bp-swapped")
    assert described["Status"] == "FAILED"
    assert "OutputUri" in described["Message"] and "EMRML_DATA_ROOTS" in described["Message"]
    assert not any(elsewhere.iterdir())


def _bank_model(app: EmrML) -> Path:
    root = app.settings.data_roots[0]
    data = write_bank_sample(root / "bank.csv", 300)
    spec = {"DataLocationS3": str(data), "DataSchema": bank_sample_schema().to_json()}
    request = {"DataSourceId": "ds-bank", "DataSpec": spec, "ComputeStatistics": True}
    app.call("CreateDataSourceFromS3", request)
    model = {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"}
    app.call("CreateMLModel", model)
    assert app.wait("MLModel", "ml-bank")["Status"] == "COMPLETED"
    return root


def test_a_result_folder_that_links_into_the_home_is_not_written(sqlite_app: EmrML) -> None:
    # The job checked <OutputUri>/batch-prediction/ only: a result/ folder below it that is a symbolic link
    # took the results into the home's own files.
    root = _bank_model(sqlite_app)
    home_folder = sqlite_app.settings.home / "evaluations"
    home_folder.mkdir(exist_ok=True)
    before = sorted(os.listdir(home_folder))
    (root / "out" / "batch-prediction").mkdir(parents=True)
    (root / "out" / "batch-prediction" / "result").symlink_to(home_folder, target_is_directory=True)
    request = {
        "BatchPredictionId": "bp-linked",
        "MLModelId": "ml-bank",
        "BatchPredictionDataSourceId": "ds-bank",
        "OutputUri": f"{root}/out/",
    }
    sqlite_app.call("CreateBatchPrediction", request, remote=True)
    described = sqlite_app.wait("BatchPrediction", "bp-linked")
    assert described["Status"] == "FAILED", described
    assert "one of emrml's own files in its home" in described["Message"]
    assert "result/bp-linked-bank.csv.gz" in described["Message"] and "not written" in described["Message"]
    assert sorted(os.listdir(home_folder)) == before
    assert not (root / "out" / "batch-prediction" / "bp-linked.manifest").exists()
    # The CLI and library on their own home are not confined: the same request of theirs writes.
    sqlite_app.call("CreateBatchPrediction", {**request, "BatchPredictionId": "bp-local"})
    assert sqlite_app.wait("BatchPrediction", "bp-local")["Status"] == "COMPLETED"
    assert "bp-local-bank.csv.gz" in os.listdir(home_folder)


@pytest.mark.parametrize("remote", [True, False])
def test_a_file_uri_whose_percent_escape_is_a_nul_is_bad_input(sqlite_app: EmrML, remote: bool) -> None:
    """``%00`` decodes to a NUL, which no path may hold: refused naming the member, not a ValueError from
    the OS (a 500 through the server), and nothing is created."""
    root = sqlite_app.settings.data_roots[0]
    with pytest.raises(InvalidInputException, match=r"^DataSpec\.DataLocationS3: .* holds a NUL character"):
        _create(sqlite_app, "ds-nul", f"file://{root}/bank.csv%00.txt", remote=remote)
    with pytest.raises(ResourceNotFoundException):
        sqlite_app.call("GetDataSource", {"DataSourceId": "ds-nul"})
