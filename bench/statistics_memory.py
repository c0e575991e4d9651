"""Statistics memory on wide rows: the peak RSS of the datasource job on a CSV of 1,000 columns.

Run by hand from the repository root (not part of the tests)::

    uv run python bench/statistics_memory.py                  # 20,000 rows (142 MB)
    uv run python bench/statistics_memory.py --rows 40000     # twice the data: does memory grow?

Input: ``bench/data/wide-rows-<rows>.csv`` and its schema (written on the first run, seed 4): 600 NUMERIC
columns, 300 CATEGORICAL (5,000 values each), 50 TEXT (5 of 2,000 words), 49 BINARY and the BINARY target
``y``. ``CreateDataSourceFromS3`` with statistics, then ``wait``; the peak RSS (``VmHWM``) of the job's
processes, polled from ``/proc`` (``common.ProcessMonitor``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import BENCH_DIR, ProcessMonitor, emrml_app, load_average, single_threaded

#: Columns of each type, in file order (the target ``y`` comes last).
COLUMNS = {"NUMERIC": 600, "CATEGORICAL": 300, "TEXT": 50, "BINARY": 49}
WORDS = np.array([f"w{i}" for i in range(2_000)])


def write_input(path: Path, rows: int) -> str:
    """The wide CSV, written 1,000 rows at a time; returns its schema (JSON)."""
    rng = np.random.default_rng(4)
    names = [f"{kind[0].lower()}{i}" for kind, count in COLUMNS.items() for i in range(count)] + ["y"]
    types = [kind for kind, count in COLUMNS.items() for _ in range(count)] + ["BINARY"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".tmp"), "w") as out:
        out.write(",".join(names) + "\n")
        for start in range(0, rows, 1_000):
            size = min(1_000, rows - start)
            columns = [np.char.mod("%.3f", rng.normal(size=size)) for _ in range(COLUMNS["NUMERIC"])]
            columns += [
                np.char.add("v", rng.integers(0, 5_000, size=size).astype(str))
                for _ in range(COLUMNS["CATEGORICAL"])
            ]
            columns += [
                np.array([" ".join(words) for words in WORDS[rng.integers(0, len(WORDS), size=(size, 5))]])
                for _ in range(COLUMNS["TEXT"])
            ]
            columns += [rng.integers(0, 2, size=size).astype(str) for _ in range(COLUMNS["BINARY"] + 1)]
            out.write("\n".join(",".join(row) for row in np.stack(columns, axis=1)) + "\n")
    path.with_suffix(".tmp").rename(path)
    attributes = [{"attributeName": n, "attributeType": t} for n, t in zip(names, types, strict=True)]
    schema = {"targetAttributeName": "y", "dataFileContainsHeader": True, "attributes": attributes}
    return json.dumps(schema)


def main(argv: list[str] | None = None) -> None:
    single_threaded()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    path = BENCH_DIR / "data" / f"wide-rows-{args.rows}.csv"
    schema_path = path.with_suffix(".schema")
    if not path.exists() or not schema_path.exists():
        schema_path.write_text(write_input(path, args.rows))
    print(f"input {path} ({path.stat().st_size / 1e6:.0f} MB); load {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="emrml-stats-memory-") as home, emrml_app(Path(home)) as app:
        spec = {"DataLocationS3": str(path), "DataSchema": schema_path.read_text()}
        request = {"DataSourceId": "ds", "DataSpec": spec, "ComputeStatistics": True}
        started = time.perf_counter()
        with ProcessMonitor() as rss:
            app.call("CreateDataSourceFromS3", request)
            description = app.wait("DataSource", "ds")
        seconds = time.perf_counter() - started
    print(f"{description['Status']}: {seconds:.1f} s, largest process peak RSS {rss.max_rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
