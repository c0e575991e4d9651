"""The Spark engine on a real Spark application (``local[2]``, one JVM for the session): the datasource
job's statistics and batch prediction's result files against the local engine's on the same data, and the
settings, errors and failures around them."""

from __future__ import annotations

import dataclasses
import gzip
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from emrml.config import Settings
from emrml.core.rearrange import parse_rearrangement
from emrml.engine import local
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.spark import datasource as on_spark
from emrml.engine.spark import session
from emrml.engine.spark.runner import SPARK_JOBS, SparkRunner, _task_error
from emrml.engine.training import DatasourceData
from emrml.errors import DataError, ReadError
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML

#: Small ranges, so that a few MB of data make several units of work (tasks) per file.
CUT = Parallelism(workers=2, range_bytes=1 << 20, min_bytes=256 << 10)


def quiet(*_: Any) -> None:
    pass


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


def settings_at(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", **overrides)


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
    from emrml.service.metastore import MLModel

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


def test_the_settings_make_the_application(tmp_path: Path) -> None:
    local_conf = session.spark_conf(settings_at(tmp_path))
    assert local_conf["spark.master"] == "local[2]" and local_conf["spark.driver.host"] == "127.0.0.1"
    assert "spark.authenticate" not in local_conf  # local: one JVM, nothing travels
    cluster = settings_at(
        tmp_path, spark_master="spark://10.1.2.3:7077", spark_conf={"spark.executor.memory": "6g"}
    )
    conf = session.spark_conf(cluster)
    assert conf["spark.authenticate"] == conf["spark.network.crypto.enabled"] == "true"
    assert conf["spark.io.encryption.enabled"] == "true" and len(conf["spark.authenticate.secret"]) == 64
    assert conf["spark.executor.memory"] == "6g" and "spark.driver.host" not in conf
    assert session.spark_conf(cluster)["spark.authenticate.secret"] != conf["spark.authenticate.secret"]
    off = dataclasses.replace(cluster, spark_encryption="off", spark_conf={"spark.authenticate": "true"})
    assert "spark.network.crypto.enabled" not in session.spark_conf(off)
    assert session.spark_conf(off)["spark.authenticate"] == "true"  # spark_conf passes through, last


QUIET_DRIVER = """
import os, pathlib, sys
from emrml.config import Settings
from emrml.engine.spark.session import spark_session

home, marker = pathlib.Path(sys.argv[1]), sys.argv[2]
settings = Settings.load(environ={}, home=home, spark_master="local[1,2]")  # a failed task is tried twice


def fails_once(n):
    if n == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        return 1 // 0
    return n


assert spark_session(settings).sparkContext.parallelize(range(4), 2).map(fails_once).count() == 4
"""


def test_the_drivers_log_goes_to_the_homes_log_folder_not_the_terminal(tmp_path: Path) -> None:
    import subprocess

    run = subprocess.run(
        [sys.executable, "-c", QUIET_DRIVER, str(tmp_path / "home"), str(tmp_path / "failed-once")],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr == ""  # the JVM's own notices (the vector module Spark loads) go to the log as well
    log = (tmp_path / "home" / "logs" / "spark.log").read_text()
    assert "modules: jdk.incubator.vector" in log
    assert "ZeroDivisionError" in log  # the failed task and its stack trace, for an operator
    assert (tmp_path / "home" / "logs" / "spark-log4j2.properties").stat().st_mode & 0o077 == 0
    settings = settings_at(tmp_path, spark_conf={"spark.driver.extraJavaOptions": "-Dx=1"})
    assert session.spark_conf(settings)["spark.driver.extraJavaOptions"].endswith('.properties" -Dx=1')


def test_tasks_run_in_this_interpreter(spark: Any) -> None:
    # Whatever "python3" the PATH holds (a virtual environment need not be activated), the tasks run this
    # interpreter, the one whose emrml the driver imported.
    assert spark.sparkContext.pythonExec == sys.executable
    prefix = spark.sparkContext.parallelize([0], 1).map(lambda _: __import__("sys").prefix).collect()
    assert prefix == [sys.prefix]


def test_a_progress_callback_that_stops_the_job_cancels_its_spark_tasks(spark: Any) -> None:
    """A job deleted while it runs on Spark: the progress callback raises (``service.worker.JobStopped``, on
    the progress watcher's thread), the Spark job is cancelled, and the caller gets that exception."""
    import time

    from emrml.engine.spark.runner import SparkRunner

    class Stopped(BaseException):
        pass

    def progress(_fraction: float, _message: str | None) -> None:
        raise Stopped

    started = time.monotonic()
    with pytest.raises(Stopped):
        # A lambda, shipped by value: the executors' Python cannot import this test module.
        slow = lambda seconds, report=None: __import__("time").sleep(seconds)  # noqa: E731
        SparkRunner(spark, progress).map(slow, [(60.0,), (60.0,)], "sleeping", (0.0, 1.0))
    # Cancelled: two tasks of 60 s would take a minute.
    assert time.monotonic() - started < 50


def test_a_steps_executor_cpu_time_is_counted_for_the_job(spark: Any) -> None:
    """A job's ComputeTime counted the driver's CPU time only, not its tasks': each step now adds the CPU
    time of the executors' Python workers on its tasks (Spark measures only their JVM threads) and of their
    JVM threads, once per stage."""
    from emrml.engine.spark import compute
    from emrml.engine.spark.runner import SPARK_CPU, SparkRunner

    def burn(seconds: float, report: Any = None) -> float:
        import time

        start = time.process_time()
        while time.process_time() - start < seconds:
            pass
        return seconds

    added: list[float] = []
    token = SPARK_CPU.set(added.append)
    try:
        steps = SparkRunner(spark, quiet)
        assert steps.map(burn, [(0.5,)] * 4, "burning", (0.0, 0.5)) == [0.5] * 4
        assert steps.map(burn, [(0.25,)] * 2, "burning less", (0.5, 1.0)) == [0.25] * 2
    finally:
        SPARK_CPU.reset(token)
    # One addition per step, each at least its tasks' own CPU time, not the driver's (which only waited).
    assert len(added) == 2 and added[0] >= 4 * 0.5 and added[1] >= 2 * 0.25
    # The JVM's part, from the stages of the step's Spark jobs, counted once.
    context = spark.sparkContext
    context.setJobGroup("emrml-cpu-probe", "probe")
    try:
        assert context.parallelize(range(4), 4).map(lambda x: x * 2).sum() == 12
        ids = list(context.statusTracker().getJobIdsForGroup("emrml-cpu-probe"))
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    counted: set[int] = set()
    assert compute.stage_cpu_seconds(context, ids, counted) > 0 and counted
    assert compute.stage_cpu_seconds(context, ids, counted) == 0.0


def test_an_unreachable_master_fails_at_once_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    settings = settings_at(tmp_path, spark_master=f"spark://127.0.0.1:{port}", spark_connect_seconds=2)
    with pytest.raises(session.SparkEngineError, match=rf"master spark://127.0.0.1:{port} does not answer"):
        session.check_master(settings)


def test_a_master_that_refuses_the_application_is_explained(tmp_path: Path) -> None:
    # What pyspark raises when a standalone master answered but never registered the application (e.g. it
    # has no secret, or another one): the message says what to set, not "stopped SparkContext" alone.
    reason = "Cannot call methods on a stopped SparkContext."
    secured = settings_at(tmp_path, spark_master="spark://127.0.0.1:7077")
    message = session.start_failure(secured, reason)
    assert message.startswith("the Spark master spark://127.0.0.1:7077 answered but did not register")
    assert "spark.authenticate.secret in spark_conf and in the cluster's spark-defaults.conf" in message
    assert message.endswith(f"the driver's log is {tmp_path / 'home' / 'logs' / 'spark.log'}")
    plain = dataclasses.replace(secured, spark_encryption="off")
    assert "secret" not in session.start_failure(plain, reason)
    assert session.start_failure(secured, "Java gateway process exited").startswith(
        "the Spark application did not start: Java gateway process exited; "
    )


def test_without_pyspark_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyspark", None)  # what an install without the extra has
    with pytest.raises(session.SparkEngineError, match=r"pip install 'emrml\[spark\]'"):
        session.spark_session(settings_at(tmp_path, spark_master="local[1]"))


def test_a_tasks_own_error_comes_back_as_itself_and_spark_failures_as_one_line() -> None:
    traceback = (
        "An error occurred while calling o42.collectAndServe.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 1 in stage 3.0 failed\n"
        "org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
        '  File "/x/emrml/engine/batch.py", line 10, in run_unit\n'
        "emrml.errors.DataError: file s3://b/k.csv: more than 10,000 records are invalid\n"
        "\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException(PythonRunner.scala:1)\n"
    )
    error = _task_error(RuntimeError(traceback))
    assert isinstance(error, DataError)
    assert error.message == "file s3://b/k.csv: more than 10,000 records are invalid"
    other = _task_error(RuntimeError("java.io.IOException: No space left on device\n\tat x.y(Z.java:1)\n"))
    assert isinstance(other, session.SparkEngineError)
    assert other.message == "the Spark job failed: java.io.IOException: No space left on device"
    # An executor whose Python has no emrml, or another version of it (a node not set up, or set up long ago).
    stale = _task_error(
        RuntimeError(
            'File "/usr/lib/python3/dist-packages/pyspark/serializers.py", line 1, in loads\n'
            "ModuleNotFoundError: No module named 'emrml.engine.spark.compute'\n"
            "\tat org.apache.spark.api.python.BasePythonRunner.handlePythonException(PythonRunner.scala:1)\n"
        )
    )
    assert isinstance(stale, session.SparkEngineError)
    assert stale.message.startswith(
        "the Spark job failed: the executors' Python could not import emrml's code (ModuleNotFoundError: No "
        "module named 'emrml.engine.spark.compute'): it must have the same emrml as the driver"
    )
    assert "spark.pyspark.python" in stale.message
    # A task lost with its executor on each of its tries (on a cluster, spark.task.maxFailures of them):
    # Spark's reason, and what the task read, by its index among the step's tasks.
    lost = _task_error(
        RuntimeError(
            "Job aborted due to stage failure: Task 2 in stage 0.0 failed 4 times, most recent failure: Lost "
            "task 2.3 in stage 0.0 (TID 11) (10.0.0.7 executor 3): ExecutorLostFailure (executor 3 exited "
            "caused by one of the running tasks) Reason: Command exited with code 137\nDriver stacktrace:\n"
        ),
        {2: "s3://b/big.csv (bytes 0-1000)"}.get,
    )
    assert lost.message.startswith("the Spark job failed: Job aborted due to stage failure: Task 2 in stage")
    assert lost.message.endswith(
        "Reason: Command exited with code 137; the task read s3://b/big.csv (bytes 0-1000)"
    )


def _run_failing(spark: Any, error: Exception, attempts: Path) -> tuple[BaseException, list[str]]:
    """Three units on Spark, the second raising ``error``; each run of a unit appends its index to
    ``attempts``. Returns the error the step raised and the states of its Spark jobs."""
    jobs: list[int] = []
    token = SPARK_JOBS.set(lambda _application, ids: jobs.extend(ids))

    def unit(index: int, report: Any = None) -> int:
        with open(attempts, "a") as log:
            log.write(f"{index}\n")
        if index == 1:
            raise error
        return index

    try:
        with pytest.raises(DataError) as caught:
            SparkRunner(spark, quiet).map(unit, [(0,), (1,), (2,)], "reading", (0.0, 1.0))
    finally:
        SPARK_JOBS.reset(token)
    tracker = spark.sparkContext.statusTracker()
    return caught.value, [str(tracker.getJobInfo(job).status) for job in jobs]


def test_bad_data_fails_the_step_at_its_first_read_and_a_failed_read_is_left_to_sparks_retries(
    spark: Any, tmp_path: Path
) -> None:
    # Bad data reads the same every time: the task returns its DataError instead of raising it, so Spark
    # has no failed task to run again (spark.task.maxFailures), and the driver raises it. (The job's other
    # tasks are cancelled once it is seen, so the third unit may not have run.)
    bad = tmp_path / "bad"
    error, _ = _run_failing(spark, DataError("file a.csv.gz: compressed data is truncated"), bad)
    assert type(error) is DataError and error.message == "file a.csv.gz: compressed data is truncated"
    reads = bad.read_text().split()
    assert reads.count("1") == 1 and len(reads) == len(set(reads))  # no unit read twice
    # A failed read (an I/O error) may succeed another time: the task raises it and Spark retries it (a
    # local master tries a task once), and the job's failure still names it.
    flaky = tmp_path / "flaky"
    error, states = _run_failing(
        spark, ReadError("file a.csv.gz: cannot be read (Input/output error)"), flaky
    )
    assert (
        isinstance(error, ReadError) and error.message == "file a.csv.gz: cannot be read (Input/output error)"
    )
    assert states == ["FAILED"]


def test_bad_data_in_one_task_cancels_the_steps_other_tasks(spark: Any, tmp_path: Path) -> None:
    """A corrupt file among many: the step fails as soon as its task ends, without waiting for the other
    tasks to read the rest of the data."""
    latch, finished = tmp_path / "latch", tmp_path / "finished"
    jobs: list[int] = []
    token = SPARK_JOBS.set(lambda _application, ids: jobs.extend(ids))

    def unit(index: int, report: Any = None) -> int:
        if index == 0:
            raise DataError("file a.csv.gz: compressed data is truncated")
        for _ in range(1200):  # a long read: it ends when the test opens the latch (or after a minute)
            if latch.exists():
                break
            __import__("time").sleep(0.05)
        finished.write_text(str(index))
        return index

    try:
        with pytest.raises(DataError, match="compressed data is truncated"):
            SparkRunner(spark, quiet).map(unit, [(0,), (1,)], "reading", (0.0, 1.0))
    finally:
        SPARK_JOBS.reset(token)
        latch.touch()
    assert not finished.exists()  # the long read was still going when the step failed
    tracker = spark.sparkContext.statusTracker()
    assert [str(tracker.getJobInfo(job).status) for job in jobs] == ["FAILED"]  # cancelled, not left running


def test_a_task_whose_python_process_is_killed_fails_the_job_naming_what_it_read(
    spark: Any, tmp_path: Path
) -> None:
    """A task's Python worker killed (the kernel's OOM killer does so on an executor short of memory): the
    job's message said "Caused by: java.io.EOFException", the last line of Spark's stack trace. It says
    what happened and what the task read, and the application runs the next job."""
    from emrml.engine.units import Unit

    data = tmp_path / "data.csv"
    data.write_bytes(b"x" * 4000)
    units = [
        Unit(0, str(data), "data.csv", start, start + 1000, part)
        for part, start in enumerate(range(0, 4000, 1000))
    ]

    def read(unit: Unit, report: Any = None) -> int:
        import os
        import signal

        if unit.start == 1000:
            os.kill(os.getpid(), signal.SIGKILL)
        return unit.part

    with pytest.raises(session.SparkEngineError) as failed:
        SparkRunner(spark, quiet).map(read, [(unit,) for unit in units], "scoring", (0.0, 1.0))
    assert failed.value.message == (
        "the Spark job failed: a task's Python process exited unexpectedly (killed: most often by the kernel "
        "short of memory on its executor, see spark.executor.memory and spark.executor.pyspark.memory in "
        f"setting spark_conf); the task read {data} (bytes 1000-2000)"
    )
    assert SparkRunner(spark, quiet).map(read, [(units[0],), (units[2],)], "scoring", (0.0, 1.0)) == [0, 2]


def test_a_partitions_bad_data_comes_back_as_its_calibration_sample_instead_of_failing_its_task() -> None:
    from emrml.core.learn import Checker
    from emrml.engine.spark.runner import TaskFailure, raise_failures
    from emrml.engine.spark.training import _rows, sample_partition

    failure = TaskFailure("DataError", "file b.csv: more than 10,000 records are invalid")
    (part,) = sample_partition(0, iter([failure]), Checker("BINARY", 3, 1), seed=0)
    assert part == failure
    with pytest.raises(DataError, match="more than 10,000 records"):
        raise_failures(["a sample", part])
    with pytest.raises(DataError, match="more than 10,000 records"):
        list(_rows(iter([failure])))


def test_a_step_without_executors_fails_after_the_setting_instead_of_waiting_for_ever(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an application whose only worker died sees: no executor, its tasks pending for ever. (The
    executors are taken away here by the runner's probe: a local application always has its own.)"""
    import time

    from emrml.engine.spark import runner

    monkeypatch.setattr(runner, "_has_executors", lambda context: False)
    monkeypatch.setattr(session, "_executor_wait", 1.0)
    start = time.monotonic()
    with pytest.raises(session.SparkEngineError, match=r"no executor for 1 s .* spark_executor_wait"):
        runner.SparkRunner(spark, quiet).map(
            lambda seconds, report=None: __import__("time").sleep(seconds), [(3,)] * 8, "waiting", (0.0, 1.0)
        )
    assert time.monotonic() - start < 8  # eight tasks of 3 s on two cores: 12 s if they all ran


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


SHUFFLE_PROBE = """
import json, pathlib, sys
from emrml.config import Settings
from emrml.engine.spark.session import spark_session

folder = pathlib.Path(sys.argv[1])
seen = {}
# One driver JVM, an application for each setting in turn (other settings: the first one is stopped).
for encryption in ("off", "on"):
    local = folder / encryption
    conf = {"spark.local.dir": str(local), "spark.shuffle.compress": "false",
            "spark.shuffle.spill.compress": "false"}
    settings = Settings.load(environ={}, home=folder / "home", spark_encryption=encryption, spark_conf=conf)
    context = spark_session(settings).sparkContext
    rows = context.parallelize([(i % 7, f"MARKER-{i:06d}-SECRET") for i in range(20000)], 4)
    assert rows.groupByKey().mapValues(len).count() == 7
    # Read while the application runs: stopping it deletes its shuffle files.
    found = any(b"MARKER-" in path.read_bytes() for path in local.rglob("*") if path.is_file())
    seen[encryption] = {"found": found, "files": sum(1 for p in local.rglob("*.data"))}
print(json.dumps(seen))
"""


def test_shuffle_files_hold_the_data_in_clear_only_without_encryption(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", SHUFFLE_PROBE, str(tmp_path)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["off"]["files"] > 0 and seen["on"]["files"] > 0  # both wrote shuffle files
    assert seen["off"]["found"] and not seen["on"]["found"]


@pytest.mark.parametrize(("target", "kind"), [("y", "BINARY"), ("job", "MULTICLASS"), ("age", "REGRESSION")])
def test_evaluations_equal_the_local_engines(
    spark: Any, data: Path, tmp_path: Path, target: str, kind: str
) -> None:
    from emrml.engine.evaluation import evaluate_model
    from emrml.service.metastore import MLModel

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

    from emrml.service.metastore import DataSource

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
