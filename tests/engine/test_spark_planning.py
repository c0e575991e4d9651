"""The Spark engine cuts a large plain file for the cluster's cores, not for the local pool's two workers:
every core gets a range. The session's parallelism is read from ``sparkContext.defaultParallelism``, here
a stand-in's, so no JVM is needed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from emrml.core.schema import parse_schema
from emrml.engine.spark.datasource import UnitJob, plan_units, summarize_unit
from emrml.engine.units import SPARK_MIN_RANGE, Parallelism, _Runner, planned
from emrml.storage.locations import list_files


def _session(cores: int) -> Any:
    return SimpleNamespace(sparkContext=SimpleNamespace(defaultParallelism=cores))


class _LocalRunner(_Runner):
    """The local engine's runner in this process, with a session as a ``SparkRunner`` has."""

    def __init__(self, session: Any, total_bytes: int) -> None:
        super().__init__(1, total_bytes, lambda *_: None)
        self.session = session


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain CSV file just over the size at which a file is cut (``Parallelism.min_bytes``)."""
    path = tmp_path_factory.mktemp("large") / "large.csv"
    row = b"1,some text of a record to make it longer\n"
    count = Parallelism().min_bytes // len(row) + 1000
    path.write_bytes(b"x,y\n" + row * count)
    return path


def _schema() -> str:
    return parse_schema(
        '{"version": "1.0", "dataFormat": "CSV", "dataFileContainsHeader": true, "attributes": ['
        '{"attributeName": "x", "attributeType": "NUMERIC"},'
        '{"attributeName": "y", "attributeType": "TEXT"}]}'
    ).to_json()


@pytest.mark.parametrize("cores", [1, 3, 6])
def test_a_large_file_is_cut_for_every_core(large: Path, cores: int) -> None:
    files = list_files(str(large))
    job = UnitJob(_schema(), None, None, 1 << 20, 1 << 20)
    with _LocalRunner(_session(cores), large.stat().st_size) as runner:
        units, _ = plan_units(files, job, runner)
    assert len(units) >= cores and len(units) % cores == 0
    assert [u.start for u in units[1:]] == [u.stop for u in units[:-1]]
    assert units[-1].stop in (None, large.stat().st_size)  # None: the whole file, one unit


def test_a_given_cut_is_kept(large: Path) -> None:
    files = list_files(str(large))
    job = UnitJob(_schema(), None, None, 1 << 20, 1 << 20)
    with _LocalRunner(_session(6), large.stat().st_size) as runner:
        units, _ = plan_units(files, job, runner, Parallelism(workers=4))
    assert len(units) == 4


def test_batch_prediction_plans_for_the_session() -> None:
    assert planned(None, _session(6)).workers == 6
    assert planned(None, None) == Parallelism()
    given = Parallelism(workers=3, range_bytes=10, min_bytes=1)
    assert planned(given, _session(6)) is given


def test_a_large_cluster_cuts_no_range_below_the_floor(large: Path) -> None:
    """200 cores do not cut a 16 MB file into 200 ranges of 80 KB, each a task and a record-start lookup:
    the ranges stay at least ``SPARK_MIN_RANGE``."""
    files = list_files(str(large))
    job = UnitJob(_schema(), None, None, 1 << 20, 1 << 20)
    with _LocalRunner(_session(200), large.stat().st_size) as runner:
        units, _ = plan_units(files, job, runner)
    assert len(units) == large.stat().st_size // SPARK_MIN_RANGE
    assert min(u.stop - u.start for u in units[:-1]) >= SPARK_MIN_RANGE * 0.99


def test_a_unit_stops_reading_past_the_invalid_records_that_reject_its_file(tmp_path: Path) -> None:
    """More invalid records than ``max_invalid_records`` in a unit reject its file whatever follows: a task
    read them to the end of its range (a few compressed bytes may hold billions)."""
    path = tmp_path / "ragged.csv"
    lines = 50_000
    path.write_bytes(b"x,y\n" + b"z\n" * lines)
    job = UnitJob(_schema(), None, None, 16 << 10, 1 << 20, max_invalid_records=10_000)
    with _LocalRunner(_session(1), path.stat().st_size) as runner:
        [unit], _ = plan_units(list_files(str(path)), job, runner)
    summary = summarize_unit(job, unit)
    assert 10_000 < summary.invalid == summary.selected == summary.records < lines
    assert summary.examples[0] == (2, 4, "expected 2 fields, found 1")
    whole = summarize_unit(replace(job, max_invalid_records=None), unit)
    assert whole.invalid == whole.records == lines
