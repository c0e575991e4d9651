"""Real-time prediction latency: emrml's Predict against scikit-learn's single-row ``predict_proba``.

Run by hand from the repository root (not part of the tests; needs scikit-learn)::

    uv run python bench/realtime.py                 # writes the "Real-time predictions" README section
    uv run python bench/realtime.py --calls 20000 --no-readme

Model: a BINARY model trained by emrml on all of ``../shared/datasets/bank_marketing`` (41,188 rows) with
the suggested recipe and the API's default parameters, in a fresh ``EMRML_HOME`` (training is not
measured). Record: the banking tutorial's real-time record (spec section 12), as Predict receives it — 20
attribute strings.

Measured in this process, each call timed alone with ``perf_counter_ns`` after ``--warmup`` untimed calls,
garbage collector on (its pauses belong in the tail); the emrml functions alternate in blocks of 100 calls
so a change of machine load affects them alike. As in ``emrml serve``, a background thread keeps the
mounted model fresh (``MountedModels.keep_fresh``, which also freezes the loaded model out of the
collector's generations), so no measured call reads the metastore:

* ``app.call("Predict", request)``: the whole operation behind every interface;
* ``predicting.serve_predict``: the same without ``EmrML.call``'s dispatch;
* ``predicting.predict_checked``: without the request check (endpoint lookup, ``PredictEndpoint`` and size
  checks, both rate limits — set high enough never to refuse — and the response);
* ``Predictor.predict(record)``: the library's ``emrml.load_model(...).predict``, and
  ``Predictor.predict_strings``, the same without checking that the values are strings (what
  ``predict_checked`` calls); the scorer remembers the terms of the values it has read (within a bound),
  so the tutorial record, scored again and again, is all lookups: ``predict_strings`` is also timed on
  the dataset's rows in turn (``--rows`` of them), whose values it has or has not met before;
* the fused scorer ``Predictor.predict_strings`` uses for BINARY and REGRESSION models
  (``FeatureSpace.record_scorer``: featurizing, the dot product and the unparsed-value check in one pass),
  and, for comparison, ``FeatureSpace.transform_record`` and ``LinearModel.score_one`` on the same record
  (the MULTICLASS path);
* the generic ``validate_request`` that ``serve_predict``'s hand-written check replaces, for comparison;
* **scikit-learn**: ``Pipeline(ColumnTransformer([OneHotEncoder on the categorical columns,
  KBinsDiscretizer(one-hot, quantile) per group of numeric columns with the suggested recipe's bin
  counts]), LogisticRegression)`` fitted on the same rows; ``predict_proba`` of the record as a one-row
  object array (pandas is not a dependency), ``--sklearn-calls`` times.

The differences of the medians say where the time of a Predict goes; a cProfile of ``Predictor.predict``
lists the functions inside it.

Goal: app.call p50 ≤ 7 µs and p99 ≤ 25 µs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import pstats
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import (
    BENCH_DIR,
    create_datasource,
    load_average,
    machine_report,
    single_threaded,
    train,
    write_readme_section,
)
from emrml.config import Settings
from emrml.core.recipe.grammar import Transformation, Variable, parse_recipe
from emrml.core.schema import AttributeType, parse_schema
from emrml.loading import load_model
from emrml.service.app import EmrML
from emrml.service.predicting import predict_checked, serve_predict
from emrml.service.validation import validate_request

DATASET = BENCH_DIR.parent.parent / "shared" / "datasets" / "bank_marketing"
TUTORIAL_RECORD = (
    "32,services,divorced,basic.9y,no,unknown,yes,cellular,dec,mon,110,1,11,0,nonexistent,-1.8,94.465,"
    "-36.1,0.883,5228.1"
)
#: High enough that the rate limits never refuse a call here; they are still counted on every call.
UNLIMITED = 10**9
GOAL_P50_US = 7.0
GOAL_P99_US = 25.0
#: Calls of one function in a row when the emrml measurements alternate.
BLOCK = 100
#: Functions listed from the profile of Predictor.predict.
PROFILE_LINES = 12


@dataclass(frozen=True)
class Latency:
    calls: int
    p50_us: float
    p99_us: float

    def row(self, name: str, reference: float) -> str:
        ratio = self.p50_us / reference
        return f"| {name} | {self.calls:,} | {self.p50_us:.2f} | {self.p99_us:.2f} | {ratio:.2f} |"


def measure(function: Callable[[], object], calls: int, warmup: int) -> Latency:
    """Time ``calls`` calls of ``function`` one by one after ``warmup`` untimed ones."""
    (latency,) = measure_interleaved([function], calls, warmup, block=calls)
    return latency


def measure_interleaved(
    functions: list[Callable[[], object]], calls: int, warmup: int, block: int = BLOCK
) -> list[Latency]:
    """Time ``calls`` calls of each function one by one, after ``warmup`` untimed ones; the functions take
    turns every ``block`` calls, so that a change of machine load affects every function alike."""
    for function in functions:
        for _ in range(warmup):
            function()
    clock = time.perf_counter_ns
    blocks = -(-calls // block)
    times = [np.empty(blocks * block, dtype=np.int64) for _ in functions]
    for b in range(blocks):
        for function, out in zip(functions, times, strict=True):
            for i in range(b * block, (b + 1) * block):
                start = clock()
                function()
                out[i] = clock() - start
    latencies = []
    for values in times:
        p50, p99 = np.percentile(values, [50, 99]) / 1000.0
        latencies.append(Latency(len(values), float(p50), float(p99)))
    return latencies


def bank_record(header: list[str]) -> dict[str, str]:
    return dict(zip(header[:-1], TUTORIAL_RECORD.split(","), strict=True))


def sklearn_pipeline(recipe: str, schema_json: str, header: list[str]) -> tuple[object, list[str]]:
    """The scikit-learn equivalent of the model's recipe, fitted on the dataset: (pipeline, columns)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder

    schema = parse_schema(schema_json)
    bins: dict[int, list[int]] = {}
    categorical: list[int] = []
    for output in parse_recipe(recipe, schema).outputs:
        expression = output.expression
        if isinstance(expression, Transformation) and expression.function == "quantile_bin":
            (argument,) = expression.args
            assert isinstance(argument, Variable) and expression.parameter is not None
            bins.setdefault(expression.parameter, []).append(header.index(argument.name))
        elif isinstance(expression, Variable):
            categorical.append(header.index(expression.name))
        else:
            raise SystemExit(f"no scikit-learn equivalent for the recipe output {output.text}")
    blocks: list[tuple[str, object, list[int]]] = [
        ("categories", OneHotEncoder(handle_unknown="ignore"), categorical)
    ]
    for n, indices in sorted(bins.items()):
        discretizer = KBinsDiscretizer(
            n_bins=n, encode="onehot", strategy="quantile", quantile_method="averaged_inverted_cdf"
        )
        blocks.append((f"bins{n}", discretizer, indices))
    pipeline = Pipeline(
        [("features", ColumnTransformer(blocks)), ("model", LogisticRegression(max_iter=1000))]
    )
    rows = [line.split(",") for line in (DATASET / "data.csv").read_text().splitlines()[1:]]
    data = np.array([row[:-1] for row in rows], dtype=object)
    numeric = [
        i for i, name in enumerate(header[:-1]) if schema.attribute(name).type == AttributeType.NUMERIC
    ]
    for i in numeric:
        data[:, i] = data[:, i].astype(float)
    target = np.array([row[-1] for row in rows]).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bins merged where quantiles coincide
        pipeline.fit(data, target)
    return pipeline, numeric


def trained_app(home: Path) -> tuple[EmrML, str]:
    settings = Settings.load(
        environ={},
        home=home,
        peak_requests_per_second=UNLIMITED,
        total_requests_per_second=UNLIMITED,
    )
    app = EmrML(settings)
    create_datasource(app, "ds-bank", DATASET / "data.csv", (DATASET / "data.csv.schema").read_text())
    train(app, "ml-bank", "BINARY", "ds-bank")
    return app, "ml-bank"


NAMES = {
    "call": 'app.call("Predict", request)',
    "authorized": 'app.call("Predict", request, caller) (a user of predictors: authorization checked)',
    "serve": "predicting.serve_predict(app, request)",
    "checked": "predicting.predict_checked(app, ...)",
    "predictor": "Predictor.predict(record)",
    "strings": "Predictor.predict_strings(record)",
    "rows": "Predictor.predict_strings(row) on the dataset's rows in turn",
    "fused": "FeatureSpace.record_scorer(weights)(record, [])",
    "transform": "FeatureSpace.transform_record(record)",
    "score": "LinearModel.score_one(indices, values)",
    "validate": "validation.validate_request (generic; not used for Predict)",
    "sklearn": "scikit-learn predict_proba (one row)",
}


def run(
    calls: int, warmup: int, sklearn_calls: int, rows: int
) -> tuple[dict[str, Latency], dict[str, object]]:
    header = (DATASET / "data.csv").open().readline().strip().split(",")
    record = bank_record(header)
    lines = (DATASET / "data.csv").read_text().splitlines()[1:]
    step = max(1, len(lines) // rows)
    records = [dict(zip(header[:-1], line.split(",")[:-1], strict=True)) for line in lines[::step][:rows]]
    turns = itertools.cycle(records)
    with tempfile.TemporaryDirectory(prefix="emrml-realtime-") as folder:
        app, model_id = trained_app(Path(folder) / "home")
        try:
            info = app.call("CreateRealtimeEndpoint", {"MLModelId": model_id})["RealtimeEndpointInfo"]
            url = info["EndpointUrl"]
            request = {"MLModelId": model_id, "Record": record, "PredictEndpoint": url}
            answer = app.call("Predict", request)["Prediction"]
            description = app.call("GetMLModel", {"MLModelId": model_id, "Verbose": True})
            predictor = load_model(model_id, home=Path(folder) / "home")
            space, linear = predictor.space, predictor.artifact.linear
            indices, values = space.transform_record(record)
            fused, _ = space.record_scorer(linear.output_weights(0))
            stop = threading.Event()
            threading.Thread(target=app.mounted.keep_fresh, args=(stop,), daemon=True).start()
            while not app.mounted.kept_fresh:  # started: mounts are now checked off the calls
                time.sleep(0.01)
            characters = sum(map(len, record)) + sum(map(len, record.values()))
            app.access.create_user("bench", ("predictors",))
            caller = f"arn:aws:iam::{app.settings.account_id}:user/bench"
            functions: dict[str, Callable[[], object]] = {
                "call": lambda: app.call("Predict", request),
                "authorized": lambda: app.call("Predict", request, caller),
                "serve": lambda: serve_predict(app, request),
                "checked": lambda: predict_checked(app, model_id, record, url, characters),
                "predictor": lambda: predictor.predict(record),
                "strings": lambda: predictor.predict_strings(record),
                "rows": lambda: predictor.predict_strings(next(turns)),
                "fused": lambda: fused(record, []),
                "transform": lambda: space.transform_record(record),
                "score": lambda: linear.score_one(indices, values),
            }
            latencies = measure_interleaved(list(functions.values()), calls, warmup)
            results = dict(zip(functions, latencies, strict=True))
            amazon_request = {**request, "PredictEndpoint": "https://realtime.machinelearning.amazonaws.com"}
            results["validate"] = measure(
                lambda: validate_request("Predict", amazon_request), calls // 5, warmup // 5
            )
            profile = profile_predict(predictor, record, calls // 5)
            stop.set()
        finally:
            app.close()
    pipeline, numeric = sklearn_pipeline(description["Recipe"], description["Schema"], header)
    row = np.array([list(record.values())], dtype=object)
    for i in numeric:
        row[:, i] = row[:, i].astype(float)
    sklearn_score = float(pipeline.predict_proba(row)[0, 1])  # type: ignore[attr-defined]
    results["sklearn"] = measure(
        lambda: pipeline.predict_proba(row),  # type: ignore[attr-defined]
        sklearn_calls,
        min(warmup, 200),
    )
    facts = {
        "features": len(indices),
        "n_features": space.n_features,
        "emrml_prediction": answer,
        "sklearn_score": sklearn_score,
        "recipe": description["Recipe"],
        "profile": profile,
    }
    return results, facts


def profile_predict(predictor: object, record: dict[str, str], calls: int) -> str:
    """The functions inside ``Predictor.predict`` by own time, from cProfile (which slows every call)."""
    profiler = cProfile.Profile()
    predict = predictor.predict  # type: ignore[attr-defined]
    profiler.enable()
    for _ in range(calls):
        predict(record)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(PROFILE_LINES)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return "\n".join(line.replace(str(Path.cwd()) + "/", "") for line in lines[start:] if line.strip())


def report(results: dict[str, Latency], facts: dict[str, object], load: str) -> str:
    call, predictor, sklearn = results["call"], results["predictor"], results["sklearn"]
    goal = "met" if call.p50_us <= GOAL_P50_US and call.p99_us <= GOAL_P99_US else "missed"
    prediction = facts["emrml_prediction"]
    assert isinstance(prediction, dict)
    p50 = {key: latency.p50_us for key, latency in results.items()}
    parts = [
        ("authorization of a user's call (`Access.check_predict`)", p50["authorized"] - p50["call"]),
        ("`EmrML.call` dispatch", p50["call"] - p50["serve"]),
        ("request check (`serve_predict`'s hand-written one)", p50["serve"] - p50["checked"]),
        (
            "endpoint work: cached model, `PredictEndpoint` and size checks, two rate limits, response",
            p50["checked"] - p50["strings"],
        ),
        (
            "`Predictor.predict_strings` besides the fused scorer: details, sigmoid, the Prediction",
            p50["strings"] - p50["fused"],
        ),
        ("the fused scorer (featurizing, dot product, unparsed-value check)", p50["fused"]),
    ]
    lines = [
        "## Real-time predictions (`bench/realtime.py`)",
        "",
        "```",
        "uv run python bench/realtime.py",
        "uv run python bench/realtime.py --calls 20000 --no-readme",
        "```",
        "",
        "One BINARY model trained on all 41,188 rows of `bank_marketing` (suggested recipe, API default "
        "parameters); the banking tutorial's real-time record (20 attributes, "
        f"{facts['features']} active features of {facts['n_features']}). Latency of single in-process calls "
        "(`perf_counter_ns` around each; garbage collector on), after warm-up; the emrml functions alternate "
        "in blocks of 100 calls. The scikit-learn pipeline is the same featurization (one-hot categories, "
        "quantile bins with the recipe's bin counts, one-hot) and a `LogisticRegression`, fitted on the same "
        "rows; its input is a one-row object array.",
        "",
        machine_report(),
        f"- load average before the run: {load}",
        "",
        "| call | calls | p50 µs | p99 µs | p50 / app.call |",
        "|---|---:|---:|---:|---:|",
        *(results[key].row(NAMES[key], call.p50_us) for key in NAMES),
        "",
        f'Goal for `app.call("Predict")`: p50 ≤ {GOAL_P50_US:g} µs and p99 ≤ {GOAL_P99_US:g} µs — '
        f"**{goal}** (p50 {call.p50_us:.2f} µs, p99 {call.p99_us:.2f} µs). The library's "
        f"`Predictor.predict` alone: p50 {predictor.p50_us:.2f} µs, p99 {predictor.p99_us:.2f} µs. "
        f"scikit-learn's single-row `predict_proba` takes {sklearn.p50_us / call.p50_us:,.0f}× as long as "
        "the whole Predict operation (medians).",
        "",
        "Where the median Predict's time goes (differences of the medians above; on a busy machine a small "
        "part can come out negative):",
        "",
        "| part | µs | share |",
        "|---|---:|---:|",
        *(f"| {name} | {value:.2f} | {value / p50['call']:.0%} |" for name, value in parts),
        "",
        f"`LinearModel.score_one` on the record's {facts['features']} features takes {p50['score']:.2f} µs; "
        f"`transform_record` then `score_one` (the MULTICLASS path) take "
        f"{p50['transform'] + p50['score']:.2f} µs where the fused scorer of BINARY and REGRESSION models "
        f"takes {p50['fused']:.2f} µs. "
        f"The generic `validate_request` would add {p50['validate']:.1f} µs to every Predict.",
        "",
        "Inside `Predictor.predict` (cProfile, own time; the profiler inflates every call):",
        "",
        "```",
        str(facts["profile"]),
        "```",
        "",
        f"Tutorial record: emrml predicts label {prediction['predictedLabel']!r} with score "
        f"{next(iter(prediction['predictedScores'].values())):.5f}; the scikit-learn pipeline scores it "
        f"{facts['sklearn_score']:.5f} (Amazon ML's tutorial model: label 0, 0.03348).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000, help="timed calls of each emrml function")
    parser.add_argument("--warmup", type=int, default=10_000, help="untimed calls before timing")
    parser.add_argument("--sklearn-calls", type=int, default=1_000, help="timed scikit-learn calls")
    parser.add_argument("--rows", type=int, default=5_000, help="dataset rows predict_strings takes in turn")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args(argv)
    single_threaded()
    load = load_average()
    results, facts = run(args.calls, args.warmup, args.sklearn_calls, args.rows)
    text = report(results, facts, load)
    print(text)
    print("recipe:", json.dumps(facts["recipe"]))
    if not args.no_readme:
        write_readme_section("realtime", text)


if __name__ == "__main__":
    main()
