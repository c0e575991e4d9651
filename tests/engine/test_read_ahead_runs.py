"""Batch prediction over many S3 objects: a worker is handed runs of consecutive units, and requests the
next object of its run while it scores one, instead of waiting for each object's first bytes in turn."""

from __future__ import annotations

import gzip
import json
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pytest

from emrml.core.schema import parse_schema
from emrml.engine import batch
from emrml.engine.training import DatasourceData, train_model
from emrml.engine.units import RUNS_PER_WORKER, Parallelism, Unit, in_runs
from emrml.service.parameters import parse_parameters
from emrml.storage import locations
from raw_models import XY_SCHEMA
from s3_server import S3

SCHEMA = parse_schema(json.dumps(XY_SCHEMA))


class Requested:
    """An event per S3 key, set when emrml's client sends a GetObject for it."""

    def __init__(self, client: Any) -> None:
        self.events: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.gets: list[str] = []
        self.lock = threading.Lock()
        client.meta.events.register("before-parameter-build.s3.GetObject", self.before)

    def before(self, params: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.gets.append(params["Key"])
            self.events[params["Key"]].set()


def test_the_next_object_is_requested_while_one_is_scored(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    count = 12
    keys = [f"many/part-{i:03d}.csv" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        bodies = list(
            pool.map(lambda i: s3.put(keys[i], f"x,y\n{i},{i % 2}\n{i + 1},{(i + 1) % 2}\n"), range(count))
        )
    assert len(bodies) == count
    trained = train_model(
        model_id="ml-ahead",
        model_type="BINARY",
        data=DatasourceData(s3.uri("many/"), SCHEMA, None),
        recipe_text=json.dumps({"outputs": ["ALL_INPUTS"]}),
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "1"}),
        settings=s3.settings,
        progress=lambda *_: None,
    )
    requested = Requested(locations._S3.store.client)
    scoring = batch.run_unit
    # Each unit waits, before it ends, for the request of the next object: without reading ahead that
    # request is only sent once the unit has ended.
    asked_while_scored: list[bool] = []

    def run_unit(job: batch.Job, unit: Unit, report: Any = None) -> batch.UnitResult:
        result = scoring(job, unit, report)
        if unit.file_index + 1 < count and all(asked_while_scored):  # after a first miss, no more waits
            asked_while_scored.append(requested.events[keys[unit.file_index + 1]].wait(10))
        return result

    monkeypatch.setattr(batch, "run_unit", run_unit)
    result = batch.batch_predict(
        batch_prediction_id="bp-ahead",
        artifact_location=trained.artifact_path,
        data=DatasourceData(s3.uri("many/"), SCHEMA, None),
        output_uri=s3.uri("out/"),
        score_threshold=None,
        settings=s3.settings,
        progress=lambda *_: None,
        parallelism=Parallelism(workers=1),
    )
    assert asked_while_scored == [True] * (count - 1)
    # One GET an object, the records of each in their result, in order.
    assert sorted(requested.gets) == keys
    assert result.total_records == 2 * count
    for i in range(count):
        lines = gzip.decompress(
            s3.get(f"out/batch-prediction/result/bp-ahead-part-{i:03d}.csv.gz")
        ).splitlines()
        assert lines[0] == b"trueLabel,bestAnswer,score"
        assert [line.split(b",")[0] for line in lines[1:]] == [str(i % 2).encode(), str((i + 1) % 2).encode()]


def _unit(index: int, size: int) -> Unit:
    return Unit(index, f"s3://bucket/part-{index}", f"part-{index}", 0, None, 0, size=size)


def test_units_are_handed_out_in_runs_of_consecutive_units_of_about_equal_bytes() -> None:
    workers = 2
    arguments = [("job", _unit(i, 1000)) for i in range(100)]
    runs = in_runs(arguments, workers)
    assert [args for run in runs for args in run] == arguments  # consecutive, in order, none lost
    assert len(runs) == workers * RUNS_PER_WORKER
    assert {len(run) for run in runs} == {
        100 // (workers * RUNS_PER_WORKER),
        100 // (workers * RUNS_PER_WORKER) + 1,
    }
    # A unit larger than a run's share is a run of its own; so is a tuple without a unit.
    mixed = [("job", _unit(0, 10)), ("job", _unit(1, 10_000)), ("job", _unit(2, 10)), ("uri", 0, 5)]
    assert in_runs(mixed, workers) == [[mixed[0]], [mixed[1]], [mixed[2]], [mixed[3]]]


def test_spark_tasks_read_runs_of_units_requesting_the_next_object_while_one_is_read(
    spark: Any, s3: S3
) -> None:
    from emrml.engine.spark.runner import SPARK_JOBS, SparkRunner

    def read_in_executor(unit: Unit, following: str | None, report: Any = None) -> tuple[bytes, bool]:
        """A task's read of one unit, on an executor: its bytes, and whether the next unit of its run was
        requested (by this executor process) while this one was open. Nested, to be shipped by value (the
        executors cannot import this module)."""
        import threading

        from emrml.engine.units import _open_unit
        from emrml.storage import locations

        store = locations._S3.store
        events: dict[str, threading.Event] | None = getattr(store, "requested_keys", None)
        if events is None:  # once per store of the executor process, before its first request
            events = store.requested_keys = {}  # type: ignore[attr-defined]

            def before(params: dict[str, Any], **_: Any) -> None:
                events.setdefault(params["Key"], threading.Event()).set()

            store.client.meta.events.register("before-parameter-build.s3.GetObject", before)
        with _open_unit(unit) as (_, stream):
            data = stream.read()
            asked = following is None or events.setdefault(following, threading.Event()).wait(10)
        return data, asked

    count = 4 * 2 * RUNS_PER_WORKER  # a few units a run on the session's two cores
    bodies = [f"x,y\n{i},{i % 2}\n".encode() for i in range(count)]
    keys = [f"runs/part-{i:03d}.csv" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put(keys[i], bodies[i]), range(count)))
    files = locations.list_files(s3.uri("runs/"))
    units = [
        Unit(i, file.uri, file.key, 0, None, 0, size=file.size, etag=file.etag)
        for i, file in enumerate(files)
    ]
    runs = in_runs([(unit,) for unit in units], spark.sparkContext.defaultParallelism)
    assert 1 < len(runs) < count
    # The key of the unit after each one in its run: the runs the runner cuts are these.
    following = {
        id(run[i][0]): run[i + 1][0].uri.split("/", 3)[3] for run in runs for i in range(len(run) - 1)
    }
    arguments = [(unit, following.get(id(unit))) for unit in units]
    jobs: list[int] = []
    token = SPARK_JOBS.set(lambda _application, ids: jobs.extend(ids))
    try:
        results = SparkRunner(spark, lambda *_: None).map(read_in_executor, arguments, "reading", (0.0, 1.0))
    finally:
        SPARK_JOBS.reset(token)
    assert [data for data, _ in results] == bodies
    assert all(asked for _, asked in results)
    tracker = spark.sparkContext.statusTracker()
    stages = [stage for job in jobs for stage in tracker.getJobInfo(job).stageIds]
    assert sum(tracker.getStageInfo(stage).numTasks for stage in stages) == len(runs)
