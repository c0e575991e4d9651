"""Training on Spark (engine/spark/training.py): the same feature space as the local engine, data-parallel
passes whose models score within the issue's tolerance of the local engine's, deterministic for a seed and
a partitioning, and bad training data refused as on one machine."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from emrml.config import Settings
from emrml.core import learn
from emrml.core.model import load_artifact
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import parse_schema
from emrml.engine.evaluation import evaluate_model
from emrml.engine.training import DatasourceData, train_model
from emrml.errors import DataError
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.parameters import parse_parameters

SPLIT = '{"splitting": {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "complement": %s, "strategyParams": {"randomSeed": "s"}}}'  # noqa: E501


def quiet(*_: Any) -> None:
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Two files: two units, so the passes run on both partitions of local[2].
    folder = tmp_path_factory.mktemp("spark-training")
    write_bank_sample(folder / "a.csv", 20_000)
    write_bank_sample(folder / "b.csv", 16_000)
    return folder


def _sample(folder: Path, names: list[str]) -> pa.Table:
    import pyarrow.csv as pcsv

    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in names})
    return pcsv.read_csv(folder / "a.csv", convert_options=options).slice(0, 2_000)


def _train(
    folder: Path, tmp_path: Path, kind: str, target: str, spark: Any, model_id: str, shuffle: str = "auto"
) -> Path:
    """Train as the service does, on this machine or (``spark`` given) on Spark; returns the artifact."""
    schema = dataclasses.replace(bank_sample_schema(), target=target)
    trained = train_model(
        model_id=model_id,
        model_type=kind,
        data=DatasourceData(str(folder), schema, parse_rearrangement(SPLIT % "false")),
        recipe_text=None,
        sample=_sample(folder, list(schema.names)),
        parameters=parse_parameters({"sgd.shuffleType": shuffle}),
        settings=Settings.load(environ={}, home=tmp_path / "home"),
        progress=quiet,
        spark=spark,
    )
    return trained.artifact_path


def _metric(folder: Path, tmp_path: Path, artifact: Path, target: str) -> float:
    schema = dataclasses.replace(bank_sample_schema(), target=target)
    result = evaluate_model(
        artifact_location=artifact,
        data=DatasourceData(str(folder), schema, parse_rearrangement(SPLIT % "true")),
        same_datasource=True,
        training_records=25_000,
        settings=Settings.load(environ={}, home=tmp_path / "home"),
        progress=quiet,
    )
    (value,) = result.performance_metrics.values()
    return float(value)


@pytest.mark.parametrize(
    ("target", "kind", "tolerance"),
    [("y", "BINARY", 0.005), ("job", "MULTICLASS", 0.005), ("age", "REGRESSION", None)],
)
def test_models_trained_on_spark_score_as_the_local_engines(
    spark: Any, data: Path, tmp_path: Path, target: str, kind: str, tolerance: float | None
) -> None:
    here = _train(data, tmp_path, kind, target, None, "local")
    there = _train(data, tmp_path, kind, target, spark, "spark")
    local, distributed = load_artifact(here), load_artifact(there)
    # The same feature space (fitted in parts and merged), trained in parallel parts.
    assert distributed.feature_space == local.feature_space
    assert distributed.report["parallel_parts"] == 2 and local.report["parallel_parts"] == 1
    assert distributed.report["passes"] >= 2
    expected, got = _metric(data, tmp_path, here, target), _metric(data, tmp_path, there, target)
    if tolerance is None:  # RMSE within 1 %
        assert got == pytest.approx(expected, rel=0.01)
    else:
        assert abs(got - expected) <= tolerance, (got, expected)
    assert not np.array_equal(distributed.linear.weights, local.linear.weights)  # really trained apart


@pytest.mark.parametrize(("target", "kind"), [("y", "BINARY"), ("job", "MULTICLASS"), ("age", "REGRESSION")])
def test_on_one_partition_spark_trains_the_local_engines_model(
    spark: Any, tmp_path: Path, target: str, kind: str
) -> None:
    """Without shuffling, one partition runs the local engine's passes over the same rows in the same order:
    the same model, so what sets the engines' metrics apart is the mixing of parts (docs/spark.md)."""
    folder = tmp_path / "one"
    folder.mkdir()
    write_bank_sample(folder / "a.csv", 8_000)  # one file below the range size: one unit, one partition
    local = load_artifact(_train(folder, tmp_path, kind, target, None, "local", shuffle="none"))
    distributed = load_artifact(_train(folder, tmp_path, kind, target, spark, "spark", shuffle="none"))
    assert distributed.report["parallel_parts"] == 1
    assert distributed.feature_space == local.feature_space
    np.testing.assert_allclose(distributed.linear.weights, local.linear.weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(distributed.linear.bias, local.linear.bias, rtol=1e-9, atol=1e-12)
    assert distributed.report["passes"] == local.report["passes"]


def test_training_on_spark_is_deterministic_and_the_tree_of_sums_changes_nothing(
    spark: Any, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emrml.engine.spark import training

    first = load_artifact(_train(data, tmp_path, "BINARY", "y", spark, "first"))
    # Past MIX_FAN_IN partitions the states are added up in groups on the executors (a shuffle) first.
    monkeypatch.setattr(training, "MIX_FAN_IN", 1)
    second = load_artifact(_train(data, tmp_path, "BINARY", "y", spark, "second"))
    assert np.array_equal(first.linear.weights, second.linear.weights)
    assert np.array_equal(first.linear.bias, second.linear.bias)
    assert first.report == second.report


def test_training_data_a_model_cannot_learn_from_is_refused_on_spark(spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "one-class"
    folder.mkdir()
    write_bank_sample(folder / "a.csv", 3_000)
    text = (folder / "a.csv").read_text().splitlines()
    rows = [text[0]] + [line[: line.rindex(",")] + ",0" for line in text[1:]]
    (folder / "a.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"only one target class \(0\)"):
        _train(folder, tmp_path, "BINARY", "y", spark, "one")


def test_a_partition_without_usable_rows_is_left_out_of_the_mix(spark: Any, tmp_path: Path) -> None:
    # Two files, two partitions; every record of the second lacks the target, so its partition trains on
    # nothing: mixing its untouched state in would halve every pass's progress.
    folder = tmp_path / "half-empty"
    folder.mkdir()
    write_bank_sample(folder / "a.csv", 12_000)
    write_bank_sample(folder / "b.csv", 4_000)
    header, *rows = (folder / "b.csv").read_text().splitlines()
    (folder / "b.csv").write_text("\n".join([header, *(row[: row.rindex(",") + 1] for row in rows)]) + "\n")
    learned = load_artifact(_train(folder, tmp_path, "BINARY", "y", spark, "half"))
    assert learned.report["parallel_parts"] == 1
    assert 8_000 < learned.report["rows"] < 8_800  # the 70 % of a.csv's rows


@pytest.mark.parametrize(
    ("target", "kind", "sgd_share"),
    [("y", "BINARY", 1 - learn.CLASSIFICATION_REFINEMENT_SHARE), ("age", "REGRESSION", 0.5)],
)
def test_each_training_pass_reports_its_progress_from_its_tasks(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, kind: str, sgd_share: float
) -> None:
    """A pass's progress was told only as it ended (its step had no span of its own), so a job sat at one
    value for a whole pass over the data: each pass's step now maps its tasks done onto its part of the
    training (passes side by side, the refinement of a model without L1 after them, with its own message)."""
    from emrml.engine.spark.runner import SparkRunner

    steps: list[tuple[str, tuple[float, float] | None]] = []
    reported: list[tuple[float, str | None]] = []
    job = SparkRunner.job

    def recorded(self: SparkRunner, message: str, span: tuple[float, float] | None, *rest: Any) -> Any:
        steps.append((message, span))
        return job(self, message, span, *rest)  # (``map``'s steps pass what each task reads)

    monkeypatch.setattr(SparkRunner, "job", recorded)
    folder = tmp_path / "two"
    folder.mkdir()
    write_bank_sample(folder / "a.csv", 3_000)
    write_bank_sample(folder / "b.csv", 3_000)
    schema = dataclasses.replace(bank_sample_schema(), target=target)
    trained = train_model(
        model_id="passes", model_type=kind, data=DatasourceData(str(folder), schema, None), recipe_text=None,
        sample=_sample(folder, list(schema.names)), parameters=parse_parameters({"sgd.maxPasses": "4"}),
        settings=Settings.load(environ={}, home=tmp_path / "home"),
        progress=lambda fraction, message=None: reported.append((fraction, message)), spark=spark,
    )  # fmt: skip
    passes = load_artifact(trained.artifact_path).report["passes"]
    phase = learn.CALIBRATING_PHASE if kind == "BINARY" else learn.REFINING_PHASE
    messages = [message for _, message in reported]
    assert phase in messages and reported[-1][0] == 1.0
    # The step after the passes is named for the model's phase: a BINARY model is calibrated, not refined.
    assert steps[-1][0] == phase
    assert all(fraction < 1.0 for fraction, _ in reported[: messages.index(phase)])
    # Between its steps (a pass's end) a pass's message stays the pass's: it no longer fell back to a bare
    # "training" between "training pass 1 (…)" and "training pass 2 (…)".
    first = next(i for i, message in enumerate(messages) if str(message).startswith("training pass "))
    passing = messages[first : messages.index(phase)]
    assert passing and all(str(message).startswith("training pass ") for message in passing), passing
    spans = [span for message, span in steps if message.startswith("training pass")]
    assert len(spans) == passes >= 2 and all(span is not None for span in spans)
    ends = [end for span in spans if span is not None for end in span]
    expected = [0.4 + 0.6 * sgd_share * (i + side) / 4 for i in range(passes) for side in (0, 1)]
    assert ends == pytest.approx(expected)


def test_the_local_engine_reports_the_refinement_as_spark_does(tmp_path: Path) -> None:
    """The engines run the same core: on this machine too the passes end short of 100 % and the BINARY
    model's refinement fills the rest under its own message."""
    folder = tmp_path / "local"
    folder.mkdir()
    write_bank_sample(folder / "a.csv", 3_000)
    reported: list[tuple[float, str | None]] = []
    schema = bank_sample_schema()
    train_model(
        model_id="local", model_type="BINARY", data=DatasourceData(str(folder), schema, None),
        recipe_text=None,
        sample=_sample(folder, list(schema.names)), parameters=parse_parameters({"sgd.maxPasses": "4"}),
        settings=Settings.load(environ={}, home=tmp_path / "home"),
        progress=lambda fraction, message=None: reported.append((fraction, message)), spark=None,
    )  # fmt: skip
    messages = [message for _, message in reported]
    assert learn.CALIBRATING_PHASE in messages and reported[-1] == (1.0, learn.CALIBRATING_PHASE)
    assert all(fraction < 1.0 for fraction, _ in reported[: messages.index(learn.CALIBRATING_PHASE)])
    # Each pass under its own message, which Spark's steps give too, from its start to its end.
    passing = messages[messages.index("training pass 1") : messages.index(learn.CALIBRATING_PHASE)]
    assert passing and all(str(message).startswith("training pass ") for message in passing)


def test_a_class_weighted_zero_in_every_partition_is_refused_on_spark(spark: Any, tmp_path: Path) -> None:
    # Two files, two partitions: one weights every record 0, the other only class 0's, so class 1 has no
    # record of positive weight once the partitions' target summaries merge (one-class data, as locally).
    folder = tmp_path / "weighted"
    folder.mkdir()
    for name, weight_of in (("a.csv", lambda y: 0), ("b.csv", lambda y: 1 - y)):
        rows = "".join(f"{i % 10},{weight_of(i % 2)},{i % 2}\n" for i in range(200))
        (folder / name).write_text("x,w,y\n" + rows)
    schema = parse_schema(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "y",
                "rowWeight": "w",
                "dataFileContainsHeader": True,
                "attributes": [{"attributeName": n, "attributeType": "NUMERIC"} for n in ("x", "w")]
                + [{"attributeName": "y", "attributeType": "BINARY"}],
            }
        )
    )
    sample = pa.table({name: pa.array(["1"] * 10) for name in ("x", "w", "y")})
    with pytest.raises(
        DataError, match=r"^rowWeight 'w' is 0 in every training record of the target class 1"
    ):
        train_model(
            model_id="weighted",
            model_type="BINARY",
            data=DatasourceData(str(folder), schema, None),
            recipe_text=None,
            sample=sample,
            parameters=parse_parameters({}),
            settings=Settings.load(environ={}, home=tmp_path / "home"),
            progress=quiet,
            spark=spark,
        )
