"""Batch prediction benchmark: emrml's batch prediction job against a scikit-learn pipeline and a bare
pyarrow read + write pass over the same 1M-row CSV.

Run by hand from the repository root (not part of the tests; needs scikit-learn)::

    uv run python bench/batch.py               # 3 runs of each, medians; peak RSS; writes bench/README.md
    uv run python bench/batch.py --repeat 1 --no-rss --no-readme

Inputs (``emrml.samples.write_bank_sample``, seed 7; written on the first run into ``bench/data/``):
``bank-1m.csv`` (1,000,000 rows, 167 MB) for throughput, ``bank-100mb.csv`` and ``bank-1gb.csv`` for memory.
Set up once and kept in ``bench/data/batch-home`` (not measured): a datasource with statistics over
``bank-1m.csv`` and a BINARY model trained on it with the suggested recipe; one datasource per input to
predict (schema ``emrml.samples.bank_sample_schema()``, so the results carry a ``trueLabel`` column).

Measured, alternating, ``--repeat`` times on ``bank-1m.csv``:

* **(a) emrml**: wall time of ``CreateBatchPrediction`` + ``wait`` (the job runner's fork server started
  beforehand with every engine imported, as a running server has it): read, featurize, score, format and
  gzip every record, publish the result file and manifest.
* **(b) scikit-learn**: the pipeline of ``bench/train.py`` (10 quantile bins one-hot per number, one-hot
  categories, hashed binary word 1–2-grams of ``notes``; ``SGDClassifier(loss="log_loss")``) fitted
  beforehand on 200,000 rows of the file; measured end to end: read the CSV with pyarrow (all columns as
  strings, then numbers parsed to floats), featurize, ``predict_proba``, write ``bestAnswer,score`` as plain
  CSV with pyarrow.
* **(c) bare pyarrow**: ``pyarrow.csv.open_csv`` over the file with every column a string, each batch
  written straight back with ``pyarrow.csv.write_csv`` to a plain CSV file: the floor of any reader + writer.

Goals (issue #12): emrml's rows/s at least 12× (b)'s and at least 0.4× (c)'s, each the median of the
ratios of the runs made together (the three alternate). All three may use both cores (pyarrow's
reader threads; emrml's two worker processes); scikit-learn's featurizers and ``predict_proba`` run on one.

Peak RSS (``--rss``, default on): the batch prediction job on ``bank-100mb.csv`` and ``bank-1gb.csv``; a
thread polls ``VmHWM`` of every process below this one (the job worker and its pool workers) every 20 ms.
Memory should depend on the batch size and the model, not on the input size.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from common import (
    BENCH_DIR,
    ProcessMonitor,
    create_datasource,
    emrml_app,
    load_average,
    machine_report,
    train,
    write_readme_section,
)
from emrml.core.schema import AttributeType, Schema
from emrml.core.values import parse_binary, parse_numeric
from emrml.errors import AmazonMLError
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service import forkserver
from emrml.service.app import EmrML

DATA_DIR = BENCH_DIR / "data"
HOME = DATA_DIR / "batch-home"
#: Generated inputs: file name → rows (about 167 bytes per row).
INPUTS = {"bank-1m.csv": 1_000_000, "bank-100mb.csv": 600_000, "bank-1gb.csv": 6_000_000}
THROUGHPUT_INPUT = "bank-1m.csv"
RSS_INPUTS = ("bank-100mb.csv", "bank-1gb.csv")
MODEL_ID = "ml-bench-batch"
SKLEARN_TRAINING_ROWS = 200_000
GOAL_SKLEARN = 12.0
GOAL_BARE = 0.4
MB = 1_000_000


def ensure_input(name: str) -> Path:
    path = DATA_DIR / name
    if not path.exists():
        started = time.perf_counter()
        write_bank_sample(path, INPUTS[name])
        print(
            f"generated {path} ({INPUTS[name]:,} rows) in {time.perf_counter() - started:.1f} s", flush=True
        )
    return path


def _status(app: EmrML, kind: str, entity_id: str) -> str | None:
    try:
        return app.call(f"Get{kind}", {f"{kind}Id": entity_id})["Status"]
    except AmazonMLError:  # not there yet
        return None


def ensure_model(app: EmrML) -> None:
    """The model (and its training datasource) in the bench home, trained on the first run only."""
    if _status(app, "MLModel", MODEL_ID) == "COMPLETED":
        return
    started = time.perf_counter()
    schema = bank_sample_schema().to_json()
    if _status(app, "DataSource", "ds-bench-train") != "COMPLETED":
        create_datasource(app, "ds-bench-train", ensure_input(THROUGHPUT_INPUT), schema)
    train(app, MODEL_ID, "BINARY", "ds-bench-train")
    print(f"trained {MODEL_ID} in {time.perf_counter() - started:.1f} s", flush=True)


def ensure_batch_source(app: EmrML, name: str) -> str:
    """A datasource (no statistics) over the input ``name``, created on the first run only."""
    source_id = "ds-batch-" + name.removesuffix(".csv")
    if _status(app, "DataSource", source_id) != "COMPLETED":
        spec = {"DataLocationS3": str(ensure_input(name)), "DataSchema": bank_sample_schema().to_json()}
        app.call("CreateDataSourceFromS3", {"DataSourceId": source_id, "DataSpec": spec})
        description = app.wait("DataSource", source_id)
        if description["Status"] != "COMPLETED":
            raise SystemExit(f"datasource {source_id}: {description.get('Message')}")
    return source_id


# ------------------------------------------------------------------------------------------------ emrml


@dataclass
class EmrmlRun:
    seconds: float
    cpu_seconds: float
    rows: int
    peak_rss_mb: float
    total_rss_mb: float


def emrml_run(app: EmrML, source_id: str, number: int, output: Path) -> EmrmlRun:
    prediction_id = f"bp-{source_id}-{time.strftime('%Y%m%d%H%M%S')}-{number}"
    with ProcessMonitor() as monitor:
        started = time.perf_counter()
        app.call(
            "CreateBatchPrediction",
            {
                "BatchPredictionId": prediction_id,
                "MLModelId": MODEL_ID,
                "BatchPredictionDataSourceId": source_id,
                "OutputUri": str(output),
            },
        )
        description = app.wait("BatchPrediction", prediction_id)
        seconds = time.perf_counter() - started
    if description["Status"] != "COMPLETED":
        raise SystemExit(f"batch prediction {prediction_id}: {description.get('Message')}")
    return EmrmlRun(
        seconds,
        monitor.cpu_seconds,
        int(description["TotalRecordCount"]),
        monitor.max_rss_mb,
        monitor.total_rss_mb,
    )


def warm_fork_server(app: EmrML) -> float:
    """Start the job runner's fork server (``main`` asked for every engine to be preloaded, as a running
    server does), if no set-up job has started it yet; seconds."""
    started = time.perf_counter()
    process = forkserver.context().Process(target=os.getpid)
    process.start()
    process.join()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------- scikit-learn, pyarrow


def _read_options(schema: Schema) -> tuple[pcsv.ReadOptions, pcsv.ConvertOptions]:
    names = schema.names
    return (
        pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=4 << 20),
        pcsv.ConvertOptions(column_types={name: pa.string() for name in names}),
    )


def _columns(table: pa.Table, schema: Schema) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inputs = schema.input_attributes
    numbers = [a.name for a in inputs if a.type == AttributeType.NUMERIC]
    parsed = [parse_numeric(table.column(name).combine_chunks()) for name in numbers]
    numeric = np.column_stack([np.where(p.missing | p.invalid, np.nan, p.values) for p in parsed])
    names = [a.name for a in inputs if a.type == AttributeType.CATEGORICAL]
    categorical = np.column_stack([table.column(n).to_numpy() for n in names]).astype(object)
    (text,) = [a.name for a in inputs if a.type == AttributeType.TEXT]
    return numeric, categorical, table.column(text).to_numpy()


def fit_sklearn(path: Path, schema: Schema) -> tuple[tuple, object]:
    """The scikit-learn pipeline of ``bench/train.py``, fitted on the first rows of the file."""
    from train import featurize, sklearn_pipeline

    read, convert = _read_options(schema)
    table = pcsv.read_csv(path, read_options=read, convert_options=convert).slice(0, SKLEARN_TRAINING_ROWS)
    featurizers, classifier = sklearn_pipeline()
    numeric, categorical, text = _columns(table, schema)
    y = parse_binary(table.column(schema.target or "").combine_chunks()).values
    classifier.fit(featurize(featurizers, numeric, categorical, text, fit=True), y)  # type: ignore[attr-defined]
    return featurizers, classifier


@dataclass(frozen=True)
class Timing:
    """Wall and CPU seconds (all threads of this process) of one pass, and its rows."""

    seconds: float
    cpu_seconds: float
    rows: int


def sklearn_run(path: Path, schema: Schema, fitted: tuple[tuple, object], output: Path) -> Timing:
    """(b) Read, featurize, predict_proba, write."""
    from train import featurize

    featurizers, classifier = fitted
    read, convert = _read_options(schema)
    started, cpu = time.perf_counter(), time.process_time()
    table = pcsv.read_csv(path, read_options=read, convert_options=convert)
    numeric, categorical, text = _columns(table, schema)
    scores = classifier.predict_proba(featurize(featurizers, numeric, categorical, text, fit=False))[:, 1]  # type: ignore[attr-defined]
    result = pa.table({"bestAnswer": (scores >= 0.5).astype(np.int8), "score": scores})
    pcsv.write_csv(result, output)
    return Timing(time.perf_counter() - started, time.process_time() - cpu, table.num_rows)


def bare_run(path: Path, schema: Schema, output: Path) -> Timing:
    """(c) Stream the CSV with all-string columns and write each batch back as plain CSV."""
    read, convert = _read_options(schema)
    rows = 0
    started, cpu = time.perf_counter(), time.process_time()
    with (
        pcsv.open_csv(path, read_options=read, convert_options=convert) as reader,
        pcsv.CSVWriter(output, reader.schema) as writer,
    ):
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return Timing(time.perf_counter() - started, time.process_time() - cpu, rows)


# ------------------------------------------------------------------------------------------------ report


def _check_result(app: EmrML, prediction_rows: int) -> None:
    """The newest batch prediction's file has a header and one line per record (a sanity check)."""
    latest = app.call("DescribeBatchPredictions", {"SortOrder": "dsc", "Limit": 1})["Results"][0]
    manifest = app.call("GetBatchPrediction", {"BatchPredictionId": latest["BatchPredictionId"]})
    (result,) = __import__("json").loads(Path(manifest["ManifestLocation"]).read_text()).values()
    with gzip.open(result, "rt") as stream:
        header = stream.readline().strip()
        lines = sum(1 for _ in stream)
    if header != "trueLabel,bestAnswer,score" or lines != prediction_rows:
        raise SystemExit(f"unexpected result file {result}: header {header!r}, {lines} lines")


def throughput_table(emrml: list[EmrmlRun], sklearn: list[Timing], bare: list[Timing]) -> str:
    rows = emrml[0].rows
    passes = [
        ("(a) emrml CreateBatchPrediction + wait", [(r.seconds, r.cpu_seconds) for r in emrml]),
        (
            "(b) scikit-learn read + featurize + predict_proba + write",
            [(t.seconds, t.cpu_seconds) for t in sklearn],
        ),
        ("(c) bare pyarrow read + write, all strings", [(t.seconds, t.cpu_seconds) for t in bare]),
    ]
    lines = [
        "| pipeline | wall s (median) | runs, s | rows/s | CPU s (median) |",
        "|---|---:|---|---:|---:|",
    ]
    cpus = []
    for name, runs in passes:
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        cpus.append(cpu)
        listed = ", ".join(f"{w:.2f}" for w, _ in runs)
        lines.append(f"| {name} | {wall:.2f} | {listed} | {rows / wall:,.0f} | {cpu:.2f} |")
    # Rows/s ratios are time ratios the other way round; the median of the runs made together.
    versus_sklearn = statistics.median(t.seconds / e.seconds for e, t in zip(emrml, sklearn, strict=True))
    versus_bare = statistics.median(t.seconds / e.seconds for e, t in zip(emrml, bare, strict=True))
    sklearn_verdict = "met" if versus_sklearn >= GOAL_SKLEARN else "missed"
    bare_verdict = "met" if versus_bare >= GOAL_BARE else "missed"
    lines += [
        "",
        f"emrml / scikit-learn rows/s (median of the run ratios): **{versus_sklearn:.1f}×** "
        f"(goal ≥ {GOAL_SKLEARN:g}×: "
        f"{sklearn_verdict}); emrml / bare pyarrow: **{versus_bare:.2f}×** "
        f"(goal ≥ {GOAL_BARE}×: {bare_verdict}).",
        f"By CPU seconds (independent of what else the machine runs): scikit-learn / emrml "
        f"{cpus[1] / cpus[0]:.1f}×, bare pyarrow / emrml {cpus[2] / cpus[0]:.2f}×.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pass; medians reported")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--no-readme", action="store_true", help="print only, leave README.md alone")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    # As a server: the job fork server, whoever starts it first (a set-up job or the warm-up), imports every
    # engine once. This must precede the app, whose job runner fixes the fork server's preload list.
    forkserver.preload_every_engine()
    schema = bank_sample_schema()
    path = ensure_input(THROUGHPUT_INPUT)
    started, load_before = time.strftime("%Y-%m-%d %H:%M"), load_average()
    with emrml_app(HOME) as app, tempfile.TemporaryDirectory(prefix="emrml-batch-", dir=DATA_DIR) as scratch:
        ensure_model(app)
        sources = {
            name: ensure_batch_source(app, name)
            for name in (THROUGHPUT_INPUT, *(() if args.no_rss else RSS_INPUTS))
        }
        warm = warm_fork_server(app)
        fitted = fit_sklearn(path, schema)
        output = Path(scratch)
        emrml_runs, sklearn_runs, bare_runs, loads = [], [], [], []
        for number in range(args.repeat):
            loads.append(os.getloadavg()[0])
            emrml_runs.append(emrml_run(app, sources[THROUGHPUT_INPUT], number, output / "emrml"))
            _check_result(app, emrml_runs[-1].rows)
            shutil.rmtree(output / "emrml")
            sklearn_runs.append(sklearn_run(path, schema, fitted, output / "sklearn.csv"))
            bare_runs.append(bare_run(path, schema, output / "bare.csv"))
            print(
                f"run {number + 1}: emrml {emrml_runs[-1].seconds:.2f} s, scikit-learn "
                f"{sklearn_runs[-1].seconds:.2f} s, bare {bare_runs[-1].seconds:.2f} s",
                flush=True,
            )
        memory = []
        if not args.no_rss:
            for name in RSS_INPUTS:
                run = emrml_run(app, sources[name], 0, output / "rss")
                shutil.rmtree(output / "rss")
                memory.append((name, run))
                print(f"{name}: {run.seconds:.1f} s, peak RSS {run.peak_rss_mb:.0f} MB", flush=True)
    lines = [
        f"Measured {started}; load average (1, 5, 15 min) {load_before} before, {load_average()} after.",
        "",
        machine_report().replace(
            "- native thread pools limited to 1 thread (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, "
            "MKL_NUM_THREADS, ... = 1)",
            "- native thread pools at their defaults (both cores)",
        ),
        "",
        f"Input `{THROUGHPUT_INPUT}`: {emrml_runs[0].rows:,} rows, {path.stat().st_size / MB:.0f} MB. "
        f"Job runner fork server start (once, not in the times): {warm:.1f} s. 1-minute load average at "
        f"the start of each run: {', '.join(f'{v:.2f}' for v in loads)}.",
        "",
        throughput_table(emrml_runs, sklearn_runs, bare_runs),
    ]
    if memory:
        lines += [
            "",
            "Peak RSS of the batch prediction job (the job worker and its pool workers):",
            "",
            "| input | size MB | rows | seconds | largest process peak RSS MB | sum of peaks MB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, run in memory:
            size = (DATA_DIR / name).stat().st_size / MB
            lines.append(
                f"| `{name}` | {size:.0f} | {run.rows:,} | {run.seconds:.1f} | {run.peak_rss_mb:.0f} | "
                f"{run.total_rss_mb:.0f} |"
            )
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_readme_section("batch", text)


if __name__ == "__main__":
    main()
