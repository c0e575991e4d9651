"""The Spark engine's application (``local[2]``, one JVM for the session): the settings that make it, its
driver's log, the interpreter its tasks run, a stopped job's tasks cancelled, the executors' CPU time
counted for the job, and shuffle files encrypted."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from spark_helpers import quiet, settings_at

from emrml.engine.spark import session


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
