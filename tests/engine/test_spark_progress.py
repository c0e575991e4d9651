"""A Spark step's progress from its tasks: the share of the step's Spark tasks done, mapped onto the step's
part of the job and said in its progress message, never going back when a stage runs again; and what a step
left without executors says. The runner's logic, on a stand-in for the SparkContext (no JVM)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest

from emrml.engine.spark import runner


class _Accumulator:
    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass
class _Stage:
    numCompletedTasks: int
    numTasks: int


@dataclass
class _Job:
    stageIds: list[int]


class _Tracker:
    """SparkContext.statusTracker() of one job of two stages, whose task counts move at each look (the
    second stage run again after its third task: an executor lost with its output)."""

    SCRIPT = (((0, 4), (0, 2)), ((1, 4), (0, 2)), ((4, 4), (0, 2)), ((4, 4), (1, 2)), ((3, 4), (1, 2)))

    def __init__(self) -> None:
        self.looks = 0
        self.seen_all = threading.Event()

    def getJobIdsForGroup(self, group: str) -> list[int]:
        self.looks += 1
        if self.looks >= len(self.SCRIPT):
            self.seen_all.set()
        return [7]

    def getJobInfo(self, job_id: int) -> _Job:
        return _Job([1, 2])

    def getStageInfo(self, stage_id: int) -> _Stage:
        done, tasks = self.SCRIPT[min(self.looks, len(self.SCRIPT)) - 1][stage_id - 1]
        return _Stage(done, tasks)


class _Context:
    applicationId = "app-stand-in"
    master = "local[1]"

    def __init__(self) -> None:
        self.tracker = _Tracker()

    def setJobGroup(self, group: str, description: str, interruptOnCancel: bool) -> None:
        pass

    def accumulator(self, value: Any, param: Any) -> _Accumulator:
        return _Accumulator(value)

    def statusTracker(self) -> _Tracker:
        return self.tracker

    def setLocalProperty(self, key: str, value: str | None) -> None:
        pass


class _Session:
    def __init__(self) -> None:
        self.sparkContext = _Context()


def test_a_steps_progress_is_its_share_of_tasks_done_and_never_goes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "_POLL_SECONDS", 0.01)
    session = _Session()
    reports: list[tuple[float, str | None]] = []
    steps = runner.SparkRunner(session, lambda *report: reports.append(report))
    with steps.job("scoring records", (0.2, 0.8)):
        assert session.sparkContext.tracker.seen_all.wait(10)
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions)  # the stage run again did not take the job back
    assert fractions[0] == pytest.approx(0.2) and max(fractions) == pytest.approx(0.2 + 0.6 * 5 / 6)
    assert pytest.approx(0.2 + 0.6 * 1 / 6) in fractions
    messages = {message for _, message in reports}
    assert "scoring records (4 of 6 Spark tasks done, application app-stand-in)" in messages
    assert "scoring records (5 of 6 Spark tasks done, application app-stand-in)" in messages


class _Idle(_Context):
    """A standalone cluster's application that no worker gives an executor, its tasks pending."""

    master = "spark://127.0.0.1:7077"

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = threading.Event()

    def cancelJobGroup(self, group: str) -> None:
        self.cancelled.set()


def test_a_step_without_executors_on_a_standalone_cluster_names_the_cores_another_application_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A long-running server's application holds every core of a standalone cluster (its master's default),
    so a CLI job's application got no executor and failed saying only that its workers were gone or too
    small."""
    from emrml.engine.spark import session

    monkeypatch.setattr(runner, "_POLL_SECONDS", 0.01)
    monkeypatch.setattr(runner, "_has_executors", lambda context: False)
    monkeypatch.setattr(session, "_executor_wait", 0.05)
    idle, context = _Session(), _Idle()
    idle.sparkContext = context
    step = runner.SparkRunner(idle, lambda *_: None).job("reading records", (0.2, 0.9))
    with pytest.raises(session.SparkEngineError) as failure, step:
        assert context.cancelled.wait(10), "the step's Spark jobs were not cancelled"
        raise RuntimeError("Job 3 cancelled part of cancelled job group")  # what the collect() raises
    assert str(failure.value.message).startswith("the Spark application app-stand-in has had no executor for")
    assert "an application takes every free core unless spark.cores.max limits it" in failure.value.message
    assert "give each spark.cores.max in setting spark_conf" in failure.value.message


def test_a_step_whose_executors_cpu_time_cannot_be_read_still_ends_as_it_would(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The JVM's part of the CPU time comes from Spark's status store after the step: a failure to read it
    is logged and leaves that part out, rather than fail a step that succeeded (or hide why one failed)."""

    def unreadable(*_: Any) -> float:
        raise RuntimeError("no such method: stageData")

    monkeypatch.setattr(runner, "stage_cpu_seconds", unreadable)
    added: list[float] = []
    token = runner.SPARK_CPU.set(added.append)
    try:
        with runner.SparkRunner(_Session(), lambda *_: None).job("scoring records", (0.0, 1.0)):
            pass
    finally:
        runner.SPARK_CPU.reset(token)
    assert added == [0.0]  # the Python workers' part (none here) only
    assert "could not read the executors' CPU time" in caplog.text
