"""The Spark engine's errors on a real Spark application (``local[2]``, one JVM for the session): a master
that does not answer or refuses the application, pyspark missing, a task's own error and Spark's failures
in one line, bad data failing its step at once, a killed Python worker, a step without executors."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
from spark_helpers import quiet, settings_at

from emrml.engine.spark import session
from emrml.engine.spark.runner import SPARK_JOBS, SparkRunner, _task_error
from emrml.errors import DataError, ReadError


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
