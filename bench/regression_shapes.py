"""Regression on the two shapes where a linear fit by SGD lagged a closed-form ridge regression.

Run by hand from the repository root: ``uv run python bench/regression_shapes.py [--rows-scale 0.1]``.

Two data sets are generated, deterministically (seed 7), with the shapes of public tables on which emrml's
regression lagged scikit-learn's ``RidgeCV``:

* **few rows, many attributes**: 3,000 rows × 74 attributes (60 NUMERIC, some correlated and some noise,
  with 5 % missing values; 14 CATEGORICAL of 3–12 levels); the target is a sparse linear function of them
  plus a few non-linear terms and noise.
* **heavy tail**: 340,000 rows: a log-normal target (a price), 8 NUMERIC attributes with 10 % missing
  values, a CATEGORICAL of 4,000 levels (e.g. a postcode) whose effects are themselves heavy-tailed, and
  two small CATEGORICAL attributes.

Each is split 70/30 as ``bench/quality.py`` splits the shared data sets; emrml trains with the suggested
recipe and its defaults, and scikit-learn's ``RidgeCV`` (3-fold cross-validation, as ``bench/quality.py``)
is fitted on emrml's own features of the same rows (the trained model's feature space): the learner
against a closed-form fit, on identical features. The goal: emrml's RMSE ≤ 1.03× ridge's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import scipy.sparse as sp

from common import create_datasource, emrml_app, evaluate, load_average, single_threaded, train
from emrml.core.features import FeatureSpace
from emrml.core.model import load_artifact
from emrml.core.schema import Schema, parse_schema
from emrml.engine.training import artifact_path
from quality import linear_model, write_csv

SEED = 7
GOAL = 1.03


def _text(values: np.ndarray, missing: np.ndarray) -> list[str]:
    return ["" if gone else f"{value:.6g}" for value, gone in zip(values, missing, strict=True)]


def wide(rows: int, rng: np.random.Generator) -> tuple[list[str], list[list[str]], dict]:
    """60 numbers (a few correlated groups) and 14 categories; a sparse linear target with kinks."""
    base = rng.normal(size=(rows, 12))
    numbers = np.column_stack([base[:, i % 12] + 0.5 * rng.normal(size=rows) for i in range(60)])
    levels = [int(rng.integers(3, 13)) for _ in range(14)]
    categories = np.column_stack([rng.integers(0, k, size=rows) for k in levels])
    weights = np.where(rng.random(60) < 0.3, rng.normal(scale=2.0, size=60), 0.0)
    effects = [rng.normal(scale=1.5, size=k) for k in levels]
    y = numbers @ weights + sum(effects[j][categories[:, j]] for j in range(14))
    y += 3.0 * np.abs(numbers[:, 0]) + 2.0 * (numbers[:, 1] > 0.5) + rng.normal(scale=2.0, size=rows)
    missing = rng.random(numbers.shape) < 0.05
    header = [f"x{i}" for i in range(60)] + [f"c{j}" for j in range(14)] + ["y"]
    table = [
        _text(numbers[r], missing[r]) + [f"k{categories[r, j]}" for j in range(14)] + [f"{y[r]:.6g}"]
        for r in range(rows)
    ]
    return header, table, _schema(header, numeric=60, categorical=14)


def heavy(rows: int, rng: np.random.Generator) -> tuple[list[str], list[list[str]], dict]:
    """A log-normal price from 8 numbers (10 % missing), a 4,000-level postcode and two small categories."""
    numbers = rng.normal(size=(rows, 8))
    postcode = rng.zipf(1.3, size=rows) % 4000
    postcode_effect = rng.standard_t(3, size=4000) * 0.4
    kind = rng.integers(0, 5, size=rows)
    state = rng.integers(0, 20, size=rows)
    log_price = 11.5 + numbers @ rng.normal(scale=0.25, size=8) + postcode_effect[postcode]
    log_price += rng.normal(scale=0.2, size=5)[kind] + rng.normal(scale=0.1, size=20)[state]
    y = np.exp(log_price + rng.normal(scale=0.35, size=rows))
    missing = rng.random(numbers.shape) < 0.10
    header = [f"x{i}" for i in range(8)] + ["postcode", "kind", "state", "price"]
    table = [
        [*_text(numbers[r], missing[r]), f"p{postcode[r]}", f"t{kind[r]}", f"s{state[r]}", f"{y[r]:.2f}"]
        for r in range(rows)
    ]
    return header, table, _schema(header, numeric=8, categorical=3)


def _schema(header: list[str], *, numeric: int, categorical: int) -> dict:
    types = ["NUMERIC"] * numeric + ["CATEGORICAL"] * categorical + ["NUMERIC"]
    return {
        "version": "1.0",
        "targetAttributeName": header[-1],
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": name, "attributeType": kind} for name, kind in zip(header, types, strict=True)
        ],
    }


def _features(space: FeatureSpace, schema: Schema, path: Path) -> tuple[sp.csr_matrix, np.ndarray]:
    """emrml's own feature matrix of a CSV file, and its target."""
    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in schema.names})
    table = pcsv.read_csv(path, convert_options=options)
    batch = table.combine_chunks().to_batches()[0]
    target = np.asarray(table.column(schema.target or "").to_numpy(zero_copy_only=False), dtype=float)
    return space.transform(batch), target


def run(
    name: str, header: list[str], rows: list[list[str]], schema: dict, folder: Path
) -> tuple[float, float]:
    """emrml (suggested recipe, defaults) against RidgeCV fitted on emrml's own features of the same rows."""
    order = np.random.default_rng(42).permutation(len(rows))
    cut = int(0.7 * len(rows))
    folder = folder / name
    folder.mkdir(parents=True)
    train_csv = write_csv(folder / "train.csv", header, [rows[i] for i in order[:cut]])
    eval_csv = write_csv(folder / "eval.csv", header, [rows[i] for i in order[cut:]])
    schema_json = json.dumps(schema)
    started = time.perf_counter()
    with emrml_app(folder / "home", "console") as app:
        create_datasource(app, "ds-train", train_csv, schema_json)
        create_datasource(app, "ds-eval", eval_csv, schema_json)
        trained = train(app, "ml", "REGRESSION", "ds-train")
        emrml = evaluate(app, "ml", "ds-eval")
        artifact = load_artifact(artifact_path(app.settings, trained.model_id))
    emrml_seconds = time.perf_counter() - started
    parsed = parse_schema(schema_json)
    space = FeatureSpace.from_dict(artifact.feature_space, parsed)
    X_train, y_train = _features(space, parsed, train_csv)
    X_eval, y_eval = _features(space, parsed, eval_csv)
    started = time.perf_counter()
    ridge = linear_model("REGRESSION")
    ridge.fit(X_train, y_train)  # type: ignore[attr-defined]
    ridge_rmse = float(np.sqrt(np.mean((ridge.predict(X_eval) - y_eval) ** 2)))  # type: ignore[attr-defined]
    print(
        f"{name:12} rows {len(rows):>8,} features {X_train.shape[1]:>6,}  emrml RMSE {emrml:12.6g} "
        f"({emrml_seconds:5.1f} s with evaluation)  RidgeCV on the same features {ridge_rmse:12.6g} "
        f"({time.perf_counter() - started:5.1f} s)  ratio {emrml / ridge_rmse:.3f} (goal ≤ {GOAL})"
    )
    return emrml, ridge_rmse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-scale", type=float, default=1.0, help="shrink the heavy-tail set (e.g. 0.1)")
    args = parser.parse_args(argv)
    single_threaded()
    print(f"load average: {load_average()}")
    rng = np.random.default_rng(SEED)
    met = True
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for name, build, rows in (
            ("wide", wide, 3000),
            ("heavy_tail", heavy, int(340_000 * args.rows_scale)),
        ):
            emrml, ridge = run(name, *build(rows, rng), folder)
            met &= emrml <= GOAL * ridge
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
