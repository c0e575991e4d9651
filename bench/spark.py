"""Spark benchmark: emrml's Spark engine against Spark MLlib, and against emrml's local engine, on 2M rows.

Run by hand from the repository root (needs the ``spark`` extra and Java 17)::

    uv run --all-extras --group bench python bench/spark.py             # 3 rounds; writes bench/README.md
    uv run --all-extras --group bench python bench/spark.py --repeat 1 --rows 400000 --no-readme

Input: ``bench/data/bank-<rows>.csv`` (``emrml.samples.write_bank_sample``; written on the first run). A
random 70 % trains (DataRearrangement, seed ``bench-spark``), the complementary 30 % is scored. One Spark
application (``local[2]``, both cores), started once like a long-running server; its start is reported
apart. Every round runs each pair back to back, alternating which side goes first:

* **Spark engine vs local engine** (same code, same units; the issue's goal ≤ 2.5× the local time):
  statistics of the whole file (``build_datasource``), training (``train_model``: fit, featurize, 10 passes)
  on the 70 %, batch prediction of the whole file (``batch_predict``). Training's AUC (on the 30 %) and the
  batch result files (byte for byte) are compared.
* **emrml on Spark vs MLlib** (``LogisticRegression(maxIter=10)``, L-BFGS) on the same rows and features:
  emrml's feature space (of the local model) written once as LibSVM files (not measured); each side starts
  from its file: MLlib's time is reading the LibSVM file and its ``fit``, emrml's is training from the CSV
  (it parses, fits the recipe and featurizes too). Scoring: MLlib's ``transform`` + a CSV of the probabilities
  against emrml's Spark batch prediction of the same 30 % from a CSV of just those rows (it parses,
  featurizes and writes gzip-compressed results with the input's columns); MLlib reads the LibSVM file of
  those rows (featurized: no recipe to apply), as each side reads a file. Goals: training ≤ 1.0× MLlib, AUC
  ≥ MLlib's − 0.002, scoring throughput ≥ 1.0× MLlib's.

Medians of per-round ratios are reported, with the load average before and after.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from common import BENCH_DIR, load_average, machine_report, write_readme_section
from emrml.config import Settings
from emrml.core.linear import TrainingParameters
from emrml.core.rearrange import parse_rearrangement
from emrml.engine.batch import batch_predict
from emrml.engine.evaluation import evaluate_model
from emrml.engine.local import build_datasource
from emrml.engine.spark.datasource import build_datasource as build_on_spark
from emrml.engine.training import DatasourceData, train_model
from emrml.samples import bank_sample_schema, write_bank_sample

SPLIT = (
    '{"splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "complement": %s, '
    '"strategyParams": {"randomSeed": "bench-spark"}}}'
)


def quiet(*_: Any) -> None:
    pass


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def read_sample(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = list(bank_sample_schema().names)
    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in names})
    with pcsv.open_csv(path, convert_options=options) as reader:
        return pa.Table.from_batches([reader.read_next_batch()]).slice(0, 5_000)


def write_libsvm(artifact: Path, data: DatasourceData, settings: Settings, out: Path) -> int:
    """The rows ``data`` selects, featurized by the model's feature space, as LibSVM (MLlib's input)."""
    import numpy as np
    import pyarrow as pa
    from sklearn.datasets import dump_svmlight_file

    from emrml.engine.evaluation import Scorer
    from emrml.engine.training import DatasourceBatches, parse_target

    scorer = Scorer.load(artifact, data.schema)
    rows = 0
    with out.open("wb") as handle:
        for batch in DatasourceBatches(data, settings):
            targets = parse_target(batch, data.schema, "BINARY")
            kept = batch.filter(pa.array(targets.keep))
            dump_svmlight_file(
                scorer.space.transform(kept), np.asarray(targets.values), handle, zero_based=False
            )
            rows += kept.num_rows
    return rows


def write_rows(data: DatasourceData, settings: Settings, out: Path) -> Path:
    """The records ``data`` selects, as a CSV file with the header."""
    import pyarrow.csv as pcsv

    from emrml.engine.training import DatasourceBatches

    writer = None
    for batch in DatasourceBatches(data, settings):
        writer = writer or pcsv.CSVWriter(out, batch.schema)
        writer.write_batch(batch)
    assert writer is not None
    writer.close()
    return out


def auc_of(artifact: Path, data: DatasourceData, settings: Settings) -> float:
    result = evaluate_model(
        artifact_location=artifact, data=data, same_datasource=True, training_records=1,
        settings=settings, progress=quiet,
    )  # fmt: skip
    return float(result.performance_metrics["BinaryAUC"])


def java_version() -> str:
    import subprocess

    run = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    return (run.stderr or run.stdout).splitlines()[0] if (run.stderr or run.stdout) else "java unknown"


def median_ratio(pairs: list[tuple[float, float]]) -> float:
    return statistics.median(a / b for a, b in pairs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)

    data_file = BENCH_DIR / "data" / f"bank-{args.rows}.csv"
    if not data_file.exists():
        data_file.parent.mkdir(parents=True, exist_ok=True)
        write_bank_sample(data_file, args.rows)
    load_before = load_average()
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    settings = Settings.load(environ={}, home=work / "home", spark_master="local[2]")
    schema = bank_sample_schema()
    everything = DatasourceData(str(data_file), schema, None)
    training = DatasourceData(str(data_file), schema, parse_rearrangement(SPLIT % "false"))
    held_out = DatasourceData(str(data_file), schema, parse_rearrangement(SPLIT % "true"))
    sample = read_sample(data_file)
    # The held-out rows in a file of their own: both sides of the scoring comparison read just those.
    held_out_file = DatasourceData(str(write_rows(held_out, settings, work / "held-out.csv")), schema, None)
    parameters = TrainingParameters(max_passes=10)

    from emrml.engine.spark.session import spark_session

    session_start, spark = timed(lambda: spark_session(settings))
    # Warm, as a long-running server is: the executors' Python workers have imported emrml's engine.
    warm_file = work / "warm.csv"
    write_bank_sample(warm_file, 120_000)  # large enough to be cut into byte ranges
    warm = DatasourceData(str(warm_file), schema, None)
    build_on_spark(str(warm_file), schema, None, compute_statistics=True, settings=settings, progress=quiet,
                   spark=spark)  # fmt: skip
    warm_model = train_model(
        model_id="warm", model_type="BINARY", data=warm, recipe_text=None, sample=sample,
        parameters=parameters, settings=settings, progress=quiet, spark=spark,
    )  # fmt: skip
    batch_predict(
        batch_prediction_id="warm", artifact_location=warm_model.artifact_path, data=warm,
        output_uri=str(work / "warm-out") + "/", score_threshold=None, settings=settings, progress=quiet,
        spark=spark,
    )  # fmt: skip

    def statistics_on(engine: Any) -> Callable[[], Any]:
        common = {"compute_statistics": True, "settings": settings, "progress": quiet}
        if engine is None:
            return lambda: build_datasource(str(data_file), schema, None, **common)
        return lambda: build_on_spark(str(data_file), schema, None, spark=engine, **common)

    def training_on(engine: Any, model_id: str) -> Callable[[], Any]:
        return lambda: train_model(
            model_id=model_id, model_type="BINARY", data=training, recipe_text=None, sample=sample,
            parameters=parameters, settings=settings, progress=quiet, spark=engine,
        )  # fmt: skip

    def batch_on(
        engine: Any, artifact: Path, data: DatasourceData, out: Path, batch_id: str = "bp"
    ) -> Callable[[], Any]:
        return lambda: batch_predict(
            batch_prediction_id=batch_id, artifact_location=artifact, data=data,
            output_uri=str(out) + "/", score_threshold=None, settings=settings, progress=quiet, spark=engine,
        )  # fmt: skip

    pairs: dict[str, list[tuple[float, float]]] = {"statistics": [], "training": [], "batch": []}
    mllib_pairs: dict[str, list[tuple[float, float]]] = {"training": [], "scoring": []}
    aucs: dict[str, list[float]] = {"local": [], "spark": [], "mllib": []}
    identical: list[bool] = []
    libsvm: dict[str, Any] = {}
    for round_index in range(args.repeat):
        spark_first = round_index % 2 == 1
        times: dict[str, dict[str, float]] = {"local": {}, "spark": {}}
        artifacts: dict[str, Path] = {}
        for side in ("spark", "local") if spark_first else ("local", "spark"):
            engine = spark if side == "spark" else None
            times[side]["statistics"], _ = timed(statistics_on(engine))
            times[side]["training"], trained = timed(training_on(engine, f"{side}-{round_index}"))
            artifacts[side] = trained.artifact_path
            aucs[side].append(auc_of(trained.artifact_path, held_out, settings))
            out = work / f"batch-{side}-{round_index}"
            times[side]["batch"], _ = timed(batch_on(engine, trained.artifact_path, everything, out))
            print(side, round_index, {k: round(v, 2) for k, v in times[side].items()}, file=sys.stderr)
        for name in pairs:
            pairs[name].append((times["spark"][name], times["local"][name]))
        # The same model scores the same file to the same bytes on both engines.
        out_local, out_spark = work / f"same-local-{round_index}", work / f"same-spark-{round_index}"
        batch_on(None, artifacts["local"], everything, out_local)()
        batch_on(spark, artifacts["local"], everything, out_spark)()
        results = sorted((out_local / "batch-prediction" / "result").iterdir())
        identical.append(
            all(
                filecmp.cmp(r, out_spark / "batch-prediction" / "result" / r.name, shallow=False)
                for r in results
            )
        )

        if not libsvm:  # MLlib's input: the local model's features of the same rows, written once
            from pyspark.ml.classification import LogisticRegression
            from pyspark.ml.evaluation import BinaryClassificationEvaluator

            width = None
            for name, data in (("train", training), ("test", held_out)):
                path = work / f"{name}.libsvm"
                write_libsvm(artifacts["local"], data, settings, path)
                from emrml.core.model import load_artifact

                width = width or len(load_artifact(artifacts["local"]).feature_names)
                frame = spark.read.format("libsvm").option("numFeatures", width).load(str(path))
                libsvm[name] = frame.repartition(2).cache()
                libsvm[f"{name}-file"] = (path, width)
                libsvm[name].count()
            libsvm["lr"] = LogisticRegression(maxIter=10)
            libsvm["auc"] = BinaryClassificationEvaluator(rawPredictionCol="rawPrediction")

        def mllib_training() -> Any:
            # From the file, as emrml trains from its CSV (MLlib caches its instances itself while fitting).
            path, width = libsvm["train-file"]
            rows = spark.read.format("libsvm").option("numFeatures", width).load(str(path))
            return libsvm["lr"].fit(rows)

        mllib_time, fitted = timed(mllib_training)
        aucs["mllib"].append(libsvm["auc"].evaluate(fitted.transform(libsvm["test"])))
        csv_out = work / f"mllib-{round_index}"

        def mllib_scoring(fitted: Any = fitted, csv_out: Path = csv_out) -> None:
            from pyspark.ml.functions import vector_to_array

            # From the file, as emrml scores from its file: MLlib reads featurized rows, emrml parses CSV.
            path, width = libsvm["test-file"]
            rows = spark.read.format("libsvm").option("numFeatures", width).load(str(path))
            scored = fitted.transform(rows).select(vector_to_array("probability")[1].alias("score"))
            scored.write.mode("overwrite").csv(str(csv_out))

        emrml_out = work / f"emrml-test-{round_index}"
        emrml_scoring = batch_on(spark, artifacts["spark"], held_out_file, emrml_out)
        if spark_first:
            emrml_score_time, _ = timed(emrml_scoring)
            mllib_score_time, _ = timed(mllib_scoring)
        else:
            mllib_score_time, _ = timed(mllib_scoring)
            emrml_score_time, _ = timed(emrml_scoring)
        mllib_pairs["training"].append((times["spark"]["training"], mllib_time))
        mllib_pairs["scoring"].append((mllib_score_time, emrml_score_time))  # throughput ratio emrml/MLlib
        measured = (mllib_time, mllib_score_time, emrml_score_time)
        print("mllib", round_index, [round(t, 2) for t in measured], file=sys.stderr)

    held_rows = libsvm["test"].count()
    text = report(
        args.rows, started, load_before, load_average(), session_start, pairs, mllib_pairs, aucs, identical,
        held_rows,
    )  # fmt: skip
    print(text)
    if not args.no_readme:
        write_readme_section("spark", text)
    shutil.rmtree(work, ignore_errors=True)


def report(
    rows: int,
    started: str,
    load_before: str,
    load_after: str,
    session_start: float,
    pairs: dict[str, list[tuple[float, float]]],
    mllib_pairs: dict[str, list[tuple[float, float]]],
    aucs: dict[str, list[float]],
    identical: list[bool],
    held_rows: int,
) -> str:
    def seconds(values: list[float]) -> str:
        return ", ".join(f"{v:.1f}" for v in values)

    lines = [
        f"Measured {started}; load average (1, 5, 15 min) {load_before} before, {load_after} after.",
        "",
        machine_report(),
        f"- pyspark {metadata.version('pyspark')}, {java_version()}",
        "",
        f"Rows: {rows:,} (training: the random 70 %; scoring: the other {held_rows:,}). Spark application "
        f"(`local[2]`) start, once: {session_start:.1f} s.",
        "",
        "| step | Spark engine s | local engine s | Spark / local (median of rounds) | goal |",
        "|---|---|---|---:|---|",
    ]
    for name, measured in pairs.items():
        ratio = median_ratio(measured)
        lines.append(
            f"| {name} | {seconds([a for a, _ in measured])} | {seconds([b for _, b in measured])} | "
            f"**{ratio:.2f}** | ≤ 2.5 ({'met' if ratio <= 2.5 else 'missed'}) |"
        )
    training_ratio = median_ratio(mllib_pairs["training"])
    scoring_ratio = median_ratio(mllib_pairs["scoring"])
    auc_gap = statistics.median(aucs["spark"]) - statistics.median(aucs["mllib"])
    lines += [
        "",
        f"AUC on the held-out rows (median): Spark engine {statistics.median(aucs['spark']):.4f}, "
        f"local engine {statistics.median(aucs['local']):.4f}, MLlib {statistics.median(aucs['mllib']):.4f}. "
        "Batch result "
        f"files of one model on both engines byte-identical: {all(identical)}.",
        "",
        "| emrml on Spark vs MLlib | emrml s | MLlib s | ratio (median) | goal |",
        "|---|---|---|---:|---|",
        f"| training (emrml from CSV, 10 passes; MLlib from LibSVM, `fit`, 10 iterations) | "
        f"{seconds([a for a, _ in mllib_pairs['training']])} | "
        f"{seconds([b for _, b in mllib_pairs['training']])} "
        f"| **{training_ratio:.2f}** | ≤ 1.0 ({'met' if training_ratio <= 1.0 else 'missed'}) |",
        f"| scoring throughput (emrml batch prediction from CSV; MLlib LibSVM read + `transform` + CSV) | "
        f"{seconds([b for _, b in mllib_pairs['scoring']])} | "
        f"{seconds([a for a, _ in mllib_pairs['scoring']])} "
        f"| **{scoring_ratio:.2f}** (emrml / MLlib throughput) | ≥ 1.0 "
        f"({'met' if scoring_ratio >= 1.0 else 'missed'}) |",
        "",
        f"AUC emrml on Spark − MLlib: **{auc_gap:+.4f}** "
        f"(goal ≥ −0.002: {'met' if auc_gap >= -0.002 else 'missed'}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
