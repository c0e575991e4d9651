"""Batch prediction results: their layout per model type (columns, tags, true labels, class columns),
written cell by cell as the columns say, and invalid or unreadable records counted (generated edge
cases)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from batch_helpers import (
    T,
    csv_text,
    generated_rows,
    generated_schema,
    predict_to,
    result_file_lines,
    result_file_rows,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as run_settings
from hypothesis import strategies as st

from emrml.config import Settings
from emrml.core.floats import java_float_cells
from emrml.core.model import load_artifact, save_artifact
from emrml.core.predict import Predictor
from emrml.core.schema import Attribute, Schema
from emrml.engine import batch as batch_engine
from emrml.engine import result_lines
from emrml.engine.result_lines import ResultFormatter
from emrml.engine.training import DatasourceData, TargetSummary, train_model
from emrml.errors import DataError, InvalidInputException
from emrml.service.parameters import parse_parameters


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    return Settings.load(environ={}, home=workspace / "home")


def test_binary_results_with_tag_true_label_and_invalid_records(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    rows = generated_rows("BINARY", 300, seed=2)
    schema = generated_schema("BINARY")
    data = workspace / "binary.csv"
    # Two ragged records and a record that is not UTF-8, between valid ones; CRLF line ends.
    text = csv_text(rows, schema.names, newline="\r\n", bad={5: "r-bad,1", 120: "a,b,c,d,e,f"})
    data.write_bytes(text.encode().replace(b"r299,", b"\xff\xfe299,"))
    result = predict_to(settings, models["BINARY"], data, schema, workspace / "out-binary")
    (location,) = result.results.values()
    assert result.results == {str(data): location}
    assert location == str(workspace / "out-binary/batch-prediction/result/bp-1-binary.csv.gz")
    assert result.total_records == 302 and result.invalid_records == 3
    lines = result_file_rows(location)
    assert lines[0] == ["tag", "trueLabel", "bestAnswer", "score"]
    body = lines[1:]
    assert len(body) == 302 and body[5] == [] and body[121] == [] and body[301] == []
    scored = [line for line in body if line]
    predictor = Predictor.load(models["BINARY"])
    for row, (tag, true_label, best, score) in zip(rows[:299], scored, strict=True):
        expected = predictor.predict(row)["predictedScores"]
        (probability,) = expected.values()
        assert tag == row["id"]
        assert true_label == {"1": "1", "yes": "1", "0": "0", "no": "0"}.get(row["y"], "")
        assert float(score) == pytest.approx(probability, rel=5e-7)
        assert best == ("1" if probability >= 0.5 else "0")
    assert {best for _, _, best, _ in scored} == {"0", "1"}


_LABELS = st.sampled_from(["1", "0", "yes", " No ", "", "maybe", "3.5", "a,b", 'say "hi"', "low"])
_SCORES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 0.5, 1.0])


@run_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(["BINARY", "MULTICLASS", "REGRESSION"]),
    st.lists(st.tuples(st.text(max_size=6), _LABELS, st.lists(_SCORES, min_size=3, max_size=3)), max_size=30),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1, 2, 4]),
)
def test_result_lines_are_the_columns_written_one_by_one(
    models: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    rows: list[tuple[str, str, list[float]]],
    target: bool,
    tagged: bool,
    numbers_at_once: int,
) -> None:
    # The lines are laid out in fixed-width cells, a few numbers at a time, the texts joined in front:
    # the same text as writing each field and joining them with commas.
    monkeypatch.setattr(result_lines, "_NUMBERS_AT_ONCE", numbers_at_once)
    predictor = Predictor.load(models[kind])
    schema = generated_schema(kind, target=target)
    if not tagged:
        schema = replace(schema, row_id=None)
    batch = pa.RecordBatch.from_pydict(
        {"id": [tag for tag, _, _ in rows], "y": [label for _, label, _ in rows]},
        schema=pa.schema([("id", pa.string()), ("y", pa.string())]),
    )
    width = len(predictor.labels or []) if kind == "MULTICLASS" else 1
    scores = np.array([values[:width] for _, _, values in rows], dtype=np.float64).reshape(-1, width)
    if kind != "MULTICLASS":
        scores = scores[:, 0]
    lines = ResultFormatter(predictor, schema).lines(batch, scores).to_pylist()

    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text

    def number(value: float) -> str:
        return java_float_cells(np.array([value])).strings()[0].as_py()

    expected = []
    for i, (tag, label, _) in enumerate(rows):
        fields = [quoted(tag)] if tagged else []
        if target and kind == "BINARY":
            fields.append({"1": "1", "yes": "1", "0": "0", "no": "0"}.get(label.strip().lower(), ""))
        elif target:
            fields.append(quoted(label.strip()))
        if kind == "BINARY":
            assert predictor.score_threshold is not None
            fields += ["1" if scores[i] >= predictor.score_threshold else "0", number(scores[i])]
        else:
            fields += [number(value) for value in np.atleast_1d(scores[i])]
        expected.append(",".join(fields) + "\n")
    assert lines == expected


def test_multiclass_results_have_sorted_class_columns(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    rows = generated_rows("MULTICLASS", 50, seed=3)
    data = workspace / "multiclass.csv"
    data.write_text(csv_text(rows, generated_schema("MULTICLASS").names))
    result = predict_to(
        settings, models["MULTICLASS"], data, generated_schema("MULTICLASS"), workspace / "out-multi"
    )
    lines = result_file_rows(next(iter(result.results.values())))
    # Open question 16: [tag,][trueLabel,] then the classes in sorted order (a class name with a comma is
    # quoted); no bestAnswer.
    assert lines[0] == ["tag", "trueLabel", "a,b", "low", "mid"]
    predictor = Predictor.load(models["MULTICLASS"])
    for row, line in zip(rows, lines[1:], strict=True):
        probabilities = [float(value) for value in line[2:]]
        expected = predictor.predict(row)["predictedScores"]
        assert line[:2] == [row["id"], row["y"]]
        assert probabilities == pytest.approx([expected[label] for label in ("a,b", "low", "mid")], rel=5e-7)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


def test_regression_results_without_the_target(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    rows = generated_rows("REGRESSION", 40, seed=4)
    schema = generated_schema("REGRESSION", target=False)
    data = workspace / "regression.csv"
    data.write_text(csv_text(rows, schema.names))
    result = predict_to(settings, models["REGRESSION"], data, schema, workspace / "out-regression")
    lines = result_file_lines(next(iter(result.results.values())))
    assert lines[0] == "tag,score"
    predictor = Predictor.load(models["REGRESSION"])
    for row, line in zip(rows, lines[1:], strict=True):
        tag, value = line.split(",")
        assert tag == row["id"] and "E" in value
        assert float(value) == pytest.approx(predictor.predict(row)["predictedValue"], rel=5e-7)


def test_no_row_id_no_tag_column(workspace: Path, settings: Settings, models: dict[str, Path]) -> None:
    rows = generated_rows("BINARY", 20, seed=5)
    schema = replace(generated_schema("BINARY", target=False), row_id=None)
    data = workspace / "plain.csv"
    data.write_text(csv_text(rows, schema.names))
    result = predict_to(settings, models["BINARY"], data, schema, workspace / "out-plain", threshold=0.0)
    lines = result_file_lines(next(iter(result.results.values())))
    # A threshold of 0 makes every record a "1".
    assert lines[0] == "bestAnswer,score" and len(lines) == 21
    assert {line.split(",")[0] for line in lines[1:]} == {"1"}


def test_datasource_lacking_model_attributes(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    schema = Schema((Attribute("id", T.CATEGORICAL), Attribute("x", T.NUMERIC)), has_header=True)
    data = workspace / "narrow.csv"
    data.write_text("id,x\na,1\n")
    with pytest.raises(DataError, match="lacks attributes the model uses: color, note"):
        predict_to(settings, models["BINARY"], data, schema, workspace / "out-narrow")
    assert not (workspace / "out-narrow").exists()


def test_records_with_unreadable_values_are_counted(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    rows = generated_rows("BINARY", 200, seed=4)
    for i in (3, 50, 51, 199):
        rows[i]["x"] = ("heavy", "inf", "1e999", "n/a")[i % 4]
    schema = generated_schema("BINARY")
    data = workspace / "unreadable.csv"
    data.write_text(csv_text(rows, schema.names))
    result = predict_to(settings, models["BINARY"], data, schema, workspace / "out-unreadable")
    assert result.total_records == 200 and result.invalid_records == 0
    assert result.unparsed_records == 4
    clean = workspace / "clean.csv"
    clean.write_text(csv_text(generated_rows("BINARY", 200, seed=4), schema.names))
    assert (
        predict_to(settings, models["BINARY"], clean, schema, workspace / "out-clean").unparsed_records == 0
    )


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # Predict's, refused
def test_a_record_whose_prediction_is_no_number_gives_an_empty_line(
    workspace: Path, settings: Settings
) -> None:
    # x as a raw output: 1e308 makes the logits infinite, their softmax NaN. Predict refuses such a record;
    # the batch wrote "NaN" for each class, and counted the record as scored.
    schema = generated_schema("MULTICLASS")
    training = workspace / "raw-x.csv"
    training.write_text(csv_text(generated_rows("MULTICLASS", 300, seed=1), schema.names))
    recipe = json.dumps({"outputs": ["x", "ALL_CATEGORICAL"]})
    model = train_model(
        model_id="ml-raw-x",
        model_type="MULTICLASS",
        data=DatasourceData(str(training), schema, None),
        recipe_text=recipe,
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "3"}),
        settings=settings,
        progress=lambda *_: None,
    ).artifact_path
    rows = generated_rows("MULTICLASS", 30, seed=6)
    for i in (4, 17):
        rows[i]["x"] = "1e308" if i == 4 else "-1.7e308"
    data = workspace / "huge.csv"
    data.write_text(csv_text(rows, schema.names))
    predictor = Predictor.load(model)
    with pytest.raises(InvalidInputException, match="too large for this model"):
        predictor.predict(rows[4])
    result = predict_to(settings, model, data, schema, workspace / "out-huge")
    assert result.total_records == 30 and result.invalid_records == 2
    lines = result_file_lines(next(iter(result.results.values())))
    assert len(lines) == 31 and lines[5] == lines[18] == ""
    assert not any("NaN" in line for line in lines)
    for row, line in zip(rows, lines[1:], strict=True):
        if line:
            probabilities = [float(value) for value in next(csv.reader([line]))[2:]]
            expected = predictor.predict(row)["predictedScores"]
            assert probabilities == pytest.approx([expected[k] for k in ("a,b", "low", "mid")], rel=5e-7)


@pytest.mark.parametrize("reserved", [*result_lines.RESULT_COLUMNS, *result_lines.STREAM_COLUMNS])
def test_a_class_named_as_a_result_column_is_refused_at_training(reserved: str) -> None:
    # A MULTICLASS model's result columns are named after its classes: a class "trueLabel" gave the header
    # "tag,trueLabel,a,b,trueLabel", whose columns a reader by name (BatchPrediction.results) merged.
    # Only training refuses it: evaluation data may hold any label, the model's classes are set already.
    summary = TargetSummary()
    summary.add("MULTICLASS", np.array(["low", reserved, "mid"]), "y")
    with pytest.raises(DataError, match=f"the target 'y' has the class '{reserved}', the name of a column"):
        summary.check("MULTICLASS", "y")


def test_training_on_a_class_named_true_label_fails_naming_it(workspace: Path, settings: Settings) -> None:
    schema = generated_schema("MULTICLASS")
    rows = generated_rows("MULTICLASS", 60, seed=3)
    for row in rows:
        row["y"] = "trueLabel" if row["y"] == "mid" else row["y"]
    training = workspace / "reserved-class.csv"
    training.write_text(csv_text(rows, schema.names))
    with pytest.raises(DataError, match=r"has the class 'trueLabel'.*rename the class in the data"):
        train_model(
            model_id="ml-reserved",
            model_type="MULTICLASS",
            data=DatasourceData(str(training), schema, None),
            recipe_text=json.dumps({"outputs": ["x", "ALL_CATEGORICAL"]}),
            sample=pa.table({}),
            parameters=parse_parameters({"sgd.maxPasses": "1"}),
            settings=settings,
            progress=lambda *_: None,
        )


def test_an_earlier_model_with_a_class_named_true_label_is_refused_before_any_output(
    workspace: Path, settings: Settings, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model trained before training refused such a class: its batch prediction would write the header
    # "tag,trueLabel,a,b,low,trueLabel". Without the target in the data there is no trueLabel column.
    path = workspace / "earlier-model"
    artifact = load_artifact(models["MULTICLASS"])
    assert artifact.labels == ["a,b", "low", "mid"]
    save_artifact(replace(artifact, labels=["a,b", "low", "trueLabel"]), path)
    data = workspace / "earlier.csv"
    schema = generated_schema("MULTICLASS")
    data.write_text(csv_text(generated_rows("MULTICLASS", 20, seed=8), schema.names))
    with monkeypatch.context() as patch:
        # Refused as the job starts, not by every unit (on Spark, in every executor's task).
        patch.setattr(batch_engine, "_score", lambda *_: pytest.fail("the units ran"))
        with pytest.raises(InvalidInputException, match=r"the model's class 'trueLabel' is the name of anot"):
            predict_to(settings, path, data, schema, workspace / "out-earlier")
    assert not (workspace / "out-earlier").exists()
    untargeted = generated_schema("MULTICLASS", target=False)
    data.write_text(csv_text(generated_rows("MULTICLASS", 20, seed=8), untargeted.names))
    result = predict_to(settings, path, data, untargeted, workspace / "out-untargeted")
    assert result_file_rows(next(iter(result.results.values())))[0] == ["tag", "a,b", "low", "trueLabel"]
