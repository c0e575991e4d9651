"""S3 round trips of a batch prediction's planning and publishing, with latency injected.

Run by hand from the repository root (needs the dev group for moto)::

    uv run python bench/s3_latency.py                 # 40 ms a request, 3 runs each, medians
    uv run python bench/s3_latency.py --latency-ms 20 --repeat 5

S3 is moto's ``ThreadedMotoServer`` on loopback; every request of emrml's client waits ``--latency-ms``
first (a ``before-send`` hook), as a store across a network would. Two measures, each against the way it
was done before (one request after another), alternating:

* **planning**: ``engine.units._cut_points`` (40 codec lookups) and ``_units`` (160 quote counts, run by
  the job's runner, here one in-process worker; then 120 record-start lookups) over 40 plain objects of
  256 KB cut into ranges of 64 KB, against ``PLANNING_LOOKUPS = 1``;
* **publishing**: ``storage.publishing.publish_files`` of 100 results of 20 KB, against one
  ``publish_file`` after another (the batch prediction's former ``_publish``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emrml.config import Settings
from emrml.engine import units
from emrml.engine.units import Parallelism, _cut_points, _Runner, _units
from emrml.storage import locations
from emrml.storage.locations import configure, list_files, publish_file
from emrml.storage.publishing import publish_files

BUCKET = "emrml-bench-latency"
PARALLELISM = Parallelism(workers=2, range_bytes=64 << 10, min_bytes=128 << 10)


def plan(files: list[Any]) -> tuple[float, float]:
    """Seconds of ``_cut_points`` (codec lookups), and of ``_units`` (quote counts, then record starts)."""
    started = time.perf_counter()
    cuts = _cut_points(files, PARALLELISM)
    cut = time.perf_counter()
    with _Runner(1, sum(file.size for file in files), lambda *_: None) as runner:
        _units(files, cuts, runner, None)
    return cut - started, time.perf_counter() - cut


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=40.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line a request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    row = b"12345,some text,67890\n"
    body = b"a,b,c\n" + row * ((256 << 10) // len(row))
    for i in range(40):
        client.put_object(Bucket=BUCKET, Key=f"large/part-{i:02d}.csv", Body=body)

    with tempfile.TemporaryDirectory() as scratch:
        configure(Settings.load(environ={}, home=Path(scratch) / "home", s3_endpoint_url=endpoint))
        delay = args.latency_ms / 1000
        locations._S3.store.client.meta.events.register("before-send.s3", lambda **_: time.sleep(delay))
        files = list_files(f"s3://{BUCKET}/large/")

        def planning(serial: bool) -> tuple[float, float]:
            units.PLANNING_LOOKUPS = 1 if serial else 8
            return plan(files)

        def publishing(serial: bool, run: int) -> float:
            folder = Path(scratch) / f"results-{run}-{serial}"
            folder.mkdir()
            moves = []
            for i in range(100):
                path = folder / f"bp-x-part-{i:03d}.csv.gz"
                path.write_bytes(os.urandom(20 << 10))
                moves.append((str(path), f"s3://{BUCKET}/out-{run}-{serial}/result/{path.name}"))
            started = time.perf_counter()
            if serial:
                for path, location in moves:
                    publish_file(path, location)
            else:
                publish_files(moves)
            return time.perf_counter() - started

        times: dict[str, list[float]] = {
            "_cut_points, one at a time": [],
            "_cut_points, 8 at a time": [],
            "_units, one at a time": [],
            "_units, 8 at a time": [],
            "publish, one at a time": [],
            "publish at once": [],
        }
        for run in range(args.repeat + 1):
            order = [True, False] if run % 2 else [False, True]
            for serial in order:
                cut_seconds, units_seconds = planning(serial)
                publish_seconds = publishing(serial, run)
                if run:  # the first run warms up
                    how = "one at a time" if serial else "8 at a time"
                    times[f"_cut_points, {how}"].append(cut_seconds)
                    times[f"_units, {how}"].append(units_seconds)
                    times["publish, one at a time" if serial else "publish at once"].append(publish_seconds)
        units.PLANNING_LOOKUPS = 8
    server.stop()
    print(f"latency {args.latency_ms:g} ms a request; medians of {args.repeat} runs (after a warm-up)")
    for name, values in times.items():
        print(f"  {name}: {statistics.median(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    sys.exit(main())
