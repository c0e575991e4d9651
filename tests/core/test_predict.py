"""Predictor: the Predict API's answer per model type, the record and batch paths agreeing; Java-style
numbers."""

from __future__ import annotations

import json
import math
import re
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrml.core.features import FeatureSpace
from emrml.core.features import record as record_compiler
from emrml.core.floats import java_float_cells
from emrml.core.linear import LinearModel
from emrml.core.model import ModelArtifact, save_artifact
from emrml.core.predict import Predictor
from emrml.core.recipe.grammar import parse_recipe
from emrml.core.recipe.suggest import suggest_recipe
from emrml.core.schema import AttributeType, Schema, parse_schema
from emrml.errors import InvalidInputException
from raw_models import raw_numbers_predictor

RECORDS = 1000
#: Java-style scientific notation as Amazon ML wrote it: one digit, a fraction without trailing zeros.
JAVA_FLOAT = re.compile(r"-?[1-9]\.([0-9]*[1-9]|0)E(0|-?[1-9][0-9]{0,2})")


@pytest.fixture(scope="module")
def bank(shared_datasets: Path) -> tuple[Schema, pa.Table]:
    directory = shared_datasets / "bank_marketing"
    schema = parse_schema((directory / "data.csv.schema").read_text())
    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in schema.names})
    return schema, pcsv.read_csv(directory / "data.csv", convert_options=options)


@pytest.fixture(scope="module")
def bank_space(bank: tuple[Schema, pa.Table]) -> FeatureSpace:
    """The suggested recipe with the extras (quantile bins, one-hot, normalize, n-grams) on bank data."""
    schema, table = bank
    recipe = suggest_recipe(schema, table.slice(0, 5000), AttributeType.BINARY, extras=True)
    return FeatureSpace.fit(parse_recipe(recipe, schema), schema, table.to_batches(max_chunksize=16384))


LABELS = ["admin.", "blue-collar", "retired", "student"]


def _artifact(schema: Schema, space: FeatureSpace, kind: str, seed: int = 0) -> ModelArtifact:
    """A model of ``kind`` over the bank features with random weights: scoring does not care how they
    were learned, and random weights reach every feature."""
    rng = np.random.default_rng(seed)
    outputs = len(LABELS) if kind == "MULTICLASS" else 1
    linear = LinearModel(kind, rng.normal(0, 0.15, (space.n_features, outputs)), rng.normal(0, 0.5, outputs))  # type: ignore[arg-type]
    return ModelArtifact(
        model_type=kind,
        schema_json=schema.to_json(),
        recipe="{}",
        feature_space=space.to_dict(),
        linear=linear,
        labels=LABELS if kind == "MULTICLASS" else None,
        score_threshold=0.5 if kind == "BINARY" else None,
        parameters={},
        report={},
    )


@pytest.fixture(scope="module")
def predictors(bank: tuple[Schema, pa.Table], bank_space: FeatureSpace) -> dict[str, Predictor]:
    schema, _ = bank
    return {
        kind: Predictor(_artifact(schema, bank_space, kind))
        for kind in ("BINARY", "MULTICLASS", "REGRESSION")
    }


# --- random records ------------------------------------------------------------------------------------

NUMBER_TEXTS = ["0", "-0", "1e5", "1.3E4", ".5", "-2", " 42 ", "NaN", "inf", "1,000", "0x10", "1e400", "+7"]
CHARACTERS = [*"abcxyz ,.;:!?-_'\"\t", "é", "ß", "İ", "Ω", "中", "😀", "\xa0", "\u2028", "\x1c", "ﬁ"]


def _random_value(rng: np.random.Generator, column: pa.ChunkedArray) -> str | None:
    """A value for one attribute: a real one (as it is or padded with whitespace), empty, a number in odd
    spellings, random text, or none."""
    kind = rng.integers(0, 9)
    if kind <= 2:
        return column[int(rng.integers(0, len(column)))].as_py()
    if kind == 3:
        return ["", " ", "  \t"][int(rng.integers(0, 3))]
    if kind == 4:
        return str(NUMBER_TEXTS[int(rng.integers(0, len(NUMBER_TEXTS)))])
    if kind == 5:
        return f"{rng.normal() * 10.0 ** int(rng.integers(-3, 6)):.{int(rng.integers(0, 6))}f}"
    if kind == 6:
        size = int(rng.integers(0, 12))
        return "".join(CHARACTERS[int(i)] for i in rng.integers(0, len(CHARACTERS), size))
    if kind == 7:
        return f" {column[int(rng.integers(0, len(column)))].as_py()}\t"
    return None  # the key is left out: a missing value


def _random_records(table: pa.Table, count: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        record = {}
        for name in table.column_names:
            value = _random_value(rng, table.column(name))
            if value is not None:
                record[name] = value
        if rng.random() < 0.2:
            record["not an attribute"] = "ignored"
        records.append(record)
    return records


def _batch_of(records: list[dict[str, str]], names: list[str]) -> pa.RecordBatch:
    # A key left out of a record is an empty field in a file: both are missing values.
    return pa.RecordBatch.from_pydict(
        {name: pa.array([r.get(name, "") for r in records], pa.string()) for name in names}
    )


def _record_scores(predictor: Predictor, record: dict[str, str]) -> list[float]:
    prediction = predictor.predict(record)
    if predictor.model_type == "REGRESSION":
        return [prediction["predictedValue"]]
    scores = prediction["predictedScores"]
    if predictor.model_type == "BINARY":
        return list(scores.values())
    return [scores[label] for label in LABELS]


@pytest.mark.parametrize("kind", ["BINARY", "MULTICLASS", "REGRESSION"])
def test_batch_and_record_paths_agree_on_random_records(
    kind: str, bank: tuple[Schema, pa.Table], predictors: dict[str, Predictor]
) -> None:
    schema, table = bank
    predictor = predictors[kind]
    records = _random_records(table, RECORDS, seed=len(kind))
    batch_scores = predictor.score_batch(_batch_of(records, schema.names)).reshape(RECORDS, -1)
    record_scores = np.array([_record_scores(predictor, record) for record in records])
    assert record_scores.shape == batch_scores.shape
    assert np.max(np.abs(batch_scores - record_scores)) <= 1e-12
    # The random records are not all alike: the model sees different features.
    assert np.unique(np.round(batch_scores, 6), axis=0).shape[0] > RECORDS // 3


def test_real_records_agree_and_the_target_is_ignored(
    bank: tuple[Schema, pa.Table], predictors: dict[str, Predictor]
) -> None:
    _, table = bank
    rows = table.slice(1000, 500).to_pylist()
    predictor = predictors["BINARY"]
    batch = table.slice(1000, 500).combine_chunks().to_batches()[0]
    scores = predictor.score_batch(batch)
    flipped = [dict(row, y="1" if row["y"] == "0" else "0") for row in rows]
    for row, changed, score in zip(rows, flipped, scores.tolist(), strict=True):
        assert _record_scores(predictor, row) == _record_scores(predictor, changed)
        assert abs(_record_scores(predictor, row)[0] - score) <= 1e-12


def test_binary_prediction_shape_and_threshold(
    bank: tuple[Schema, pa.Table], bank_space: FeatureSpace
) -> None:
    schema, table = bank
    artifact = _artifact(schema, bank_space, "BINARY")
    record = table.slice(7, 1).to_pylist()[0]
    score = Predictor(artifact).predict(record)["predictedScores"]
    (value,) = score.values()
    low = Predictor(artifact, score_threshold=value).predict(record)
    high = Predictor(artifact, score_threshold=min(1.0, value + 1e-9)).predict(record)
    # Score >= threshold is "1" (spec 7.3); the single score is keyed by the label and is P(1) either way.
    assert low == {
        "details": {"PredictiveModelType": "BINARY", "Algorithm": "SGD"},
        "predictedLabel": "1",
        "predictedScores": {"1": value},
    }
    assert high["predictedLabel"] == "0" and high["predictedScores"] == {"0": value}
    assert Predictor(artifact).score_threshold == 0.5
    assert Predictor(artifact, score_threshold=0.25).score_threshold == 0.25


def test_multiclass_and_regression_prediction_shapes(predictors: dict[str, Predictor], bank: tuple) -> None:
    _, table = bank
    record = table.slice(3, 1).to_pylist()[0]
    multiclass = predictors["MULTICLASS"].predict(record)
    scores = multiclass["predictedScores"]
    assert multiclass["details"] == {"PredictiveModelType": "MULTICLASS", "Algorithm": "SGD"}
    assert list(scores) == LABELS and math.isclose(sum(scores.values()), 1.0)
    assert multiclass["predictedLabel"] == max(scores, key=scores.__getitem__)
    regression = predictors["REGRESSION"].predict(record)
    assert set(regression) == {"details", "predictedValue"} and isinstance(
        regression["predictedValue"], float
    )
    assert predictors["MULTICLASS"].labels == LABELS and predictors["REGRESSION"].score_threshold is None


def test_missing_keys_are_missing_values(predictors: dict[str, Predictor], bank: tuple) -> None:
    schema, table = bank
    record = table.slice(11, 1).to_pylist()[0]
    without = {k: v for k, v in record.items() if k not in ("age", "job")}
    assert predictors["BINARY"].predict(without) == predictors["BINARY"].predict(
        dict(without, age="", job=" ")
    )
    assert predictors["BINARY"].predict(without) != predictors["BINARY"].predict(record)
    # A batch lacking columns the model uses reads them as missing too.
    narrow = _batch_of([without], [n for n in schema.names if n not in ("age", "job")])
    assert predictors["BINARY"].score_batch(narrow)[0] == pytest.approx(
        _record_scores(predictors["BINARY"], without)[0], abs=1e-12
    )


def test_values_are_written_as_strings_as_model_predict_writes_them(predictors: dict[str, Predictor]) -> None:
    binary = predictors["BINARY"]
    typed = binary.predict({"job": "admin.", "age": 41, "default": None, "duration": 180.5})
    assert typed == binary.predict({"job": "admin.", "age": "41", "default": "", "duration": "180.5"})
    with pytest.raises(InvalidInputException, match=r"Record: the value of 'age' is a list"):
        binary.predict({"job": "admin.", "age": [41]})
    with pytest.raises(InvalidInputException, match=r"Record: the value of 'age' is inf"):
        binary.predict({"age": float("inf")})
    with pytest.raises(InvalidInputException, match="Record must map names to values, not list"):
        binary.predict(["age", "41"])  # type: ignore[arg-type]


def _memory_of_new_values(predictor: Predictor, record: dict[str, str], numbers: list[str]) -> int:
    """How much memory scoring 10,000 records of new NUMERIC values and job categories leaves behind."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            values = {name: f"{i}.{k}5" for k, name in enumerate(numbers)}
            predictor.predict(dict(record, job=f" job {i}", **values))
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_scores_remember_a_bounded_number_of_values(
    bank: tuple, bank_space: FeatureSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scorer remembers the terms of the values it has read: a record scores the same the second
    time, an unreadable value is reported every time, and records of ever new values take no more memory
    than the bounds allow (per output, and per model: a model of many outputs shares SEEN_TOTAL)."""
    schema, table = bank
    predictor = Predictor(_artifact(schema, bank_space, "BINARY", seed=5))
    record = table.slice(7, 1).to_pylist()[0]
    first = predictor.predict(record)
    assert predictor.predict(record) == first
    odd = dict(record, age="heavy", duration=" 180 ")
    for _ in range(2):
        assert predictor.predict(odd)["details"]["UnparsedAttributes"] == "age"
    numbers = [a.name for a in schema.input_attributes if a.type is AttributeType.NUMERIC]
    # Remembering every value would hold 10,000 strings for each output of the 10 NUMERIC attributes and
    # of the (unknown) job category (about 15 MB).
    assert _memory_of_new_values(predictor, record, numbers) < 3_000_000
    assert predictor.predict(record) == first
    monkeypatch.setattr(record_compiler, "SEEN_TOTAL", len(bank_space.outputs))  # one value an output
    sparing = Predictor(_artifact(schema, bank_space, "BINARY", seed=5))
    assert _memory_of_new_values(sparing, record, numbers) < 300_000
    assert sparing.predict(record) == first


def test_load_from_a_file(tmp_path: Path, bank: tuple[Schema, pa.Table], bank_space: FeatureSpace) -> None:
    schema, table = bank
    artifact = _artifact(schema, bank_space, "BINARY", seed=5)
    artifact.score_threshold = 0.3
    path = tmp_path / "model.zip"
    size = save_artifact(artifact, path)
    loaded = Predictor.load(path)
    assert loaded.size_in_bytes == size and loaded.score_threshold == 0.3 and loaded.schema == schema
    assert Predictor.load(path, score_threshold=0.9).score_threshold == 0.9
    record = table.slice(0, 1).to_pylist()[0]
    assert loaded.predict(record)["predictedScores"] == Predictor(artifact).predict(record)["predictedScores"]
    with pytest.raises(InvalidInputException, match="not a usable emrml model"):
        Predictor.load(tmp_path / "missing.zip")


# --- Java-style numbers ----------------------------------------------------------------------------------


def _java(values: np.ndarray) -> list[str]:
    return java_float_cells(values).strings().to_pylist()


def _reference(value: float) -> str:
    """Correctly rounded 7 significant digits in the same layout, from Python's formatting."""
    mantissa, exponent = f"{value:.6E}".split("E")
    mantissa = mantissa.rstrip("0")
    return f"{mantissa}0E{int(exponent)}" if mantissa.endswith(".") else f"{mantissa}E{int(exponent)}"


def test_java_floats_examples() -> None:
    values = [8.7642e-3, 0.7899012, -15.26385, 100.0, 1.0, 0.0, -0.0, 0.5, 123456789.0, 9999999.5, 5e-324]
    assert _java(np.array(values)) == [
        "8.7642E-3", "7.899012E-1", "-1.526385E1", "1.0E2", "1.0E0", "0.0E0", "0.0E0", "5.0E-1", "1.234568E8",
        "1.0E7", "4.940656E-324",
    ]  # fmt: skip
    assert _java(np.array([np.nan, np.inf, -np.inf])) == ["NaN", "Infinity", "-Infinity"]
    assert _java(np.zeros(0)) == []


def test_java_floats_match_a_real_amazon_ml_result_file(shared_datasets: Path) -> None:
    path = shared_datasets / "bank_marketing" / "aml-tutorial" / "bp-sp7EvkPwfHS-banking-batch.csv"
    lines = path.read_text().splitlines()
    texts = [line.split(",")[1] for line in lines[1:] if line]
    assert len(texts) == 443
    # Every score Amazon ML wrote reads back as a float that is written again exactly as it was.
    assert _java(np.array([float(text) for text in texts])) == texts


def test_java_floats_round_to_seven_digits_like_formatting() -> None:
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [
            rng.random(20_000),
            rng.normal(size=20_000) * 10.0 ** rng.integers(-300, 300, 20_000),
            -rng.random(100),
        ]
    )
    texts = _java(values)
    assert texts == [_reference(value) for value in values.tolist()]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_java_floats_round_trip(value: float) -> None:
    (text,) = _java(np.array([value]))
    if value == 0:
        assert text == "0.0E0"
        return
    assert JAVA_FLOAT.fullmatch(text), text
    assert math.isclose(float(text), value, rel_tol=5.0001e-7)


def test_predict_output_is_json_ready(predictors: dict[str, Predictor], bank: tuple) -> None:
    _, table = bank
    record = table.slice(5, 1).to_pylist()[0]
    for predictor in predictors.values():
        prediction = predictor.predict(record)
        assert json.loads(json.dumps(prediction)) == prediction


def test_an_empty_batch(predictors: dict[str, Predictor], bank: tuple) -> None:
    schema, _ = bank
    empty = _batch_of([], schema.names)
    assert predictors["BINARY"].score_batch(empty).shape == (0,)
    assert predictors["MULTICLASS"].score_batch(empty).shape == (0, len(LABELS))
    assert _java(predictors["REGRESSION"].score_batch(empty)) == []


def test_batch_scores_count_rows_with_unreadable_values(
    predictors: dict[str, Predictor], bank: tuple
) -> None:
    schema, table = bank
    rows = table.slice(0, 40).to_pylist()
    rows[3] |= {"age": "heavy"}
    rows[7] |= {"age": "inf", "duration": "n/a"}  # two unreadable values, one row
    rows[9] |= {"campaign": " 2 "}  # readable: spaces around a number are trimmed
    rows[20] |= {"duration": "1e999"}
    batch = _batch_of(rows, schema.names)
    for kind, predictor in predictors.items():
        scores, unparsed = predictor.score_and_check(batch)
        assert unparsed == 3, kind
        np.testing.assert_array_equal(scores, predictor.score_batch(batch))
        expected = predictor.artifact.linear.predict_scores(predictor.space.transform(batch))
        np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-15)
    # A batch without an input column scores it as missing, and has nothing unreadable in it.
    narrow = batch.drop_columns(["age", "duration"])
    assert predictors["BINARY"].score_and_check(narrow)[1] == 0


def test_unusable_records_are_flagged_in_the_details(predictors: dict[str, Predictor], bank: tuple) -> None:
    _, table = bank
    record = table.slice(5, 1).to_pylist()[0]
    for kind, predictor in predictors.items():
        assert set(predictor.predict(record)["details"]) == {"PredictiveModelType", "Algorithm"}, kind
        nothing = predictor.predict({})["details"]
        assert nothing["NoSchemaAttributes"] == "true", kind
        strangers = predictor.predict({"colour": "red", "height": "3"})["details"]
        assert strangers["NoSchemaAttributes"] == "true"
    binary = predictors["BINARY"]
    heavy = binary.predict(dict(record, age="heavy", duration="inf", campaign=" 2 "))
    assert heavy["details"]["UnparsedAttributes"] == "age,duration"
    assert "NoSchemaAttributes" not in heavy["details"]
    # Unparsed values count as missing: the same prediction as leaving them out.
    missing = binary.predict(dict(record, age="", duration="", campaign="2"))
    assert heavy["predictedScores"] == missing["predictedScores"]


def test_a_prediction_past_the_float_range_is_still_a_json_number() -> None:
    """Huge NUMERIC values on raw numeric outputs overflow the sum: the answer must still encode as
    strict JSON (a 500 before), and a sum of infinities of both signs is the caller's error."""
    regression = raw_numbers_predictor("REGRESSION", [2.0, 2.0])
    high = regression.predict({"a": "1e308", "b": "1e308"})
    assert high["predictedValue"] == sys.float_info.max
    low = regression.predict({"a": "-1e308", "b": "-1e308"})
    assert low["predictedValue"] == -sys.float_info.max
    assert json.loads(json.dumps(high, allow_nan=False))["predictedValue"] == sys.float_info.max
    assert regression.predict({"a": "1", "b": "2"})["predictedValue"] == pytest.approx(6.0)
    binary = raw_numbers_predictor("BINARY", [2.0, 2.0])
    assert binary.predict({"a": "1e308", "b": "1e308"})["predictedScores"] == {"1": 1.0}
    for predictor in (regression, binary):
        opposite = raw_numbers_predictor(predictor.model_type, [2.0, -2.0])
        with pytest.raises(InvalidInputException, match="too large for this model"):
            opposite.predict({"a": "1e308", "b": "1e308"})


def test_a_record_of_huge_numbers_is_scored_without_a_warning() -> None:
    """Predict's answer to a record whose logits overflow is its error, not also numpy's RuntimeWarning
    on the server's stderr; numbers that fit are scored as before."""
    multiclass = raw_numbers_predictor("MULTICLASS", [2.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for record in ({"a": "1e308", "b": "1e308"}, {"a": "1e308", "b": "-1e308"}):
            with pytest.raises(InvalidInputException, match="too large for this model"):
                multiclass.predict(record)
        assert multiclass.predict({"a": "1e200", "b": "1e200"})["predictedScores"] == {"0": 0.0, "1": 1.0}
        scores = multiclass.predict({"a": "1", "b": "-2"})["predictedScores"]
    assert scores["1"] == pytest.approx(1 / (1 + math.exp(4)))
