"""Reading a datasource made of many small S3 objects: one GET an object, no HeadObject, the next few read
ahead at once (no more than ``READ_AHEAD_OBJECTS``), a large next object requested while one is read, the
records in the objects' order; inferring a schema opens only the first few."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from emrml.core.schema import parse_schema
from emrml.engine.local import read_selected
from emrml.engine.location_schema import INFER_MAX_FILES
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML
from emrml.storage import locations
from emrml.storage.locations import (
    READ_AHEAD_OBJECT_BYTES,
    READ_AHEAD_OBJECTS,
    list_files,
    open_binary,
    open_files,
)
from s3_server import S3

SCHEMA = parse_schema(
    json.dumps(
        {
            "dataFileContainsHeader": True,
            "attributes": [
                {"attributeName": "id", "attributeType": "NUMERIC"},
                {"attributeName": "label", "attributeType": "CATEGORICAL"},
            ],
        }
    )
)


class RequestLog:
    """The S3 requests emrml's client makes (by operation name), and the most GETs ever in flight at once."""

    def __init__(self, client: Any) -> None:
        self.calls: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        client.meta.events.register("before-call.s3", self.before)
        client.meta.events.register("after-call.s3", self.after)

    def before(self, model: Any, **_: Any) -> None:
        with self.lock:
            self.calls.append(model.name)
            if model.name == "GetObject":
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def after(self, model: Any, **_: Any) -> None:
        if model.name == "GetObject":
            with self.lock:
                self.in_flight -= 1

    def count(self, operation: str) -> int:
        return self.calls.count(operation)


def _put_many(s3: S3, count: int) -> list[str]:
    """``count`` objects of two records each; the records' ids in key order."""
    keys = [f"many/part-{i:04d}.csv" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put(keys[i], f"id,label\n{2 * i},a\n{2 * i + 1},b\n"), range(count)))
    return [str(n) for n in range(2 * count)]


def test_many_small_objects_are_read_in_order_with_one_get_each(s3: S3) -> None:
    expected = _put_many(s3, 240)
    files = list_files(s3.uri("many/"))
    log = RequestLog(locations._S3.store.client)
    ids = [
        value
        for selected in read_selected(files, SCHEMA, None, settings=s3.settings, check_headers=True)
        for value in selected.batch.column(0).to_pylist()
    ]
    assert ids == expected
    assert log.count("HeadObject") == 0
    assert log.count("GetObject") == len(files)
    assert 1 <= log.most_in_flight <= READ_AHEAD_OBJECTS
    # The check that no object changed meanwhile: a listing, not a request an object.
    assert log.count("ListObjectsV2") == 1


def test_an_object_replaced_after_listing_fails_its_read_naming_it(s3: S3) -> None:
    _put_many(s3, 12)
    files = list_files(s3.uri("many/"))
    s3.put("many/part-0005.csv", "id,label\n99,z\n")
    opened = open_files(files)
    for _ in range(5):
        next(opened).close()
    with pytest.raises(InvalidInputException) as caught:
        next(opened)
    assert s3.uri("many/part-0005.csv") in caught.value.message
    assert "changed while it was being read" in caught.value.message
    opened.close()


def test_reading_ahead_is_bounded(s3: S3) -> None:
    _put_many(s3, 30)
    files = list_files(s3.uri("many/"))
    log = RequestLog(locations._S3.store.client)
    opened = open_files(files)
    with next(opened) as first:
        assert first.read().startswith(b"id,label\n0,a\n")
    opened.close()  # what was read ahead is dropped, what was yet to be read is not
    assert 1 <= log.count("GetObject") <= READ_AHEAD_OBJECTS


def test_the_next_large_object_is_requested_while_one_is_read(s3: S3) -> None:
    """A large object is not read ahead whole, but its GET is sent: its first bytes are on their way while
    the object before it is worked on, which a reader of one object after the other waited for."""
    bodies = [f"id,label\n{i},a\n".encode() + b"7,b\n" * (READ_AHEAD_OBJECT_BYTES // 4) for i in range(3)]
    keys = [f"large/part-{i}.csv" for i in range(3)]
    for key, body in zip(keys, bodies, strict=True):
        s3.put(key, body)
    files = list_files(s3.uri("large/"))
    requested = {key: threading.Event() for key in keys}
    gets: list[str] = []

    def before(params: dict[str, Any], **_: Any) -> None:
        gets.append(params["Key"])
        requested[params["Key"]].set()

    locations._S3.store.client.meta.events.register("before-parameter-build.s3.GetObject", before)
    opened = open_files(files)
    for index, body in enumerate(bodies):
        with next(opened) as stream:
            assert stream.read(10) == body[:10]
            if index + 1 < len(keys):
                # Requested now, before this object is read to its end (nothing else would ask for it).
                assert requested[keys[index + 1]].wait(10)
            assert stream.read() == body[10:]
    assert next(opened, None) is None
    assert sorted(gets) == keys  # one GET an object


def test_schema_inference_opens_only_the_first_objects_and_says_so(s3: S3) -> None:
    """A target of one value in the sample is looked for in the next objects: not in all of a prefix."""
    count = INFER_MAX_FILES + 36
    keys = [f"one-class/part-{i:04d}.csv" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put(keys[i], f"id,label\n{i},a\n"), range(count)))
    log = RequestLog(locations._S3.store.client)
    app = EmrML(s3.settings)
    try:
        answer = app.call(
            "InferDataSchema", {"DataLocationS3": s3.uri("one-class/"), "TargetAttributeName": "label"}
        )
    finally:
        app.close()
    # The first object once for the sample, then the first INFER_MAX_FILES for the target's values.
    assert log.count("GetObject") == 1 + INFER_MAX_FILES
    assert log.count("HeadObject") == 0
    assert answer["Sample"] == {
        "NumberOfFiles": count,
        "NumberOfFilesRead": INFER_MAX_FILES,
        "NumberOfRecordsRead": INFER_MAX_FILES,
        "Description": f"inferred from {INFER_MAX_FILES} records of the first {INFER_MAX_FILES} of the "
        f"{count} files under {s3.uri('one-class/')}",
    }
    assert json.loads(answer["DataSchema"])["targetAttributeName"] == "label"


def test_a_read_from_a_position_is_one_ranged_get(s3: S3) -> None:
    """Batch prediction reads byte ranges of large objects: the opening GET asks for the range itself."""
    data = os.urandom(3 << 20)
    location = s3.put("blob.bin", data)
    log = RequestLog(locations._S3.store.client)
    with open_binary(location, start=2_000_000) as stream:
        assert stream.tell() == 2_000_000
        assert stream.read() == data[2_000_000:]
    with open_binary(location, start=len(data)) as stream:
        assert stream.read() == b""
    # One GET for the range (not the whole object, then another from the position); past the end, S3
    # answers "invalid range" and a HEAD tells the size.
    assert log.calls == ["GetObject", "GetObject", "HeadObject"]
