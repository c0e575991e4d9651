"""The quantile sketch: the same answer on every run, KLL's accuracy, exact weights, merges, a safe state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emrml.core.quantiles import QuantileSketch

RANKS = np.linspace(0.01, 0.99, 99)


def _fed(values: np.ndarray, k: int = 200, batch: int = 25_000) -> QuantileSketch:
    sketch = QuantileSketch(k)
    for start in range(0, values.size, batch):
        sketch.update(values[start : start + batch])
    return sketch


def _rank_error(sketch: QuantileSketch, values: np.ndarray) -> float:
    """The largest distance between the asked normalized rank and the true one of the answer."""
    exact = np.sort(values)
    answers = np.asarray(sketch.quantiles(RANKS.tolist()))
    return float(np.max(np.abs(np.searchsorted(exact, answers, side="right") / exact.size - RANKS)))


def test_the_same_numbers_give_the_same_sketch_every_time() -> None:
    values = np.random.default_rng(1).lognormal(size=400_000)
    first, second = _fed(values), _fed(values)
    assert first.to_state() == second.to_state()
    assert first.quantiles([0.1, 0.5, 0.9]) == second.quantiles([0.1, 0.5, 0.9])


@pytest.mark.parametrize(("k", "bound"), [(200, 0.0085), (1000, 0.0017)])
def test_quantiles_are_within_kll_rank_error(k: int, bound: float) -> None:
    # DataSketches' KLL: normalized rank error 1.65 % at k = 200 (99 % confidence), 0.33 % at 1000.
    rng = np.random.default_rng(7)
    for values in (rng.lognormal(size=1_000_000), rng.integers(0, 50_000, 1_000_000).astype(float)):
        sketch = _fed(values, k)
        assert _rank_error(sketch, values) <= bound
        assert sketch.n == values.size
        assert (sketch.min, sketch.max) == (values.min(), values.max())
        assert sum(items.size for items in sketch.levels) <= 3 * k + 64  # memory bounded by k, not n


def test_counted_values_weigh_exactly_their_counts() -> None:
    values, counts = np.array([1.0, 2.0, 3.0]), np.array([5, 3, 2])
    sketch = QuantileSketch()
    sketch.update(values, counts)
    assert sketch.n == 10
    assert sketch.quantiles([0.0, 0.5, 0.8, 0.81, 1.0]) == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert sketch.cdf([0.5, 1.0, 2.5]) == [0.0, 0.5, 0.8, 1.0]
    # Large counts (a value standing for millions of rows) cost no more than small ones.
    big = QuantileSketch()
    big.update(np.arange(5_000.0), np.full(5_000, 3_000_000))
    assert big.n == 15_000_000_000
    assert big.quantiles([0.5])[0] == pytest.approx(2_500, abs=40)


def test_merged_halves_answer_as_the_whole() -> None:
    values = np.random.default_rng(3).normal(size=600_000)
    left, right = _fed(values[:250_000]), _fed(values[250_000:])
    left.merge(right)
    assert left.n == values.size and (left.min, left.max) == (values.min(), values.max())
    assert _rank_error(left, values) <= 0.0085
    again_left, again_right = _fed(values[:250_000]), _fed(values[250_000:])
    again_left.merge(again_right)
    assert again_left.to_state() == left.to_state()


def test_the_state_is_plain_json_and_is_checked() -> None:
    sketch = _fed(np.random.default_rng(5).exponential(size=100_000))
    state = json.loads(json.dumps(sketch.to_state()))
    back = QuantileSketch.from_state(state)
    assert back.quantiles(RANKS.tolist()) == sketch.quantiles(RANKS.tolist())
    assert back.to_state() == sketch.to_state()
    with pytest.raises(ValueError, match="malformed"):
        QuantileSketch.from_state({**state, "n": state["n"] + 1})  # weights no longer add up
    with pytest.raises(ValueError, match="empty"):
        QuantileSketch().quantiles([0.5])
    with pytest.raises(ValueError, match="finite"):
        QuantileSketch().update(np.array([1.0, np.nan]))
