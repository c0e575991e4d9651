"""The Spark engine's jobs on a real Spark application (``local[2]``, one JVM for the session): the
datasource job's statistics, batch prediction's result files and evaluations against the local engine's on
the same data, sketched statistics, S3 read on the executors, and the jobs of the service, a pipeline and a
server each run on their application."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path
from typing import Any

import pytest
from spark_helpers import quiet, settings_at

from emrml.core.rearrange import parse_rearrangement
from emrml.engine import local
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.spark import datasource as on_spark
from emrml.engine.spark import session
from emrml.engine.training import DatasourceData
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML

#: Small ranges, so that a few MB of data make several units of work (tasks) per file.
CUT = Parallelism(workers=2, range_bytes=1 << 20, min_bytes=256 << 10)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two files of the bank sample, the second with invalid records in its middle and at its end."""
    folder = tmp_path_factory.mktemp("spark-data")
    write_bank_sample(folder / "a.csv", 12_000)
    write_bank_sample(folder / "b.csv", 20_000)
    lines = (folder / "b.csv").read_bytes().splitlines(keepends=True)
    lines.insert(9_000, b"1,2,3\n")
    lines.insert(15_000, b'"an unclosed, quote\n')
    (folder / "b.csv").write_bytes(b"".join([*lines, b"4,5\n"]))
    return folder


@pytest.mark.parametrize(
    "split",
    [None,
     '{"splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random", '
     '"strategyParams": {"randomSeed": "s"}}}',
     '{"splitting": {"percentBegin": 25, "percentEnd": 80}}'],
    ids=["all", "random-70", "sequential-25-80"],
)  # fmt: skip
def test_statistics_counts_and_invalid_records_equal_the_local_engines(
    spark: Any, data: Path, tmp_path: Path, split: str | None
) -> None:
    schema, settings = bank_sample_schema(), settings_at(tmp_path)
    rearrangement = parse_rearrangement(split) if split else None
    here = local.build_datasource(
        str(data), schema, rearrangement, compute_statistics=True, settings=settings, progress=quiet
    )
    there = on_spark.build_datasource(
        str(data), schema, rearrangement, compute_statistics=True, settings=settings, progress=quiet,
        spark=spark, parallelism=CUT,
    )  # fmt: skip
    assert (there.total_records, there.invalid_records) == (here.total_records, here.invalid_records)
    assert there.invalid_examples == here.invalid_examples
    assert here.invalid_records >= 2 or split is not None  # the invalid records are in the data
    assert there.statistics == here.statistics  # exact: no attribute has enough distinct values to sketch
    assert there.sample is not None and here.sample is not None and there.sample.equals(here.sample)


def test_batch_prediction_files_are_byte_for_byte_the_local_engines(
    spark: Any, data: Path, tmp_path: Path
) -> None:
    from emrml.service.rows import MLModel

    app = EmrML(settings_at(tmp_path))
    try:
        spec = {"DataLocationS3": str(data / "a.csv"), "DataSchema": bank_sample_schema().to_json()}
        request = {"DataSourceId": "ds-a", "DataSpec": spec, "ComputeStatistics": True}
        app.call("CreateDataSourceFromS3", request)
        request = {"MLModelId": "ml-a", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-a"}
        app.call("CreateMLModel", request)
        assert app.wait("MLModel", "ml-a")["Status"] == "COMPLETED"
        with app.sessions() as metastore:
            artifact = Path(metastore.get(MLModel, "ml-a").artifact_location)
    finally:
        app.close()
    source = DatasourceData(str(data), bank_sample_schema(), None)
    outputs, counts = {}, {}
    for engine, session_or_none in (("local", None), ("spark", spark)):
        result = batch_predict(
            batch_prediction_id="bp", artifact_location=artifact, data=source,
            output_uri=str(tmp_path / engine) + "/", score_threshold=None, settings=settings_at(tmp_path),
            progress=quiet, parallelism=CUT, spark=session_or_none,
        )  # fmt: skip
        outputs[engine] = {
            name: (tmp_path / engine / "batch-prediction" / "result" / name).read_bytes()
            for name in ("bp-a.csv.gz", "bp-b.csv.gz")
        }
        counts[engine] = (result.total_records, result.invalid_records)
    assert outputs["spark"] == outputs["local"] and counts["spark"] == counts["local"]
    total, invalid = counts["spark"]
    lines = sum(len(gzip.decompress(result).splitlines()) for result in outputs["spark"].values())
    assert invalid >= 2 and lines == 2 + total  # a header each, then a line per record (empty if invalid)


def test_jobs_run_on_spark_through_the_service(data: Path, tmp_path: Path) -> None:
    # The real path: the service queues the jobs; each job's worker process runs its Spark application.
    app = EmrML(settings_at(tmp_path, engine="spark"))
    try:
        spec = {"DataLocationS3": str(data / "a.csv"), "DataSchema": bank_sample_schema().to_json()}
        request = {"DataSourceId": "ds-a", "DataSpec": spec, "ComputeStatistics": True}
        app.call("CreateDataSourceFromS3", request)
        source = app.wait("DataSource", "ds-a")
        assert source["Status"] == "COMPLETED", source.get("Message")
        # Two passes: a Spark job each, and what is guarded here is that the job runs on Spark at all.
        request = {"MLModelId": "ml-a", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-a",
                   "Parameters": {"sgd.maxPasses": "2"}}  # fmt: skip
        app.call("CreateMLModel", request)
        assert app.wait("MLModel", "ml-a")["Status"] == "COMPLETED"
        out = tmp_path / "out"
        request = {"BatchPredictionId": "bp-a", "MLModelId": "ml-a", "BatchPredictionDataSourceId": "ds-a",
                   "OutputUri": str(out) + "/"}  # fmt: skip
        app.call("CreateBatchPrediction", request)
        prediction = app.wait("BatchPrediction", "bp-a")
        assert prediction["Status"] == "COMPLETED", prediction.get("Message")
        assert prediction["TotalRecordCount"] == 12_000
        model = app.call("GetMLModel", {"MLModelId": "ml-a"})
        # Each job ran on Spark, in its worker's own application.
        applications = {row.get("SparkApplicationId") for row in (source, model, prediction)}
        assert None not in applications and len(applications) == 3, applications
        result = gzip.decompress((out / "batch-prediction" / "result" / "bp-a-a.csv.gz").read_bytes())
        assert len(result.splitlines()) == 1 + 12_000
    finally:
        app.close()


@pytest.mark.parametrize(("target", "kind"), [("y", "BINARY"), ("job", "MULTICLASS"), ("age", "REGRESSION")])
def test_evaluations_equal_the_local_engines(
    spark: Any, data: Path, tmp_path: Path, target: str, kind: str
) -> None:
    from emrml.engine.evaluation import evaluate_model
    from emrml.service.rows import MLModel

    schema = dataclasses.replace(bank_sample_schema(), target=target)
    app = EmrML(settings_at(tmp_path))
    try:
        spec = {"DataLocationS3": str(data / "a.csv"), "DataSchema": schema.to_json()}
        app.call(
            "CreateDataSourceFromS3", {"DataSourceId": "ds", "DataSpec": spec, "ComputeStatistics": True}
        )
        app.call("CreateMLModel", {"MLModelId": "ml", "MLModelType": kind, "TrainingDataSourceId": "ds"})
        assert app.wait("MLModel", "ml")["Status"] == "COMPLETED"
        with app.sessions() as metastore:
            artifact = Path(metastore.get(MLModel, "ml").artifact_location)
    finally:
        app.close()
    split = parse_rearrangement('{"splitting": {"percentBegin": 10, "percentEnd": 90}}')
    results = [
        evaluate_model(
            artifact_location=artifact,
            data=DatasourceData(str(data), schema, split),
            same_datasource=False,
            training_records=12_000,
            settings=settings_at(tmp_path),
            progress=quiet,
            spark=session_or_none,
        )
        for session_or_none in (None, spark)
    ]
    here, there = results
    assert there.insights["records"] == here.insights["records"] > 20_000
    assert there.insights["alerts"] == here.insights["alerts"]
    for name, value in here.performance_metrics.items():
        assert float(there.performance_metrics[name]) == pytest.approx(float(value), rel=1e-9), name


def test_a_pipeline_run_on_spark_runs_every_job_on_one_application(
    spark: Any, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under spark-submit (the EMR step) a job per worker process failed from the second job on: each joined
    # spark-submit's JVM, which holds one SparkContext. The run's jobs share this process's application.
    import json

    from cli_helpers import invoke_json

    schema = bank_sample_schema().to_json()
    spec = {"DataLocationS3": str(data / "a.csv"), "DataSchema": schema}
    steps = [
        {"CreateDataSourceFromS3": {"DataSourceId": "ds", "ComputeStatistics": True, "DataSpec": spec}},
        {"CreateMLModel": {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds",
                           "Parameters": {"sgd.maxPasses": "2"}}},
    ]  # fmt: skip
    (tmp_path / "pipeline.json").write_text(json.dumps({"Steps": steps}))
    monkeypatch.setenv("EMRML_ENGINE", "spark")
    home = str(tmp_path / "home")
    ran = invoke_json("--home", home, "run", str(tmp_path / "pipeline.json"))
    assert [step["Status"] for step in ran["Steps"]] == ["COMPLETED", "COMPLETED"]
    source = invoke_json("--home", home, "datasource", "show", "ds")["GetDataSource"]
    model = invoke_json("--home", home, "model", "show", "ml")["GetMLModel"]
    assert source["SparkApplicationId"] == model["SparkApplicationId"] == spark.sparkContext.applicationId


def test_long_running_mode_runs_every_job_on_the_servers_one_application(
    spark: Any, data: Path, tmp_path: Path
) -> None:
    # What `emrml serve --engine spark` does: jobs on the server's threads, on its one Spark application.
    import os
    import threading

    from emrml.service.rows import DataSource

    app = EmrML(settings_at(tmp_path, engine="spark"))
    app.jobs.in_process = True
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            with app.sessions() as metastore:
                row = metastore.get(DataSource, "ds-b")
                if row is not None and row.worker and "pid=" in row.worker:
                    seen.add(row.worker.rsplit("pid=", 1)[-1])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        spec = {"DataLocationS3": str(data / "b.csv"), "DataSchema": bank_sample_schema().to_json()}
        app.call(
            "CreateDataSourceFromS3", {"DataSourceId": "ds-b", "DataSpec": spec, "ComputeStatistics": True}
        )
        described = app.wait("DataSource", "ds-b")
    finally:
        done.set()
        watcher.join()
        app.close()
    assert described["Status"] == "COMPLETED", described.get("Message")
    assert seen == {str(os.getpid())}  # run here, not in a worker process
    assert session.spark_session(settings_at(tmp_path)) is spark  # the one application, still running
    # The job's row names the application and the Spark jobs it ran (the jobs browser shows them).
    assert described["SparkApplicationId"] == spark.sparkContext.applicationId
    assert described["SparkJobIds"] and all(isinstance(i, int) for i in described["SparkJobIds"])


def test_sketched_statistics_stay_within_the_sketches_error_on_spark(spark: Any, tmp_path: Path) -> None:
    """Past the exact limits (4,096 distinct numbers, 1,536 distinct categories) the statistics of the byte
    ranges' sketches, merged, answer within the sketches' stated error: KLL ranks, HyperLogLog counts."""
    import datasketches
    import numpy as np

    from emrml.core.schema import parse_schema
    from emrml.core.stats.constants import KLL_K, QUANTILE_RANKS

    rng = np.random.default_rng(11)
    rows = 150_000
    values = rng.lognormal(3.0, 1.0, rows)
    categories = rng.integers(0, 40_000, rows)
    lines = ["amount,code"] + [f"{v:.6f},c{c}" for v, c in zip(values, categories, strict=True)]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    schema = parse_schema(
        '{"version": "1.0", "dataFileContainsHeader": true, "attributes": ['
        '{"attributeName": "amount", "attributeType": "NUMERIC"},'
        '{"attributeName": "code", "attributeType": "CATEGORICAL"}]}'
    )
    summary = on_spark.build_datasource(
        str(tmp_path / "wide.csv"), schema, None, compute_statistics=True, settings=settings_at(tmp_path),
        progress=quiet, spark=spark, parallelism=Parallelism(workers=2, range_bytes=512 << 10, min_bytes=1),
    )  # fmt: skip
    assert summary.statistics is not None
    amount, code = summary.statistics["attributes"]
    assert not amount["exact"] and not code["distinctCountExact"]  # both answered by sketches
    # Exact parts stay exact.
    assert amount["validCount"] == rows
    assert (amount["min"], amount["max"]) == (float(f"{values.min():.6f}"), float(f"{values.max():.6f}"))
    # Each quantile's true rank is within twice KLL's stated (99 %) normalized rank error.
    ordered = np.sort(np.array([float(f"{v:.6f}") for v in values]))
    bound = 2 * datasketches.kll_doubles_sketch.get_normalized_rank_error(KLL_K, False)
    for rank in QUANTILE_RANKS:
        answer = amount["quantiles"][str(rank)]
        true_rank = np.searchsorted(ordered, answer, side="right") / rows
        assert abs(true_rank - rank) <= bound, (rank, answer, true_rank)
    # The distinct count within three standard errors of HyperLogLog with 2^14 registers (0.81 %).
    distinct = len(np.unique(categories))
    assert abs(code["distinctCount"] - distinct) <= 3 * 0.0081 * distinct


def test_statistics_and_training_read_s3_on_the_executors(spark: Any, s3: Any, data: Path) -> None:
    """The executors read S3 byte ranges with the driver's storage settings (they load none themselves):
    statistics equal the local engine's over the same objects, and a model trains from them."""
    from emrml.engine.training import train_model
    from emrml.service.parameters import parse_parameters

    for name in ("a.csv", "b.csv"):
        s3.client.upload_file(str(data / name), s3.bucket, f"data/{name}")
    location = f"s3://{s3.bucket}/data/"
    schema, settings = bank_sample_schema(), s3.settings
    here = local.build_datasource(
        location, schema, None, compute_statistics=True, settings=settings, progress=quiet
    )
    there = on_spark.build_datasource(
        location, schema, None, compute_statistics=True, settings=settings, progress=quiet, spark=spark,
        parallelism=CUT,
    )  # fmt: skip
    assert there.total_records == here.total_records > 20_000
    assert there.invalid_examples == here.invalid_examples and there.statistics == here.statistics
    trained = train_model(
        model_id="from-s3", model_type="BINARY", data=DatasourceData(location, schema, None),
        recipe_text=None, sample=here.sample, parameters=parse_parameters({}), settings=settings,
        progress=quiet, spark=spark,
    )  # fmt: skip
    valid = here.total_records - here.invalid_records
    assert trained.report["parallel_parts"] == 2 and trained.report["rows"] == valid
