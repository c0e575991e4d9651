"""The processes that score a job's units load the model file themselves (pool workers, Spark executors):
each checks it against the MLModel the job was given, as the job's own process did, so that a file swapped
after the job started is not scored with."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from emrml.core.model import ExpectedModel, save_artifact
from emrml.core.schema import parse_schema
from emrml.engine import batch
from emrml.engine.spark.datasource import UnitJob
from emrml.engine.spark.evaluation import evaluate_unit
from emrml.engine.units import Unit
from emrml.errors import InvalidInputException
from raw_models import XY_SCHEMA, linear_artifact

SWAPPED = ExpectedModel("ml-other", "REGRESSION")
SCHEMA = parse_schema(json.dumps(XY_SCHEMA))


@pytest.fixture
def binary_file(tmp_path: Path) -> tuple[Path, Unit]:
    """A BINARY model's file, and a unit of a data file it could score."""
    artifact = linear_artifact("BINARY", SCHEMA, ["x"], pa.table({"x": ["1", "2"], "y": ["0", "1"]}))
    save_artifact(artifact, tmp_path / "model.zip")
    (tmp_path / "data.csv").write_text("x,y\n1,0\n2,1\n")
    unit = Unit(0, str(tmp_path / "data.csv"), "data.csv", 0, None, 0, size=16)
    return tmp_path / "model.zip", unit


def _message(path: Path) -> str:
    return (
        f"the model file {path} is not that of MLModel 'ml-other': "
        "it holds a BINARY model; the MLModel is REGRESSION"
    )


def test_a_batch_worker_refuses_a_file_that_is_not_the_jobs_model(binary_file: tuple[Path, Unit]) -> None:
    path, unit = binary_file
    job = batch.Job(
        model_path=str(path),
        score_threshold=None,
        expected=SWAPPED,
        schema_json=SCHEMA.to_json(),
        rearrangement=None,
        total=None,
        block_bytes=1 << 20,
        max_record_bytes=1 << 20,
        folder=str(path.parent),
        output_uri=f"{path.parent}/out/",
    )
    with pytest.raises(InvalidInputException) as raised:
        batch.run_unit(job, unit)
    assert raised.value.message == _message(path)
    assert not list(path.parent.glob("part-*"))


def test_a_spark_evaluation_task_refuses_a_file_that_is_not_the_jobs_model(
    binary_file: tuple[Path, Unit],
) -> None:
    path, unit = binary_file
    job = UnitJob(
        SCHEMA.to_json(),
        None,
        None,
        1 << 20,
        1 << 20,
        artifact=str(path),
        expected=SWAPPED,
    )
    with pytest.raises(InvalidInputException) as raised:
        evaluate_unit(job, unit)
    assert raised.value.message == _message(path)
