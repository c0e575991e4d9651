"""The CPU time the executors spend on a job's Spark tasks, for its ComputeTime (docs/spark.md).

Two parts, because Spark measures only one of them:

* **The executors' Python workers**, where emrml's tasks do their work (reading, statistics, featurizing,
  SGD, scoring). Spark does not measure their CPU time (a task's ``executorCpuTime`` is its JVM thread's,
  which mostly waits for the Python worker), so each task measures it itself: ``counted`` wraps a
  partition's function, and the worker adds its CPU time since its last report to an accumulator of the
  job. A Python worker runs one task at a time and idles between them, so that is the task's time: its
  input read and its results written, and for a worker's first task the worker's start (the import of
  emrml). The CPU time of a task attempt that failed is not counted (Spark drops its accumulator updates).
* **The executors' JVM** on the same tasks: their task threads' (``executorCpuTime``) and the
  deserialization of their tasks (``executorDeserializeCpuTime``), the stage totals the Spark UI and its
  REST API show, read from the application's status store once the step's Spark jobs have ended.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: This Python worker's CPU time as it last added it to a job's count (0 when it starts: a process's CPU
#: times start at zero, a forked one's too).
_reported = 0.0
#: How long a step waits for its Spark jobs' ends to reach the status store (an event queue behind them).
_STORE_WAIT_SECONDS = 10.0


class Seconds:
    """A sum of seconds (a ``pyspark.AccumulatorParam``, by its two methods: no pyspark imported here)."""

    def zero(self, value: float) -> float:
        return 0.0

    def addInPlace(self, value1: float, value2: float) -> float:
        return value1 + value2


def counted(seconds: Any, function: Callable[..., Iterable[T]]) -> Callable[..., Iterator[T]]:
    """``function``, a partition's (``mapPartitions``, ``mapPartitionsWithIndex``), adding the CPU time of
    the Python worker that runs it to the accumulator ``seconds`` as the partition ends: what the worker
    spent since it last added any, so that counted functions chained in one stage (each ends as the one
    after it has read it all) count nothing twice."""
    return functools.partial(_run_counted, seconds, function)


def _run_counted(seconds: Any, function: Callable[..., Iterable[T]], *args: Any) -> Iterator[T]:
    global _reported
    try:
        yield from function(*args)
    finally:
        now = time.process_time()
        seconds.add(max(0.0, now - _reported))
        _reported = now


def stage_cpu_seconds(context: Any, job_ids: list[int], counted_stages: set[int]) -> float:
    """The executors' JVM CPU time on the stages of the Spark jobs ``job_ids`` not in ``counted_stages``
    (which they join): every attempt of each stage, its tasks' threads and their deserialization."""
    tracker = context.statusTracker()
    deadline = time.monotonic() + _STORE_WAIT_SECONDS
    stages: set[int] = set()
    for job_id in job_ids:
        info = tracker.getJobInfo(job_id)
        # A job's end reaches the status store after its stages' (one queue of events, in order).
        while info is not None and info.status == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.02)
            info = tracker.getJobInfo(job_id)
        if info is not None:
            stages.update(int(stage) for stage in info.stageIds)
    stages -= counted_stages
    counted_stages |= stages
    if not stages:
        return 0.0
    gateway = context._gateway
    store = context._jsc.sc().statusStore()
    statuses, quantiles = gateway.jvm.java.util.ArrayList(), gateway.new_array(gateway.jvm.double, 0)
    nanoseconds = 0
    for stage in sorted(stages):
        try:
            attempts = store.stageData(stage, False, statuses, False, quantiles)
        except Exception as exc:  # a stage the store no longer keeps (spark.ui.retainedStages)
            if "NoSuchElementException" not in str(exc):
                raise
            continue
        for index in range(attempts.size()):
            attempt = attempts.apply(index)
            nanoseconds += int(attempt.executorCpuTime()) + int(attempt.executorDeserializeCpuTime())
    return nanoseconds / 1e9
