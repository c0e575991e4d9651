"""BINARY evaluation: exact AUC over score runs, threshold metrics, score histograms."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emrml.core.metrics.common import check_length, checked_weights, divide, json_count, json_counts, vector
from emrml.errors import DataError, InvalidInputException

#: Metrics of a binary cut-off, in the order the console lists them.
THRESHOLD_METRICS = ("accuracy", "precision", "recall", "falsePositiveRate", "f1", "predictedPositiveRate")

#: Score histograms: 100 equal bins over [0, 1] (AWS cost-analysis sample); bin k is [k/100, (k+1)/100),
#: the last one closed. The threshold table uses the same 101 edges as cut-offs.
SCORE_EDGES = np.arange(101) / 100
#: Distinct scores an evaluation keeps in memory (24 bytes each, about 25 MB): past that, its largest run
#: moves to a scratch file, memory-mapped, so memory is bounded by this and the batch, not the data.
SPILL_SCORES = 1 << 20
#: Entries of all runs together that the result's merge reads at a time.
MERGE_ENTRIES = 1 << 20


@dataclass(frozen=True)
class _ScoreRun:
    """Distinct scores in increasing order with the positive and negative weight seen at each one."""

    scores: np.ndarray
    positive: np.ndarray
    negative: np.ndarray

    @classmethod
    def from_sorted(cls, scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> _ScoreRun:
        """Collapse equal neighbours of already sorted ``scores``."""
        if scores.size == 0:
            return cls(scores, positive, negative)
        starts = np.flatnonzero(np.concatenate(([True], scores[1:] != scores[:-1])))
        return cls(scores[starts], np.add.reduceat(positive, starts), np.add.reduceat(negative, starts))

    @classmethod
    def from_labels(cls, scores: np.ndarray, positive: np.ndarray) -> _ScoreRun:
        """Count labels per distinct score of an unsorted batch (scores in [0, 1], ``positive`` bool).

        Non-negative floats order like their bit patterns, so each (score, label) pair packs into one
        uint64 key: a plain sort (several times faster than an argsort) groups equal scores, label 0 first.
        """
        keys = ((scores + 0.0).view(np.uint64) << np.uint64(1)) | positive.astype(np.uint64)  # -0.0 → 0.0
        keys.sort()
        bits = keys >> np.uint64(1)
        starts = np.flatnonzero(np.concatenate(([True], bits[1:] != bits[:-1])))
        totals = np.diff(np.append(starts, keys.size)).astype(np.float64)
        positives = np.add.reduceat((keys & np.uint64(1)).astype(np.float64), starts)
        return cls(bits[starts].view(np.float64), positives, totals - positives)

    @classmethod
    def merged(cls, runs: Sequence[_ScoreRun]) -> _ScoreRun:
        if len(runs) == 1:
            return runs[0]
        scores = np.concatenate([run.scores for run in runs])
        # Timsort finds the already-sorted runs, so this costs about one linear merge pass.
        order = np.argsort(scores, kind="stable")
        return cls.from_sorted(
            scores[order],
            np.concatenate([run.positive for run in runs])[order],
            np.concatenate([run.negative for run in runs])[order],
        )

    def cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight strictly below each score index, with the totals appended."""
        below_positive = np.concatenate(([0.0], np.cumsum(self.positive)))
        below_negative = np.concatenate(([0.0], np.cumsum(self.negative)))
        return below_positive, below_negative

    def spilled(self, folder: Path | None) -> _ScoreRun:
        """The run in an anonymous scratch file in ``folder`` (None: the system's temporary folder),
        memory-mapped: its pages are the file's, which the kernel writes out and drops as it needs, not the
        process's memory. The file goes with the mapping."""
        with tempfile.TemporaryFile(dir=folder) as file:
            for values in (self.scores, self.positive, self.negative):
                np.ascontiguousarray(values, dtype=np.float64).tofile(file)
            file.flush()
            table = np.memmap(file, dtype=np.float64, mode="r", shape=(3, self.scores.size))
        return _ScoreRun(table[0], table[1], table[2])

    def part(self, start: int, stop: int) -> _ScoreRun:
        return _ScoreRun(self.scores[start:stop], self.positive[start:stop], self.negative[start:stop])


def _merged_slices(runs: Sequence[_ScoreRun]) -> Iterator[_ScoreRun]:
    """The runs merged in increasing score order, about :data:`MERGE_ENTRIES` entries at a time; the
    entries of one score are always in the same slice."""
    step = max(1024, MERGE_ENTRIES // max(1, len(runs)))
    starts = [0] * len(runs)
    while True:
        live = [i for i, run in enumerate(runs) if starts[i] < run.scores.size]
        if not live:
            return
        # Every score up to the lowest of the runs' next-step ends is read from every run now: a run's
        # entries up to it all lie within its next step.
        frontier = min(runs[i].scores[min(starts[i] + step, runs[i].scores.size) - 1] for i in live)
        parts = []
        for i in live:
            window = runs[i].scores[starts[i] : starts[i] + step]
            stop = starts[i] + int(np.searchsorted(window, frontier, side="right"))
            parts.append(runs[i].part(starts[i], stop))
            starts[i] = stop
        yield _ScoreRun.merged(parts)


@dataclass(frozen=True)
class _Sweep:
    """What one pass over the scores found: twice the AUC's numerator (positive-negative pairs ordered
    right, ties counting half; an int when unweighted), the positive and negative weight in all, and
    below each cut-off (running sums, with their totals appended)."""

    twice_wins: float
    positive: float
    negative: float
    below_positive: np.ndarray
    below_negative: np.ndarray

    @property
    def auc(self) -> float:
        if isinstance(self.twice_wins, int):
            return self.twice_wins / (2 * round(self.positive) * round(self.negative))
        return self.twice_wins / (2.0 * self.positive * self.negative)

    def confusion(self, cuts: slice) -> dict[str, np.ndarray]:
        """tp/fp/tn/fn at the cut-offs ``cuts`` selects: predicted 1 from the cut-off up."""
        fn, tn = self.below_positive[cuts], self.below_negative[cuts]
        return {"tp": self.below_positive[-1] - fn, "fp": self.below_negative[-1] - tn, "tn": tn, "fn": fn}


class BinaryEvaluation:
    """Accumulates scores (probability of label 1) and true labels for ``BinaryAUC`` and the insights.

    Records with score ≥ threshold are predicted 1 (spec 7.3). The scores are kept as sorted runs of
    distinct values, merged whenever the previous run is at most twice the size of the newest, so there are
    O(log n) runs and each value is re-merged O(log n) times. A run of :data:`SPILL_SCORES` values or more
    moves to a scratch file, so memory holds at most a few spills' worth whatever the number of records;
    the result then reads the files back merged a slice at a time, to the same metrics (with weights, sums
    taken in another order may differ in their last bits).
    """

    def __init__(self, spill_folder: Path | None = None) -> None:
        """``spill_folder``: where the scratch files go (the job's scratch folder; None: the system's
        temporary folder)."""
        self._spill_folder = spill_folder
        self._runs: list[_ScoreRun] = []
        self._spilled: list[_ScoreRun] = []  # runs of SPILL_SCORES or more, in scratch files
        self._records = 0
        self._positives = 0  # records of label 1, whatever their weight: for the message of a label missing
        self._weighted = False

    def update(self, scores: Any, labels: Any, weights: Any = None) -> None:
        """Add one batch: ``scores`` (n,) in [0, 1], ``labels`` (n,) of 0/1, optional ``weights`` (n,) ≥ 0."""
        score = vector("scores", scores)
        n = score.shape[0]
        in_range = (score >= 0.0) & (score <= 1.0)  # false for NaN too
        if not in_range.all():
            position = int(np.flatnonzero(~in_range)[0])
            raise DataError(
                f"scores must be probabilities in [0, 1]; record {position} of the batch has "
                f"{score[position]}"
            )
        label = np.asarray(labels)
        if label.ndim != 1:
            raise DataError(f"labels must be one-dimensional, got shape {label.shape}")
        check_length("labels", label, n)
        positive = label == 1
        if not (positive | (label == 0)).all():
            position = int(np.flatnonzero(~(positive | (label == 0)))[0])
            raise DataError(f"labels must be 0 or 1; record {position} of the batch has {label[position]!r}")
        weight = checked_weights(weights, n)
        if n == 0:
            return
        if weight is None:
            self._push(_ScoreRun.from_labels(score, positive))
        else:
            positive_weight = np.where(positive, weight, 0.0)
            order = np.argsort(score)
            self._push(
                _ScoreRun.from_sorted(score[order], positive_weight[order], (weight - positive_weight)[order])
            )
            self._weighted = True
        self._records += n
        self._positives += int(positive.sum())

    def merge(self, other: BinaryEvaluation) -> None:
        """Add every record ``other`` has seen; ``other`` is left unchanged (its scratch files are shared:
        they are read only)."""
        self._spilled.extend(other._spilled)
        for run in other._runs:
            self._push(run)
        self._records += other._records
        self._positives += other._positives
        self._weighted = self._weighted or other._weighted

    def _push(self, run: _ScoreRun) -> None:
        self._runs.append(run)
        while len(self._runs) > 1 and self._runs[-2].scores.size <= 2 * self._runs[-1].scores.size:
            newest = self._runs.pop()
            self._runs[-1] = _ScoreRun.merged([self._runs[-1], newest])
        if self._runs[0].scores.size >= SPILL_SCORES:  # the oldest run is the largest
            self._spilled.append(self._runs.pop(0).spilled(self._spill_folder))

    def _run(self) -> _ScoreRun:
        """Every score in one run, in memory (the runs not spilled: ``_sweep`` reads spilled ones a slice at
        a time)."""
        runs = [*self._spilled, *self._runs]
        if not runs:
            return _ScoreRun(np.empty(0), np.empty(0), np.empty(0))
        if len(runs) > 1:
            runs = [_ScoreRun.merged(runs)]
            self._spilled, self._runs = [], runs
        return runs[0]

    def _sweep(self, cuts: np.ndarray) -> _Sweep:
        """One pass over every score in order, a slice at a time: the AUC's numerator and the weight below
        each cut-off. Raises ``DataError`` unless there are records of both labels."""
        below_positive, below_negative = np.zeros(cuts.size + 1), np.zeros(cuts.size + 1)
        twice_wins: float = 0.0 if self._weighted else 0
        negative_before: float = 0.0 if self._weighted else 0
        positive_total = negative_total = 0.0
        # In memory, the runs merge into one (as large as the spill allows); a slice at a time from files.
        slices = _merged_slices([*self._spilled, *self._runs]) if self._spilled else [self._run()]
        for run in slices:
            cumulative_positive, cumulative_negative = run.cumulative()
            index = np.append(np.searchsorted(run.scores, cuts, side="left"), run.scores.size)
            below_positive += cumulative_positive[index]
            below_negative += cumulative_negative[index]
            positive_total += float(run.positive.sum())
            negative_total += float(run.negative.sum())
            if self._weighted:
                below = negative_before + np.concatenate(([0.0], np.cumsum(run.negative)[:-1]))
                twice_wins += float(np.dot(run.positive, 2.0 * below + run.negative))
                negative_before += float(run.negative.sum())
            else:  # in integers, rounded once at the end (exact for up to ~4·10⁹ records)
                positive = np.rint(run.positive).astype(np.int64)
                negative = np.rint(run.negative).astype(np.int64)
                below_counts = negative_before + np.concatenate(([0], np.cumsum(negative)[:-1]))
                twice_wins += int(np.dot(positive, 2 * below_counts + negative))
                negative_before += int(negative.sum())
        if below_positive[-1] <= 0 or below_negative[-1] <= 0:
            label = 1 if below_positive[-1] <= 0 else 0
            present = self._positives if label else self._records - self._positives
            # Records of the label weighted 0 are there but count for nothing: say so, not that none are.
            weighed = f" of positive weight (its {present} records weigh 0)" if present else ""
            raise DataError(
                f"the evaluation data has no records with label {label}{weighed} ({self._records} records "
                "in all); BinaryAUC needs records of both labels"
            )
        return _Sweep(twice_wins, positive_total, negative_total, below_positive, below_negative)

    def auc(self) -> float:
        """Area under the ROC curve: P(score of a positive > score of a negative) + ½·P(tie).

        Unweighted, it is computed in integers and rounded once (exact for up to ~4·10⁹ records).
        """
        return self._sweep(np.empty(0)).auc

    @staticmethod
    def _rates(confusion: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tp, fp, tn, fn = confusion["tp"], confusion["fp"], confusion["tn"], confusion["fn"]
        total = tp + fp + tn + fn
        return {
            "accuracy": divide(tp + tn, total),
            "precision": divide(tp, tp + fp),
            "recall": divide(tp, tp + fn),
            "falsePositiveRate": divide(fp, fp + tn),
            "f1": divide(2 * tp, 2 * tp + fp + fn),
            "predictedPositiveRate": divide(tp + fp, total),
        }

    def result(self, threshold: float = 0.5) -> dict[str, Any]:
        """``BinaryAUC`` with baseline 0.5 and the console insights at cut-off ``threshold``.

        Keys: ``BinaryAUC``, ``baseline``, ``count`` (records), ``threshold``, ``confusion`` (tp/fp/tn/fn),
        the six ``THRESHOLD_METRICS``, ``histograms`` (``positive``/``negative`` counts in 100 bins with
        101 ``edges`` over [0, 1]) and ``thresholdTable`` (the six metrics at cut-offs 0.00, 0.01 … 1.00).
        """
        if not math.isfinite(threshold):
            raise InvalidInputException(f"threshold must be a finite number, got {threshold}")
        # Cut-offs: the threshold, then the edges; the sweep appends the totals.
        sweep = self._sweep(np.concatenate(([threshold], SCORE_EDGES)))
        confusion = sweep.confusion(slice(0, 1))
        rates = self._rates(confusion)
        table = self._rates(sweep.confusion(slice(1, -1)))
        table_rates = {name: values.tolist() for name, values in table.items()}
        # The last bin is closed: scores of exactly 1.0 belong to it, so its upper bound is the totals.
        below_positive = np.append(sweep.below_positive[1:-2], sweep.below_positive[-1])
        below_negative = np.append(sweep.below_negative[1:-2], sweep.below_negative[-1])
        return {
            "BinaryAUC": sweep.auc,
            "baseline": 0.5,
            "count": self._records,
            "threshold": float(threshold),
            "confusion": {key: json_count(values[0], self._weighted) for key, values in confusion.items()},
            **{name: float(values[0]) for name, values in rates.items()},
            "histograms": {
                "edges": SCORE_EDGES.tolist(),
                "positive": json_counts(np.diff(below_positive), self._weighted),
                "negative": json_counts(np.diff(below_negative), self._weighted),
            },
            "thresholdTable": [
                {"threshold": cut, **{name: table_rates[name][i] for name in THRESHOLD_METRICS}}
                for i, cut in enumerate(SCORE_EDGES.tolist())
            ],
        }
