"""Model quality benchmark: emrml's suggested recipe and default parameters against scikit-learn and LightGBM.

Run by hand from the repository root (not part of the tests; needs scikit-learn and lightgbm)::

    uv run python bench/quality.py                  # every dataset, the variants and the tutorial anchor
    uv run python bench/quality.py --only sms_spam  # one dataset
    uv run python bench/quality.py --no-readme      # print only

For every dataset of ``../shared/datasets`` the split of the datasets README is written to a temporary
folder (``numpy.random.default_rng(42).permutation(n)``; the first ``int(0.7 * n)`` rows train, the rest
evaluate; header and rows in that order). On that split:

* **emrml**: two datasources over the two files, CreateMLModel with the suggested recipe and default
  parameters, CreateEvaluation; once with the API's defaults and once with the console's
  (``Settings.training_defaults``). The metric is the evaluation's ``BinaryAUC`` / ``MulticlassAvgFScore``
  / ``RegressionRMSE``.
* **emrml variants** (extra rows): the suggested recipe plus ``normalize(ALL_NUMERIC)`` and word bigrams
  (what ``suggest_recipe(..., extras=True)`` adds); the same with ``sgd.maxPasses=100``; and 10 quantile
  bins of every number plus ``normalize(ALL_NUMERIC)`` (the linear pipeline's features).
* **linear**: 10 quantile bins (one-hot) plus a standardized copy of every number (median-imputed, with a
  missing indicator where training had missing values), binaries as 0/1, one-hot categories, binary word
  1–2-grams of text; ``LogisticRegressionCV`` (multinomial for multiclass) or ``RidgeCV``, the
  regularization chosen by shuffled 3-fold cross-validation on the training rows, scored by the
  benchmark's metric (AUC, macro F1, RMSE).
* **lightgbm**: 500 trees, otherwise LightGBM's defaults; numbers as floats (NaN when missing), categories as
  LightGBM categorical codes, text as binary word 1–2-grams (those in at least two training rows).

Metrics for the baselines follow emrml's definitions: AUC; macro F1 = mean F1 over the classes present in
the evaluation data; RMSE. The **tutorial anchor** trains on bank_marketing split by emrml's own random
70/30 DataRearrangement (three seeds), with the suggested recipe and defaults (and the variants); the
baselines are fitted on exactly the rows each side selects. Amazon ML's tutorial model reached AUC 0.94.

Goals: emrml within 0.01 AUC, and within 2 % (relative) macro F1 and RMSE, of the linear pipeline; AUC of
at least 0.94 on the tutorial anchor.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from common import (
    BENCH_DIR,
    create_datasource,
    emrml_app,
    evaluate,
    load_average,
    machine_report,
    recipe_of,
    single_threaded,
    train,
    write_readme_section,
)
from emrml.config import Settings
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import AttributeType, Schema, parse_schema
from emrml.core.values import parse_binary, parse_numeric
from emrml.engine.training import DatasourceBatches, DatasourceData
from emrml.service.app import EmrML

DATASETS_DIR = BENCH_DIR.parent / ".." / "shared" / "datasets"
SEED = 42
TRAIN_FRACTION = 0.7
CV_FOLDS = 3
LGBM_TREES = 500
DEFAULTS = ("api", "console")
#: Seeds of the tutorial anchor's random DataRearrangement.
ANCHOR_SEEDS = ("tutorial-1", "tutorial-2", "tutorial-3")
ANCHOR_GOAL = 0.94


@dataclass(frozen=True)
class Dataset:
    """A shared dataset, its model type and the reference numbers of the datasets README."""

    name: str
    model_type: str
    #: Reference metric values: trivial, linear, sgd_aml, lightgbm.
    reference: tuple[float, float, float, float]

    @property
    def metric(self) -> str:
        return {"BINARY": "AUC", "MULTICLASS": "macro F1", "REGRESSION": "RMSE"}[self.model_type]


DATASETS = (
    Dataset("bank_marketing", "BINARY", (0.5, 0.9392, 0.9356, 0.9451)),
    Dataset("sms_spam", "BINARY", (0.5, 0.9919, 0.9838, 0.9899)),
    Dataset("wine_quality", "MULTICLASS", (0.087, 0.2975, 0.2324, 0.3433)),
    Dataset("bike_sharing_hourly", "REGRESSION", (181.7, 99.2, 99.8, 39.2)),
    Dataset("california_housing", "REGRESSION", (115_082, 61_410, 62_006, 45_098)),
)


# ------------------------------------------------------------------------------------------------ the split


@dataclass
class Split:
    """A dataset's records as strings (header order), split into training and evaluation rows."""

    schema: Schema
    schema_json: str
    header: list[str]
    train: list[list[str]]
    evaluate: list[list[str]]

    def column(self, rows: list[list[str]], name: str) -> list[str]:
        position = self.header.index(name)
        return [row[position] for row in rows]


def read_split(dataset: Dataset) -> Split:
    """Read ``data.csv`` (RFC 4180) and split it by the datasets README's permutation."""
    folder = DATASETS_DIR / dataset.name
    schema_json = (folder / "data.csv.schema").read_text()
    with (folder / "data.csv").open(newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        rows = list(reader)
    order = np.random.default_rng(SEED).permutation(len(rows))
    cut = int(TRAIN_FRACTION * len(rows))
    return Split(
        parse_schema(schema_json),
        schema_json,
        header,
        [rows[i] for i in order[:cut]],
        [rows[i] for i in order[cut:]],
    )


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """Header and rows as RFC 4180 CSV (quoted only when needed, LF line ends)."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------ baselines


@dataclass
class Columns:
    """The input attributes of one side of a split, parsed: numbers and binaries as float (NaN missing)."""

    numeric: np.ndarray
    binary: np.ndarray
    categorical: np.ndarray
    text: list[str]


def _numbers(values: list[str], kind: AttributeType) -> np.ndarray:
    parsed = (parse_binary if kind == AttributeType.BINARY else parse_numeric)(pa.array(values, pa.string()))
    return np.where(parsed.missing | parsed.invalid, np.nan, parsed.values)


def columns(split: Split, rows: list[list[str]]) -> Columns:
    """Parse the input attributes of ``rows``; several TEXT attributes are joined by a space."""
    by_type: dict[AttributeType, list[str]] = {kind: [] for kind in AttributeType}
    for attribute in split.schema.input_attributes:
        by_type[attribute.type].append(attribute.name)

    def stack(kind: AttributeType) -> np.ndarray:
        names = by_type[kind]
        if not names:
            return np.zeros((len(rows), 0))
        return np.column_stack([_numbers(split.column(rows, name), kind) for name in names])

    categorical = np.array(
        [split.column(rows, name) for name in by_type[AttributeType.CATEGORICAL]], dtype=object
    ).T.reshape(len(rows), -1)
    text_columns = [split.column(rows, name) for name in by_type[AttributeType.TEXT]]
    text = [" ".join(parts) for parts in zip(*text_columns, strict=True)] if text_columns else []
    return Columns(stack(AttributeType.NUMERIC), stack(AttributeType.BINARY), categorical, text)


def target(split: Split, rows: list[list[str]], model_type: str) -> np.ndarray:
    """The target of ``rows``: 0/1, class strings or numbers (every shared dataset has it in every row)."""
    values = split.column(rows, split.schema.target or "")
    if model_type == "MULTICLASS":
        return np.array([value.strip() for value in values], dtype=object)
    kind = AttributeType.BINARY if model_type == "BINARY" else AttributeType.NUMERIC
    return _numbers(values, kind)


def linear_features(train: Columns, evaluate: Columns) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The "linear" features, fitted on ``train``: (training matrix, evaluation matrix)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

    blocks: list[tuple[object, object]] = []
    if train.numeric.shape[1]:
        numbers = make_pipeline(
            SimpleImputer(strategy="median"),
            make_union(
                KBinsDiscretizer(
                    n_bins=10, encode="onehot", strategy="quantile", quantile_method="averaged_inverted_cdf"
                ),
                StandardScaler(),
            ),
        )
        blocks.append((numbers, lambda c: c.numeric))
        if np.isnan(train.numeric).any():
            blocks.append((MissingIndicator(features="missing-only"), lambda c: c.numeric))
    if train.binary.shape[1]:
        blocks.append((SimpleImputer(strategy="most_frequent"), lambda c: c.binary))
    if train.categorical.shape[1]:
        blocks.append((OneHotEncoder(handle_unknown="ignore"), lambda c: c.categorical))
    if train.text:
        blocks.append((CountVectorizer(binary=True, ngram_range=(1, 2)), lambda c: c.text))
    fitted = [(transformer.fit(pick(train)), pick) for transformer, pick in blocks]  # type: ignore[attr-defined]
    return tuple(  # type: ignore[return-value]
        sp.hstack([sp.csr_matrix(t.transform(pick(side))) for t, pick in fitted], format="csr")
        for side in (train, evaluate)
    )


def linear_model(model_type: str, *, by_log_loss: bool = False) -> object:
    """Logistic regression (multinomial for 3+ classes) or ridge, the regularization chosen by 3-fold
    cross-validation on the benchmark's own metric (AUC, macro F1, RMSE), or on log loss when
    ``by_log_loss`` (classification only). Folds are shuffled: rows read in file order are chronological
    in bank_marketing, and unshuffled folds then pick a poor strength."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold

    if model_type == "REGRESSION":
        folds = KFold(CV_FOLDS, shuffle=True, random_state=0)
        return RidgeCV(alphas=np.logspace(-3, 4, 15), cv=folds, scoring="neg_root_mean_squared_error")
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0)
    scoring = "neg_log_loss" if by_log_loss else "roc_auc" if model_type == "BINARY" else "f1_macro"
    return LogisticRegressionCV(Cs=10, cv=folds, scoring=scoring, max_iter=5000)


def lightgbm_features(train: Columns, evaluate: Columns) -> tuple[object, object, list[int]]:
    """Raw features for LightGBM: (training matrix, evaluation matrix, categorical column indices)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import OrdinalEncoder

    dense = [np.hstack([side.numeric, side.binary]) for side in (train, evaluate)]
    categorical: list[int] = []
    if train.categorical.shape[1]:
        # Unseen categories become -1, which LightGBM reads as missing.
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(train.categorical)
        start = dense[0].shape[1]
        categorical = list(range(start, start + train.categorical.shape[1]))
        dense = [
            np.hstack([d, encoder.transform(side.categorical)])
            for d, side in zip(dense, (train, evaluate), strict=True)
        ]
    if not train.text:
        return dense[0], dense[1], categorical
    words = CountVectorizer(binary=True, ngram_range=(1, 2), min_df=2, dtype=np.float32).fit(train.text)
    sparse = [
        sp.hstack([sp.csr_matrix(d), words.transform(side.text)], format="csr")
        for d, side in zip(dense, (train, evaluate), strict=True)
    ]
    return sparse[0], sparse[1], categorical


def metric(model_type: str, truth: np.ndarray, scores: np.ndarray, classes: np.ndarray | None) -> float:
    """emrml's metric: AUC, macro F1 over the classes present in ``truth``, or RMSE."""
    from sklearn.metrics import f1_score, roc_auc_score

    if model_type == "BINARY":
        return float(roc_auc_score(truth, scores))
    if model_type == "MULTICLASS":
        assert classes is not None
        predicted = classes[np.argmax(scores, axis=1)]
        return float(f1_score(truth, predicted, labels=np.unique(truth), average="macro", zero_division=0))
    return float(np.sqrt(np.mean((truth - scores) ** 2)))


def _scores(model: object, X: object, model_type: str) -> np.ndarray:
    if model_type == "BINARY":
        return model.predict_proba(X)[:, 1]  # type: ignore[attr-defined]
    if model_type == "MULTICLASS":
        return model.predict_proba(X)  # type: ignore[attr-defined]
    return model.predict(X)  # type: ignore[attr-defined]


def baselines(dataset: Dataset, split: Split) -> dict[str, float]:
    """The linear pipeline's and LightGBM's metric on the evaluation rows."""
    import lightgbm

    train_columns, eval_columns = columns(split, split.train), columns(split, split.evaluate)
    y_train = target(split, split.train, dataset.model_type)
    y_eval = target(split, split.evaluate, dataset.model_type)
    results: dict[str, float] = {}

    X_train, X_eval = linear_features(train_columns, eval_columns)
    variants = {"linear": False} | ({"linear_log_loss": True} if dataset.model_type != "REGRESSION" else {})
    for name, by_log_loss in variants.items():
        model = linear_model(dataset.model_type, by_log_loss=by_log_loss)
        model.fit(X_train, y_train)  # type: ignore[attr-defined]
        scores = _scores(model, X_eval, dataset.model_type)
        results[name] = metric(dataset.model_type, y_eval, scores, getattr(model, "classes_", None))

    L_train, L_eval, categorical = lightgbm_features(train_columns, eval_columns)
    options = {"n_estimators": LGBM_TREES, "n_jobs": 1, "random_state": 0, "verbose": -1}
    booster = (
        lightgbm.LGBMRegressor(**options)
        if dataset.model_type == "REGRESSION"
        else lightgbm.LGBMClassifier(**options)
    )
    booster.fit(L_train, y_train, categorical_feature=categorical or "auto")
    results["lightgbm"] = metric(
        dataset.model_type,
        y_eval,
        _scores(booster, L_eval, dataset.model_type),
        getattr(booster, "classes_", None),
    )
    return results


# ------------------------------------------------------------------------------------------------ emrml


@dataclass
class EmrmlResult:
    """Metric per training-defaults mode, the wall seconds of training, and the recipe used."""

    metric: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    recipe: str = ""


def _with_outputs(recipe: str, outputs: list[str], *, replace_bins: bool = False) -> str:
    """``recipe`` with extra outputs; ``replace_bins`` swaps its quantile bins for 10 bins of every number."""
    document = json.loads(recipe)
    kept = document["outputs"]
    if replace_bins:
        kept = [o for o in kept if not o.startswith("quantile_bin(")]
        document["groups"] = {}
    document["outputs"] = kept + [o for o in outputs if o not in kept]
    return json.dumps(document, indent=2)


@dataclass(frozen=True)
class Variant:
    """An explicit recipe (None: the suggested one) and training parameters (None: the defaults)."""

    label: str
    recipe: str | None = None
    parameters: dict[str, str] | None = None


#: Passes of the convergence variant (the API default is 10).
MANY_PASSES = "100"


def recipe_variants(suggested: str, schema: Schema) -> list[Variant]:
    """The variants derived from the suggested recipe: it plus normalized numbers and word bigrams (what
    ``suggest_recipe(..., extras=True)`` adds); that with 100 passes; 10 bins of every number plus
    normalized numbers (the linear pipeline's features)."""
    types = {a.type for a in schema.input_attributes}
    extras = []
    if AttributeType.NUMERIC in types:
        extras.append("normalize(ALL_NUMERIC)")
    if AttributeType.TEXT in types:
        extras.append("ngram(lowercase(no_punct(ALL_TEXT)),2)")
    label = "+ " + " + ".join(extras)
    with_extras = _with_outputs(suggested, extras)
    variants = [
        Variant(label, with_extras),
        Variant(f"{label}, {MANY_PASSES} passes", with_extras, {"sgd.maxPasses": MANY_PASSES}),
    ]
    if AttributeType.NUMERIC in types:
        as_linear = _with_outputs(suggested, ["quantile_bin(ALL_NUMERIC,10)", *extras], replace_bins=True)
        variants.append(Variant("10 bins + normalize (as linear)", as_linear))
    return variants


def _train_and_evaluate(
    apps: dict[str, EmrML], model_id: str, model_type: str, variant: Variant
) -> EmrmlResult:
    """Train ``variant`` with each app's defaults and evaluate it on ``ds-eval``."""
    result = EmrmlResult()
    for mode, app in apps.items():
        trained = train(
            app,
            f"{model_id}-{mode}",
            model_type,
            "ds-train",
            recipe=variant.recipe,
            parameters=variant.parameters,
        )
        result.metric[mode] = evaluate(app, trained.model_id, "ds-eval")
        result.seconds[mode] = trained.seconds
    result.recipe = variant.recipe or recipe_of(apps["api"], f"{model_id}-api")
    return result


def _run_variants(
    apps: dict[str, EmrML], model_type: str, schema: Schema, variants: bool
) -> dict[str, EmrmlResult]:
    """The suggested recipe's results (first) and, if ``variants``, each variant's, by label."""
    results = {"suggested": _train_and_evaluate(apps, "ml", model_type, Variant("suggested"))}
    if variants:
        for number, variant in enumerate(recipe_variants(results["suggested"].recipe, schema)):
            results[variant.label] = _train_and_evaluate(apps, f"ml-v{number}", model_type, variant)
    return results


def run_emrml(dataset: Dataset, split: Split, folder: Path, variants: bool) -> dict[str, EmrmlResult]:
    """Datasources over the split's two files, then the suggested recipe (and the variants) trained with
    the API's and the console's defaults and evaluated. Results by label, ``"suggested"`` first."""
    folder.mkdir(parents=True, exist_ok=True)
    train_csv = write_csv(folder / "train.csv", split.header, split.train)
    eval_csv = write_csv(folder / "eval.csv", split.header, split.evaluate)
    home = folder / "home"
    with emrml_app(home, "api") as api, emrml_app(home, "console") as console:
        create_datasource(api, "ds-train", train_csv, split.schema_json)
        create_datasource(api, "ds-eval", eval_csv, split.schema_json)
        return _run_variants({"api": api, "console": console}, dataset.model_type, split.schema, variants)


def read_rearranged(location: Path, schema: Schema, rearrangement: dict) -> list[list[str]]:
    """The records a DataRearrangement selects, in file order, read by emrml's own reader."""
    data = DatasourceData(str(location), schema, parse_rearrangement(json.dumps(rearrangement)))
    rows: list[list[str]] = []
    for batch in DatasourceBatches(data, Settings()):
        rows.extend(map(list, zip(*(batch.column(name).to_pylist() for name in schema.names), strict=True)))
    return rows


@dataclass
class AnchorResult:
    """One seed of the tutorial anchor: emrml by recipe label, and the baselines on the same rows."""

    emrml: dict[str, EmrmlResult]
    baseline: dict[str, float]


def run_anchor(folder: Path, variants: bool) -> dict[str, AnchorResult]:
    """bank_marketing split 70/30 by emrml's random DataRearrangement, by seed: emrml with default
    settings (and the variants), and the baselines on exactly the rows each side selects."""
    dataset = DATASETS[0]
    data = DATASETS_DIR / dataset.name / "data.csv"
    schema_json = (DATASETS_DIR / dataset.name / "data.csv.schema").read_text()
    schema = parse_schema(schema_json)
    results = {}
    for seed in ANCHOR_SEEDS:
        splitting = {"percentBegin": 0, "percentEnd": 70, "strategy": "random"}
        splitting["strategyParams"] = {"randomSeed": seed}  # type: ignore[assignment]
        training, evaluation = {"splitting": splitting}, {"splitting": splitting | {"complement": True}}
        split = Split(
            schema,
            schema_json,
            list(schema.names),
            read_rearranged(data, schema, training),
            read_rearranged(data, schema, evaluation),
        )
        home = folder / f"anchor-{seed}"
        with emrml_app(home, "api") as api, emrml_app(home, "console") as console:
            create_datasource(api, "ds-train", data, schema_json, training)
            create_datasource(api, "ds-eval", data, schema_json, evaluation)
            emrml = _run_variants({"api": api, "console": console}, "BINARY", schema, variants)
        results[seed] = AnchorResult(emrml, baselines(dataset, split))
    return results


# ------------------------------------------------------------------------------------------------ report


def _format(dataset: Dataset, value: float | None) -> str:
    if value is None:
        return ""
    if dataset.model_type == "REGRESSION":
        return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}"
    return f"{value:.4f}"


def shortfall(dataset: Dataset, emrml: float, linear: float) -> float:
    """How far ``emrml`` is from the goal, in the metric's units (<= 0: goal met)."""
    if dataset.model_type == "BINARY":
        return (linear - 0.01) - emrml
    if dataset.model_type == "MULTICLASS":
        return 0.98 * linear - emrml
    return emrml - 1.02 * linear


def _goal(dataset: Dataset, emrml: float, linear: float) -> str:
    """``met``, or how far short of the goal emrml is (and, for F1 and RMSE, its distance to linear)."""
    miss = shortfall(dataset, emrml, linear)
    if miss <= 0:
        return "met"
    if dataset.model_type == "BINARY":
        return f"**short by {_format(dataset, miss)}**"
    return f"**short by {_format(dataset, miss)}** ({100 * (emrml - linear) / linear:+.1f} % vs linear)"


def results_table(rows: list[tuple[Dataset, dict[str, EmrmlResult], dict[str, float]]]) -> str:
    header = (
        "| dataset | recipe | metric | emrml (api defaults) | emrml (console defaults) | linear "
        "| linear, CV by log loss | lightgbm | goal, api | goal, console | README linear | README sgd_aml "
        "| README lightgbm | trivial |"
    )
    lines = [header, "|---|---|---|" + "---:|" * 5 + "---|---|" + "---:|" * 4]
    for dataset, emrml, baseline in rows:
        trivial, ref_linear, ref_sgd, ref_lgbm = dataset.reference
        for number, (label, result) in enumerate(emrml.items()):
            first = number == 0
            cells = [
                dataset.name if first else "",
                label,
                dataset.metric,
                _format(dataset, result.metric["api"]),
                _format(dataset, result.metric["console"]),
                _format(dataset, baseline["linear"]) if first else "",
                _format(dataset, baseline.get("linear_log_loss")) if first else "",
                _format(dataset, baseline["lightgbm"]) if first else "",
                _goal(dataset, result.metric["api"], baseline["linear"]),
                _goal(dataset, result.metric["console"], baseline["linear"]),
                *(
                    (_format(dataset, v) for v in (ref_linear, ref_sgd, ref_lgbm, trivial))
                    if first
                    else ("",) * 4
                ),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def anchor_table(results: dict[str, AnchorResult]) -> str:
    """Rows: emrml per recipe and defaults, then the baselines; columns: the seeds and their median."""
    seeds = list(results)
    rows: dict[str, list[float]] = {}
    for label in next(iter(results.values())).emrml:
        for mode in DEFAULTS:
            rows[f"emrml {label} ({mode} defaults)"] = [results[s].emrml[label].metric[mode] for s in seeds]
    for name in ("linear", "lightgbm"):
        rows[f"{name} (same rows)"] = [results[s].baseline[name] for s in seeds]
    lines = [
        "| AUC | " + " | ".join(f"`{seed}`" for seed in seeds) + " | median |",
        "|---|" + "---:|" * (len(seeds) + 1),
    ]
    for name, values in rows.items():
        cells = [f"{v:.4f}" for v in values] + [f"**{statistics.median(values):.4f}**"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    medians = {mode: statistics.median(rows[f"emrml suggested ({mode} defaults)"]) for mode in DEFAULTS}
    verdicts = ", ".join(
        f"{mode} defaults {'met' if median >= ANCHOR_GOAL else 'missed'}" for mode, median in medians.items()
    )
    lines += ["", f"Goal: median AUC ≥ {ANCHOR_GOAL} with the suggested recipe and defaults: {verdicts}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    single_threaded()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="dataset name (repeatable); default: all")
    parser.add_argument("--no-variants", action="store_true", help="suggested recipe only")
    parser.add_argument("--no-anchor", action="store_true", help="skip the tutorial anchor")
    parser.add_argument("--no-readme", action="store_true", help="print the tables, leave README.md alone")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    chosen = [d for d in DATASETS if not args.only or d.name in args.only]
    started, load_before = time.strftime("%Y-%m-%d %H:%M"), load_average()
    rows = []
    with tempfile.TemporaryDirectory(prefix="emrml-quality-") as scratch:
        for dataset in chosen:
            split = read_split(dataset)
            clock = time.perf_counter()
            baseline = baselines(dataset, split)
            baseline_seconds = time.perf_counter() - clock
            emrml = run_emrml(dataset, split, Path(scratch) / dataset.name, not args.no_variants)
            rows.append((dataset, emrml, baseline))
            print(f"## {dataset.name}: baselines {baseline_seconds:.1f} s", file=sys.stderr)
            for label, result in emrml.items():
                seconds = ", ".join(f"{m} {s:.1f} s" for m, s in result.seconds.items())
                print(f"  {label}: {result.metric} ({seconds})", file=sys.stderr)
            print(f"  suggested recipe: {json.loads(emrml['suggested'].recipe)}", file=sys.stderr)
        anchor = None if args.no_anchor else run_anchor(Path(scratch), not args.no_variants)
    report = [
        f"Measured {started}; load average (1, 5, 15 min) {load_before} before, {load_average()} after.",
        "",
        machine_report(),
        "",
        results_table(rows),
    ]
    if anchor is not None:
        report += ["", "Tutorial anchor (bank_marketing, emrml's random 70/30 split, defaults):", ""]
        report.append(anchor_table(anchor))
    text = "\n".join(report)
    print(text)
    if not args.no_readme and not args.only:
        write_readme_section("quality", text)


if __name__ == "__main__":
    main()
