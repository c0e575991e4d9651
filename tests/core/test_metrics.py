"""Evaluation metrics: hand-computed cases, agreement with scikit-learn, merging, insights and alerts."""

from __future__ import annotations

import json
import math
import re
import tracemalloc
from functools import cache
from itertools import pairwise
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    mean_squared_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from emrml.core.alerts import NumericTarget, evaluation_alerts
from emrml.core.metrics import (
    SCORE_EDGES,
    THRESHOLD_METRICS,
    BinaryEvaluation,
    MulticlassEvaluation,
    RegressionEvaluation,
    performance_metrics,
)
from emrml.core.metrics import binary as binary_metrics
from emrml.errors import DataError, InvalidInputException

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


@cache
def dataset_columns(name: str, *columns: str) -> dict[str, np.ndarray]:
    path = DATASETS / name / "data.csv"
    if not path.is_file():
        pytest.skip(f"the shared datasets are not beside the checkout ({path})")
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=list(columns)))
    return {column: table.column(column).to_numpy() for column in columns}


def binary(scores, labels, weights=None) -> BinaryEvaluation:
    evaluation = BinaryEvaluation()
    evaluation.update(np.asarray(scores, dtype=float), np.asarray(labels), weights)
    return evaluation


def split_points(cuts: list[int], n: int) -> list[int]:
    """Batch boundaries 0 … n from arbitrary cut positions (clipped to n, possibly empty batches)."""
    return [0, *sorted(min(c, n) for c in cuts), n]


# ------------------------------------------------------------------------------------------ binary


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("rounding", [None, 3])
def test_scores_spilled_to_scratch_files_give_the_same_result(
    monkeypatch: pytest.MonkeyPatch, weighted: bool, rounding: int | None
) -> None:
    # Spilled runs are merged back a slice at a time (slices far smaller than a run); two evaluations
    # that spilled merge as well. Ties (rounded scores) and scores of exactly 0 and 1 cross the slices.
    rng = np.random.default_rng(8)
    batches = []
    for _ in range(14):
        scores = rng.random(2_000)
        scores = scores if rounding is None else np.round(scores, rounding)
        scores[:5], scores[5:10] = 0.0, 1.0
        labels = (rng.random(2_000) < scores).astype(int)
        batches.append((scores, labels, rng.random(2_000) * 3 if weighted else None))
    in_memory = BinaryEvaluation()
    for batch in batches:
        in_memory.update(*batch)
    expected = in_memory.result(0.37)
    monkeypatch.setattr(binary_metrics, "SPILL_SCORES", 500)
    monkeypatch.setattr(binary_metrics, "MERGE_ENTRIES", 1_000)
    left, right = BinaryEvaluation(), BinaryEvaluation()
    for index, batch in enumerate(batches):
        (left if index < 9 else right).update(*batch)
    left.merge(right)
    assert left._spilled and right._spilled
    result = left.result(0.37)
    if weighted:  # sums of weights in another order: equal to rounding
        assert result["BinaryAUC"] == pytest.approx(expected["BinaryAUC"], rel=1e-12)
        for key in ("positive", "negative"):
            assert result["histograms"][key] == pytest.approx(expected["histograms"][key], abs=1e-9)
    else:
        assert result == expected


def test_memory_of_a_binary_evaluation_is_bounded_by_the_spill_not_the_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2,000,000 distinct scores would take 48 MB in memory; spilled past 65,536, memory stays a few MB.
    monkeypatch.setattr(binary_metrics, "SPILL_SCORES", 1 << 16)
    monkeypatch.setattr(binary_metrics, "MERGE_ENTRIES", 1 << 16)
    rng = np.random.default_rng(9)
    evaluation = BinaryEvaluation()
    tracemalloc.start()
    try:
        for _ in range(40):
            scores = rng.random(50_000)
            evaluation.update(scores, (rng.random(50_000) < scores).astype(int))
        result = evaluation.result()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["count"] == 2_000_000 and 0.8 < result["BinaryAUC"] < 0.9
    assert peak < 16 << 20


def test_auc_hand_computed_and_confusion_at_default_threshold() -> None:
    result = binary([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]).result()
    assert result["BinaryAUC"] == 0.75
    assert result["baseline"] == 0.5
    assert result["count"] == 4
    assert result["confusion"] == {"tp": 1, "fp": 0, "tn": 2, "fn": 1}
    assert result["accuracy"] == 0.75
    assert result["precision"] == 1.0
    assert result["recall"] == 0.5
    assert result["falsePositiveRate"] == 0.0
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["predictedPositiveRate"] == 0.25


@pytest.mark.parametrize(
    ("scores", "labels", "auc"),
    [
        ([0.3, 0.3, 0.3, 0.3], [0, 1, 0, 1], 0.5),  # all tied
        ([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1], 0.875),  # one tied pair counts one half: 3.5 / 4
        ([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1], 0.0),  # inverted
        ([0.0, 1.0], [0, 1], 1.0),
    ],
)
def test_auc_ties_count_one_half(scores: list[float], labels: list[int], auc: float) -> None:
    assert binary(scores, labels).auc() == auc


def test_score_equal_to_threshold_is_predicted_one() -> None:
    # Spec 12: at threshold 0.77, score 0.8228876 → 1 and 0.7695356 → 0; spec 7.3: score ≥ threshold → 1.
    result = binary([0.8228876, 0.7695356, 0.77], [1, 0, 0]).result(threshold=0.77)
    assert result["confusion"] == {"tp": 1, "fp": 1, "tn": 1, "fn": 0}
    assert result["threshold"] == 0.77


def test_histograms_use_100_bins_with_closed_last_bin() -> None:
    result = binary([0.0, 0.005, 0.77, 0.7699999, 0.99, 1.0, 0.5], [1, 0, 1, 0, 1, 1, 0]).result()
    histograms = result["histograms"]
    assert histograms["edges"] == [k / 100 for k in range(101)]
    positive, negative = histograms["positive"], histograms["negative"]
    assert len(positive) == len(negative) == 100
    assert positive[0] == 1 and negative[0] == 1
    assert positive[77] == 1 and negative[76] == 1
    assert positive[99] == 2  # 0.99 and 1.0
    assert negative[50] == 1
    assert sum(positive) == 4 and sum(negative) == 3


def test_threshold_table_rows_match_result_at_each_cut_off() -> None:
    rng = np.random.default_rng(7)
    scores = np.round(rng.random(2000), 3)
    labels = (rng.random(2000) < scores).astype(int)
    evaluation = binary(scores, labels)
    table = evaluation.result()["thresholdTable"]
    assert [row["threshold"] for row in table] == SCORE_EDGES.tolist()
    for row in (table[0], table[37], table[77], table[100]):
        at = evaluation.result(row["threshold"])
        assert {name: row[name] for name in THRESHOLD_METRICS} == {
            name: at[name] for name in THRESHOLD_METRICS
        }
    assert table[0]["recall"] == 1.0 and table[0]["predictedPositiveRate"] == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=2, max_size=300),
)
def test_threshold_table_is_monotone(records: list[tuple[int, bool]]) -> None:
    scores = np.array([s / 20 for s, _ in records])
    labels = np.array([int(y) for _, y in records])
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    table = binary(scores, labels).result()["thresholdTable"]
    for name in ("recall", "falsePositiveRate", "predictedPositiveRate"):
        values = [row[name] for row in table]
        assert all(a >= b for a, b in pairwise(values)), name


score_lists = st.lists(
    st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5000001, 0.77, 0.9, 1.0]), st.booleans()),
    min_size=2,
    max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(score_lists, st.floats(0, 1), st.booleans(), st.randoms(use_true_random=False))
def test_binary_agrees_with_scikit_learn(records, threshold, weighted, random) -> None:
    scores = np.array([s for s, _ in records])
    labels = np.array([int(y) for _, y in records])
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    weights = np.array([random.choice([0.5, 1.0, 2.0, 3.25]) for _ in records]) if weighted else None
    result = binary(scores, labels, weights).result(threshold)
    assert result["BinaryAUC"] == pytest.approx(
        roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12
    )
    predicted = (scores >= threshold).astype(int)
    (tn, fp), (fn, tp) = confusion_matrix(labels, predicted, labels=[0, 1], sample_weight=weights)
    assert result["confusion"] == pytest.approx({"tp": tp, "fp": fp, "tn": tn, "fn": fn})
    kwargs = {"sample_weight": weights, "zero_division": 0}
    assert result["precision"] == pytest.approx(precision_score(labels, predicted, **kwargs))
    assert result["recall"] == pytest.approx(recall_score(labels, predicted, **kwargs))
    assert result["f1"] == pytest.approx(f1_score(labels, predicted, **kwargs))


@settings(max_examples=60, deadline=None)
@given(score_lists, st.lists(st.integers(0, 200), max_size=6), st.booleans())
def test_binary_merge_of_any_split_equals_one_pass(records, cuts, through_merge) -> None:
    scores = np.array([s for s, _ in records])
    labels = np.array([int(y) for _, y in records])
    if labels.min() == labels.max():
        labels[0] = 1 - labels[0]
    whole = binary(scores, labels)
    combined = BinaryEvaluation()
    bounds = split_points(cuts, len(records))
    for start, end in pairwise(bounds):
        if through_merge:
            combined.merge(binary(scores[start:end], labels[start:end]))
        else:
            combined.update(scores[start:end], labels[start:end])
    assert combined.result(0.5) == whole.result(0.5)


def test_many_batches_with_shared_scores_merge_exactly() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(50_000), 4)
    labels = (rng.random(50_000) < scores).astype(np.int8)
    combined = BinaryEvaluation()
    for start in range(0, 50_000, 777):
        combined.update(scores[start : start + 777], labels[start : start + 777])
    # Exact Mann–Whitney count in integers: negatives strictly below each positive, plus half the ties.
    negatives = np.sort(scores[labels == 0])
    positives = scores[labels == 1]
    below = np.searchsorted(negatives, positives, side="left")
    ties = np.searchsorted(negatives, positives, side="right") - below
    twice_wins = int((2 * below + ties).sum())
    assert combined.auc() == twice_wins / (2 * positives.size * negatives.size)
    assert combined.auc() == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert combined.result() == binary(scores, labels).result()


def test_weights_scale_like_repeated_records() -> None:
    scores, labels = [0.2, 0.6, 0.6, 0.9], [0, 1, 0, 1]
    weighted = binary(scores, labels, [1.0, 2.0, 3.0, 1.0]).result()
    repeated = binary([0.2, 0.6, 0.6, 0.6, 0.6, 0.6, 0.9], [0, 1, 1, 0, 0, 0, 1]).result()
    assert weighted["BinaryAUC"] == repeated["BinaryAUC"]
    assert weighted["confusion"] == {"tp": 3.0, "fp": 3.0, "tn": 1.0, "fn": 0.0}
    assert weighted["thresholdTable"] == repeated["thresholdTable"]


@pytest.mark.parametrize(
    ("scores", "labels", "weights", "message"),
    [
        ([0.1, float("nan")], [0, 1], None, r"probabilities in \[0, 1\]; record 1"),
        ([0.1, 1.5], [0, 1], None, r"probabilities in \[0, 1\]; record 1 of the batch has 1.5"),
        ([0.1, 0.2], [0, 2], None, "labels must be 0 or 1; record 1"),
        ([0.1, 0.2], [0], None, "labels has 1 values but the batch has 2 records"),
        ([0.1, 0.2], [0, 1], [1.0, -1.0], "weights must not be negative; record 1"),
        ([[0.1, 0.2]], [0], None, "one-dimensional"),
    ],
)
def test_binary_rejects_bad_batches(scores, labels, weights, message) -> None:
    with pytest.raises(DataError, match=message):
        BinaryEvaluation().update(np.array(scores), np.array(labels), weights)


def test_binary_needs_both_labels() -> None:
    with pytest.raises(DataError, match="no records with label 0"):
        binary([0.2, 0.9], [1, 1]).result()
    with pytest.raises(DataError, match="no records with label 1"):
        BinaryEvaluation().result()


def test_binary_update_of_a_million_scores() -> None:
    """Speed is measured in bench/micro.py; here, the AUC of a million scores equals scikit-learn's."""
    rng = np.random.default_rng(0)
    scores = rng.random(1_000_000)
    labels = rng.random(1_000_000) < scores
    evaluation = BinaryEvaluation()
    evaluation.update(scores, labels)
    assert evaluation.auc() == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_bank_marketing_call_duration_as_score() -> None:
    # Integer call durations give many tied scores on a real file.
    data = dataset_columns("bank_marketing", "duration", "y")
    scores = data["duration"] / data["duration"].max()
    evaluation = BinaryEvaluation()
    for start in range(0, scores.size, 4096):
        evaluation.update(scores[start : start + 4096], data["y"][start : start + 4096])
    result = evaluation.result(threshold=0.1)
    assert result["count"] == 41_188
    assert sum(result["histograms"]["positive"]) == 4_640
    assert result["BinaryAUC"] == pytest.approx(roc_auc_score(data["y"], scores), abs=1e-12)
    assert 0.75 < result["BinaryAUC"] < 0.85
    (tn, fp), (fn, tp) = confusion_matrix(data["y"], (scores >= 0.1).astype(int))
    assert result["confusion"] == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    json.dumps(result, allow_nan=False)


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


def test_regression_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="targets must be finite; record 1"):
        regression([1.0, 2.0], [1.0, float("inf")])
    with pytest.raises(DataError, match="targets has 1 values"):
        regression([1.0, 2.0], [1.0])
    with pytest.raises(DataError, match="no records with positive weight"):
        regression([1.0], [2.0], [0.0]).result(training_mean=0.0)


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


# --------------------------------------------------------------------------------------- alerts

ALERT_NAMES = [
    "Evaluation done on held-out data",
    "Sufficient data used",
    "Schema matched",
    "All records used",
    "Distribution of target variable",
]


def alerts(**changes) -> dict[str, dict]:
    arguments = {
        "training_datasource_id": "ds-train",
        "evaluation_datasource_id": "ds-eval",
        "training_records": 1000,
        "evaluation_records": 300,
        "training_attributes": ["a", "b", "y"],
        "evaluation_attributes": ["y", "b", "a"],
        "invalid_evaluation_records": 0,
        "training_target": {"0": 700, "1": 300},
        "evaluation_target": {"0": 0.68, "1": 0.32},
    }
    arguments.update(changes)
    listed = evaluation_alerts(**arguments)
    assert [alert["name"] for alert in listed] == ALERT_NAMES
    return {alert["name"]: alert for alert in listed}


def test_alerts_all_pass_on_a_sound_evaluation() -> None:
    assert all(alert["passed"] for alert in alerts().values())


@pytest.mark.parametrize(
    ("changes", "name", "message"),
    [
        (
            {"evaluation_datasource_id": "ds-train"},
            "Evaluation done on held-out data",
            "same datasource ds-train",
        ),
        ({"evaluation_records": 99}, "Sufficient data used", "fewer than 10%"),
        ({"evaluation_attributes": ["a", "y", "c"]}, "Schema matched", r"missing \['b'\], extra \['c'\]"),
        ({"invalid_evaluation_records": 7}, "All records used", "7 evaluation records were invalid"),
        ({"evaluation_target": {"0": 55, "1": 45}}, "Distribution of target variable", "0.1500 .above"),
        ({"evaluation_target": {"0": 70, "2": 30}}, "Distribution of target variable", "0.3000"),
    ],
)
def test_each_alert_fires_alone(changes: dict, name: str, message: str) -> None:
    result = alerts(**changes)
    assert not result[name]["passed"]
    assert result[name]["message"] and re.search(message, result[name]["message"])
    assert all(alert["passed"] for other, alert in result.items() if other != name)


def test_sufficient_data_boundary_is_ten_percent() -> None:
    assert alerts(evaluation_records=100)["Sufficient data used"]["passed"]
    assert not alerts(evaluation_records=99)["Sufficient data used"]["passed"]


def test_alert_counts_have_thousands_separators() -> None:
    """Counts read as the CLI and the console write them: "12,000 records", not "12000 records"."""
    result = alerts(training_records=40_000, evaluation_records=12_000, invalid_evaluation_records=1_234)
    assert "used 12,000 records" in result["Sufficient data used"]["message"]
    assert "of the 40,000 training records" in result["Sufficient data used"]["message"]
    assert result["All records used"]["message"].startswith("1,234 evaluation records were invalid")
    numeric = alerts(
        training_target=NumericTarget(25_010.0, 900.0), evaluation_target=NumericTarget(26_000.0, 950)
    )
    assert (
        "Target mean 26,000 (evaluation) vs 25,010 (training)"
        in numeric["Distribution of target variable"]["message"]
    )


def test_numeric_target_rule() -> None:
    def passed(training: NumericTarget, evaluation: NumericTarget) -> bool:
        result = alerts(training_target=training, evaluation_target=evaluation)
        return result["Distribution of target variable"]["passed"]

    assert passed(NumericTarget(10.0, 2.0), NumericTarget(10.9, 2.5))
    assert not passed(NumericTarget(10.0, 2.0), NumericTarget(11.1, 2.0))  # shift > 0.5 std
    assert not passed(NumericTarget(10.0, 2.0), NumericTarget(10.0, 4.5))  # spread more than doubled
    with pytest.raises(InvalidInputException, match="same kind"):
        passed(NumericTarget(1.0, 1.0), {"a": 1})  # type: ignore[arg-type]


def test_bank_marketing_sequential_split_raises_the_target_alert() -> None:
    # Spec 12: the chronological file puts 5.6% positives in the first 70% and 24.6% in the last 30%.
    labels = dataset_columns("bank_marketing", "y")["y"]
    cut = int(labels.size * 0.7)

    def shares(part: np.ndarray) -> dict[str, int]:
        return {"0": int((part == 0).sum()), "1": int((part == 1).sum())}

    sequential = alerts(training_target=shares(labels[:cut]), evaluation_target=shares(labels[cut:]))
    assert not sequential["Distribution of target variable"]["passed"]
    shuffled = np.random.default_rng(42).permutation(labels)
    random_split = alerts(training_target=shares(shuffled[:cut]), evaluation_target=shares(shuffled[cut:]))
    assert random_split["Distribution of target variable"]["passed"]


# --- emrml's own alerts ------------------------------------------------------------------------------------


def _by_name(alerts: list[dict]) -> dict[str, dict]:
    return {alert["name"]: alert for alert in alerts}


def test_a_rising_loss_is_flagged() -> None:
    from emrml.core.alerts import quality_alerts

    rising = _by_name(quality_alerts("REGRESSION", {}, [0.1057, 0.1201]))["Training converged"]
    assert (
        not rising["passed"] and "0.1201" in rising["message"] and "sgd.shuffleType=auto" in rising["message"]
    )
    falling = _by_name(quality_alerts("REGRESSION", {}, [0.3, 0.2, 0.2005]))["Training converged"]
    assert falling["passed"]
    assert "Training converged" not in _by_name(quality_alerts("BINARY", {}, [0.3]))


@pytest.mark.parametrize(
    ("model_type", "result", "passed"),
    [
        ("BINARY", {"BinaryAUC": 0.93, "baseline": 0.5}, True),
        ("BINARY", {"BinaryAUC": 0.503, "baseline": 0.5}, False),
        ("MULTICLASS", {"MulticlassAvgFScore": 0.2, "baseline": 0.21}, False),
        ("REGRESSION", {"RegressionRMSE": 99.5, "baseline": 181.0}, True),
        ("REGRESSION", {"RegressionRMSE": 180.0, "baseline": 181.0}, False),
    ],
)
def test_a_metric_no_better_than_its_baseline_is_flagged(model_type: str, result: dict, passed: bool) -> None:
    from emrml.core.alerts import quality_alerts

    alert = _by_name(quality_alerts(model_type, result, []))["Better than the baseline"]
    assert alert["passed"] is passed


def test_a_metric_reads_in_its_alert_as_in_the_evaluation_summary() -> None:
    """The summary wrote "MulticlassAvgFScore 0.2263 (baseline 0.0871 ...)", the alert below it "0.226251
    against the baseline's 0.0870969": the alerts write numbers as the CLI does."""
    from emrml.core.alerts import quality_alerts

    result = {"MulticlassAvgFScore": 0.226251, "baseline": 0.0870969}
    alert = _by_name(quality_alerts("MULTICLASS", result, [1.41, 0.980549]))
    assert alert["Better than the baseline"]["message"].startswith(
        "MulticlassAvgFScore 0.2263 against the baseline's 0.0871:"
    )
    assert alert["Training converged"]["message"] == "The loss fell to 0.9805 over 2 passes."


def test_regression_predictions_outside_the_target_range_are_flagged() -> None:
    from emrml.core.alerts import quality_alerts

    result = {"RegressionRMSE": 1.0, "baseline": 2.0, "count": 16_219}
    negative = _by_name(quality_alerts("REGRESSION", result, [], (12.0, 500.0), (341, 341)))
    alert = negative["Predictions in the target's range"]
    assert not alert["passed"]
    assert (
        "341 of 16,219 predictions" in alert["message"]
        and "negative for a target that never was" in alert["message"]
    )
    few = _by_name(quality_alerts("REGRESSION", result, [], (-5.0, 500.0), (10, 3)))
    assert few["Predictions in the target's range"]["passed"]  # 0.06 %, and the target itself went negative


def _statistics(entropy: float | None, **correlations: float) -> dict:
    """Datasource statistics (``core.stats``) with these input attributes' target correlations."""
    attributes = [
        {"name": name, "role": "input", "targetCorrelation": mi} for name, mi in correlations.items()
    ]
    attributes.append({"name": "cnt", "role": "target"})
    return {"target": {"name": "cnt", "entropy": entropy}, "attributes": attributes}


def test_an_attribute_that_predicts_the_target_by_itself_is_a_possible_leak() -> None:
    from emrml.core.alerts import leak_alert

    # bike_sharing_hourly with `casual` and `registered` left in (their sum is the target): the figures
    # of its statistics, in nats, against the target's 10 bins' entropy.
    statistics = _statistics(2.3026, hr=0.549, casual=0.663, registered=1.558)
    alert = leak_alert(statistics)
    assert alert is not None and not alert["passed"]
    assert "Possible target leak: 'registered' (68%) alone carries" in alert["message"]
    assert "'casual'" not in alert["message"] and "excludedAttributeNames" in alert["message"]
    # A recipe that leaves `registered` out cannot leak it; the strongest remaining attribute is named.
    honest = leak_alert(statistics, used={"hr", "casual"})
    assert honest is not None and honest["passed"] and "'casual', carries 29%" in honest["message"]
    both = leak_alert(_statistics(1.0, a=0.9, b=0.5))
    assert both is not None and "'a' (90%), 'b' (50%) alone carry" in both["message"]


def test_no_leak_alert_without_correlations() -> None:
    from emrml.core.alerts import leak_alert

    assert leak_alert(_statistics(None, x=0.3)) is None  # statistics from before the target's entropy
    assert leak_alert(_statistics(0.0, x=0.0)) is None  # a constant target
    assert leak_alert({"target": None, "attributes": []}) is None
    assert leak_alert({"target": {"name": "y", "entropy": 0.7}, "attributes": []}) is None
