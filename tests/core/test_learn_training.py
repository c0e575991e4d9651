"""The SGD learner's training: recovery of known models, regularization, determinism, early stopping, size
cap, refused inputs, mixed states, the calibration sample and the refinement's progress."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from learn_helpers import auc, gaussian_rows, logistic_data, source_of

from emrml.core import calibration, learn
from emrml.core.learn import train
from emrml.core.linear import TrainingParameters
from emrml.errors import DataError

# --------------------------------------------------------------------------------------------- parameters


def test_logistic_regression_recovers_known_weights() -> None:
    X, y, truth = logistic_data()
    model, report = train("BINARY", source_of(X, y), X.shape[1], None, TrainingParameters(shuffle="auto"))
    weights = model.weights[:, 0]
    assert np.corrcoef(weights, truth)[0, 1] > 0.99
    assert np.max(np.abs(weights - truth)) < 0.2
    assert abs(model.bias[0] - (-0.5)) < 0.1
    X_test, y_test, _ = logistic_data(seed=0, n=5000)  # same truth, fresh rows
    true_auc = auc(y_test, X_test @ truth)
    assert auc(y_test, model.predict_scores(X_test)) > true_auc - 0.005
    assert report.learning_rate in calibration.LEARNING_RATES
    assert len(report.learning_rate_trials) == len(calibration.LEARNING_RATES)
    assert report.rows == 20_000 and report.passes == len(report.losses)


def test_softmax_regression_recovers_class_probabilities() -> None:
    rng = np.random.default_rng(1)
    n, d, k = 30_000, 15, 4
    truth = rng.normal(size=(d, k))
    X = gaussian_rows(rng, n, d, 8)
    logits = X @ truth
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    y = (probabilities.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
    model, _ = train("MULTICLASS", source_of(X, y), d, k, TrainingParameters(shuffle="auto", max_passes=20))
    predicted = model.predict_scores(X)
    assert predicted.shape == (n, k)
    np.testing.assert_allclose(predicted.sum(axis=1), 1.0, rtol=1e-12)
    assert np.mean(np.abs(predicted - probabilities)) < 0.03
    # Softmax weights are identified up to a shift per feature: compare centred rows.
    centred = model.weights - model.weights.mean(axis=1, keepdims=True)
    true_centred = truth - truth.mean(axis=1, keepdims=True)
    assert np.corrcoef(centred.ravel(), true_centred.ravel())[0, 1] > 0.98
    accuracy = np.mean(predicted.argmax(axis=1) == y)
    assert accuracy > np.mean(probabilities.argmax(axis=1) == y) - 0.01


def test_linear_regression_recovers_known_weights() -> None:
    rng = np.random.default_rng(2)
    n, d = 20_000, 12
    truth = rng.normal(size=d)
    X = gaussian_rows(rng, n, d, 6)
    y = X @ truth + 4.0 + rng.normal(scale=0.5, size=n)
    model, report = train("REGRESSION", source_of(X, y), d, None, TrainingParameters(shuffle="auto"))
    assert np.max(np.abs(model.weights[:, 0] - truth)) < 0.05
    assert abs(model.bias[0] - 4.0) < 0.05
    rmse = np.sqrt(np.mean((model.predict_scores(X) - y) ** 2))
    assert rmse < 0.52
    assert report.target_mean == pytest.approx(np.mean(y), rel=1e-9)
    assert report.target_std == pytest.approx(np.std(y), rel=1e-9)


def test_regression_with_a_huge_target_scale_does_not_diverge() -> None:
    rng = np.random.default_rng(3)
    n, d = 20_000, 10
    truth = rng.normal(size=d)
    X = gaussian_rows(rng, n, d, 5)
    # Sorted by target: the calibration sample sees only the low part, the scale estimate is off.
    y = 1e5 * (X @ truth) + 3e5 + rng.normal(scale=1e4, size=n)
    order = np.argsort(y)
    model, report = train(
        "REGRESSION", source_of(X[order], y[order]), d, None, TrainingParameters(shuffle="auto")
    )
    prediction = model.predict_scores(X)
    assert np.isfinite(prediction).all()
    r2 = 1 - np.mean((prediction - y) ** 2) / np.var(y)
    assert r2 > 0.95
    assert all(math.isfinite(loss) for loss in report.losses)


# ------------------------------------------------------------------------------------------ regularization


def test_l1_produces_exact_zeros_for_irrelevant_features() -> None:
    rng = np.random.default_rng(4)
    n, d = 20_000, 40
    truth = np.zeros(d)
    truth[:5] = [2.0, -2.0, 1.5, -1.5, 1.0]
    X = gaussian_rows(rng, n, d, 10)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ truth)))).astype(float)
    plain, _ = train("BINARY", source_of(X, y), d, None, TrainingParameters(shuffle="auto"))
    sparse_model, report = train(
        "BINARY", source_of(X, y), d, None, TrainingParameters(shuffle="auto", l1=1e-2)
    )
    assert np.count_nonzero(plain.weights) == d
    zeros = np.flatnonzero(sparse_model.weights[:, 0] == 0.0)
    assert len(zeros) >= 25
    assert not set(range(5)) & set(zeros.tolist())
    assert report.nonzero_features == d - len(zeros)


def test_large_l2_shrinks_weights_towards_zero() -> None:
    X, y, _ = logistic_data(seed=5, n=10_000)
    norms = {}
    for l2 in (0.0, 1e-2, 1.0):
        model, _ = train(
            "BINARY", source_of(X, y), X.shape[1], None, TrainingParameters(shuffle="auto", l2=l2)
        )
        norms[l2] = float(np.linalg.norm(model.weights))
    assert norms[0.0] > norms[1e-2] > norms[1.0]
    assert norms[1.0] < 0.2 * norms[0.0]
    huge, _ = train("BINARY", source_of(X, y), X.shape[1], None, TrainingParameters(l2=1e300))
    assert np.abs(huge.weights).max() < 1e-290  # the L2 term dominates every gradient sum


def test_the_bias_is_not_regularized() -> None:
    rng = np.random.default_rng(6)
    X = gaussian_rows(rng, 5000, 5, 2)
    y = (rng.random(5000) < 0.9).astype(float)  # a 90 % prior, features irrelevant
    model, _ = train("BINARY", source_of(X, y), 5, None, TrainingParameters(l2=10.0))
    assert np.abs(model.weights).max() < 0.05
    assert model.bias[0] == pytest.approx(math.log(9), abs=0.15)


# --------------------------------------------------------------------------------------------- mechanics


def test_same_seed_gives_identical_models_and_another_seed_differs() -> None:
    X, y, _ = logistic_data(seed=7, n=8000)
    params = TrainingParameters(shuffle="auto", max_passes=3)
    first, report_1 = train("BINARY", source_of(X, y, batch=1000), X.shape[1], None, params, seed=11)
    second, report_2 = train("BINARY", source_of(X, y, batch=1000), X.shape[1], None, params, seed=11)
    other, _ = train("BINARY", source_of(X, y, batch=1000), X.shape[1], None, params, seed=12)
    assert first == second and report_1 == report_2
    assert not np.array_equal(first.weights, other.weights)


def test_dense_and_sparse_updates_give_bitwise_identical_models(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(8)
    X = gaussian_rows(rng, 6000, 300, 5)
    y = rng.integers(0, 3, size=6000)
    params = TrainingParameters(shuffle="auto", max_passes=3, l1=1e-4)
    models = []
    for ratio in (0, 10**9):
        monkeypatch.setattr(calibration, "DENSE_RATIO", ratio)
        models.append(train("MULTICLASS", source_of(X, y), 300, 3, params)[0])
    assert models[0] == models[1]
    assert np.count_nonzero(models[0].weights) > 0


def test_streaming_reads_the_source_once_per_pass_plus_calibration() -> None:
    X, y, _ = logistic_data(seed=9, n=4000)
    source = source_of(X, y, batch=300)
    _, report = train("BINARY", source, X.shape[1], None, TrainingParameters(shuffle="auto", max_passes=4))
    assert source.calls == report.passes + 1


def test_early_stop_when_the_loss_stops_improving() -> None:
    X, y, _ = logistic_data(seed=10, n=5000)
    _, report = train("BINARY", source_of(X, y), X.shape[1], None, TrainingParameters(max_passes=1000))
    assert report.stopped_early
    assert report.passes < 1000
    last, before = report.losses[-1], report.losses[-2]
    assert before - last < learn.EARLY_STOP_TOLERANCE * abs(before)


def test_validation_loss_drives_early_stopping_and_progress_reaches_one() -> None:
    X, y, _ = logistic_data(seed=11, n=6000)
    X_val, y_val, _ = logistic_data(seed=11, n=2000)
    seen: list[float] = []
    _, report = train(
        "BINARY",
        source_of(X, y, batch=1000),
        X.shape[1],
        None,
        TrainingParameters(max_passes=50),
        progress=seen.append,
        validation=source_of(X_val, y_val),
    )
    assert len(report.validation_losses) == report.passes
    assert report.stopped_early
    assert seen == sorted(seen) and seen[-1] == 1.0 and 0 < seen[0] < 1
    assert len(seen) > report.passes  # per-batch progress after the first pass


def test_zero_sample_weight_rows_do_not_count() -> None:
    X, y, _ = logistic_data(seed=12, n=10_000)
    flipped = sp.vstack([X, X], format="csr")
    labels = np.concatenate([y, 1 - y])
    X_test, y_test, _ = logistic_data(seed=12, n=3000)
    scores = {}
    for noise_weight in (0.0, 1.0):
        weights = np.concatenate([np.ones(len(y)), np.full(len(y), noise_weight)])
        order = np.random.default_rng(0).permutation(len(labels))
        model, _ = train(
            "BINARY",
            source_of(flipped[order], labels[order], weights[order]),
            X.shape[1],
            None,
            TrainingParameters(shuffle="auto"),
        )
        scores[noise_weight] = auc(y_test, model.predict_scores(X_test))
    assert scores[0.0] > 0.85
    assert scores[1.0] < 0.7


def test_model_size_cap_prunes_the_weakest_features() -> None:
    rng = np.random.default_rng(13)
    # Every feature is used (far more than the cap keeps); a wider model trains 8 times as long to show
    # the same pruning.
    n, d = 8_000, 8_000
    X = gaussian_rows(rng, n, d, 20)
    truth = rng.normal(size=d) * (rng.random(d) < 0.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ truth)))).astype(float)
    params = TrainingParameters(max_passes=2, max_model_size=40_000)
    uncapped, full = train("BINARY", source_of(X, y), d, None, TrainingParameters(max_passes=2))
    capped, report = train("BINARY", source_of(X, y), d, None, params)
    capacity = 40_000 // 16
    assert full.pruned_features == 0 and full.nonzero_features > capacity
    assert np.count_nonzero(capped.weights[:, 0]) == capacity == report.nonzero_features
    assert report.pruned_features == full.nonzero_features - capacity
    assert report.estimated_size_bytes == capacity * 16 <= params.max_model_size
    kept = capped.weights[:, 0] != 0
    # The kept rows are the strongest ones of the same training run, unchanged.
    assert np.abs(uncapped.weights[kept, 0]).min() >= np.abs(uncapped.weights[~kept, 0]).max()
    np.testing.assert_array_equal(capped.weights[kept], uncapped.weights[kept])


def test_multiclass_size_estimate_counts_every_output() -> None:
    rng = np.random.default_rng(14)
    X = gaussian_rows(rng, 3000, 5000, 10)
    y = rng.integers(0, 4, size=3000)
    model, report = train(
        "MULTICLASS", source_of(X, y), 5000, 4, TrainingParameters(max_passes=1, max_model_size=100_000)
    )
    row_bytes = 8 + 8 * 4
    assert report.nonzero_features == 100_000 // row_bytes
    assert np.count_nonzero(np.abs(model.weights).sum(axis=1)) == 100_000 // row_bytes


def test_single_class_binary_target_trains_without_failing() -> None:
    rng = np.random.default_rng(15)
    X = gaussian_rows(rng, 2000, 10, 3)
    model, report = train("BINARY", source_of(X, np.zeros(2000)), 10, None, TrainingParameters())
    assert report.passes >= 1
    assert (model.predict_scores(X) < 0.01).all()


def test_multiclass_with_one_class_trains_without_failing() -> None:
    X = sp.csr_matrix(np.ones((50, 2)))
    model, _ = train("MULTICLASS", source_of(X, np.zeros(50)), 2, 1, TrainingParameters())
    np.testing.assert_array_equal(model.predict_scores(X), 1.0)
    assert model.score_one([0, 1], [1.0, 1.0]) == [1.0]


def test_empty_source_gives_a_neutral_model() -> None:
    X = sp.csr_matrix((0, 7))
    model, report = train("MULTICLASS", source_of(X, np.zeros(0)), 7, 3, TrainingParameters())
    assert report.passes == 0 and not model.weights.any()
    np.testing.assert_allclose(model.predict_scores(sp.csr_matrix((2, 7))), 1 / 3)


def test_tiny_data_uses_the_default_rate_and_still_learns() -> None:
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
    y = np.array([1.0, 0.0, 1.0, 0.0])
    model, report = train("BINARY", source_of(X, y), 2, None, TrainingParameters(max_passes=50), seed=1)
    assert report.rows_per_step == 32
    scores = model.predict_scores(X)
    assert scores[0] > 0.6 > 0.4 > scores[1]


@pytest.mark.parametrize(
    ("kind", "y", "error", "message"),
    [
        ("BINARY", np.array([0.0, 2.0]), ValueError, "only 0 and 1"),
        ("MULTICLASS", np.array([0.0, 3.0]), ValueError, r"class indices 0\.\.2"),
        ("MULTICLASS", np.array([0.0, 0.5]), ValueError, "class indices"),
        ("REGRESSION", np.array([1.0, np.inf]), DataError, "not finite"),
    ],
)
def test_targets_that_break_the_contract_are_refused(
    kind: str, y: np.ndarray, error: type, message: str
) -> None:
    X = sp.csr_matrix(np.eye(2))
    with pytest.raises(error, match=message):
        train(kind, source_of(X, y), 2, 3, TrainingParameters())  # type: ignore[arg-type]


def test_extreme_row_weights_train_or_are_refused_clearly() -> None:
    """Row weights come from the data (a rowWeight column): one record weighing 1e20 times the others made
    the prior's probability round to 1 (ZeroDivisionError), weights summing past the float range made it
    NaN (math domain error): both were an internal error of the training job."""
    X = sp.csr_matrix(np.eye(4))
    y = np.array([1.0, 0.0, 0.0, 0.0])
    heavy = np.array([1e20, 1.0, 1.0, 1.0])
    model, _ = train("BINARY", source_of(X, y, heavy), 4, None, TrainingParameters())
    assert np.isfinite(model.bias).all() and np.isfinite(model.weights).all()
    assert math.isfinite(calibration.initial_bias("BINARY", y, heavy, 1)[0])
    with pytest.raises(DataError, match="row weights are too large to train on"):
        train("BINARY", source_of(X, y, np.full(4, 1e308)), 4, None, TrainingParameters())


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # what the job then refuses
@pytest.mark.parametrize("kind", ["BINARY", "MULTICLASS", "REGRESSION"])
def test_a_feature_whose_squared_gradients_overflow_is_divergence(kind: str) -> None:
    # Raw NUMERIC values near 1e200, a few among small ones: their squared gradients overflowed, which
    # stopped their feature's steps at weight 0, and the model scored every record alike, saying nothing.
    rng = np.random.default_rng(3)
    x = rng.random(400)
    y = (x > 0.5).astype(float)
    big = rng.random(400) < 0.05
    x[big] = np.where(y[big] == 1, 1e200, -1e200)
    X = sp.csr_matrix(x[:, None])
    classes = 2 if kind == "MULTICLASS" else None
    with pytest.raises(
        DataError, match=r"^training diverged: the model's weights or their squared gradients"
    ):
        train(kind, source_of(X, y), 1, classes, TrainingParameters(max_passes=3))  # type: ignore[arg-type]
    x[big] = np.where(y[big] == 1, 1e6, -1e6)  # large, but their squares stay in range: trains
    model, _ = train(
        kind, source_of(sp.csr_matrix(x[:, None]), y), 1, classes, TrainingParameters(max_passes=3)
    )  # type: ignore[arg-type]
    assert np.isfinite(model.weights).all()


def test_batches_with_the_wrong_width_or_values_are_refused() -> None:
    X = sp.csr_matrix(np.eye(3))
    with pytest.raises(ValueError, match="3 features; expected 4"):
        train("BINARY", source_of(X, np.zeros(3)), 4, None, TrainingParameters())
    with pytest.raises(DataError, match="overflowed the range of floating-point numbers"):
        train("BINARY", source_of(X * np.inf, np.zeros(3)), 3, None, TrainingParameters())
    with pytest.raises(ValueError, match="CSR"):
        train("BINARY", lambda: iter([(np.eye(3), np.zeros(3), None)]), 3, None, TrainingParameters())
    with pytest.raises(ValueError, match="n_classes"):
        train("MULTICLASS", source_of(X, np.zeros(3)), 3, None, TrainingParameters())


def test_mixing_states_averages_their_weights_and_a_pickled_state_keeps_learning() -> None:
    import pickle

    import scipy.sparse as sp

    from emrml.core.sgd import DualAveraging

    rng = np.random.default_rng(3)
    X = sp.random(400, 30, density=0.2, format="csr", random_state=4)
    y = (rng.random(400) < 0.5).astype(float)
    start = DualAveraging("BINARY", 30, np.zeros(1), 0.3, 0.0, 0.0, dense=False)
    start.fit_rows(X[:100], y[:100], np.ones(100), 32)
    # A state sent to an executor and back (as Spark pickles it) still updates its own arrays.
    left = pickle.loads(pickle.dumps(start))  # the test's own bytes
    right = pickle.loads(pickle.dumps(start))
    left.fit_rows(X[100:250], y[100:250], np.ones(150), 32)
    right.fit_rows(X[250:], y[250:], np.ones(150), 32)
    assert not np.array_equal(left.sums, start.sums) and not np.array_equal(left.sums, right.sums)
    mixed = DualAveraging.mix([left, right])
    assert np.allclose(mixed.sums, (left.sums + right.sums) / 2)
    assert np.allclose(mixed.squares, (left.squares + right.squares) / 2)
    assert mixed.steps == (left.steps + right.steps) // 2
    # With equal squared sums the mixed weights are exactly the mean of the parts' weights.
    right.squares[:] = left.squares
    equal = DualAveraging.mix([left, right])
    assert np.allclose(equal.weights(), (left.weights() + right.weights()) / 2)
    # Adding up in groups and then dividing is the same mix.
    grouped = DualAveraging.add_up([DualAveraging.add_up([left]), DualAveraging.add_up([right])]).mean()
    assert np.array_equal(grouped.sums, equal.sums) and grouped.steps == equal.steps


def test_the_calibration_sample_of_wide_rows_is_bounded_by_non_zeros_not_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rows of long text have thousands of non-zeros: a sample of so many rows would grow with the data up
    # to gigabytes. It keeps the smallest keys within the bound, the same read in one part or in several.
    monkeypatch.setattr(calibration, "CALIBRATION_NONZEROS", 5_000)
    rng = np.random.default_rng(12)
    widths = rng.integers(1, 200, 600)
    columns = np.concatenate([np.arange(width) for width in widths])
    X = sp.csr_matrix((np.ones(columns.size), columns, np.r_[0, np.cumsum(widths)]), shape=(600, 200))
    y = rng.integers(0, 2, 600).astype(float)
    check = learn.Checker("BINARY", 200, 1)

    def expected(keys: np.ndarray) -> sp.csr_matrix:
        order = np.argsort(keys)
        fitting = int(np.searchsorted(np.cumsum(widths[order]), 5_000, side="right"))
        return X[np.sort(order[:fitting])]

    whole = calibration.keyed_sample(source_of(X, y, batch=70), check, 1_000, np.random.default_rng(3))[0]
    assert 0 < whole[0].shape[0] < 600 and whole[0].nnz <= 5_000
    assert (whole[0] != expected(np.random.default_rng(3).random(600))).nnz == 0
    parts = [
        calibration.keyed_sample(source_of(X[i : i + 300], y[i : i + 300], batch=90), check, 1_000, rng)
        for i, rng in ((0, np.random.default_rng(3)), (300, np.random.default_rng(4)))
    ]
    merged, read = calibration.merge_samples(parts, 1_000, 200)
    keys = np.concatenate([np.random.default_rng(3).random(300), np.random.default_rng(4).random(300)])
    assert merged[0].shape == expected(keys).shape and (merged[0] != expected(keys)).nnz == 0
    assert read == 600 and [part[2] for part in parts] == [300, 300]
    # Steps are sized by the rows a sample stands for (here as if drawn from 50,000), not by its own number
    # of rows, which the bound cut short.
    params, rng = TrainingParameters(), np.random.default_rng(5)
    trainer = learn.Trainer("BINARY", 200, None, params, merged, 50_000, rng)
    own = calibration.rows_per_step(merged[0].shape[0])
    assert trainer.rows_per_step == calibration.rows_per_step(50_000) > own


def test_classification_refinement_reports_its_own_phase_and_progress() -> None:
    X, y, _ = logistic_data(seed=3, n=28_000)
    events: list[tuple[str, float | str]] = []
    model, report = train(
        "BINARY",
        source_of(X, y),
        X.shape[1],
        None,
        TrainingParameters(),
        progress=lambda fraction: events.append(("progress", fraction)),
        phase=lambda name: events.append(("phase", name)),
    )
    assert report.refinement_objectives  # the refinement ran
    phases = [value for kind, value in events if kind == "phase"]
    assert phases == [
        learn.TRAINING_PHASE,
        *(f"training pass {number}" for number in range(1, report.passes + 1)),
        learn.CALIBRATING_PHASE,
    ]
    begun = events.index(("phase", learn.CALIBRATING_PHASE))
    passes = [float(value) for kind, value in events[:begun] if kind == "progress"]
    refining = [float(value) for kind, value in events[begun:] if kind == "progress"]
    # The passes leave the refinement its share of the bar, which it fills step by step.
    assert passes and max(passes) < 1.0
    assert [value for value in refining if max(passes) < value < 1.0]
    assert passes + refining == sorted(passes + refining) and refining[-1] == 1.0
    # Reporting changes nothing in the model.
    quiet, _ = train("BINARY", source_of(X, y), X.shape[1], None, TrainingParameters())
    assert np.array_equal(quiet.weights, model.weights) and np.array_equal(quiet.bias, model.bias)
