"""The SGD learner's models scoring, and trained on the shared datasets to their reference figures."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv
import pytest
import scipy.sparse as sp
from learn_helpers import auc, gaussian_rows, logistic_data, source_of

from emrml.core import calibration
from emrml.core.learn import train
from emrml.core.linear import LinearModel, TrainingParameters

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"

# ------------------------------------------------------------------------------------------------ scoring


@pytest.mark.parametrize("kind", ["BINARY", "MULTICLASS", "REGRESSION"])
def test_score_one_equals_predict_scores(kind: str) -> None:
    rng = np.random.default_rng(16)
    d, k = 500, (5 if kind == "MULTICLASS" else 1)
    model = LinearModel(kind, rng.normal(scale=3.0, size=(d, k)), rng.normal(size=k))  # type: ignore[arg-type]
    X = gaussian_rows(rng, 300, d, 25)
    X = sp.vstack(
        [X, sp.csr_matrix((1, d)), sp.csr_matrix(([400.0], ([0], [3])), shape=(1, d))], format="csr"
    )
    batch = model.predict_scores(X)
    for row in range(X.shape[0]):
        start, stop = X.indptr[row], X.indptr[row + 1]
        one = model.score_one(X.indices[start:stop].tolist(), X.data[start:stop].tolist())
        np.testing.assert_allclose(one, batch[row], rtol=1e-12, atol=1e-12)
    assert isinstance(model.score_one([1], [1.0]), list if kind == "MULTICLASS" else float)


def test_report_dict_is_strict_json() -> None:
    X, y, _ = logistic_data(seed=17, n=2000)
    _, report = train("BINARY", source_of(X, y), X.shape[1], None, TrainingParameters(max_passes=2))
    report.losses.append(math.inf)
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["losses"][-1] is None
    assert document["passes"] == 2 and document["learning_rate"] == report.learning_rate


def test_linear_model_checks_its_shapes_and_compares_by_value() -> None:
    weights = np.arange(6.0).reshape(3, 2)
    with pytest.raises(ValueError, match="1 output"):
        LinearModel("BINARY", weights, np.zeros(2))
    with pytest.raises(ValueError, match="bias must have 2 values"):
        LinearModel("MULTICLASS", weights, np.zeros(3))
    model = LinearModel("MULTICLASS", weights, np.zeros(2))
    assert model == LinearModel("MULTICLASS", weights.copy(), np.zeros(2))
    assert model != LinearModel("MULTICLASS", weights + 1, np.zeros(2))
    with pytest.raises(ValueError, match="5 features; the model has 3"):
        model.decision(sp.csr_matrix((1, 5)))


# -------------------------------------------------------------------------------------------- real data


def featurize(name: str) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """A small stand-in for the recipe featurizer on a shared dataset: per NUMERIC attribute 10 quantile
    bins plus the standardized value, one-hot CATEGORICAL/BINARY, and lower-cased word 1-2-grams for TEXT
    (vocabularies and quantiles fitted on the training rows). Returns X, raw target, train and test rows."""
    folder = DATASETS / name
    if not folder.is_dir():
        pytest.skip(f"the shared datasets are not beside the checkout ({DATASETS})")
    schema = json.loads((folder / "data.csv.schema").read_text())
    types = {a["attributeName"]: a["attributeType"] for a in schema["attributes"]}
    target = schema["targetAttributeName"]
    table = pv.read_csv(
        folder / "data.csv", convert_options=pv.ConvertOptions(column_types=dict.fromkeys(types, pa.string()))
    )
    n = table.num_rows
    order = np.random.default_rng(42).permutation(n)
    fit, test = order[: int(0.7 * n)], order[int(0.7 * n) :]
    rows = np.arange(n)
    blocks = []
    for column, kind in types.items():
        if column == target:
            continue
        text = np.array(table[column].to_pylist(), dtype=object)
        if kind == "NUMERIC":
            values = np.array([float(v) if v else np.nan for v in text])
            known = values[fit][~np.isnan(values[fit])]
            edges = np.unique(np.quantile(known, np.arange(1, 10) / 10))
            filled = np.where(np.isnan(values), known.mean(), values)
            bins = np.searchsorted(edges, filled)
            blocks.append(sp.csr_matrix((np.ones(n), (rows, bins)), shape=(n, len(edges) + 1)))
            blocks.append(sp.csr_matrix(((filled - known.mean()) / (known.std() or 1.0))[:, None]))
            continue
        if kind != "TEXT":
            categories = np.unique(text[fit].astype(str))
            codes = np.searchsorted(categories, text.astype(str)).clip(max=len(categories) - 1)
            known = categories[codes] == text.astype(str)
            matrix = (np.ones(int(known.sum())), (rows[known], codes[known]))
            blocks.append(sp.csr_matrix(matrix, shape=(n, len(categories))))
            continue
        tokens = [(v or "").lower().split() for v in text]
        tokens = [t + [f"{a} {b}" for a, b in itertools.pairwise(t)] for t in tokens]
        vocabulary: dict[str, int] = {}
        for i in fit:
            for token in tokens[i]:
                vocabulary.setdefault(token, len(vocabulary))
        pairs = {(i, vocabulary[t]) for i in rows for t in tokens[i] if t in vocabulary}
        r, c = zip(*sorted(pairs), strict=True)
        blocks.append(sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, len(vocabulary))))
    X = sp.hstack(blocks, format="csr")
    return X, np.array(table[target].to_pylist(), dtype=object), fit, test


def test_bank_marketing_reaches_the_reference_auc() -> None:
    X, raw, fit, test = featurize("bank_marketing")
    y = raw.astype(float)
    params = TrainingParameters.console()
    model, report = train("BINARY", source_of(X[fit], y[fit], batch=10_000), X.shape[1], None, params)
    assert auc(y[test], model.predict_scores(X[test])) > 0.93  # datasets README: sgd_aml 0.9356
    assert report.passes >= 5


def test_california_housing_regression_matches_the_reference_rmse() -> None:
    X, raw, fit, test = featurize("california_housing")
    y = raw.astype(float)
    model, _ = train("REGRESSION", source_of(X[fit], y[fit]), X.shape[1], None, TrainingParameters.console())
    rmse = float(np.sqrt(np.mean((model.predict_scores(X[test]) - y[test]) ** 2)))
    assert rmse < 64_000  # datasets README: sgd_aml 62,006, trivial 115,082


def test_sms_spam_text_features_use_sparse_steps_and_reach_the_reference_auc() -> None:
    X, raw, fit, test = featurize("sms_spam")
    y = raw.astype(float)
    source = source_of(X[fit], y[fit])
    rows_per_step = calibration.rows_per_step(len(fit))
    assert not calibration.use_dense(X.shape[1], 1, X[fit], rows_per_step)  # tens of thousands of n-grams
    model, _ = train("BINARY", source, X.shape[1], None, TrainingParameters.console())
    assert auc(y[test], model.predict_scores(X[test])) > 0.98  # datasets README: sgd_aml 0.9838


def test_wine_quality_multiclass_beats_the_majority_class() -> None:
    X, raw, fit, test = featurize("wine_quality")
    labels = sorted(set(raw.tolist()))
    y = np.array([labels.index(v) for v in raw], dtype=float)
    model, _ = train(
        "MULTICLASS", source_of(X[fit], y[fit]), X.shape[1], len(labels), TrainingParameters.console()
    )
    predicted = model.predict_scores(X[test]).argmax(axis=1)
    f1 = []
    for c in np.unique(y[test]):
        tp = np.sum((predicted == c) & (y[test] == c))
        precision, recall = tp / max(np.sum(predicted == c), 1), tp / np.sum(y[test] == c)
        f1.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    assert np.mean(f1) > 0.22  # datasets README: trivial 0.087, sgd_aml 0.2324
