"""Local evaluation: where a BINARY evaluation's spilled scores go."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from emrml.config import Settings
from emrml.core.metrics import binary as binary_metrics
from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.engine.evaluation import EvaluationPass, evaluate_model
from emrml.engine.training import DatasourceData, row_weights, train_model
from emrml.errors import DataError
from emrml.service.parameters import parse_parameters

SCHEMA = Schema(
    (Attribute("x", AttributeType.NUMERIC), Attribute("y", AttributeType.BINARY)), target="y", has_header=True
)


def _mapped_files_under(folder: Path) -> list[str]:
    """The files of this process's memory maps that lie in ``folder`` (an unlinked one ends "(deleted)")."""
    with open("/proc/self/maps") as maps:
        paths = [line.split(maxsplit=5)[5].strip() for line in maps if len(line.split(maxsplit=5)) == 6]
    return [path for path in paths if path.startswith(f"{folder}/")]


def test_spilled_scores_of_an_evaluation_go_to_the_home_scratch_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.load(environ={}, home=tmp_path / "home", batch_bytes=4096)
    data = tmp_path / "data.csv"
    rng = np.random.default_rng(5)
    x = rng.normal(size=3_000).tolist()
    lines = [f"{value!r},{int(value + rng.normal() > 0)}" for value in x]
    data.write_text("x,y\n" + "\n".join(lines) + "\n")
    trained = train_model(
        model_id="ml-spill",
        model_type="BINARY",
        data=DatasourceData(str(data), SCHEMA, None),
        recipe_text=json.dumps({"outputs": ["x"]}),
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "2"}),
        settings=settings,
        progress=lambda *_: None,
    )
    # Past 256 distinct scores a run spills: 3,000 records spill several times.
    monkeypatch.setattr(binary_metrics, "SPILL_SCORES", 256)
    seen: list[str] = []

    def progress(*_: object) -> None:  # called as the batches are read, while spilled runs are mapped
        seen.extend(_mapped_files_under(settings.scratch_dir))

    result = evaluate_model(
        artifact_location=trained.artifact_path,
        data=DatasourceData(str(data), SCHEMA, None),
        same_datasource=True,
        training_records=3_000,
        settings=settings,
        progress=progress,
    )
    assert seen and all(path.endswith("(deleted)") for path in seen)
    assert float(result.performance_metrics["BinaryAUC"]) > 0.6


def test_row_weights_outside_what_the_metrics_can_add_are_refused_naming_the_attribute() -> None:
    """Weights of 1e308 (their sum overflows) or 1e-320 (their products underflow to 0) failed training or
    evaluation with an internal error (ZeroDivisionError, math domain error), or gave a NaN metric. Invalid
    and negative weights still count 1; 0 and the range's ends are weights."""
    schema = Schema(
        (Attribute("x", AttributeType.NUMERIC), Attribute("w", AttributeType.NUMERIC)), row_weight="w"
    )
    kept = pa.record_batch({"x": ["1"] * 6, "w": ["0", "1e-100", "1e100", "-3", "abc", ""]})
    assert row_weights(kept, schema).tolist() == [0.0, 1e-100, 1e100, 1.0, 1.0, 1.0]
    for weight in ("1e308", "1e-320", "2e100"):
        refused = pa.record_batch({"x": ["1", "1"], "w": ["1", weight]})
        with pytest.raises(
            DataError, match=r"^rowWeight 'w' holds the weight .*: a weight must be 0 or from"
        ):
            row_weights(refused, schema)


@pytest.mark.parametrize(
    ("kind", "target_type", "targets", "metric"),
    [
        ("BINARY", AttributeType.BINARY, ["", "maybe", " "], "BinaryAUC"),
        ("MULTICLASS", AttributeType.CATEGORICAL, ["", " "], "MulticlassAvgFScore"),
        ("REGRESSION", AttributeType.NUMERIC, ["", "abc", "1,5"], "RegressionRMSE"),
    ],
)
def test_an_evaluation_without_a_valid_target_says_so(
    tmp_path: Path, kind: str, target_type: AttributeType, targets: list[str], metric: str
) -> None:
    # The BINARY metric said "no records with label 1 (0 records in all)" of 30 records.
    schema = Schema((Attribute("x", AttributeType.NUMERIC), Attribute("y", target_type)), target="y")
    settings = Settings.load(environ={}, home=tmp_path / "home")
    training = tmp_path / "train.csv"
    answers = {"BINARY": lambda i: i % 2, "MULTICLASS": lambda i: f"k{i % 3}", "REGRESSION": lambda i: 2 * i}
    training.write_text("".join(f"{i % 10},{answers[kind](i)}\n" for i in range(120)))
    trained = train_model(
        model_id="ml-eval",
        model_type=kind,
        data=DatasourceData(str(training), schema, None),
        recipe_text=json.dumps({"outputs": ["x"]}),
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "2"}),
        settings=settings,
        progress=lambda *_: None,
    )
    data = tmp_path / "evaluate.csv"
    data.write_text("".join(f'{i},"{targets[i % len(targets)]}"\n' for i in range(30)))
    with pytest.raises(DataError) as raised:
        evaluate_model(
            artifact_location=trained.artifact_path,
            data=DatasourceData(str(data), schema, None),
            same_datasource=False,
            training_records=120,
            settings=settings,
            progress=lambda *_: None,
        )
    assert str(raised.value) == (
        "no record of the evaluation data has a valid value of the target 'y' (30 records, each with it "
        f"missing or invalid); {metric} needs records with known answers"
    )


def test_more_unseen_classes_than_a_model_may_have_fail_the_evaluation() -> None:
    # Each unseen class was a row and a column of the confusion matrix: 2,000 took 2 s and an 11 MB result,
    # 20,000 a hundred times that. A part's hundred are allowed; merged past a hundred, they are refused.
    schema = Schema(
        (Attribute("x", AttributeType.NUMERIC), Attribute("y", AttributeType.CATEGORICAL)), target="y"
    )

    def part(labels: list[str]) -> EvaluationPass:
        state = EvaluationPass("MULTICLASS", ["a", "b", "c"], None)
        batch = pa.record_batch({"x": ["1"] * len(labels), "y": labels})
        state.update(batch, schema, lambda rows: np.full((rows.num_rows, 3), 1 / 3))
        return state

    first = part(["a", *(f"u{i:03}" for i in range(100))])
    first.merge(part([f"u{i:03}" for i in range(50, 100)]))  # the same hundred
    assert len(first.unseen) == 100
    message = (
        "the evaluation data's target 'y' has more than 100 classes the model was not trained on (such "
        "as 'u000', 'u001', 'u002'); the model knows 3: evaluate it on data of the target it was trained "
        "to predict"
    )
    with pytest.raises(DataError) as raised:
        first.merge(part(["u100"]))
    assert str(raised.value) == message
    with pytest.raises(DataError) as raised:
        part([f"u{i:03}" for i in range(101)])
    assert str(raised.value) == message
