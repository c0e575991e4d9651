"""Where a batch prediction may write: never inside the folder its datasource reads, whose later jobs
(another batch prediction, an evaluation, a model trained on it) would read the results as data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from endpoints_helpers import create_datasource, schema_of

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML


@pytest.fixture
def app(tmp_path: Path) -> Iterator[EmrML]:
    """A datasource ``ds`` over the folder ``data/`` and a model ``ml`` on it (jobs not run: the location
    is checked when the batch prediction is asked for)."""
    application = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,0\n2,1\n")
    (tmp_path / "file.csv").write_text("x,y\n1,0\n2,1\n")
    schema = schema_of("y", ("x", "NUMERIC"), ("y", "BINARY"))
    create_datasource(application, "ds", tmp_path / "data", schema)
    create_datasource(application, "ds-file", tmp_path / "file.csv", schema)
    request = {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds"}
    application.call("CreateMLModel", request)
    yield application
    application.close()


def _predict(app: EmrML, entity_id: str, output: str, source: str = "ds") -> None:
    request = {"BatchPredictionId": entity_id, "MLModelId": "ml", "BatchPredictionDataSourceId": source}
    app.call("CreateBatchPrediction", {**request, "OutputUri": output})


@pytest.mark.parametrize(
    "output",
    ["{t}/data/", "{t}/data/out/", "{t}/data/deep/er/", "file://{t}/data/out/"],
)
def test_an_output_inside_the_datasource_folder_is_refused(app: EmrML, tmp_path: Path, output: str) -> None:
    with pytest.raises(InvalidInputException) as caught:
        _predict(app, "bp", output.format(t=tmp_path))
    assert "inside the DataLocationS3" in caught.value.message
    assert "BatchPredictionDataSourceId 'ds'" in caught.value.message
    assert app.call("DescribeBatchPredictions", {})["Results"] == []


def test_an_output_through_a_symbolic_link_into_the_datasource_folder_is_refused(
    app: EmrML, tmp_path: Path
) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with pytest.raises(InvalidInputException, match="inside the DataLocationS3"):
        _predict(app, "bp", f"{tmp_path}/link/out/")


@pytest.mark.parametrize("output", ["{t}/out/", "{t}/data-out/", "{t}/"])
def test_an_output_beside_or_above_the_datasource_folder_is_taken(
    app: EmrML, tmp_path: Path, output: str
) -> None:
    _predict(app, "bp", output.format(t=tmp_path))
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp"})["Status"] == "PENDING"


def test_an_output_beside_a_datasource_file_is_taken(app: EmrML, tmp_path: Path) -> None:
    _predict(app, "bp", f"{tmp_path}/out/", source="ds-file")
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp"})["Status"] == "PENDING"
