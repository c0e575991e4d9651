"""A model file loaded for an MLModel must be that MLModel's: ``load_artifact`` with the ``ExpectedModel``
the metastore records refuses a file edited into another self-consistent model, or another model's file,
naming the model, the file and what differs; a file that states the same things differently still loads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emrml.core.linear import LinearModel, TrainingParameters
from emrml.core.model import ExpectedModel, ModelArtifact, load_artifact, save_artifact
from emrml.errors import InvalidInputException
from raw_models import XWY_SCHEMA, retyped

SCHEMA = json.dumps(XWY_SCHEMA)
RECIPE = '{"groups": {}, "assignments": {}, "outputs": ["x", "words"]}'
PARAMETERS = TrainingParameters(l2=1e-4).to_api()


def saved(path: Path) -> Path:
    """A BINARY model of ``SCHEMA``, ``RECIPE`` and ``PARAMETERS``, saved at ``path``."""
    artifact = ModelArtifact(
        model_type="BINARY",
        schema_json=SCHEMA,
        recipe=RECIPE,
        feature_space={},
        linear=LinearModel("BINARY", np.ones((3, 1)), np.zeros(1)),
        labels=None,
        score_threshold=0.5,
        parameters=PARAMETERS,
        report={},
    )
    save_artifact(artifact, path)
    return path


EXPECTED = ExpectedModel("ml-1", "BINARY", SCHEMA, RECIPE, json.dumps(PARAMETERS))


def test_the_file_of_the_model_the_metastore_records_loads(tmp_path: Path) -> None:
    assert load_artifact(saved(tmp_path / "m.zip"), EXPECTED).model_type == "BINARY"


@pytest.mark.parametrize("kind", ["REGRESSION", "MULTICLASS"])
def test_a_file_edited_into_another_model_type_is_refused(tmp_path: Path, kind: str) -> None:
    path = saved(tmp_path / "m.zip")
    retyped(path, kind)
    assert load_artifact(path).model_type == kind  # self-consistent: only the metastore tells
    with pytest.raises(InvalidInputException) as raised:
        load_artifact(path, EXPECTED)
    assert raised.value.message == (
        f"the model file {path} is not that of MLModel 'ml-1': it holds a {kind} model; the MLModel is BINARY"
    )


def _schema(**changes: object) -> str:
    document = json.loads(SCHEMA)
    document.update(changes)
    return json.dumps(document)


def _attributes(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"attributeName": name, "attributeType": kind} for name, kind in pairs]


@pytest.mark.parametrize(
    ("recorded", "difference"),
    [
        (
            _schema(targetAttributeName="x"),
            "it predicts the target 'y'; the MLModel predicts 'x'",
        ),
        (
            _schema(attributes=_attributes(("x", "CATEGORICAL"), ("words", "TEXT"), ("y", "BINARY"))),
            "its schema types 'x' NUMERIC; the MLModel's types it CATEGORICAL",
        ),
        (
            _schema(attributes=_attributes(("x", "NUMERIC"), ("y", "BINARY"))),
            "its schema has the attribute 'words', which the MLModel's has not",
        ),
        (
            _schema(
                attributes=_attributes(("x", "NUMERIC"), ("words", "TEXT"), ("z", "TEXT"), ("y", "BINARY"))
            ),
            "its schema lacks the MLModel's attribute 'z'",
        ),
        (_schema(dataFileContainsHeader=False), "its training schema is not the MLModel's"),
    ],
)
def test_another_models_training_schema_is_refused(tmp_path: Path, recorded: str, difference: str) -> None:
    path = saved(tmp_path / "m.zip")
    with pytest.raises(InvalidInputException, match="is not that of MLModel 'ml-1': ") as raised:
        load_artifact(path, replace(EXPECTED, schema_json=recorded))
    assert raised.value.message.endswith(difference)


def test_another_recipe_and_other_parameters_are_refused_each_named(tmp_path: Path) -> None:
    path = saved(tmp_path / "m.zip")
    other = replace(
        EXPECTED,
        recipe='{"outputs": ["x"]}',
        parameters_json=json.dumps({**PARAMETERS, "sgd.maxPasses": "20", "sgd.shuffleType": "auto"}),
    )
    with pytest.raises(InvalidInputException) as raised:
        load_artifact(path, other)
    assert raised.value.message.endswith(
        "': its recipe is not the MLModel's; its sgd.maxPasses is '10'; the MLModel's is '20'; "
        "its sgd.shuffleType is 'none'; the MLModel's is 'auto'"
    )


def test_the_same_model_written_otherwise_is_not_a_difference(tmp_path: Path) -> None:
    """The MLModel echoes parameters as its caller sent them (``1E-4``), the file as emrml writes them; a
    schema written with other spacing or key order is the same schema."""
    path = saved(tmp_path / "m.zip")
    echoed = {**PARAMETERS, "sgd.l2RegularizationAmount": "1E-4", "sgd.maxPasses": " 10"}
    schema = json.dumps(dict(reversed(list(XWY_SCHEMA.items()))), indent=2)
    assert schema != SCHEMA
    same = replace(EXPECTED, schema_json=schema, parameters_json=json.dumps(echoed))
    assert load_artifact(path, same).parameters == PARAMETERS


def test_what_the_metastore_does_not_record_is_not_compared(tmp_path: Path) -> None:
    path = saved(tmp_path / "m.zip")
    assert load_artifact(path, ExpectedModel("ml-1", "BINARY")).model_type == "BINARY"
    with pytest.raises(InvalidInputException) as raised:
        load_artifact(path, ExpectedModel("ml-1", "REGRESSION"))
    assert raised.value.message.endswith("': it holds a BINARY model; the MLModel is REGRESSION")
