"""A job on the Spark engine that is to stop (its object deleted, the job given up or taken over, the
server stopping) has its step's Spark jobs cancelled, so that the thread running it returns, whether the
step reports progress or not. The runner's logic, on a stand-in for the SparkContext (no JVM)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from emrml.engine.spark.runner import SPARK_STOP, SparkRunner


class _Accumulator:
    def __init__(self, value: Any) -> None:
        self.value = value


class _Tracker:
    """SparkContext.statusTracker(): no job known (the watcher reports no progress)."""

    def getJobIdsForGroup(self, group: str) -> list[int]:
        return []


class _Context:
    """What ``SparkRunner.job`` uses of a SparkContext; ``cancelled`` is set by ``cancelJobGroup``."""

    applicationId = "app-stand-in"
    master = "local[1]"

    def __init__(self) -> None:
        self.group: str | None = None
        self.cancelled_groups: list[str] = []
        self.cancelled = threading.Event()

    def setJobGroup(self, group: str, description: str, interruptOnCancel: bool) -> None:
        self.group = group

    def accumulator(self, value: Any, param: Any) -> _Accumulator:
        return _Accumulator(value)

    def statusTracker(self) -> _Tracker:
        return _Tracker()

    def cancelJobGroup(self, group: str) -> None:
        self.cancelled_groups.append(group)
        self.cancelled.set()

    def setLocalProperty(self, key: str, value: str | None) -> None:
        pass


class _Session:
    def __init__(self) -> None:
        self.sparkContext = _Context()


class Stopped(BaseException):
    """Stands for ``service.worker.JobStopped``."""


def test_a_job_to_stop_has_its_spark_jobs_cancelled_in_a_step_that_reports_no_progress() -> None:
    """A training pass reports its progress itself (no span), so the progress callback never tells the
    watcher that the job is to stop: ``SPARK_STOP`` does, and the pass's Spark jobs are cancelled (before,
    a job given up while a pass hung kept its thread, and the server's job slot, for good)."""
    session, stop = _Session(), threading.Event()

    def check() -> None:
        if stop.is_set():
            raise Stopped

    token = SPARK_STOP.set(check)
    try:
        with pytest.raises(Stopped), SparkRunner(session, lambda *_: None).job("training pass 1", None):
            stop.set()
            assert session.sparkContext.cancelled.wait(10), "the step's Spark jobs were not cancelled"
            # What a collect() of a cancelled job raises.
            raise RuntimeError("Job 3 cancelled part of cancelled job group")
    finally:
        SPARK_STOP.reset(token)
    assert session.sparkContext.cancelled_groups == [session.sparkContext.group]


def test_a_job_not_to_stop_runs_its_step_to_its_end() -> None:
    session = _Session()
    token = SPARK_STOP.set(lambda: None)
    try:
        with SparkRunner(session, lambda *_: None).job("refining the model", None):
            assert not session.sparkContext.cancelled.wait(1.5)  # three looks of the watcher
    finally:
        SPARK_STOP.reset(token)
    assert session.sparkContext.cancelled_groups == []
