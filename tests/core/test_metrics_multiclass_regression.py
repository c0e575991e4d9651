"""Multiclass and regression evaluation metrics: hand-computed cases, agreement with scikit-learn, merging;
the metrics as the API reports them."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_helpers import binary, dataset_columns, split_points
from sklearn.metrics import confusion_matrix, f1_score, mean_squared_error

from emrml.core.metrics import MulticlassEvaluation, RegressionEvaluation, performance_metrics
from emrml.errors import DataError, InvalidInputException

# -------------------------------------------------------------------------------------- multiclass


def one_hot(predicted: list[int], size: int) -> np.ndarray:
    return np.eye(size)[predicted] * 0.8 + 0.2 / size


def multiclass(classes: list[str], predicted, labels, weights=None) -> MulticlassEvaluation:
    evaluation = MulticlassEvaluation(classes)
    evaluation.update(one_hot(list(predicted), len(classes)), np.asarray(labels), weights)
    return evaluation


def test_macro_f1_and_confusion_matrix_on_a_toy() -> None:
    # true a a a b b c ; predicted a b a b b a — c is never predicted: precision 0, F1 0.
    evaluation = multiclass(["a", "b", "c"], [0, 1, 0, 1, 1, 0], [0, 0, 0, 1, 1, 2])
    result = evaluation.result({"a": 10, "b": 50, "c": 5})
    assert result["confusionMatrix"] == {
        "classes": ["a", "b", "c"],
        "counts": [[2, 1, 0], [0, 2, 0], [1, 0, 0]],
    }
    per_class = {entry["class"]: entry for entry in result["perClass"]}
    assert per_class["a"]["precision"] == pytest.approx(2 / 3) and per_class["a"]["recall"] == pytest.approx(
        2 / 3
    )
    assert per_class["b"]["f1"] == pytest.approx(0.8)
    assert per_class["c"] == {
        "class": "c",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "trueCount": 1,
        "predictedCount": 0,
        "inAverage": True,
    }
    assert result["MulticlassAvgFScore"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert result["trueClassFrequencies"] == {"a": 3, "b": 2, "c": 1}
    assert result["predictedClassFrequencies"] == {"a": 3, "b": 3, "c": 0}
    # Always "b" (most frequent in training): precision 2/6, recall 1 → F1 0.5, averaged over 3 classes.
    assert result["baselineClass"] == "b"
    assert result["baseline"] == pytest.approx(0.5 / 3)
    json.dumps(result, allow_nan=False)


def test_classes_absent_from_true_labels_are_left_out_of_the_average() -> None:
    evaluation = multiclass(["a", "b", "c", "d"], [0, 3, 1, 1], [0, 0, 1, 1])
    result = evaluation.result({"a": 1})
    assert [entry["inAverage"] for entry in result["perClass"]] == [True, True, False, False]
    # a: precision 1, recall 1/2; b: F1 1; c and d are never true labels (d's false positive costs a recall).
    assert result["MulticlassAvgFScore"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_classes_the_model_never_saw_join_the_average_as_missed() -> None:
    """Records of a class absent from training are true labels the model can never predict: F1 0 for
    their class, false positives for the classes predicted instead, as scikit-learn counts them."""
    true = ["a", "a", "b", "b", "z", "z", "y"]  # z and y: classes the model does not have
    predicted = ["a", "b", "b", "b", "a", "b", "a"]
    known = [k for k, label in enumerate(true) if label in ("a", "b")]
    index = {"a": 0, "b": 1}
    evaluation = multiclass(["a", "b"], [index[predicted[k]] for k in known], [index[true[k]] for k in known])
    grown = evaluation.with_unseen({"z": [1, 1], "y": [1, 0]}, records=3)
    result = grown.result({"a": 2, "b": 2})
    assert grown.classes == ("a", "b", "z", "y")
    expected = f1_score(true, predicted, labels=["a", "b", "z", "y"], average="macro", zero_division=0)
    assert result["MulticlassAvgFScore"] == pytest.approx(expected)
    assert result["count"] == 7
    assert result["confusionMatrix"]["counts"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    # Left out, the two unseen classes would have raised the score.
    assert evaluation.result({"a": 2, "b": 2})["MulticlassAvgFScore"] > expected
    with pytest.raises(InvalidInputException, match="unseen classes must not be classes of the model"):
        evaluation.with_unseen({"a": [1, 0]}, records=1)
    with pytest.raises(DataError, match="needs 2 predicted counts"):
        evaluation.with_unseen({"z": [1, 0, 0]}, records=1)


def test_baseline_equals_the_score_of_the_constant_predictor() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, 500)
    training = {"c0": 5, "c1": 9, "c2": 9, "c3": 1}  # tie between c1 and c2 → first in class order
    names = ["c0", "c1", "c2", "c3", "c4"]
    result = multiclass(names, rng.integers(0, 5, 500), labels).result(training)
    constant = multiclass(names, np.full(500, 1), labels).result(training)
    assert result["baselineClass"] == "c1"
    assert result["baseline"] == pytest.approx(constant["MulticlassAvgFScore"])


def test_predicted_class_is_the_first_highest_probability() -> None:
    evaluation = MulticlassEvaluation(["x", "y", "z"])
    evaluation.update(np.array([[0.2, 0.4, 0.4], [0.5, 0.5, 0.0]]), np.array([2, 1]))
    assert evaluation.result({"x": 1})["confusionMatrix"]["counts"] == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]


@settings(max_examples=50, deadline=None)
@given(
    st.integers(2, 7).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=150),
            st.lists(st.integers(0, 150), max_size=4),
            st.booleans(),
        )
    ),
    st.randoms(use_true_random=False),
)
def test_multiclass_agrees_with_scikit_learn_and_merges(case, random) -> None:
    size, pairs, cuts, weighted = case
    labels = np.array([t for t, _ in pairs])
    predicted = np.array([p for _, p in pairs])
    weights = np.array([random.choice([0.5, 1.0, 2.0]) for _ in pairs]) if weighted else None
    names = [f"class{k}" for k in range(size)]
    result = multiclass(names, predicted, labels, weights).result({"class0": 1})
    present = sorted(set(labels.tolist()))
    expected = f1_score(
        labels, predicted, labels=present, average="macro", sample_weight=weights, zero_division=0
    )
    assert result["MulticlassAvgFScore"] == pytest.approx(expected, abs=1e-12)
    matrix = confusion_matrix(labels, predicted, labels=list(range(size)), sample_weight=weights)
    assert np.allclose(result["confusionMatrix"]["counts"], matrix)

    combined = MulticlassEvaluation(names)
    bounds = split_points(cuts, len(pairs))
    for start, end in pairwise(bounds):
        part = MulticlassEvaluation(names)
        part.update(one_hot(predicted[start:end].tolist(), size), labels[start:end])
        combined.merge(part)
    assert combined.result({"class0": 1}) == multiclass(names, predicted, labels).result({"class0": 1})


def test_console_view_collapses_beyond_ten_classes() -> None:
    names = [f"k{k:02d}" for k in range(12)]
    frequencies = [5, 30, 1, 20, 12, 11, 10, 9, 8, 7, 6, 2]
    labels = np.repeat(np.arange(12), frequencies)
    predicted = (labels + (np.arange(labels.size) % 3 == 0)) % 12
    result = multiclass(names, predicted, labels).result({"k01": 1})
    view = result["consoleView"]
    assert view["classes"] == ["k01", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10", "others"]
    assert view["othersClasses"] == ["k00", "k11", "k02"]
    counts = np.array(view["counts"])
    assert counts.shape == (10, 10)
    assert counts.sum() == labels.size
    assert counts[9].sum() == 5 + 2 + 1
    full = np.array(result["confusionMatrix"]["counts"])
    assert counts[0, 0] == full[1, 1] and counts[0, 1] == full[1, 3]
    assert counts[9, 9] == full[np.ix_([0, 2, 11], [0, 2, 11])].sum()
    assert np.allclose(np.array(view["percentages"]).sum(axis=1), 1.0)
    assert view["trueFrequencies"][0] == pytest.approx(30 / labels.size)
    per_class_f1 = {entry["class"]: entry["f1"] for entry in result["perClass"]}
    assert view["f1"][0] == per_class_f1["k01"]
    assert view["f1"][9] == pytest.approx(
        (per_class_f1["k00"] + per_class_f1["k11"] + per_class_f1["k02"]) / 3
    )


def test_console_view_keeps_up_to_ten_classes_in_frequency_order() -> None:
    result = multiclass(["a", "b", "c"], [0, 1, 2, 2], [2, 1, 2, 0]).result({"a": 1})
    assert result["consoleView"]["classes"] == ["c", "a", "b"]
    assert result["consoleView"]["othersClasses"] == []


def test_multiclass_rejects_bad_input() -> None:
    evaluation = MulticlassEvaluation(["a", "b"])
    with pytest.raises(DataError, match=r"shape \(n, 2\)"):
        evaluation.update(np.ones((3, 3)), np.zeros(3, dtype=int))
    with pytest.raises(DataError, match=r"class indices in \[0, 2\); record 1 of the batch has 2"):
        evaluation.update(np.ones((2, 2)), np.array([1, 2]))
    with pytest.raises(DataError, match="integer class indices"):
        evaluation.update(np.ones((2, 2)), np.array([0.0, 1.0]))
    with pytest.raises(DataError, match="no records"):
        evaluation.result({"a": 1})
    with pytest.raises(InvalidInputException, match="distinct"):
        MulticlassEvaluation(["a", "a"])
    with pytest.raises(InvalidInputException, match="different classes"):
        evaluation.merge(MulticlassEvaluation(["a", "c"]))
    with pytest.raises(InvalidInputException, match="positive sum"):
        multiclass(["a", "b"], [0], [0]).result({})
    with pytest.raises(InvalidInputException, match="classes the model lacks"):
        multiclass(["a", "b"], [0], [0]).result({"z": 3})


def test_wine_quality_classes_agree_with_scikit_learn() -> None:
    data = dataset_columns("wine_quality", "alcohol", "quality")
    classes = sorted(set(data["quality"].tolist()))
    labels = np.searchsorted(classes, data["quality"])
    # A crude rule on a real attribute: more alcohol, better wine.
    predicted = np.clip(np.round(data["alcohol"] - 5).astype(int), classes[0], classes[-1])
    predicted_index = np.searchsorted(classes, predicted)
    evaluation = MulticlassEvaluation([str(c) for c in classes])
    for start in range(0, labels.size, 1000):
        end = start + 1000
        evaluation.update(one_hot(predicted_index[start:end].tolist(), len(classes)), labels[start:end])
    result = evaluation.result({"6": 2836, "5": 2138})
    assert result["count"] == 6497
    present = sorted(set(labels.tolist()))
    expected = f1_score(labels, predicted_index, labels=present, average="macro", zero_division=0)
    assert result["MulticlassAvgFScore"] == pytest.approx(expected, abs=1e-12)
    assert result["baselineClass"] == "6"
    share_six = float(np.mean(data["quality"] == 6))
    assert result["baseline"] == pytest.approx(2 * share_six / (1 + share_six) / len(present))


# -------------------------------------------------------------------------------------- regression


def regression(predictions, targets, weights=None) -> RegressionEvaluation:
    evaluation = RegressionEvaluation()
    evaluation.update(np.asarray(predictions, dtype=float), np.asarray(targets, dtype=float), weights)
    return evaluation


def test_rmse_baseline_and_mean_residual_on_a_toy() -> None:
    result = regression([1, 2, 3], [2, 2, 5]).result(training_mean=2.0)
    assert result["RegressionRMSE"] == pytest.approx(math.sqrt(5 / 3))
    assert result["meanResidual"] == pytest.approx(1.0)  # actual − predicted: under-prediction is positive
    assert result["baseline"] == pytest.approx(math.sqrt(3.0))
    assert result["count"] == 3
    histogram = result["residualHistogram"]
    assert len(histogram["edges"]) == 51 and len(histogram["counts"]) == 50
    assert histogram["edges"][0] == pytest.approx(-4 * math.sqrt(5 / 3))
    assert histogram["counts"][25] == 1  # the zero residual: bin [0, width)
    assert sum(histogram["counts"]) == 3 and histogram["below"] == histogram["above"] == 0
    json.dumps(result, allow_nan=False)


def test_perfect_predictions_have_a_centred_histogram() -> None:
    result = regression([1.5, 2.5], [1.5, 2.5]).result(training_mean=0.0)
    assert result["RegressionRMSE"] == 0.0
    assert result["residualHistogram"]["edges"][0] == -1.0
    assert result["residualHistogram"]["counts"][25] == 2


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.sampled_from([0.5, 1.0, 3.0])),
        min_size=1,
        max_size=120,
    ),
    st.lists(st.integers(0, 120), max_size=4),
    st.booleans(),
    st.floats(-1e6, 1e6),
)
def test_regression_agrees_with_scikit_learn_and_merges(records, cuts, weighted, training_mean) -> None:
    predicted = np.array([p for p, _, _ in records])
    actual = np.array([t for _, t, _ in records])
    weights = np.array([w for _, _, w in records]) if weighted else None
    result = regression(predicted, actual, weights).result(training_mean)
    rmse = math.sqrt(mean_squared_error(actual, predicted, sample_weight=weights))
    assert result["RegressionRMSE"] == pytest.approx(rmse, rel=1e-9, abs=1e-9)
    baseline = math.sqrt(
        mean_squared_error(actual, np.full(actual.size, training_mean), sample_weight=weights)
    )
    assert result["baseline"] == pytest.approx(baseline, rel=1e-9, abs=1e-6)
    histogram = result["residualHistogram"]
    total = sum(histogram["counts"]) + histogram["below"] + histogram["above"]
    assert total == pytest.approx(len(records) if weights is None else weights.sum())

    combined = RegressionEvaluation()
    bounds = split_points(cuts, len(records))
    for start, end in pairwise(bounds):
        part = RegressionEvaluation()
        part.update(predicted[start:end], actual[start:end], None if weights is None else weights[start:end])
        combined.merge(part)
    merged = combined.result(training_mean)
    assert merged["count"] == result["count"]
    assert merged["RegressionRMSE"] == pytest.approx(result["RegressionRMSE"], rel=1e-9, abs=1e-9)
    assert merged["baseline"] == pytest.approx(result["baseline"], rel=1e-9, abs=1e-6)


def test_residual_histogram_matches_exact_binning_up_to_bucket_width() -> None:
    rng = np.random.default_rng(2)
    actual = rng.normal(50, 10, 20_000)
    predicted = actual - rng.standard_t(5, 20_000) * 3
    evaluation = RegressionEvaluation()
    for start in range(0, 20_000, 3000):
        evaluation.update(predicted[start : start + 3000], actual[start : start + 3000])
    histogram = evaluation.result(training_mean=50.0)["residualHistogram"]
    edges = np.array(histogram["edges"])
    residual = actual - predicted
    exact, _ = np.histogram(residual, bins=edges)
    near_edge = (np.abs(residual[:, None] - edges[None, :]) <= 2e-3 * np.abs(residual[:, None])).any(axis=1)
    assert np.abs(np.array(histogram["counts"]) - exact).sum() <= near_edge.sum()
    assert histogram["below"] == int((residual < edges[0]).sum())
    assert histogram["above"] == int((residual > edges[-1]).sum())


def test_baseline_is_stable_for_targets_far_from_zero() -> None:
    rng = np.random.default_rng(4)
    actual = 1e9 + rng.normal(0, 1, 10_000)
    evaluation = RegressionEvaluation()
    for start in range(0, 10_000, 999):
        evaluation.update(np.full(actual[start : start + 999].size, 1e9), actual[start : start + 999])
    result = evaluation.result(training_mean=1e9)
    assert result["baseline"] == pytest.approx(math.sqrt(np.mean((actual - 1e9) ** 2)), rel=1e-6)


def test_multiclass_says_its_records_all_weigh_zero() -> None:
    # "the evaluation data has no records" was said of records that were there, weighted 0.
    evaluation = MulticlassEvaluation(["a", "b"])
    evaluation.update(np.array([[0.7, 0.3], [0.4, 0.6]]), np.array([0, 1]), [0.0, 0.0])
    with pytest.raises(DataError) as raised:
        evaluation.result({"a": 1})
    assert str(raised.value) == (
        "the evaluation data has no records with positive weight (2 records in all); MulticlassAvgFScore "
        "needs at least one"
    )


def test_regression_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="targets must be finite; record 1"):
        regression([1.0, 2.0], [1.0, float("inf")])
    with pytest.raises(DataError, match="targets has 1 values"):
        regression([1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="no records with positive weight"):
        regression([1.0], [2.0], [0.0]).result(training_mean=0.0)


def test_regression_targets_too_large_to_square_are_refused_saying_so() -> None:
    # Targets near 1e160 (valid numbers): the residual histogram failed with an internal error ("'list'
    # argument must have no negative elements") on the edges of an infinite RMSE.
    message = (
        "the evaluation data's target values are too large to evaluate: the squares of their differences "
        "from the predictions (or from their mean) overflow the range of floating-point numbers, so "
        "RegressionRMSE cannot be computed"
    )
    with pytest.raises(DataError) as raised:
        regression([0.0, 1.0, 2.0], [1e160, -1e160, 5.0]).result(training_mean=0.0)
    assert str(raised.value) == message
    # Predictions close to the targets, but the baseline (always the training mean, 0) overflows.
    close = regression([1e155, 2e155], [1.0001e155, 2.0001e155])
    with pytest.raises(DataError) as raised:
        close.result(training_mean=0.0)
    assert str(raised.value) == message
    assert regression([1e150], [1.0001e150]).result(training_mean=1e150)["RegressionRMSE"] == pytest.approx(
        1e146
    )


def test_california_housing_income_rule() -> None:
    data = dataset_columns("california_housing", "median_income", "median_house_value")
    income, value = data["median_income"], data["median_house_value"]
    slope, intercept = np.polyfit(income, value, 1)
    predicted = slope * income + intercept
    evaluation = RegressionEvaluation()
    for start in range(0, value.size, 5000):
        evaluation.update(predicted[start : start + 5000], value[start : start + 5000])
    result = evaluation.result(training_mean=float(value.mean()))
    assert result["count"] == 20_640
    assert result["RegressionRMSE"] == pytest.approx(
        math.sqrt(mean_squared_error(value, predicted)), rel=1e-12
    )
    assert result["baseline"] == pytest.approx(float(value.std()), rel=1e-12)
    assert result["RegressionRMSE"] < result["baseline"]
    assert abs(result["meanResidual"]) < 1e-6 * result["RegressionRMSE"]  # least squares: residuals sum to 0


# ------------------------------------------------------------------------------------------ API


def test_performance_metrics_are_full_precision_strings() -> None:
    assert performance_metrics("BINARY", {"BinaryAUC": 0.9228827246570067}) == {
        "BinaryAUC": "0.9228827246570067"
    }
    value = binary([0.1, 0.4, 0.35, 0.8, 0.3, 0.6], [0, 0, 1, 1, 0, 1]).result()["BinaryAUC"]
    properties = performance_metrics("BINARY", {"BinaryAUC": value})
    assert float(properties["BinaryAUC"]) == value
    assert performance_metrics("REGRESSION", regression([1, 2, 3], [2, 2, 5]).result(0.0)) == {
        "RegressionRMSE": repr(math.sqrt(5 / 3))
    }
    assert set(performance_metrics("MULTICLASS", {"MulticlassAvgFScore": 0.5})) == {"MulticlassAvgFScore"}
    with pytest.raises(InvalidInputException, match="MLModelType must be one of"):
        performance_metrics("CLUSTERING", {})
    with pytest.raises(InvalidInputException, match="has no RegressionRMSE"):
        performance_metrics("REGRESSION", {"BinaryAUC": 0.5})
