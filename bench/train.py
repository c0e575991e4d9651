"""Training benchmark: emrml on 1M bank-like rows against a scikit-learn SGD pipeline on the same rows.

Run by hand from the repository root (not part of the tests; needs scikit-learn)::

    uv run python bench/train.py               # 3 runs of each, medians; writes bench/README.md
    uv run python bench/train.py --repeat 1 --no-readme
    uv run python bench/train.py --profile     # cProfile of emrml's training job, run in this process

Input: ``bench/data/bank-1m.csv`` (``emrml.samples.write_bank_sample``, 1,000,000 rows, seed 7; written on
the first run): 21 columns, 10 NUMERIC, 9 CATEGORICAL, the TEXT column ``notes``, the BINARY target ``y``.
Two datasources select a random 70 % (training) and the complementary 30 % (evaluation) with emrml's
DataRearrangement (fixed seed); creating them is not measured. Then, alternating, ``--repeat`` times:

* **emrml**: wall time of ``CreateMLModel`` (suggested recipe, ``sgd.maxPasses=10``, other parameters at
  the API defaults) plus ``wait``, with the worker fork server already started (a server keeps it warm; its
  start is reported separately); the peak RSS of the training worker process (its ``VmHWM``, polled from
  ``/proc`` every 20 ms); the AUC of an evaluation on the 30 %.
* **scikit-learn**: the same 70 % rows, read from the CSV in the timed run as emrml reads them (emrml's
  reader applies the same split; numbers parsed to floats), as both sides of issue #12's comparison read
  the CSV: 10 quantile bins (``KBinsDiscretizer``, one-hot) of every number, one-hot categories,
  hashed binary word 1–2-grams of ``notes`` (``HashingVectorizer``, 2^20 features) →
  ``SGDClassifier(loss="log_loss", max_iter=10, tol=None)``; wall time of reading + featurizer fit +
  transform + SGD fit; AUC on the 30 %.

Both are set for 10 passes; emrml stops earlier when a pass no longer improves its held-back loss (the
report line says how many it made). Everything runs single-threaded in native code; the two sides
alternate. Goal (issue #12): emrml's time ≤ 0.4 × scikit-learn's (median of the pair ratios), AUC ≥ it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from common import (
    BENCH_DIR,
    ProcessMonitor,
    create_datasource,
    emrml_app,
    evaluate,
    load_average,
    machine_report,
    single_threaded,
    train,
    write_readme_section,
)
from emrml.config import Settings
from emrml.core import learn
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import AttributeType, Schema
from emrml.core.values import parse_binary, parse_numeric
from emrml.engine import training as training_module
from emrml.engine.training import DatasourceBatches, DatasourceData, train_model
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service import forkserver
from emrml.service.app import EmrML
from emrml.service.parameters import parse_parameters
from emrml.service.tasks import read_sample

DATA = BENCH_DIR / "data" / "bank-1m.csv"
ROWS = 1_000_000
SPLIT_SEED = "bench-train"
TRAIN_SPLIT = {
    "splitting": {
        "percentBegin": 0,
        "percentEnd": 70,
        "strategy": "random",
        "strategyParams": {"randomSeed": SPLIT_SEED},
    }
}
EVAL_SPLIT = {"splitting": TRAIN_SPLIT["splitting"] | {"complement": True}}
PARAMETERS = {"sgd.maxPasses": "10"}
GOAL_RATIO = 0.4
MB = 1_000_000


def ensure_input(path: Path) -> Path:
    """``path``; the default input is written first when it does not exist yet."""
    if path == DATA and not DATA.exists():
        started = time.perf_counter()
        write_bank_sample(DATA, ROWS)
        print(f"generated {DATA} ({ROWS:,} rows) in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def warm_fork_server() -> float:
    """Start the job runner's fork server (it imports the job code) and fork one process; returns seconds.

    ``forkserver.context()`` sets what the fork server preloads, as the job runner's does (an ``EmrML``
    makes its job runner with the first job, so its existence no longer says the preload is set).
    """
    started = time.perf_counter()
    process = forkserver.context().Process(target=os.getpid)
    process.start()
    process.join()
    return time.perf_counter() - started


# -------------------------------------------------------------------------------------------- scikit-learn


@dataclass
class Rows:
    """One side of the split in memory: numbers as float (NaN missing), categories and text as strings."""

    numeric: list[np.ndarray] = field(default_factory=list)
    categorical: list[np.ndarray] = field(default_factory=list)
    text: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)

    def add(self, batch: pa.RecordBatch, schema: Schema) -> None:
        inputs = schema.input_attributes
        numbers = [a.name for a in inputs if a.type == AttributeType.NUMERIC]
        parsed = [parse_numeric(batch.column(name)) for name in numbers]
        self.numeric.append(
            np.column_stack([np.where(p.missing | p.invalid, np.nan, p.values) for p in parsed])
        )
        names = [a.name for a in inputs if a.type == AttributeType.CATEGORICAL]
        self.categorical.append(
            np.column_stack([batch.column(n).to_numpy(zero_copy_only=False) for n in names]).astype(object)
        )
        (text,) = [a.name for a in inputs if a.type == AttributeType.TEXT]
        self.text.append(batch.column(text).to_numpy(zero_copy_only=False))
        self.y.append(parse_binary(batch.column(schema.target or "")).values)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.vstack(self.numeric),
            np.vstack(self.categorical),
            np.concatenate(self.text),
            np.concatenate(self.y),
        )


def read_rows(
    path: Path, rearrangement: dict, schema: Schema
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The records a DataRearrangement selects, read by emrml's own reader: (numbers, categories, text, y)."""
    data = DatasourceData(str(path), schema, parse_rearrangement(json.dumps(rearrangement)))
    rows = Rows()
    for batch in DatasourceBatches(data, Settings()):
        rows.add(batch, schema)
    return rows.arrays()


def sklearn_pipeline() -> tuple[object, object]:
    """The scikit-learn pipeline, unfitted: ((number bins, category one-hot, word hashing), classifier)."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder

    bins = KBinsDiscretizer(
        n_bins=10,
        encode="onehot",
        strategy="quantile",
        quantile_method="averaged_inverted_cdf",
        random_state=0,  # quantiles come from a random subsample of 200,000 rows
    )
    categories = OneHotEncoder(handle_unknown="ignore")
    words = HashingVectorizer(
        ngram_range=(1, 2), n_features=2**20, alternate_sign=False, binary=True, norm=None
    )
    classifier = SGDClassifier(loss="log_loss", max_iter=10, tol=None, random_state=0)
    return (bins, categories, words), classifier


def featurize(
    featurizers: tuple, numeric: np.ndarray, categorical: np.ndarray, text: np.ndarray, fit: bool
) -> sp.csr_matrix:
    """The sparse feature matrix (rows × bins + categories + 2^20 hashed words); ``fit`` fits the bins and
    the one-hot encoder first (the hashing needs no fitting)."""
    bins, categories, words = featurizers
    if fit:
        bins.fit(numeric)
        categories.fit(categorical)
    return sp.hstack(
        [bins.transform(numeric), categories.transform(categorical), words.transform(text)], format="csr"
    )


@dataclass
class Run:
    """One training run: wall and CPU seconds, AUC on the evaluation rows, peak RSS of the training process
    in MB (emrml only), and emrml's training report."""

    seconds: float
    cpu_seconds: float
    auc: float
    peak_rss_mb: float | None = None
    report: dict = field(default_factory=dict)
    #: scikit-learn only: wall seconds of reading + featurizer fit + transform, the rest being
    #: SGDClassifier.fit.
    featurize_seconds: float = 0.0


def sklearn_run(path: Path, schema: Schema, eval_rows: tuple[np.ndarray, ...]) -> Run:
    """Read the training rows and fit the scikit-learn pipeline (featurizers, then SGD) on them, timed;
    score the evaluation rows."""
    from sklearn.metrics import roc_auc_score

    featurizers, classifier = sklearn_pipeline()
    started, cpu_started = time.perf_counter(), time.process_time()
    numeric, categorical, text, y = read_rows(path, TRAIN_SPLIT, schema)
    X = featurize(featurizers, numeric, categorical, text, fit=True)
    featurized = time.perf_counter() - started
    classifier.fit(X, y)  # type: ignore[attr-defined]
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    numeric, categorical, text, y = eval_rows
    X_eval = featurize(featurizers, numeric, categorical, text, fit=False)
    scores = classifier.predict_proba(X_eval)[:, 1]  # type: ignore[attr-defined]
    return Run(seconds, cpu_seconds, float(roc_auc_score(y, scores)), featurize_seconds=featurized)


# ------------------------------------------------------------------------------------------------ emrml


def emrml_run(app: EmrML, model_id: str) -> Run:
    """Train one model (timed, the worker's RSS polled), then evaluate it on the evaluation datasource.

    CPU seconds are the job's ``ComputeTime``: the worker process's CPU time (all its threads) for the job.
    """
    with ProcessMonitor() as rss:
        trained = train(app, model_id, "BINARY", "ds-train", parameters=PARAMETERS)
    auc = evaluate(app, model_id, "ds-eval")
    report = app.call("GetMLModelInsights", {"MLModelId": model_id})["TrainingReport"]
    cpu_seconds = int(trained.description.get("ComputeTime", 0)) / 1000
    return Run(trained.seconds, cpu_seconds, auc, rss.max_rss_mb, report)


# ------------------------------------------------------------------------------------------------ profile

#: Functions whose cumulative time the profile table lists, as (module file suffix, function name, label).
PHASES = (
    ("emrml/core/features/space.py", "fit", "feature space fit (first read of the training data)"),
    ("emrml/engine/training.py", "_featurize", "featurization (the fit's record cache to the sparse cache)"),
    ("emrml/core/calibration.py", "calibration_sample", "calibration sample (reads the cache)"),
    ("emrml/core/calibration.py", "choose_rate", "learning-rate trial (4 rates x 2 passes over the sample)"),
    ("emrml/core/learn.py", "pass_batches", "SGD passes: reading the cache back"),
    ("emrml/core/sgd.py", "fit_rows", "SGD steps (all fit_rows calls, the rate trial's included)"),
    ("emrml/core/learn.py", "_objective", "early-stop objective after each pass"),
    ("emrml/core/rearrange.py", "random_mask", "random split: SHA-256 of every record (the fit's read only)"),
    ("emrml/storage/records.py", "read_chunks", "CSV reading and parsing (the fit's read)"),
)
#: Functions timed (wall) in a plain run: (module, attribute, label). ``train`` is the learner as the
#: training module calls it; the rate trial and calibration are inside it.
TIMED = (
    (training_module.FeatureSpace, "fit", "feature space fit"),
    (training_module, "_featurize", "featurization pass"),
    (learn, "calibration_sample", "SGD: calibration sample"),
    (learn, "choose_rate", "SGD: learning-rate trial"),
    (training_module, "train", "SGD: everything (calibration, rate trial, passes)"),
    (training_module, "save_artifact", "saving the artifact"),
)
#: Functions whose callers the profile lists.
CALLERS_OF = 5


def _train_in_process(path: Path, settings: Settings) -> None:
    schema = bank_sample_schema()
    train_model(
        model_id="profiled",
        model_type="BINARY",
        data=DatasourceData(str(path), schema, parse_rearrangement(json.dumps(TRAIN_SPLIT))),
        recipe_text=None,
        sample=read_sample(settings, "ds-train"),
        parameters=parse_parameters(PARAMETERS),
        settings=settings,
        progress=lambda *_: None,
    )


@contextmanager
def _timing(owner: object, name: str, totals: dict[str, float], label: str) -> Iterator[None]:
    """Replace ``owner.name`` (a module function or a classmethod) with a wrapper adding its wall time to
    ``totals[label]``; restore it afterwards."""
    saved = vars(owner)[name]
    function = saved.__func__ if isinstance(saved, classmethod) else saved

    def timed(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[label] = totals.get(label, 0.0) + time.perf_counter() - started

    setattr(owner, name, classmethod(timed) if isinstance(saved, classmethod) else timed)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def profile(path: Path, settings: Settings) -> str:
    """Run the training job in this process twice — with wall-clock timers on its phases, and under
    cProfile — and describe where the time goes, as markdown."""
    totals: dict[str, float] = {}
    with ExitStack() as stack:
        for owner, name, label in TIMED:
            stack.enter_context(_timing(owner, name, totals, label))
        started = time.perf_counter()
        _train_in_process(path, settings)
        total = time.perf_counter() - started
    lines = [f"In-process training, no profiler: {total:.1f} s wall.", "", "| phase | wall s |", "|---|---:|"]
    lines += [f"| {label} | {totals.get(label, 0.0):.1f} |" for _, _, label in TIMED]

    profiler = cProfile.Profile()
    profiler.enable()
    _train_in_process(path, settings)
    profiler.disable()
    stats = pstats.Stats(profiler)
    found: dict[str, tuple[float, int]] = {}
    for (file, _, function), (_, calls, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        for suffix, name, label in PHASES:
            if file.endswith(suffix) and function == name:
                found[label] = (cumulative, calls)
    profiled = stats.total_tt  # type: ignore[attr-defined]
    lines += ["", f"Under cProfile ({profiled:.1f} s; cumulative seconds per function, overlapping):", ""]
    lines += ["| function | seconds | share | calls |", "|---|---:|---:|---:|"]
    for _, _, label in PHASES:
        cumulative, calls = found.get(label, (0.0, 0))
        lines.append(f"| {label} | {cumulative:.1f} | {100 * cumulative / profiled:.0f} % | {calls} |")
    buffer = io.StringIO()
    ordered = pstats.Stats(profiler, stream=buffer).sort_stats("tottime")
    ordered.print_stats(20)
    ordered.print_callers(CALLERS_OF)
    lines += ["", "Top functions by own time, and the callers of the first few:", "", "```"]
    lines += [line.rstrip() for line in buffer.getvalue().strip().splitlines()]
    lines.append("```")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ report


def _runs(values: Iterable[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def results_table(emrml: list[Run], sklearn: list[Run], loads: list[float]) -> str:
    """Medians of both pipelines, their ratios against the goal, and the load during the runs."""

    def median(runs: list[Run], name: str) -> float:
        return statistics.median(getattr(run, name) for run in runs)

    lines = [
        "| pipeline | wall s (median) | wall s per run | CPU s (median) | AUC on the 30 % (median) "
        "| training process peak RSS MB (median) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for label, runs in (
        ("emrml (CreateMLModel + wait)", emrml),
        ("scikit-learn (read + featurize + SGDClassifier)", sklearn),
    ):
        rss = f"{median(runs, 'peak_rss_mb'):.0f}" if runs[0].peak_rss_mb is not None else ""
        lines.append(
            f"| {label} | {median(runs, 'seconds'):.1f} | {_runs(r.seconds for r in runs)} "
            f"| {median(runs, 'cpu_seconds'):.1f} | {median(runs, 'auc'):.4f} | {rss} |"
        )
    # The runs alternate: the median of the pair ratios, so that a change in the machine's load hits both.
    wall = statistics.median(e.seconds / k.seconds for e, k in zip(emrml, sklearn, strict=True))
    cpu = statistics.median(e.cpu_seconds / k.cpu_seconds for e, k in zip(emrml, sklearn, strict=True))
    auc = median(emrml, "auc") - median(sklearn, "auc")
    featurization = median(sklearn, "featurize_seconds")
    lines += [
        "",
        f"scikit-learn's wall time is {featurization:.1f} s of reading and featurization (median) and "
        f"{median(sklearn, 'seconds') - featurization:.1f} s of SGD.",
        "",
        f"Ratio emrml / scikit-learn (median of the pair ratios): wall time **{wall:.2f}**, CPU time "
        f"{cpu:.2f} (goal ≤ {GOAL_RATIO}: "
        f"{'met' if wall <= GOAL_RATIO else 'missed'}). AUC difference emrml − scikit-learn: **{auc:+.4f}** "
        f"(goal ≥ 0: {'met' if auc >= 0 else 'missed'}). 1-minute load average at the start of each run: "
        f"{_runs(loads)}.",
    ]
    return "\n".join(lines)


def _records(app: EmrML, datasource_id: str) -> int:
    statistics = app.call("GetDataSourceStatistics", {"DataSourceId": datasource_id})
    return int(statistics["TotalRecordCount"])


def main(argv: list[str] | None = None) -> None:
    single_threaded()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pipeline; medians reported")
    parser.add_argument("--profile", action="store_true", help="profile emrml's training job instead")
    parser.add_argument("--no-readme", action="store_true", help="print only, leave README.md alone")
    parser.add_argument("--data", type=Path, default=DATA, help="a bank-like CSV (default: %(default)s)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    path = ensure_input(args.data.resolve())
    schema = bank_sample_schema()
    started, load_before = time.strftime("%Y-%m-%d %H:%M"), load_average()
    with tempfile.TemporaryDirectory(prefix="emrml-train-") as home, emrml_app(Path(home)) as app:
        clock = time.perf_counter()
        create_datasource(app, "ds-train", path, schema.to_json(), TRAIN_SPLIT)
        create_datasource(app, "ds-eval", path, schema.to_json(), EVAL_SPLIT)
        print(f"datasources: {time.perf_counter() - clock:.1f} s", flush=True)
        if args.profile:
            print(profile(path, app.settings))
            return
        warm = warm_fork_server()
        train_rows, eval_rows = read_rows(path, TRAIN_SPLIT, schema), read_rows(path, EVAL_SPLIT, schema)
        counts = (len(train_rows[3]), len(eval_rows[3]))
        del train_rows  # read again in each scikit-learn run
        expected = tuple(_records(app, name) for name in ("ds-train", "ds-eval"))
        if counts != expected:
            raise SystemExit(f"scikit-learn read {counts} rows, the datasources hold {expected}")
        emrml_runs, sklearn_runs, loads = [], [], []
        for number in range(args.repeat):
            loads.append(os.getloadavg()[0])
            emrml_runs.append(emrml_run(app, f"ml-{number}"))
            sklearn_runs.append(sklearn_run(path, schema, eval_rows))
            for name, run in (("emrml", emrml_runs[-1]), ("scikit-learn", sklearn_runs[-1])):
                timing = f"{run.seconds:.1f} s, {run.cpu_seconds:.1f} s CPU"
                print(f"run {number + 1} {name}: {timing}, AUC {run.auc:.4f}", flush=True)
    report = emrml_runs[0].report
    learned = f"{report.get('passes')} passes (stopped early: {report.get('stopped_early')})"
    text = "\n".join(
        [
            f"Measured {started}; load average (1, 5, 15 min) {load_before} before, {load_average()} after.",
            "",
            machine_report(),
            "",
            f"Rows: {counts[0]:,} training, {counts[1]:,} evaluation. Fork server start (once, not in the "
            f"times below): {warm:.1f} s.",
            "",
            results_table(emrml_runs, sklearn_runs, loads),
            "",
            f"emrml training report (run 1): {learned}, learning rate "
            f"{report.get('learning_rate')}, {report.get('rows_per_step')} rows per step, "
            f"AUC {emrml_runs[0].auc:.4f}.",
        ]
    )
    print(text)
    if not args.no_readme:
        write_readme_section("train", text)


if __name__ == "__main__":
    main()
