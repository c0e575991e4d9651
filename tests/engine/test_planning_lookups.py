"""Planning a batch prediction over many large S3 objects: the lookups the plan makes of each object (is
it plain text? where does the record after each cut start?) are sent a few at a time, not one after
another, and the plan is the one a lookup at a time gives."""

from __future__ import annotations

import gzip
import os
from typing import Any

import pytest

from emrml.engine import units
from emrml.engine.units import Parallelism, _cut_points, _Runner, _units
from emrml.errors import InvalidInputException
from emrml.storage.locations import list_files
from in_flight import InFlight
from s3_server import S3

#: Cut objects of at least 16 KiB into ranges of about 8 KiB.
PARALLELISM = Parallelism(workers=2, range_bytes=8 << 10, min_bytes=16 << 10)


def _put_objects(s3: S3, count: int) -> None:
    """``count`` CSV objects of about 40 KB whose quoted fields hold line breaks and commas."""
    for i in range(count):
        rows = [
            f'{n},"text {n}\nover, two lines"\n' if (n + i) % 7 == 0 else f"{n},plain {n}\n"
            for n in range(1500)
        ]
        s3.put(f"large/part-{i:02d}.csv", "x,y\n" + "".join(rows))
    s3.put("large/packed.csv.gz", gzip.compress(os.urandom(20 << 10)))  # compressed: never cut


def _plan(files: list[Any]) -> tuple[dict[int, list[int]], list[units.Unit]]:
    cuts = _cut_points(files, PARALLELISM)
    with _Runner(1, sum(file.size for file in files), lambda *_: None) as runner:
        return cuts, _units(files, cuts, runner, None)


def test_the_plans_lookups_overlap_and_give_the_plan_of_one_at_a_time(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put_objects(s3, 6)
    files = list_files(s3.uri("large/"))
    with monkeypatch.context() as serial:
        serial.setattr(units, "PLANNING_LOOKUPS", 1)
        expected = _plan(files)
    assert len(expected[0]) == 6 and len(expected[1]) > 6 * PARALLELISM.workers  # every plain object cut
    lookups = {name: InFlight(getattr(units, name)) for name in ("_is_plain", "record_start")}
    for name, wrapper in lookups.items():
        monkeypatch.setattr(units, name, wrapper)
    assert _plan(files) == expected
    for wrapper in lookups.values():
        assert wrapper.calls >= 6
        assert 2 <= wrapper.most <= units.PLANNING_LOOKUPS


def test_a_failed_lookup_fails_the_plan_naming_the_object(s3: S3) -> None:
    _put_objects(s3, 3)
    files = list_files(s3.uri("large/"))
    s3.client.delete_object(Bucket=s3.bucket, Key="large/part-01.csv")
    with pytest.raises(InvalidInputException) as caught:
        _cut_points(files, PARALLELISM)
    assert caught.value.message == f"DataSpec.DataLocationS3 '{s3.uri('large/part-01.csv')}' does not exist"
