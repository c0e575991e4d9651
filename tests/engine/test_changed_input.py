"""Input files cut short or rewritten while a job reads them fail the job naming the file, instead of
counting and scoring fewer records as if they were all."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.core.schema import parse_schema
from emrml.engine.local import build_datasource
from emrml.errors import DataError
from emrml.service.app import EmrML


@pytest.fixture
def bank_x8(tmp_path: Path, shared_datasets: Path) -> Path:
    source = (shared_datasets / "bank_marketing" / "data.csv").read_bytes()
    header, _, body = source.partition(b"\n")
    path = tmp_path / "bank-x8.csv"
    path.write_bytes(header + b"\n" + body * 8)
    return path


def _cut_in_half_once(path: Path) -> Callable[[float, str | None], None]:
    """A progress callback that truncates ``path`` to half its size the first time it is called."""
    calls: list[float] = []

    def progress(fraction: float, _message: str | None) -> None:
        if not calls:
            os.truncate(path, path.stat().st_size // 2)
        calls.append(fraction)

    return progress


def test_a_datasource_whose_file_shrinks_while_read_fails_naming_it(
    tmp_path: Path, bank_x8: Path, shared_datasets: Path
) -> None:
    schema = parse_schema((shared_datasets / "bank_marketing" / "data.csv.schema").read_text())
    settings = Settings.load(environ={}, home=tmp_path / "home")
    size = bank_x8.stat().st_size
    with pytest.raises(DataError) as caught:
        build_datasource(
            str(bank_x8),
            schema,
            None,
            compute_statistics=True,
            settings=settings,
            progress=_cut_in_half_once(bank_x8),
        )
    assert f"file {bank_x8} changed while it was being read" in caught.value.message
    assert f"{size:,} bytes when the job started, {size // 2:,} bytes now" in caught.value.message


def test_a_batch_prediction_whose_file_shrinks_while_scored_fails_naming_it(
    tmp_path: Path, bank_x8: Path, shared_datasets: Path
) -> None:
    from emrml.engine.batch import batch_predict
    from emrml.engine.training import DatasourceData

    app = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    schema_text = (shared_datasets / "bank_marketing" / "data.csv.schema").read_text()
    # A model to score with, trained on the first 3,000 records: all 41,188 take seconds longer, and what is
    # checked is the scoring's read of a file that changes, whatever the model's quality.
    sample = tmp_path / "bank-sample.csv"
    with open(shared_datasets / "bank_marketing" / "data.csv", "rb") as source:
        sample.write_bytes(b"".join(itertools.islice(source, 3_001)))
    spec = {"DataLocationS3": str(sample), "DataSchema": schema_text}
    app.call("CreateDataSourceFromS3", {"DataSourceId": "ds", "DataSpec": spec, "ComputeStatistics": True})
    app.call("CreateMLModel", {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds"})
    model = app.wait("MLModel", "ml")
    assert model["Status"] == "COMPLETED", model
    out = tmp_path / "out"
    with pytest.raises(DataError, match=f"file {bank_x8} changed while it was being read"):
        batch_predict(
            batch_prediction_id="bp",
            artifact_location=app.settings.home / "models" / "ml.zip",
            data=DatasourceData(str(bank_x8), parse_schema(schema_text), None),
            output_uri=str(out),
            score_threshold=0.5,
            settings=app.settings,
            progress=_cut_in_half_once(bank_x8),
        )
    assert [path for path in out.rglob("*") if not path.is_dir()] == []
    app.close()
