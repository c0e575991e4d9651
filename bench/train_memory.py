"""Training memory on wide text: the peak RSS of the training worker on a CSV whose text column holds
millions of distinct words.

Run by hand from the repository root (not part of the tests)::

    uv run python bench/train_memory.py                 # 400,000 rows; prints the figures
    uv run python bench/train_memory.py --rows 100000

Input: ``bench/data/wide-text-<rows>.csv`` (written on the first run, seed 11): a row id, the TEXT column
``notes`` of 24 words (12 drawn from 5,000 common words, 12 random 8-letter words, nearly all distinct:
about 12 distinct words per row over the file) and a BINARY target ``y`` that depends on the common
words. A datasource (with its statistics, which training needs), then ``CreateMLModel`` (suggested
recipe, ``sgd.maxPasses=2``) and ``wait``, the worker's ``VmHWM`` polled from ``/proc``
(``common.ProcessMonitor``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import BENCH_DIR, ProcessMonitor, emrml_app, load_average, single_threaded, train

COMMON_WORDS = 5_000
WORDS_PER_ROW = 12
LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def write_input(path: Path, rows: int) -> None:
    """The wide-text CSV, written in blocks (the generator's memory does not grow with ``rows``)."""
    rng = np.random.default_rng(11)
    common = [f"w{i}" for i in range(COMMON_WORDS)]
    signal = rng.normal(size=COMMON_WORDS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".tmp"), "w") as out:
        out.write("id,notes,y\n")
        for start in range(0, rows, 10_000):
            size = min(10_000, rows - start)
            picks = rng.zipf(1.3, size=(size, WORDS_PER_ROW)) % COMMON_WORDS
            rare = LETTERS[rng.integers(0, 26, size=(size * WORDS_PER_ROW, 8))].view("S8").ravel()
            score = signal[picks].sum(axis=1) + rng.normal(size=size)
            for row in range(size):
                words = [common[p] for p in picks[row]] + [
                    w.decode() for w in rare[row * WORDS_PER_ROW : (row + 1) * WORDS_PER_ROW]
                ]
                out.write(f"{start + row},{' '.join(words)},{int(score[row] > 0)}\n")
    path.with_suffix(".tmp").rename(path)


SCHEMA = {
    "version": "1.0",
    "targetAttributeName": "y",
    "rowId": "id",
    "dataFormat": "CSV",
    "dataFileContainsHeader": True,
    "attributes": [
        {"attributeName": "id", "attributeType": "CATEGORICAL"},
        {"attributeName": "notes", "attributeType": "TEXT"},
        {"attributeName": "y", "attributeType": "BINARY"},
    ],
}


def main(argv: list[str] | None = None) -> None:
    single_threaded()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    args = parser.parse_args(argv)
    path = BENCH_DIR / "data" / f"wide-text-{args.rows}.csv"
    if not path.exists():
        write_input(path, args.rows)
    print(f"input {path} ({path.stat().st_size / 1e6:.0f} MB); load {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="emrml-train-memory-") as home, emrml_app(Path(home)) as app:
        spec = {"DataLocationS3": str(path), "DataSchema": json.dumps(SCHEMA)}
        app.call(
            "CreateDataSourceFromS3", {"DataSourceId": "ds", "DataSpec": spec, "ComputeStatistics": True}
        )
        app.wait("DataSource", "ds")
        started = time.perf_counter()
        with ProcessMonitor() as rss:
            trained = train(app, "ml", "BINARY", "ds", parameters={"sgd.maxPasses": "2"})
        seconds = time.perf_counter() - started
        model = app.call("GetMLModel", {"MLModelId": "ml", "Verbose": True})
        features = json.loads(model["Recipe"])["outputs"]
    print(
        f"training: {seconds:.1f} s, worker peak RSS {rss.max_rss_mb:.0f} MB, "
        f"model {int(trained.description.get('SizeInBytes', 0)) / 1e6:.1f} MB, outputs {features}"
    )


if __name__ == "__main__":
    main()
