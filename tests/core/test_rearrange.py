"""DataRearrangement parsing and the sequential / random splits (spec 5.4)."""

from __future__ import annotations

import hashlib
import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrml.core.rearrange import (
    Rearrangement,
    parse_rearrangement,
    random_mask,
    select,
    sequential_mask,
)
from emrml.errors import InvalidInputException


def _splitting(**members: object) -> str:
    return json.dumps({"splitting": members})


# --- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, ""])
def test_no_rearrangement(text: str | None) -> None:
    assert parse_rearrangement(text) is None


def test_spec_example_sequential() -> None:
    text = '{"splitting":{"percentBegin":0,"percentEnd":70,"complement":false,"strategy":"sequential"}}'
    assert parse_rearrangement(text) == Rearrangement(0, 70, False, "sequential", "")


def test_spec_example_random_with_string_complement() -> None:
    text = _splitting(
        percentBegin=70,
        percentEnd=100,
        complement="true",
        strategy="random",
        strategyParams={"randomSeed": "s3://bucket/data.csv"},
    )
    assert parse_rearrangement(text) == Rearrangement(70, 100, True, "random", "s3://bucket/data.csv")


def test_defaults_select_all_data() -> None:
    parsed = parse_rearrangement('{"splitting": {}}')
    assert parsed == Rearrangement()
    assert not parsed.needs_total
    assert select(parsed, "k", np.arange(5), np.arange(5), None).all()


@pytest.mark.parametrize(
    ("value", "expected"), [(30, 30.0), (30.0, 30.0), ("30", 30.0), (" 45 ", 45.0), (0, 0.0), ("100", 100.0)]
)
def test_accepted_percent_spellings(value: object, expected: float) -> None:
    parsed = parse_rearrangement(_splitting(percentBegin=value))
    assert parsed is not None
    assert parsed.percent_begin == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("TRUE", True), ("True", True), (" true ", True), ("False", False), ("false", False)],
)
def test_complement_strings_in_any_case(value: str, expected: bool) -> None:
    parsed = parse_rearrangement(_splitting(complement=value))
    assert parsed is not None
    assert parsed.complement is expected


def test_random_without_params_uses_empty_seed() -> None:
    parsed = parse_rearrangement(_splitting(strategy="random"))
    assert parsed == Rearrangement(strategy="random", seed="")


def test_the_top_level_random_seed_of_awss_social_media_sample() -> None:
    """AWS's social-media sample writes its seed beside ``splitting``: accepted; it seeds a random split and
    leaves a sequential one (which makes no random choice) as it is."""
    sample = '{"randomSeed":"0","splitting":{"percentBegin":0,"percentEnd":70}}'
    assert parse_rearrangement(sample) == Rearrangement(0, 70)
    random = '{"randomSeed": "s1", "splitting": {"strategy": "random", "percentEnd": 70}}'
    assert parse_rearrangement(random) == Rearrangement(0, 70, strategy="random", seed="s1")
    both = '{"randomSeed": "s1", "splitting": {"strategy": "random", "strategyParams": {"randomSeed": "s1"}}}'
    assert parse_rearrangement(both) == Rearrangement(strategy="random", seed="s1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"randomSeed": 0, "splitting": {}}',
            "DataRearrangement member 'randomSeed' must be a string, got 0",
        ),
        (
            '{"randomSeed": "a", "splitting": {"strategy": "random", "strategyParams": {"randomSeed": "b"}}}',
            "DataRearrangement members 'randomSeed' (\"a\") and "
            "'splitting.strategyParams.randomSeed' (\"b\") name different seeds; give one",
        ),
        (
            '{"splitting": {}, "seed": "a"}',
            "DataRearrangement has an unknown member 'seed'; allowed: splitting, randomSeed",
        ),
    ],
)
def test_a_top_level_random_seed_that_cannot_be_used_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInputException) as caught:
        parse_rearrangement(text)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"splitting": {"percentBegin": 0,}}', "line 1 column"),
        ("{\n  \"splitting\": {\n    'percentEnd': 70\n  }\n}", "line 3 column 5"),
        (
            '{"splitting": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "is not valid JSON: it is nested too deeply",
        ),
        ("[]", '{"splitting"'),
        ('{"split": {}}', '{"splitting"'),
        ('{"splitting": {}, "extra": 1}', "'extra'"),
        ('{"splitting": 5}', "'splitting'"),
        ('{"splitting": {"percentbegin": 10}}', "'splitting.percentbegin'"),
        ('{"splitting": {"percentBegin": 101}}', "'splitting.percentBegin'"),
        ('{"splitting": {"percentBegin": -1}}', "'splitting.percentBegin'"),
        ('{"splitting": {"percentEnd": 70.5}}', "'splitting.percentEnd'"),
        ('{"splitting": {"percentEnd": "abc"}}', "'splitting.percentEnd'"),
        # Read as written: taken as a fraction, 1e999999999 would build a number of a billion digits first.
        ('{"splitting": {"percentEnd": "1e999999999"}}', "'splitting.percentEnd'"),
        ('{"splitting": {"percentEnd": "1e-999999999"}}', "'splitting.percentEnd'"),
        ('{"splitting": {"percentEnd": "sNaN"}}', "'splitting.percentEnd'"),
        ('{"splitting": {"percentEnd": ' + "1" * 5000 + "}}", "an integer of 5,000 digits (111111111111...)"),
        ('{"splitting": {"percentEnd": true}}', "'splitting.percentEnd'"),
        ('{"splitting": {"percentEnd": null}}', "'splitting.percentEnd'"),
        ('{"splitting": {"percentBegin": 80, "percentEnd": 20}}', "'splitting.percentBegin' (80)"),
        ('{"splitting": {"complement": "yes"}}', "'splitting.complement'"),
        ('{"splitting": {"complement": 1}}', "'splitting.complement'"),
        ('{"splitting": {"strategy": "shuffle"}}', "'splitting.strategy'"),
        ('{"splitting": {"strategy": "Random"}}', "'splitting.strategy'"),
        ('{"splitting": {"strategy": "random", "strategyParams": []}}', "'splitting.strategyParams'"),
        (
            '{"splitting": {"strategy": "random", "strategyParams": {"seed": "x"}}}',
            "'splitting.strategyParams.seed'",
        ),
        (
            '{"splitting": {"strategy": "random", "strategyParams": {"randomSeed": 7}}}',
            "'splitting.strategyParams.randomSeed' must be a string",
        ),
        (
            '{"splitting": {"strategyParams": {"randomSeed": "x"}}}',
            "'splitting.strategyParams.randomSeed' applies only",
        ),
    ],
)
def test_invalid_rearrangements_name_the_member(text: str, named: str) -> None:
    with pytest.raises(InvalidInputException) as caught:
        parse_rearrangement(text)
    assert named in caught.value.message
    assert "DataRearrangement" in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"splitting": {"percentEnd": null}}',
            "DataRearrangement member 'splitting.percentEnd' must be a whole number from 0 to 100, got null",
        ),
        (
            '{"splitting": {"percentEnd": true}}',
            "DataRearrangement member 'splitting.percentEnd' must be a whole number from 0 to 100, got true",
        ),
        (
            '{"splitting": {"percentEnd": "70.5"}}',
            "DataRearrangement member 'splitting.percentEnd' must be a whole number from 0 to 100, "
            'got "70.5"',
        ),
        (
            '{"splitting": {"complement": "yes"}}',
            "DataRearrangement member 'splitting.complement' must be true or false, got \"yes\"",
        ),
        (
            '{"splitting": {"strategy": "random", "strategyParams": {"randomSeed": null}}}',
            "DataRearrangement member 'splitting.strategyParams.randomSeed' must be a string, got null",
        ),
        (
            '{"splitting": {"percentEnd": 70, "complement": true, "complement": false}}',
            "DataRearrangement has the member 'complement' twice",
        ),
        (
            '{"splitting": {"percentEnd": 70}, "splitting": {"percentEnd": 30}}',
            "DataRearrangement has the member 'splitting' twice",
        ),
        (
            '{"split": {"percentEnd": 70}}',
            'DataRearrangement must be a JSON object {"splitting": {...}}, e.g. '
            '{"splitting":{"percentBegin":0,"percentEnd":70}}; it has the unknown member \'split\' (did you '
            "mean 'splitting'?) instead",
        ),
        (
            '{"splitting": {"percentEnd": 70, "stratgy": "random"}}',
            "DataRearrangement has an unknown member 'splitting.stratgy' (did you mean 'strategy'?); "
            "allowed: percentBegin, percentEnd, complement, strategy, strategyParams",
        ),
        (
            '{"splitting": {"strategy": "random", "strategyParams": {"seed": "k"}}}',
            "DataRearrangement has an unknown member 'splitting.strategyParams.seed'; allowed: randomSeed",
        ),
    ],
)
def test_invalid_values_are_spelled_as_json_and_repeated_members_refused(text: str, message: str) -> None:
    """The request is JSON: its values are quoted as JSON spells them (not Python's None or True), and a
    member given twice, of which JSON parsers keep the last, is refused rather than silently half-read."""
    with pytest.raises(InvalidInputException) as caught:
        parse_rearrangement(text)
    assert caught.value.message == message


def test_needs_total() -> None:
    assert Rearrangement(0, 70).needs_total
    assert Rearrangement(70, 100, complement=True).needs_total
    assert not Rearrangement(0, 100).needs_total
    assert not Rearrangement(0, 100, complement=True).needs_total
    assert not Rearrangement(40, 40).needs_total
    assert not Rearrangement(0, 70, strategy="random").needs_total


# --- sequential --------------------------------------------------------------------------------------


def test_sequential_console_default_split() -> None:
    indices = np.arange(10)
    train = sequential_mask(Rearrangement(0, 70), 10, indices)
    evaluation = sequential_mask(Rearrangement(70, 100), 10, indices)
    assert indices[train].tolist() == list(range(7))
    assert indices[evaluation].tolist() == [7, 8, 9]


def test_sequential_uses_floor_of_exact_products() -> None:
    keep = sequential_mask(Rearrangement(0, 70), 41_188, np.arange(41_188))
    assert int(keep.sum()) == 28_831 and keep[28_830] and not keep[28_831]
    assert sequential_mask(Rearrangement(0, 29), 7, np.arange(7)).tolist() == [True, True] + [False] * 5
    # Here float arithmetic gives floor(N·0.7) = 7·10^16, one less than the exact 7·10^16 + 1.
    total = 100_000_000_000_000_002
    assert math.floor(total * 70 / 100) != total * 70 // 100
    edge = np.array([7 * 10**16 - 1, 7 * 10**16, 7 * 10**16 + 1], dtype=np.int64)
    assert sequential_mask(Rearrangement(0, 70), total, edge).tolist() == [True, True, False]


def test_select_dispatch() -> None:
    offsets = np.array([0, 10, 25, 40])
    indices = np.array([0, 1, 2, 3])
    assert select(None, "k", offsets, indices, None).tolist() == [True] * 4
    assert select(Rearrangement(0, 50), "k", offsets, indices, 4).tolist() == [True, True, False, False]
    randomly = Rearrangement(0, 50, strategy="random", seed="s")
    assert (
        select(randomly, "k", offsets, indices, None).tolist() == random_mask(randomly, "k", offsets).tolist()
    )
    assert not select(Rearrangement(0, 100, complement=True), "k", offsets, indices, None).any()
    with pytest.raises(ValueError, match="total record count"):
        select(Rearrangement(0, 50), "k", offsets, indices, None)


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(0, 5_000),
    bounds=st.tuples(st.integers(0, 100), st.integers(0, 100)).map(sorted),
    cuts=st.lists(st.integers(0, 5_000), max_size=8),
)
def test_sequential_split_is_independent_of_batch_boundaries(
    total: int, bounds: list[int], cuts: list[int]
) -> None:
    split = Rearrangement(bounds[0], bounds[1])
    indices = np.arange(total)
    whole = sequential_mask(split, total, indices)
    pieces = np.split(indices, sorted(c for c in cuts if c <= total))
    assert np.array_equal(np.concatenate([sequential_mask(split, total, p) for p in pieces]), whole)
    # The kept rows are exactly one contiguous slice of the documented size.
    kept = np.flatnonzero(whole)
    assert len(kept) == total * bounds[1] // 100 - total * bounds[0] // 100
    if len(kept):
        assert kept[-1] - kept[0] + 1 == len(kept)
    complement = sequential_mask(Rearrangement(bounds[0], bounds[1], complement=True), total, indices)
    assert np.array_equal(complement, ~whole)


# --- random ------------------------------------------------------------------------------------------


def _reference_u(seed: str, key: str, offset: int) -> float:
    digest = hashlib.sha256(seed.encode() + b"\0" + key.encode() + b"\0" + str(offset).encode()).digest()
    return 100 * int.from_bytes(digest[:8], "big") / 2**64


def test_random_mask_matches_the_documented_formula() -> None:
    offsets = np.arange(0, 2000 * 97, 97)
    split = Rearrangement(20, 65, strategy="random", seed="s3://bucket/banking.csv")
    keep = random_mask(split, "banking.csv", offsets)
    expected = [20 <= _reference_u(split.seed, "banking.csv", int(o)) < 65 for o in offsets]
    assert keep.tolist() == expected


def test_random_mask_depends_on_seed_key_and_offset() -> None:
    offsets = np.arange(0, 50_000, 7)
    base = random_mask(Rearrangement(0, 50, strategy="random", seed="a"), "k", offsets)
    assert not np.array_equal(
        base, random_mask(Rearrangement(0, 50, strategy="random", seed="b"), "k", offsets)
    )
    assert not np.array_equal(
        base, random_mask(Rearrangement(0, 50, strategy="random", seed="a"), "j", offsets)
    )
    assert not np.array_equal(
        base, random_mask(Rearrangement(0, 50, strategy="random", seed="a"), "k", offsets + 1)
    )


def test_random_mask_edges() -> None:
    offsets = np.arange(1000)
    assert random_mask(Rearrangement(0, 100, strategy="random"), "k", offsets).all()
    assert not random_mask(Rearrangement(100, 100, strategy="random"), "k", offsets).any()
    assert not random_mask(Rearrangement(30, 30, strategy="random"), "k", offsets).any()
    assert random_mask(Rearrangement(0, 100, strategy="random"), "k", np.array([], dtype=np.int64)).shape == (
        0,
    )


def test_random_share_is_close_to_the_requested_percentage() -> None:
    offsets = np.arange(100_000, dtype=np.int64) * 131
    for begin, end in [(0, 70), (70, 100), (10, 15)]:
        share = random_mask(
            Rearrangement(begin, end, strategy="random", seed="x"), "data.csv", offsets
        ).mean()
        # Binomial standard deviation is below 0.0015 here; allow four of them.
        assert math.isclose(share, (end - begin) / 100, abs_tol=0.006)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.text(max_size=20),
    key=st.text(min_size=1, max_size=30),
    bounds=st.tuples(st.integers(0, 100), st.integers(0, 100)).map(sorted),
    offsets=st.lists(st.integers(0, 2**40), max_size=200, unique=True),
)
def test_random_split_and_complement_partition_the_rows(
    seed: str, key: str, bounds: list[int], offsets: list[int]
) -> None:
    array = np.array(offsets, dtype=np.int64)
    split = Rearrangement(bounds[0], bounds[1], strategy="random", seed=seed)
    complement = Rearrangement(bounds[0], bounds[1], complement=True, strategy="random", seed=seed)
    kept = random_mask(split, key, array)
    other = random_mask(complement, key, array)
    assert not np.any(kept & other)
    assert np.all(kept | other)
    # Deterministic, and row by row the same as in any other batch.
    assert np.array_equal(random_mask(split, key, array), kept)
    for position, offset in enumerate(offsets[:20]):
        assert random_mask(split, key, np.array([offset]))[0] == kept[position]
        assert kept[position] == (bounds[0] <= _reference_u(seed, key, offset) < bounds[1])


@settings(max_examples=30, deadline=None)
@given(folds=st.integers(2, 10), seed=st.text(max_size=10))
def test_cross_validation_folds_cover_every_row_once(folds: int, seed: str) -> None:
    offsets = np.arange(0, 3000 * 13, 13)
    masks = [
        random_mask(
            Rearrangement(fold * 100 // folds, (fold + 1) * 100 // folds, strategy="random", seed=seed),
            "k",
            offsets,
        )
        for fold in range(folds)
    ]
    assert np.array_equal(np.sum(masks, axis=0), np.ones(len(offsets)))


def test_random_mask_of_many_offsets_stays_small_and_exact() -> None:
    # A block of short records holds millions of offsets: their digests and Python ints were made all at
    # once, about 150 bytes per record. Hashed a piece at a time, every piece by the same formula.
    offsets = np.arange(500_000, dtype=np.int64) * 3
    split = Rearrangement(10, 70, strategy="random", seed="s")
    tracemalloc.start()
    try:
        keep = random_mask(split, "k", offsets)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    sample = [0, 1, 65_535, 65_536, 65_537, 131_072, 499_999]
    assert [bool(keep[i]) for i in sample] == [
        10 <= _reference_u("s", "k", int(offsets[i])) < 70 for i in sample
    ]
    assert 0.55 < keep.mean() < 0.65
    assert peak < 24 << 20, f"peak {peak / 2**20:.1f} MiB"
