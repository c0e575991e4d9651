"""Datasource benchmark: creating a datasource with statistics versus a bare pyarrow pass over the same CSV.

Run by hand from the repository root (not part of the tests)::

    uv run --group bench python bench/datasource.py            # all measurements; updates bench/README.md
    uv run --group bench python bench/datasource.py --no-rss   # skip the peak-memory runs (100 MB, 1 GB)
    uv run --group bench python bench/datasource.py --repeat 5 --no-readme

Inputs are generated once with ``emrml.samples.write_bank_sample`` into ``bench/data/`` (git-ignored) and
reused. Measurements, printed as markdown (and written between the ``datasource`` markers of the README):

(a) a bare ``pyarrow.csv.open_csv`` streaming pass over the 1M-row file, every column read as a string;
(b) ``CreateDataSourceFromS3`` with ``ComputeStatistics`` plus ``wait`` in a fresh emrml home, same file:
    the request, the job's worker (forked from the job runner's fork server), parsing, statistics, and
    the metastore writes. The fork server is started once before the runs, as a running server has it,
    and its start is reported on its own line, not in (b);
    (a) and (b) alternate, one pair per repetition; the result is the median of the per-pair ratios
    time (a) / time (b), with the 1-minute load average at the start of each pair; each side's CPU time
    too ((a) this process's user + system time, (b) the job's ``ComputeTime``, its worker's): on a machine
    shared with other work the wall times swing with the load, the CPU times much less;
(c) peak RSS of the datasource job's worker process (the largest ``VmHWM`` of the processes the run
    starts: the fork server and its worker) for the ~100 MB and ~1 GB inputs, each measured in a fresh
    interpreter so nothing else inflates it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv

from common import ProcessMonitor, load_average, machine_report, write_readme_section
from emrml.config import Settings
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service import forkserver
from emrml.service.app import EmrML

DATA_DIR = Path(__file__).resolve().parent / "data"
#: Generated inputs: file name → rows. The bank sample is about 167 bytes per row.
INPUTS = {
    "bank-1m.csv": 1_000_000,
    "bank-100mb.csv": 600_000,
    "bank-1gb.csv": 6_000_000,
}
THROUGHPUT_INPUT = "bank-1m.csv"
RSS_INPUTS = ("bank-100mb.csv", "bank-1gb.csv")
MB = 1_000_000


@dataclass(frozen=True)
class Timing:
    seconds: float
    rows: int
    size: int
    cpu: float  # seconds of CPU time (user + system)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.size / MB / self.seconds


def ensure_input(name: str) -> Path:
    """The generated input ``name``, written only when it is not there yet."""
    path = DATA_DIR / name
    if not path.exists():
        started = time.perf_counter()
        write_bank_sample(path, INPUTS[name])
        print(
            f"generated {path} ({INPUTS[name]:,} rows) in {time.perf_counter() - started:.1f} s", flush=True
        )
    return path


def bare_pass(path: Path) -> Timing:
    """(a) Stream the file through pyarrow's CSV reader with all-string columns; nothing else."""
    names = bank_sample_schema().names
    cpu = _cpu_seconds()
    started = time.perf_counter()
    reader = pcsv.open_csv(
        path,
        read_options=pcsv.ReadOptions(block_size=Settings().batch_bytes),
        convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )
    rows = sum(batch.num_rows for batch in reader)
    return Timing(time.perf_counter() - started, rows, path.stat().st_size, _cpu_seconds() - cpu)


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads: pyarrow reads on several)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def create_datasource(path: Path) -> Timing:
    """(b) Create a datasource with statistics in a fresh home and wait until it is COMPLETED."""
    with tempfile.TemporaryDirectory(prefix="emrml-bench-") as home:
        app = EmrML(Settings.load(home=home))
        try:
            started = time.perf_counter()
            _create_and_wait(app, path)
            seconds = time.perf_counter() - started
            rows = app.call("GetDataSourceStatistics", {"DataSourceId": "ds-bench"})["TotalRecordCount"]
            # The worker's CPU time (milliseconds), as the service measures it for every job.
            cpu = app.call("GetDataSource", {"DataSourceId": "ds-bench"})["ComputeTime"] / 1000
        finally:
            app.close()
    return Timing(seconds, rows, path.stat().st_size, cpu)


def _create_and_wait(app: EmrML, path: Path) -> None:
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": "ds-bench",
            "DataSourceName": path.name,
            "DataSpec": {"DataLocationS3": str(path), "DataSchema": bank_sample_schema().to_json()},
            "ComputeStatistics": True,
        },
    )
    result = app.wait("DataSource", "ds-bench")
    if result["Status"] != "COMPLETED":
        raise SystemExit(f"datasource over {path} ended {result['Status']}: {result.get('Message')}")


def peak_rss(path: Path) -> tuple[float, float]:
    """(c) Peak RSS in MB of the job's worker process, and the job's wall time, from a fresh interpreter."""
    completed = subprocess.run(
        [sys.executable, __file__, "--measure-rss", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return report["worker_peak_rss_mb"], report["seconds"]


def _measure_rss_here(path: Path) -> None:
    """Child side of ``peak_rss``: create the datasource, then print the largest child's peak RSS as JSON."""
    with tempfile.TemporaryDirectory(prefix="emrml-bench-") as home:
        app = EmrML(Settings.load(home=home))
        started = time.perf_counter()
        # The worker is the fork server's child, not this process's: polled from /proc, not getrusage.
        with ProcessMonitor() as monitor:
            _create_and_wait(app, path)
        seconds = time.perf_counter() - started
        app.close()
    print(json.dumps({"worker_peak_rss_mb": monitor.max_rss_mb, "seconds": seconds}))


def warm_fork_server() -> float:
    """Start the job runner's fork server (it preloads the job code) with one fork; returns seconds.

    ``forkserver.context()`` sets what the fork server preloads, as the job runner's does (an ``EmrML``
    makes its job runner with the first job, so its existence no longer says the preload is set).
    """
    with tempfile.TemporaryDirectory(prefix="emrml-bench-") as home:
        app = EmrML(Settings.load(home=home))
        try:
            started = time.perf_counter()
            process = forkserver.context().Process(target=os.getpid)
            process.start()
            process.join()
            return time.perf_counter() - started
        finally:
            app.close()


@dataclass(frozen=True)
class Pair:
    bare: Timing
    create: Timing
    load: float

    @property
    def ratio(self) -> float:
        return self.bare.seconds / self.create.seconds

    @property
    def cpu_ratio(self) -> float:
        return self.bare.cpu / self.create.cpu


def _throughput_table(pairs: list[Pair], warm: float) -> str:
    ratios = [pair.ratio for pair in pairs]
    ratio = statistics.median(ratios)
    first = pairs[0].bare
    lines = [
        f"Input: {THROUGHPUT_INPUT}, {first.rows:,} rows, {first.size / MB:.0f} MB; {len(pairs)} pairs, "
        "(a) then (b) in each. Fork server start (once, before the pairs, not in (b)): "
        f"{warm:.2f} s.",
        "",
        "| pair | 1-min load at start | (a) bare pyarrow s | (b) datasource + statistics s | (a)/(b) "
        "| (a) CPU s | (b) CPU s | CPU (a)/(b) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, pair in enumerate(pairs, 1):
        lines.append(
            f"| {number} | {pair.load:.2f} | {pair.bare.seconds:.2f} | {pair.create.seconds:.2f} "
            f"| {pair.ratio:.2f} | {pair.bare.cpu:.2f} | {pair.create.cpu:.2f} | {pair.cpu_ratio:.2f} |"
        )
    bare = statistics.median(p.bare.seconds for p in pairs)
    create = statistics.median(p.create.seconds for p in pairs)
    lines += [
        "",
        f"Medians: (a) {bare:.2f} s ({first.rows / bare:,.0f} rows/s), (b) {create:.2f} s "
        f"({first.rows / create:,.0f} rows/s).",
        "",
        f"Relative throughput (a)/(b), median of the pair ratios: **{ratio:.2f}** (goal ≥ 0.6: "
        f"{'met' if ratio >= 0.6 else 'missed'}). CPU time, median of the pair ratios: "
        f"{statistics.median(p.cpu_ratio for p in pairs):.2f} ((a) "
        f"{statistics.median(p.bare.cpu for p in pairs):.2f} s, (b) "
        f"{statistics.median(p.create.cpu for p in pairs):.2f} s).",
    ]
    return "\n".join(lines)


def _rss_table(results: dict[str, tuple[float, float]]) -> str:
    lines = ["| input | size MB | rows | worker peak RSS MB | seconds |", "|---|---:|---:|---:|---:|"]
    for name, (rss, seconds) in results.items():
        size = (DATA_DIR / name).stat().st_size / MB
        lines.append(f"| {name} | {size:.0f} | {INPUTS[name]:,} | {rss:.0f} | {seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (a), (b); median of ratios")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS runs (c)")
    parser.add_argument("--no-readme", action="store_true", help="print only, leave README.md alone")
    parser.add_argument("--measure-rss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_rss:
        _measure_rss_here(args.measure_rss)
        return

    path = ensure_input(THROUGHPUT_INPUT)
    started, load_before = time.strftime("%Y-%m-%d %H:%M"), load_average()
    warm = warm_fork_server()
    pairs = []
    for number in range(args.repeat):
        load = os.getloadavg()[0]
        pair = Pair(bare_pass(path), create_datasource(path), load)
        if pair.create.rows != pair.bare.rows:
            raise SystemExit(f"datasource counted {pair.create.rows:,} records, pyarrow {pair.bare.rows:,}")
        pairs.append(pair)
        print(
            f"pair {number + 1}: (a) {pair.bare.seconds:.2f} s, (b) {pair.create.seconds:.2f} s; CPU (a) "
            f"{pair.bare.cpu:.2f} s, (b) {pair.create.cpu:.2f} s",
            flush=True,
        )
    sections = [
        f"Measured {started}; load average (1, 5, 15 min) {load_before} before, {load_average()} after.",
        "",
        machine_report(),
        "",
        _throughput_table(pairs, warm),
    ]
    if not args.no_rss:
        results = {name: peak_rss(ensure_input(name)) for name in RSS_INPUTS}
        sections += ["", "Peak memory of the datasource job:", "", _rss_table(results)]
    text = "\n".join(sections)
    print()
    print(text)
    if not args.no_readme:
        write_readme_section("datasource", text)


if __name__ == "__main__":
    main()
