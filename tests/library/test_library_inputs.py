"""The notebook API (``import emrml``): the inputs it takes (record values, JSON records, schemas, recipes,
handles) and how it refuses the others, errors as exceptions, displays of objects that are not there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import emrml
from emrml.core import record_values
from emrml.errors import InvalidInputException, ResourceNotFoundException


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("admin.", "admin."),
        (42, "42"),
        (-7, "-7"),
        (0.5, "0.5"),
        (1e-05, "1e-05"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        (float("nan"), ""),  # pandas' missing value (a DataFrame's rows as dicts)
        (np.int64(3), "3"),
        (np.float32(0.1), "0.1"),
    ],
)
def test_record_values_are_written_as_strings(value: object, text: str) -> None:
    assert record_values.string_values({"a": value}, "record") == {"a": text}


def test_a_record_name_that_is_no_string_is_refused() -> None:
    """``{1: "a"}`` failed with AttributeError ('int' object has no attribute 'casefold')."""
    with pytest.raises(InvalidInputException, match=r"^record: names are strings, not int \(1\)$"):
        record_values.string_values({"a": "x", 1: "a"}, "record")


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"b": "1"}, "is an object"),
        (["1"], "is a list"),
        (float("inf"), "is inf (not a finite number)"),
        (float("-inf"), "is -inf"),
        (b"1", "is a bytes"),
    ],
)
def test_record_values_that_are_no_string_are_refused_by_name(value: object, named: str) -> None:
    with pytest.raises(InvalidInputException, match=rf"^record: the value of 'age' {re.escape(named)}"):
        record_values.string_values({"job": "x", "age": value}, "record")


def test_a_json_record_keeps_its_numbers_as_written() -> None:
    """A float would write 2.50 as "2.5", 1e400 as an infinity (refused), 0.1000000000000000055 as "0.1"."""
    text = '{"a": 2.50, "b": 1e400, "c": 0.1000000000000000055, "d": 12345678901234567890123, "e": -0}'
    assert record_values.json_record(text, "--record") == {
        "a": "2.50",
        "b": "1e400",
        "c": "0.1000000000000000055",
        "d": "12345678901234567890123",
        "e": "-0",
    }
    typed = record_values.json_record('{"f": true, "g": null, "h": "x"}', "--record")
    assert typed == {"f": "true", "g": "", "h": "x"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"age": 41, "job": "x", "age": 42}', "--record names 'age' twice"),
        ('{"age": {"b": 1, "b": 2}}', "--record names 'b' twice"),
        ('{"age": [2.5]}', "--record: the value of 'age' is a list"),
        ('["age"]', "--record must be a JSON object"),
        ('{"age": ', "--record is not valid JSON"),
        ('{"age": "41', "--record is not valid JSON: Unterminated string starting at line 1 column 9"),
        ('{"job": "a\nb"}', "--record is not valid JSON: Invalid control character at line 1 column 11"),
    ],
)
def test_a_json_record_that_says_two_things_or_no_record_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInputException, match=f"^{re.escape(message)}"):
        record_values.json_record(text, "--record")


def test_a_schema_or_recipe_of_another_type_is_refused_by_name(
    client: emrml.Client, sample: tuple[Path, Path]
) -> None:
    """``schema=42`` raised "TypeError: expected str, bytes or os.PathLike object, not int" from pathlib."""
    data, _ = sample
    with pytest.raises(InvalidInputException, match=r"^schema must be a schema file, .*, not int$"):
        client.datasource(data, schema=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputException, match=r"^recipe must be recipe JSON text, .*, not list$"):
        client.train("ds-none", "BINARY", recipe=["ALL_NUMERIC"])  # type: ignore[arg-type]


def test_an_empty_data_or_output_location_is_refused(client: emrml.Client) -> None:
    """An empty string resolved to the current folder: every file there became the datasource's data."""
    with pytest.raises(InvalidInputException, match=r"^data is empty: give a local path or an s3:// URI$"):
        client.datasource("", schema={"attributes": []})
    with pytest.raises(InvalidInputException, match=r"^output is empty"):
        client.batch_predict("ml-none", "ds-none", "")
    with pytest.raises(InvalidInputException, match=r"^output must be a path or a URI, not int$"):
        client.batch_predict("ml-none", "ds-none", 5)  # type: ignore[arg-type]


def test_a_data_location_or_home_of_another_type_is_refused_by_name(
    client: emrml.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data=5`` was looked for as the file ./5 ("data 5: no such file or folder"), and ``home=5`` made
    the home folder ./5."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidInputException, match=r"^data must be a path or a URI, not int$"):
        client.datasource(5, schema={"attributes": []})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputException, match=r"^data must be a path or a URI, not int$"):
        client.infer_schema(5)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidInputException, match=r"^home must be a path, or None for the default, not int$"
    ):
        emrml.Client(home=5)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


@pytest.mark.parametrize(
    ("value", "kind"), [(object(), "an object"), ({1, 2}, "a set"), (Path("a"), "a PosixPath")]
)
def test_a_value_of_no_record_type_is_named_with_its_article(value: object, kind: str) -> None:
    """``model.predict({"age": object()})`` was refused as "is a object"."""
    with pytest.raises(InvalidInputException, match=f"^record: the value of 'age' is {kind};"):
        record_values.string_values({"age": value}, "record")


def test_a_handle_is_made_of_a_client_and_an_id(client: emrml.Client) -> None:
    """``emrml.Model("ml-bank", client)``, arguments swapped, was accepted and failed at its first use (or
    in its notebook display) with "'str' object has no attribute 'service'"."""
    with pytest.raises(
        InvalidInputException, match=r"^Model\(client, id\): client must be an emrml.Client, not str"
    ):
        emrml.Model("ml-bank", client)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidInputException, match=r"^BatchPrediction\(client, id\): id must be a string, not int"
    ):
        emrml.BatchPrediction(client, 5)  # type: ignore[arg-type]
    assert emrml.Evaluation(client, "ev-1") == emrml.Evaluation(client, "ev-1")


def test_errors_surface_as_exceptions(
    client: emrml.Client, sample: tuple[Path, Path], tmp_path: Path
) -> None:
    data, schema = sample
    with pytest.raises(InvalidInputException, match="no such file or folder"):
        client.datasource(tmp_path / "nowhere.csv", schema=schema)
    with pytest.raises(InvalidInputException, match="complement=True needs a split"):
        client.datasource(data, schema=schema, complement=True)
    with pytest.raises(InvalidInputException, match="split must be a dict"):
        client.datasource(data, schema=schema, split='{"percentEnd": 70}')  # type: ignore[arg-type]
    with pytest.raises(InvalidInputException, match=r"TrainingDataSourceId 'ds-none': no such DataSource"):
        client.train("ds-none", "BINARY")
    with pytest.raises(ResourceNotFoundException):
        emrml.Model(client, "ml-none").describe()
    with pytest.raises(ResourceNotFoundException):
        _ = emrml.Evaluation(client, "ev-none").metric

    three_columns = {
        "version": "1.0",
        "targetAttributeName": "y",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "a", "attributeType": "NUMERIC"},
            {"attributeName": "b", "attributeType": "CATEGORICAL"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
    with pytest.raises(emrml.JobFailed, match=r"^DataSource 'ds-broken' is FAILED: \S") as failed:
        client.datasource(data, schema=three_columns, id="ds-broken")
    message = client.service.call("GetDataSource", {"DataSourceId": "ds-broken"})["Message"]
    assert failed.value.message == f"DataSource 'ds-broken' is FAILED: {message}"

    no_statistics = client.datasource(data, schema=schema, statistics=False, id="ds-plain")
    with pytest.raises(InvalidInputException, match="was created with ComputeStatistics false"):
        client.train(no_statistics, "BINARY")
    with pytest.raises(InvalidInputException, match=r"unknown key 'sgd\.bogus'"):
        client.train("ds-plain", "BINARY", parameters={"sgd.bogus": 1})
    with pytest.raises(InvalidInputException, match=r"recipe .*missing\.json: cannot read the file"):
        client.train("ds-plain", "BINARY", recipe=tmp_path / "missing.json")


def test_a_recipe_file_may_be_named_by_a_string_and_handles_go_where_they_belong(
    client: emrml.Client, sample: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``recipe="bank.recipe"`` was sent as the recipe's text ("Recipe is not valid JSON ... column 1"), and a
    datasource handle given as the model was sent as a model id ("MLModelId 'ds-…': no such MLModel")."""
    data, schema = sample
    source = client.datasource(data, schema=schema, id="ds-recipe")
    (tmp_path / "bank.recipe").write_text('{"outputs": ["ALL_CATEGORICAL"]}')
    monkeypatch.chdir(tmp_path)
    model = client.train(source, "BINARY", recipe="bank.recipe", parameters={"sgd.maxPasses": 1})
    assert json.loads(model.describe()["Recipe"])["outputs"] == ["ALL_CATEGORICAL"]
    with pytest.raises(InvalidInputException, match=r"^recipe other\.recipe: cannot read the file"):
        client.train(source, "BINARY", recipe="other.recipe")
    with pytest.raises(InvalidInputException, match=r"^expected a Model handle or its id, not DataSource$"):
        client.evaluate(source, source)
    with pytest.raises(InvalidInputException, match=r"^expected a DataSource handle or its id, not Model$"):
        model.batch_predict(model, tmp_path / "out")  # type: ignore[arg-type]


def test_predict_warns_of_a_name_that_is_not_an_attribute(
    client: emrml.Client, sample: tuple[Path, Path]
) -> None:
    """Predict ignores a name the model does not have, so ``{"Age": "41"}`` scored as a record without an age
    and nothing said so; the library warns, naming the attribute meant, as ``emrml predict`` does."""
    data, schema = sample
    train = client.datasource(data, schema=schema, id="ds-warn")
    model = client.train(train, "BINARY", parameters={"sgd.maxPasses": 1}, id="ml-warn")
    with pytest.warns(UserWarning) as caught:
        misspelt = model.predict({"Age": "41", "job": "admin.", "colour": "red"})
    assert [str(w.message) for w in caught] == [
        "ml-warn: 'Age' is not an attribute of the model (did you mean 'age'?); it was ignored",
        "ml-warn: 'colour' is not an attribute of the model; it was ignored",
    ]
    assert misspelt == model.predict({"job": "admin."})  # the names were ignored


@pytest.mark.parametrize("kind", ["DataSource", "Model", "Evaluation", "BatchPrediction"])
def test_a_display_of_an_object_that_is_not_there_says_so_rather_than_raising(
    client: emrml.Client, kind: str
) -> None:
    # Jupyter shows a formatter's traceback when _repr_html_ raises: the display names the error instead.
    shown = getattr(emrml, kind)(client, "no-such-id")._repr_html_()
    assert "no-such-id" in shown and "ResourceNotFoundException" in shown
    # The message of an id refused by its pattern is the user's text: escaped.
    refused = getattr(emrml, kind)(client, "<b>")._repr_html_()
    assert "InvalidInputException" in refused and "&lt;b&gt;" in refused and "<b>" not in refused
