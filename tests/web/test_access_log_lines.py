"""The access log's lines and the request ids, byte for byte: the time's milliseconds (looked up, not
formatted), a new second within a batch, the counter's 12 hex digits across its wrap."""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from typing import Any

import orjson
import pytest

from emrml.web.access_log import AccessLog, _RequestIds

#: 2026-12-07T10:00:59.999Z in nanoseconds since the epoch.
LAST_MILLISECOND = 1_796_637_659_999_000_000


def test_lines_spell_every_field_as_before(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog(batch=0)
    entries = [
        (LAST_MILLISECOND, "id-1", "POST", "/", "AmazonML_20141212.Predict", 200, 1_234_567, "AKIDEXAMPLE",
         ("127.0.0.1", 40000)),
        (LAST_MILLISECOND + 8_000_000, "id-2", "GET", "/console/é", None, 404, 999, None, None),
        (LAST_MILLISECOND + 1_000_000_000, "id-3", "GET", "/health", None, 503, 0, None, ("::1", 1)),
    ]  # fmt: skip
    lines = [json.loads(line) for line in log._lines(entries)]
    assert [line["time"] for line in lines] == [
        "2026-12-07T10:00:59.999Z",
        "2026-12-07T10:01:00.007Z",
        "2026-12-07T10:01:00.999Z",
    ]
    assert lines[0] == {
        "time": "2026-12-07T10:00:59.999Z",
        "request_id": "id-1",
        "method": "POST",
        "path": "/",
        "target": "AmazonML_20141212.Predict",
        "status": 200,
        "duration_ms": 1.234,
        "access_key_id": "AKIDEXAMPLE",
        "client": "127.0.0.1:40000",
    }
    assert (lines[1]["path"], lines[1]["client"], lines[1]["duration_ms"]) == ("/console/é", None, 0.0)
    assert lines[2]["client"] == "::1:1"
    # The keys in their order, as the lines have always been written.
    assert log._lines(entries[:1])[0].startswith('{"time":"2026-12-07T10:00:59.999Z","request_id":"id-1",')


def test_every_millisecond_has_three_digits() -> None:
    log = AccessLog(batch=0)
    entries = [
        (LAST_MILLISECOND + 1_000_000 * (i + 1), "id", "GET", "/", None, 200, 0, None, None)
        for i in range(1000)
    ]
    times = [json.loads(line)["time"] for line in log._lines(entries)]
    assert times == [f"2026-12-07T10:01:00.{i:03d}Z" for i in range(1000)]


def test_request_ids_count_in_twelve_hex_digits_across_the_wrap() -> None:
    ids = _RequestIds()
    ids._prefix = "01234567-89ab-4cde-8f01-"
    ids._counter = itertools.count(0xFFFFFFFFFFFE)
    assert [ids() for _ in range(3)] == [
        "01234567-89ab-4cde-8f01-fffffffffffe",
        "01234567-89ab-4cde-8f01-ffffffffffff",
        "01234567-89ab-4cde-8f01-000000000000",
    ]
    ids._counter = itertools.count(0xA)
    assert ids() == "01234567-89ab-4cde-8f01-00000000000a"


def test_flush_writes_the_lines_as_one_record(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog(batch=64)
    scope = {"method": "POST", "path": "/", "client": ("10.0.0.1", 5)}
    with caplog.at_level(logging.INFO, logger="emrml.access"):
        for i in range(3):
            log.note(0, f"id-{i}", scope, "T", 200, None)
        log.flush()
    (record,) = [r for r in caplog.records if r.name == "emrml.access"]
    assert [json.loads(line)["request_id"] for line in record.getMessage().split("\n")] == [
        "id-0",
        "id-1",
        "id-2",
    ]


def _as_orjson(entry: tuple[Any, ...]) -> str:
    """A line as orjson encodes the dict of its fields, the way the lines were first written."""
    time_ns, request_id, method, path, target, status, duration_ns, key_id, client = entry
    second, milliseconds = divmod(time_ns // 1_000_000, 1000)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) + f".{milliseconds:03d}Z",
        "request_id": request_id,
        "method": method,
        "path": path,
        "target": target,
        "status": status,
        "duration_ms": duration_ns // 1000 / 1000,
        "access_key_id": key_id,
        "client": f"{client[0]}:{client[1]}" if client else None,
    }
    return orjson.dumps(record).decode()


def test_lines_are_orjsons_encoding_of_their_fields() -> None:
    # Lines put together from remembered pieces, held to the encoding of the whole dict: paths and targets
    # that need escaping, missing fields, IPv6 clients, durations of every size, more distinct pieces than
    # the tables keep (so they are forgotten and made again), a second's boundary.
    chooser = random.Random(7)
    paths = ["/", "/console/é", '/a"b\\c', "/x\u0001y", "/\u2028", "/health"]
    targets = [None, "AmazonML_20141212.Predict", 'T"\\\n', "AmazonML_20141212.GetMLModel"]
    keys = [None, "AKIDEXAMPLE", 'K"1']
    clients = [None, ("127.0.0.1", 40000), ("::1", 1), ("10.0.0.1", 65535)]
    durations = [0, 999, 1000, 1_234_567, 10**9 + 1, 3_599_999_999_999, 123_456_789_012_345]
    ids = _RequestIds()
    log = AccessLog(batch=0)
    entries = [
        (
            LAST_MILLISECOND + chooser.randrange(0, 3_000_000_000),
            ids(),
            chooser.choice(["POST", "GET", "DELETE"]),
            chooser.choice(paths) + ("" if chooser.random() < 0.7 else str(index)),
            chooser.choice(targets),
            chooser.choice([200, 400, 403, 404, 500, 503]),
            chooser.choice(durations) + chooser.randrange(1000),
            chooser.choice(keys),
            chooser.choice(clients) if chooser.random() < 0.7 else ("127.0.0.1", 30000 + index),
        )
        for index in range(3000)
    ]
    entries.sort()
    for start in range(0, len(entries), 64):  # in batches, as flushes take them
        batch = entries[start : start + 64]
        assert log._lines(batch) == [_as_orjson(entry) for entry in batch]
    assert 0 < len(log._tails) <= 512
