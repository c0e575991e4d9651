"""Binary evaluation metrics: AUC, confusion and threshold table by hand, agreement with scikit-learn,
merging, spilling to scratch files."""

from __future__ import annotations

import json
import tracemalloc
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_helpers import binary, dataset_columns, split_points
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from emrml.core.metrics import SCORE_EDGES, THRESHOLD_METRICS, BinaryEvaluation
from emrml.core.metrics import binary as binary_metrics
from emrml.errors import DataError

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


def test_binary_says_a_label_whose_records_all_weigh_zero_has_none_of_positive_weight() -> None:
    # "no records with label 1" was said of data holding records of label 1, weighted 0.
    first, second = BinaryEvaluation(), BinaryEvaluation()
    first.update(np.array([0.2, 0.9]), np.array([0, 1]), [1.0, 0.0])
    second.update(np.array([0.4, 0.5]), np.array([1, 0]), [0.0, 2.0])
    first.merge(second)
    with pytest.raises(DataError) as raised:
        first.result()
    assert str(raised.value) == (
        "the evaluation data has no records with label 1 of positive weight (its 2 records weigh 0) "
        "(4 records in all); BinaryAUC needs records of both labels"
    )
    zero = BinaryEvaluation()
    zero.update(np.array([0.2, 0.9, 0.4]), np.array([0, 1, 1]), [0.0, 1.0, 1.0])
    with pytest.raises(DataError, match=r"label 0 of positive weight \(its 1 records weigh 0\) \(3 records"):
        zero.result()


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
