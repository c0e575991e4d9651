"""The Spark engine against the local engine on a real dataset: sms_spam (a TEXT attribute, quoted records
with commas and line-long messages, which the bank sample of tests/engine/test_spark_jobs.py has none of),
cut into byte ranges at record boundaries: the statistics, an evaluation's metrics and a batch prediction's
result files are the local engine's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emrml.config import Settings
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import parse_schema
from emrml.engine import local
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.evaluation import evaluate_model
from emrml.engine.spark import datasource as on_spark
from emrml.engine.training import DatasourceData
from emrml.service.app import EmrML
from emrml.service.rows import MLModel

#: Ranges of 64 KB: the 470 KB file is read as several tasks, cut at record boundaries among quoted texts.
CUT = Parallelism(workers=2, range_bytes=64 << 10, min_bytes=16 << 10)
RANDOM = '"strategy": "random", "strategyParams": {"randomSeed": "42"}'
TRAIN = f'{{"splitting": {{"percentBegin": 0, "percentEnd": 70, {RANDOM}}}}}'
REST = f'{{"splitting": {{"percentBegin": 70, "percentEnd": 100, {RANDOM}}}}}'


def quiet(*_: Any) -> None:
    pass


@pytest.fixture(scope="module")
def sms(shared_datasets: Path) -> tuple[Path, str]:
    folder = shared_datasets / "sms_spam"
    return folder / "data.csv", (folder / "data.csv.schema").read_text()


@pytest.fixture(scope="module")
def model(sms: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BINARY model trained by the local engine on 70 % of the messages."""
    data, schema = sms
    app = EmrML(Settings.load(environ={}, home=tmp_path_factory.mktemp("sms-home")))
    try:
        spec = {"DataLocationS3": str(data), "DataSchema": schema, "DataRearrangement": TRAIN}
        app.call(
            "CreateDataSourceFromS3", {"DataSourceId": "ds", "DataSpec": spec, "ComputeStatistics": True}
        )
        app.call("CreateMLModel", {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds"})
        assert app.wait("MLModel", "ml")["Status"] == "COMPLETED"
        with app.sessions() as metastore:
            return Path(metastore.get(MLModel, "ml").artifact_location)
    finally:
        app.close()


def test_statistics_of_a_text_dataset_equal_the_local_engines(
    spark: Any, sms: tuple[Path, str], tmp_path: Path
) -> None:
    data, schema_text = sms
    schema, settings = parse_schema(schema_text), Settings.load(environ={}, home=tmp_path / "home")
    split = parse_rearrangement(TRAIN)
    here = local.build_datasource(
        str(data), schema, split, compute_statistics=True, settings=settings, progress=quiet
    )
    there = on_spark.build_datasource(
        str(data), schema, split, compute_statistics=True, settings=settings, progress=quiet, spark=spark,
        parallelism=CUT,
    )  # fmt: skip
    assert (there.total_records, there.invalid_records) == (here.total_records, here.invalid_records)
    assert here.total_records > 3_800  # 70 % of 5,574 messages
    assert there.statistics == here.statistics
    assert there.sample is not None and here.sample is not None and there.sample.equals(here.sample)


def test_an_evaluation_on_a_text_dataset_equals_the_local_engines(
    spark: Any, sms: tuple[Path, str], model: Path, tmp_path: Path
) -> None:
    data, schema_text = sms
    source = DatasourceData(str(data), parse_schema(schema_text), parse_rearrangement(REST))
    here, there = (
        evaluate_model(
            artifact_location=model,
            data=source,
            same_datasource=False,
            training_records=3_900,
            settings=Settings.load(environ={}, home=tmp_path / "home"),
            progress=quiet,
            spark=session_or_none,
        )
        for session_or_none in (None, spark)
    )
    assert there.insights["records"] == here.insights["records"] > 1_600
    assert there.insights["alerts"] == here.insights["alerts"]
    assert float(here.performance_metrics["BinaryAUC"]) > 0.95
    for name, value in here.performance_metrics.items():
        assert float(there.performance_metrics[name]) == pytest.approx(float(value), rel=1e-9), name


def test_a_batch_prediction_on_a_text_dataset_is_byte_for_byte_the_local_engines(
    spark: Any, sms: tuple[Path, str], model: Path, tmp_path: Path
) -> None:
    data, schema_text = sms
    source = DatasourceData(str(data), parse_schema(schema_text), None)
    outputs, counts = {}, {}
    for engine, session_or_none in (("local", None), ("spark", spark)):
        result = batch_predict(
            batch_prediction_id="bp", artifact_location=model, data=source,
            output_uri=str(tmp_path / engine) + "/", score_threshold=None,
            settings=Settings.load(environ={}, home=tmp_path / "home"), progress=quiet, parallelism=CUT,
            spark=session_or_none,
        )  # fmt: skip
        outputs[engine] = (tmp_path / engine / "batch-prediction" / "result" / "bp-data.csv.gz").read_bytes()
        counts[engine] = (result.total_records, result.invalid_records)
    assert counts["spark"] == counts["local"] == (5_574, 0)
    assert outputs["spark"] == outputs["local"]
