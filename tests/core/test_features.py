"""FeatureSpace: fitting, naming, both transform paths agreeing exactly, serialization, real datasets."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emrml.core import features
from emrml.core.features import FeatureSpace, fitting
from emrml.core.features import batch as batch_features
from emrml.core.features.layout import walk
from emrml.core.recipe.grammar import parse_recipe
from emrml.core.recipe.suggest import suggest_recipe
from emrml.core.schema import Attribute, AttributeType, Schema, parse_schema
from emrml.core.values import InvalidValue, numeric_value
from emrml.errors import DataError, InvalidInputException

T = AttributeType


def _batch(schema: Schema, rows: list[Mapping[str, str | None]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {name: pa.array([row.get(name) for row in rows], pa.string()) for name in schema.names}
    )


def _rows_of(matrix: object) -> list[tuple[list[int], list[float]]]:
    csr = matrix  # scipy.sparse.csr_matrix
    return [
        (
            csr.indices[csr.indptr[i] : csr.indptr[i + 1]].tolist(),
            csr.data[csr.indptr[i] : csr.indptr[i + 1]].tolist(),
        )
        for i in range(csr.shape[0])
    ]


def _assert_paths_agree(space: FeatureSpace, schema: Schema, records: list[dict[str, str]]) -> None:
    matrix = space.transform(_batch(schema, records))
    assert matrix.shape == (len(records), space.n_features)
    for record, row in zip(records, _rows_of(matrix), strict=True):
        assert space.transform_record(record) == row, (record, records)


def _read(directory: Path) -> tuple[Schema, pa.Table]:
    schema = parse_schema((directory / "data.csv.schema").read_text())
    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in schema.names})
    return schema, pcsv.read_csv(directory / "data.csv", convert_options=options)


# --- Small hand-made data --------------------------------------------------------------------------------

SMALL = Schema(
    (
        Attribute("age", T.NUMERIC),
        Attribute("smoker", T.BINARY),
        Attribute("job", T.CATEGORICAL),
        Attribute("review", T.TEXT),
        Attribute("y", T.BINARY),
    ),
    target="y",
)
SMALL_ROWS = [
    {"age": "20", "smoker": "yes", "job": "admin.", "review": "Great movie, great cast", "y": "1"},
    {"age": "35", "smoker": "no", "job": "technician", "review": "great movie", "y": "0"},
    {"age": "", "smoker": "T", "job": " admin. ", "review": "boring", "y": "1"},
    {"age": "abc", "smoker": "maybe", "job": "", "review": "", "y": "0"},
    {"age": "50", "smoker": "0", "job": "retired", "review": "Great  acting!", "y": "1"},
]


def _small(outputs: list[str], rows: list[dict[str, str]] = SMALL_ROWS, **kwargs: int) -> FeatureSpace:
    recipe = parse_recipe(json.dumps({"outputs": outputs}), SMALL)
    return FeatureSpace.fit(recipe, SMALL, [_batch(SMALL, rows)], **kwargs)


def test_feature_names_follow_the_spec() -> None:
    space = _small(["age", "smoker", "job", "quantile_bin(age,5)", "ngram(lowercase(review),2)"])
    names = space.feature_names
    assert names[:4] == ["age", "age:missing", "smoker", "smoker:missing"]
    assert "job=admin." in names and "job=technician" in names
    assert "quantile_bin(age,5)=bin_0" in names and "quantile_bin(age,5):missing" in names
    assert "ngram(lowercase(review),2)=great movie" in names
    assert "ngram(lowercase(review),2)=great" in names
    assert len(names) == space.n_features == len(set(names))


def test_numeric_values_missing_indicators_and_invalid_values() -> None:
    space = _small(["age", "smoker"])
    assert space.transform_record({"age": "35", "smoker": "yes"}) == ([0, 2], [35.0, 1.0])
    # Missing and invalid values both set the indicator and count as 0 (open question 10).
    assert space.transform_record({"age": "", "smoker": "no"}) == ([1], [1.0])
    assert space.transform_record({"age": "x1", "smoker": "maybe"}) == ([1, 3], [1.0, 1.0])
    assert space.transform_record({}) == ([1, 3], [1.0, 1.0])
    assert space.transform_record({"age": "0", "smoker": "1"}) == ([2], [1.0])


def test_missing_indicator_exists_only_when_training_saw_one() -> None:
    clean = [row for row in SMALL_ROWS if row["age"] not in ("", "abc")]
    space = _small(["age", "normalize(age)"], rows=clean)
    assert space.feature_names == ["age", "normalize(age)"]
    # An unseen missing value is simply 0.
    assert space.transform_record({"age": ""}) == ([], [])


def test_normalize_uses_training_mean_and_population_std() -> None:
    space = _small(["normalize(age)"])
    mean, std = 35.0, math.sqrt(((20 - 35) ** 2 + 0 + 15**2) / 3)
    assert space.to_dict()["moments"] == {"age": {"mean": mean, "std": std}}
    indices, values = space.transform_record({"age": "50"})
    assert indices == [0] and values == [(50 - mean) / std]
    assert space.transform_record({"age": "35"}) == ([], [])  # exactly the mean → 0, not stored


def test_quantile_bins_edges_and_out_of_range_values() -> None:
    rows = [{"age": str(v)} for v in range(1, 101)]
    space = _small(["quantile_bin(age,10)"], rows=rows)
    assert space.to_dict()["quantile_edges"] == {
        "quantile_bin(age,10)": [float(v) for v in range(10, 100, 10)]
    }
    assert space.n_features == 10  # no missing value in training → no indicator
    assert space.transform_record({"age": "10"}) == ([0], [1.0])
    assert space.transform_record({"age": "10.5"}) == ([1], [1.0])
    assert space.transform_record({"age": "-1000"}) == ([0], [1.0])
    assert space.transform_record({"age": "1e9"}) == ([9], [1.0])
    assert space.transform_record({"age": "91"}) == ([9], [1.0])


def test_quantile_bins_merge_duplicate_edges() -> None:
    rows = [{"age": "999"}] * 90 + [{"age": str(v)} for v in range(10)]
    space = _small(["quantile_bin(age,10)"], rows=rows)
    # Nine of ten quantiles are 999, the maximum: one edge (at 9) is left, two bins.
    assert space.to_dict()["quantile_edges"]["quantile_bin(age,10)"] == [9.0]
    assert space.feature_names == ["quantile_bin(age,10)=bin_0", "quantile_bin(age,10)=bin_1"]


def test_quantile_edges_from_the_sketch_beyond_the_exact_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    values = np.random.default_rng(7).normal(size=60_000)
    rows = [{"age": repr(float(v))} for v in values]
    exact = _small(["quantile_bin(age,20)"], rows=rows).to_dict()["quantile_edges"]["quantile_bin(age,20)"]
    monkeypatch.setattr(fitting, "EXACT_DISTINCT_LIMIT", 1000)
    sketched = _small(["quantile_bin(age,20)"], rows=rows).to_dict()["quantile_edges"]["quantile_bin(age,20)"]
    assert len(sketched) == len(exact) == 19
    ranks = np.searchsorted(np.sort(values), sketched) / len(values)
    assert np.abs(ranks - np.arange(1, 20) / 20).max() < 0.01
    # The same data gives the same bins, and so the same model, on every run.
    again = _small(["quantile_bin(age,20)"], rows=rows).to_dict()["quantile_edges"]["quantile_bin(age,20)"]
    assert again == sketched


def test_categories_trim_whitespace_and_unknown_values_are_dropped() -> None:
    space = _small(["job"])
    admin = space.feature_names.index("job=admin.")
    assert space.transform_record({"job": "  admin.\t"}) == ([admin], [1.0])
    assert space.transform_record({"job": "astronaut"}) == ([], [])
    assert space.transform_record({"job": ""}) == ([], [])
    assert "job=" not in space.feature_names


def test_token_bag_counts_a_repeated_token_once_and_drops_unknown_tokens() -> None:
    space = _small(["review"])
    great = space.feature_names.index("review=great")
    assert space.transform_record({"review": "great great great zebra"}) == ([great], [1.0])
    matrix = space.transform(_batch(SMALL, [{"review": "great great great zebra"}]))
    assert matrix.nnz == 1 and matrix[0, great] == 1.0


def test_vocabulary_limits_keep_the_most_frequent() -> None:
    rows = [{"review": "a a b"}, {"review": "a c"}, {"review": "a b d"}, {"job": "x"}]
    space = _small(["review", "job"], rows=rows, max_vocabulary=2)
    # Document frequencies: a 3, b 2, c 1, d 1, job=x 1.
    assert space.feature_names == ["review=a", "review=b"]
    space = _small(["review", "job"], rows=rows, min_count=2)
    assert space.feature_names == ["review=a", "review=b"]
    space = _small(["review", "job"], rows=rows)
    assert space.feature_names == ["review=a", "review=b", "review=c", "review=d", "job=x"]


def test_vocabulary_counters_hold_a_bounded_number_of_strings_and_keep_the_frequent_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wide text (every row brings new words) is counted within the counters' byte budget, whatever the
    number of distinct words, and the frequent words still make the vocabulary, most frequent first."""
    monkeypatch.setattr(fitting, "COUNTER_BYTES", 20_000)
    monkeypatch.setattr(fitting, "COUNTER_PENDING_BYTES", 5_000)
    rng = np.random.default_rng(3)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    recipe = parse_recipe(json.dumps({"outputs": ["review", "job"]}), SMALL)
    fit = fitting.Fitting(recipe, SMALL, max_vocabulary=11)
    rows_per_batch, largest = 100, 0
    for start in range(0, 20_000, rows_per_batch):
        rows = []
        for row in range(start, start + rows_per_batch):
            # frequent word i is in every (i + 1)-th row; five new 8-letter words in each row
            frequent = [f"common{i}" for i in range(10) if row % (i + 1) == 0]
            rare = ["".join(rng.choice(letters, 8)) for _ in range(5)]
            rows.append({"review": " ".join(frequent + rare), "job": f"job{row % 2}"})
        fit.update(_batch(SMALL, rows))
        held = sum(chunk.num_rows for counter in fit.counters.values() for chunk in counter.chunks)
        largest = max(largest, held)
    # 100,000 distinct words were counted; 20,000 bytes at 20 bytes a word, plus what waits, is far less.
    assert largest < 2_000
    space = fit.space()
    # Eleven strings over both outputs: the least frequent, common9 (2,000 rows), is left out.
    assert space.feature_names == [f"review=common{i}" for i in range(9)] + ["job=job0", "job=job1"]


def test_counts_of_many_small_batches_do_not_pile_up() -> None:
    # A few categories a batch, over many batches (a large datasource): the waiting counts are added up
    # every so many batches, not kept as one small table per batch until the end.
    recipe = parse_recipe(json.dumps({"outputs": ["job"]}), SMALL)
    fit = fitting.Fitting(recipe, SMALL)
    for index in range(1_000):
        fit.update(_batch(SMALL, [{"job": f"job{index % 3}"}, {"job": "admin."}]))
    assert sum(len(counter.chunks) for counter in fit.counters.values()) <= 100
    assert fit.space().feature_names == ["job=admin.", "job=job0", "job=job1", "job=job2"]


def test_document_frequencies_count_words_alike_after_a_transformation_once_per_row() -> None:
    # "Rate," and "RATE" are two tokens of row 0 but one word after no_punct and lowercase: two rows hold
    # "rate", and "x" is in one row only (emptied "!!!" is no word).
    rows = [{"review": "Rate, RATE x !!!"}, {"review": "rate."}, {"review": "!!!"}]
    space = _small(["lowercase(no_punct(review))"], rows=rows, min_count=2)
    assert space.feature_names == ["lowercase(no_punct(review))=rate"]
    space = _small(["lowercase(no_punct(review))"], rows=rows, min_count=3)
    assert space.feature_names == []
    space = _small(["lowercase(no_punct(review))"], rows=rows)
    assert space.feature_names == ["lowercase(no_punct(review))=rate", "lowercase(no_punct(review))=x"]
    _assert_paths_agree(space, SMALL, rows)


def test_cartesian_features() -> None:
    space = _small(["cartesian(job,smoker)", "cartesian(quantile_bin(age,5),job)"])
    names = space.feature_names
    assert "cartesian(job,smoker)=admin._1" in names
    assert "cartesian(job,smoker)=technician_0" in names
    assert any(name.startswith("cartesian(quantile_bin(age,5),job)=bin_") for name in names)
    _assert_paths_agree(space, SMALL, SMALL_ROWS)


def test_nested_quantile_bin_needs_a_reiterable_input() -> None:
    recipe = parse_recipe(json.dumps({"outputs": ["cartesian(quantile_bin(age,5),job)"]}), SMALL)
    with pytest.raises(TypeError, match="re-iterable"):
        FeatureSpace.fit(recipe, SMALL, iter([_batch(SMALL, SMALL_ROWS)]))
    # Without a nested bin one pass suffices, so an iterator is fine.
    recipe = parse_recipe(json.dumps({"outputs": ["quantile_bin(age,5)", "job"]}), SMALL)
    assert FeatureSpace.fit(recipe, SMALL, iter([_batch(SMALL, SMALL_ROWS)])).n_features > 0


def test_fit_merges_batches_like_one_batch() -> None:
    recipe = parse_recipe(
        json.dumps({"outputs": ["normalize(age)", "quantile_bin(age,5)", "job", "ngram(review,2)"]}), SMALL
    )
    whole = FeatureSpace.fit(recipe, SMALL, [_batch(SMALL, SMALL_ROWS)])
    split = FeatureSpace.fit(recipe, SMALL, [_batch(SMALL, [row]) for row in SMALL_ROWS])
    assert split.feature_names == whole.feature_names
    assert split.to_dict()["quantile_edges"] == whole.to_dict()["quantile_edges"]
    (mean_a, std_a), (mean_b, std_b) = (
        (s.to_dict()["moments"]["age"]["mean"], s.to_dict()["moments"]["age"]["std"]) for s in (whole, split)
    )
    assert mean_a == pytest.approx(mean_b, rel=1e-12) and std_a == pytest.approx(std_b, rel=1e-12)


def test_missing_column_is_a_data_error() -> None:
    space = _small(["age"])
    with pytest.raises(DataError, match="no column 'age'"):
        space.transform(pa.RecordBatch.from_pydict({"job": pa.array(["x"])}))


def test_recipe_parsed_against_another_schema_is_refused() -> None:
    recipe = parse_recipe(json.dumps({"outputs": ["age"]}), SMALL)
    other = Schema((Attribute("age", T.TEXT), Attribute("y", T.BINARY)), target="y")
    with pytest.raises(InvalidInputException, match="'age' as NUMERIC"):
        FeatureSpace.fit(recipe, other, [])


def test_round_trip_through_json_gives_identical_features() -> None:
    space = _small(
        [
            "age",
            "normalize(age)",
            "quantile_bin(age,5)",
            "smoker",
            "job",
            "ngram(lowercase(review),2)",
            "cartesian(quantile_bin(age,5),job)",
        ]
    )
    text = json.dumps(space.to_dict())
    again = FeatureSpace.from_dict(json.loads(text), SMALL)
    assert again.feature_names == space.feature_names
    batch = _batch(SMALL, SMALL_ROWS)
    assert (again.transform(batch) != space.transform(batch)).nnz == 0
    for row in SMALL_ROWS:
        assert again.transform_record(row) == space.transform_record(row)


def test_from_dict_rejects_malformed_descriptions() -> None:
    data = _small(["age", "job"]).to_dict()
    with pytest.raises(InvalidInputException, match="version"):
        FeatureSpace.from_dict({**data, "version": 99}, SMALL)
    with pytest.raises(InvalidInputException, match="malformed"):
        FeatureSpace.from_dict({k: v for k, v in data.items() if k != "moments"}, SMALL)
    renamed = Schema((Attribute("years", T.NUMERIC), Attribute("job", T.CATEGORICAL)))
    with pytest.raises(InvalidInputException, match="unknown variable 'age'"):
        FeatureSpace.from_dict(data, renamed)


# --- Property test: the two paths agree -------------------------------------------------------------------

PROPERTY = Schema(
    (
        Attribute("num", T.NUMERIC),
        Attribute("flag", T.BINARY),
        Attribute("cat", T.CATEGORICAL),
        Attribute("text", T.TEXT),
        Attribute("text2", T.TEXT),
        Attribute("y", T.BINARY),
    ),
    target="y",
)
PROPERTY_RECIPE = {
    "groups": {"WORDS": "group(text, text2)"},
    "assignments": {"clean": "lowercase(no_punct(WORDS))", "binned": "quantile_bin(num, 5)"},
    "outputs": [
        "num",
        "normalize(num)",
        "binned",
        "flag",
        "cat",
        "lowercase(cat)",
        "no_punct(cat)",
        "lowercase(no_punct(cat))",
        "ALL_TEXT",
        "clean",
        "ngram(lowercase(no_punct(text)), 3)",
        "osb(text, 3)",
        "osb(lowercase(text2), 2)",
        "cartesian(cat, flag)",
        "cartesian(binned, cat)",
        "cartesian(no_punct(text), text2, flag)",
        "ngram(text2, 2) // a comment",
    ],
}
WORDS = [
    "Great", "great", "GREAT!", "movie", "movie,", "«film»", "seat-belts!", "İstanbul", "ΟΔΟΣ", "straße",
    "😀", "...", "-", "a", "I", "K", "naïve", "café", "Ǆ", "$100", "100%", "(x)", "ﬁne", "ß",
]  # fmt: skip
SPACES = [" ", "  ", "\t", "\n", "\u3000", "\x1c", "\xa0", " \u2028 "]


@cache
def _property_space() -> FeatureSpace:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        words = rng.choice(WORDS, size=rng.integers(0, 8))
        rows.append(
            {
                "num": "" if i % 17 == 0 else ("oops" if i % 23 == 0 else f"{rng.normal() * 10:.3f}"),
                "flag": ["yes", "no", "1", "0", "", "maybe"][i % 6],
                "cat": str(rng.choice(WORDS)) + ("" if i % 3 else " "),
                "text": " ".join(words),
                "text2": " ".join(rng.choice(WORDS, size=rng.integers(0, 4))),
            }
        )
    recipe = parse_recipe(json.dumps(PROPERTY_RECIPE), PROPERTY)
    return FeatureSpace.fit(recipe, PROPERTY, [_batch(PROPERTY, rows[:150]), _batch(PROPERTY, rows[150:])])


_free_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
_word_text = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SPACES)), max_size=8).map(
    lambda parts: "".join(word + space for word, space in parts)
)
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        ["", " ", "1e3", ".5", "-0", "+2", "1,000", "1_000", "NaN", "inf", " 7 ", "0x10", "1e400", "٣", "１"]
    ),
    st.from_regex(r"\A\s?[+-]?[0-9_]{0,4}\.?[0-9]{0,3}([eE][+-]?[0-9]{1,3})?\s?\Z"),
    _free_text,
)
_flags = st.one_of(st.sampled_from(["yes", "NO", " t ", "F", "1", "0", "", "maybe", "ｙｅｓ"]), _free_text)
_categories = st.one_of(st.sampled_from(WORDS), _word_text, _free_text)
_texts = st.one_of(_word_text, _free_text)
_records = st.fixed_dictionaries(
    {},
    optional={"num": _numbers, "flag": _flags, "cat": _categories, "text": _texts, "text2": _texts},
)


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 400))), st.integers(1, 400))
def test_distinct_per_row_matches_plain_python(pairs: list[tuple[int, int]], width: int) -> None:
    # Both ways of finding the pairs: a grid for narrow vocabularies, a sort for wide ones.
    pairs = sorted((row, token % width) for row, token in pairs)
    rows = np.array([row for row, _ in pairs], dtype=np.int64)
    ids = np.array([token for _, token in pairs], dtype=np.int64)
    got_rows, got_ids = batch_features.distinct_per_row(rows, ids, width)
    assert got_rows.dtype == got_ids.dtype == np.int64
    assert list(zip(got_rows.tolist(), got_ids.tolist(), strict=True)) == sorted(set(pairs))


def test_distinct_per_row_with_keys_beyond_32_bits() -> None:
    width = 2**31
    rows = np.array([0, 0, 1, 1, 1], dtype=np.int64)
    ids = np.array([width - 1, 7, width - 1, width - 1, 0], dtype=np.int64)
    got_rows, got_ids = batch_features.distinct_per_row(rows, ids, width)
    assert got_rows.tolist() == [0, 0, 1, 1] and got_ids.tolist() == [7, width - 1, 0, width - 1]


@given(_numbers)
def test_record_number_parsing_matches_numeric_value(text: str) -> None:
    try:
        expected = numeric_value(text)
    except InvalidValue:
        expected = None
    assert features.record_number(text) == expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records, min_size=1, max_size=12))
def test_batch_and_record_paths_agree(records: list[dict[str, str]]) -> None:
    _assert_paths_agree(_property_space(), PROPERTY, records)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records, min_size=1, max_size=12), st.sampled_from([1, 3]))
def test_product_equals_the_matrix_product(records: list[dict[str, str]], outputs: int) -> None:
    # Scoring multiplies without building the matrix; the sums come out as the sparse product's.
    space = _property_space()
    batch = _batch(PROPERTY, records)
    weights = np.random.default_rng(len(records)).normal(size=(space.n_features, outputs))
    product = space.product(space.values(batch), weights)
    assert product.shape == (len(records), outputs)
    np.testing.assert_allclose(product, space.transform(batch) @ weights, rtol=1e-12, atol=1e-12)


def test_property_space_exercises_every_transformation() -> None:
    space = _property_space()
    functions = {
        node.function
        for output in space.outputs
        for node in walk(output.expression)
        if hasattr(node, "function")
    }
    assert functions == {"lowercase", "no_punct", "ngram", "osb", "quantile_bin", "normalize", "cartesian"}
    assert space.n_features > 200
    # The training words themselves must hit the vocabulary, so the property test compares real features.
    indices, _ = space.transform_record({"text": "Great movie", "cat": "GREAT!", "num": "3", "flag": "y"})
    assert len(indices) > 10


# --- Real datasets ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank(shared_datasets: Path) -> tuple[Schema, pa.Table]:
    return _read(shared_datasets / "bank_marketing")


@pytest.fixture(scope="module")
def bank_space(bank: tuple[Schema, pa.Table]) -> FeatureSpace:
    schema, table = bank
    recipe = parse_recipe(
        json.dumps({"outputs": ["ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,10)"]}), schema
    )
    return FeatureSpace.fit(recipe, schema, table.to_batches(max_chunksize=8192))


def test_bank_marketing_features(bank: tuple[Schema, pa.Table], bank_space: FeatureSpace) -> None:
    _, table = bank
    batch = table.slice(0, 5000).combine_chunks().to_batches()[0]
    matrix = bank_space.transform(batch)
    # Ten one-hot categoricals and ten binned numbers, no missing values: 20 features per row.
    assert np.array_equal(np.diff(matrix.indptr), np.full(5000, 20))
    assert "job=blue-collar" in bank_space.feature_names
    assert "quantile_bin(pdays,10)=bin_0" in bank_space.feature_names
    # pdays is 999 ("never contacted") for 96 % of clients: every tenth quantile is 999, one bin is left.
    assert [name for name in bank_space.feature_names if "(pdays," in name] == [
        "quantile_bin(pdays,10)=bin_0"
    ]
    rows = batch.to_pylist()
    for record, row in zip(rows[:1000], _rows_of(matrix), strict=False):
        assert bank_space.transform_record(record) == row


def test_bank_marketing_suggested_recipe_features(bank: tuple[Schema, pa.Table]) -> None:
    schema, table = bank
    recipe = parse_recipe(suggest_recipe(schema, table.slice(0, 5000), T.BINARY, extras=True), schema)
    space = FeatureSpace.fit(recipe, schema, table.to_batches(max_chunksize=16384))
    sample = table.slice(20000, 500).to_pylist()
    _assert_paths_agree(space, schema, sample)


def test_sms_spam_text_features(shared_datasets: Path) -> None:
    schema, table = _read(shared_datasets / "sms_spam")
    recipe = parse_recipe(
        json.dumps({"outputs": ["ALL_TEXT", "ngram(lowercase(no_punct(message)),2)", "osb(message,3)"]}),
        schema,
    )
    space = FeatureSpace.fit(recipe, schema, table.to_batches(max_chunksize=2000))
    assert "ngram(lowercase(no_punct(message)),2)=call now" in space.feature_names
    batch = table.slice(0, 800).combine_chunks().to_batches()[0]
    matrix = space.transform(batch)
    assert matrix.nnz > 800 * 10
    for record, row in zip(batch.to_pylist(), _rows_of(matrix), strict=True):
        assert space.transform_record(record) == row


def test_bank_marketing_batch_and_records_agree(
    bank: tuple[Schema, pa.Table], bank_space: FeatureSpace
) -> None:
    """Speed is measured in bench/micro.py; here, the real file's rows featurize the same both ways."""
    _, table = bank
    batch = table.combine_chunks().to_batches()[0].slice(0, 2000)
    matrix = bank_space.transform(batch)
    for record, row in zip(batch.to_pylist(), _rows_of(matrix), strict=True):
        assert bank_space.transform_record(record) == row


# --- Fitting in parts (the Spark engine's tasks) ---------------------------------------------------------


def test_fittings_of_parts_merge_into_the_fit_of_the_whole() -> None:
    """Three parts fitted apart, sent as pickles (as Spark sends them) and merged, give the feature space of
    one reading: the same vocabularies, bin edges, indicators and (to rounding) moments, including the
    second pass that counts quantile bins crossed with a category."""
    import pickle

    rng = np.random.default_rng(7)
    jobs = ["admin.", "technician", "retired", "student", ""]
    words = ["great", "movie", "boring", "cast", "acting", "plot"]
    rows = [
        {
            "age": "" if i % 17 == 0 else f"{rng.normal(40, 12):.1f}",
            "smoker": ["yes", "no", "", "T"][i % 4],
            "job": jobs[int(rng.integers(len(jobs)))],
            "review": " ".join(rng.choice(words, size=int(rng.integers(0, 6)))),
            "y": str(i % 2),
        }
        for i in range(600)
    ]
    outputs = [
        "age",
        "smoker",
        "normalize(age)",
        "quantile_bin(age,7)",
        "cartesian(quantile_bin(age,5),job)",
        "ngram(lowercase(review),2)",
    ]
    recipe = parse_recipe(json.dumps({"outputs": outputs}), SMALL)
    parts = [_batch(SMALL, rows[:100]), _batch(SMALL, rows[100:450]), _batch(SMALL, rows[450:])]
    whole = FeatureSpace.fit(recipe, SMALL, parts)

    def shipped(part: fitting.Fitting) -> fitting.Fitting:
        return pickle.loads(pickle.dumps(part))  # the test's own bytes, as Spark would send them

    def fitted(part: pa.RecordBatch, into: fitting.Fitting) -> fitting.Fitting:
        into.update(part)
        return shipped(into)

    merged = fitted(parts[0], fitting.Fitting(recipe, SMALL))
    for part in parts[1:]:
        merged.merge(fitted(part, fitting.Fitting(recipe, SMALL)))
    assert merged.second_pass
    merged.end_first_pass()
    empty = merged.second_pass_part()
    for part in parts:
        merged.merge(fitted(part, shipped(empty)))
    space = merged.space()

    expected, got = whole.to_dict(), space.to_dict()
    assert got["outputs"] == expected["outputs"]
    assert got["quantile_edges"] == expected["quantile_edges"]
    assert got["moments"].keys() == expected["moments"].keys()
    for name, moments in expected["moments"].items():
        assert got["moments"][name] == pytest.approx(moments, rel=1e-12)
    assert space.feature_names == whole.feature_names
