"""``emrml.loading``: a trained model from its artifact file or its id, and scoring Arrow data with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from emrml.config import Settings
from emrml.errors import InvalidInputException, ResourceNotFoundException
from emrml.loading import load_model, score
from emrml.service.app import EmrML
from raw_models import XWY_SCHEMA

SCHEMA = XWY_SCHEMA
RECORD = {"x": "7", "words": "good day"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with COMPLETED BINARY model ``ml-1`` (threshold changed to 0.9) and PENDING ``ml-queued``."""
    folder = tmp_path_factory.mktemp("load-model")
    rows = "".join(f"{i},{'good day' if i % 2 else 'bad day'},{i % 2}\n" for i in range(300))
    (folder / "data.csv").write_text("x,words,y\n" + rows)
    app = EmrML(Settings.load(environ={}, home=folder / "home"))
    try:
        app.call(
            "CreateDataSourceFromS3",
            {
                "DataSourceId": "ds-1",
                "DataSpec": {"DataLocationS3": str(folder / "data.csv"), "DataSchema": json.dumps(SCHEMA)},
                "ComputeStatistics": True,
            },
        )
        app.call(
            "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-1"}
        )
        assert app.wait("MLModel", "ml-1")["Status"] == "COMPLETED"
        app.call("UpdateMLModel", {"MLModelId": "ml-1", "ScoreThreshold": 0.9})
        app.call(
            "CreateMLModel",
            {"MLModelId": "ml-queued", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-1"},
        )
    finally:
        app.close()
    yield folder / "home"


def artifact(home: Path) -> Path:
    return home / "models" / "ml-1.zip"


def test_load_by_id_uses_the_current_threshold(home: Path) -> None:
    model = load_model("ml-1", home=home)
    assert model.model_type == "BINARY" and model.score_threshold == 0.9
    prediction = model.predict(RECORD)
    (score_value,) = prediction["predictedScores"].values()
    assert prediction["predictedLabel"] == ("1" if score_value >= 0.9 else "0")
    assert score_value > 0.5


def test_load_by_file_uses_the_saved_threshold(home: Path) -> None:
    for source in (artifact(home), str(artifact(home))):
        model = load_model(source)
        assert model.score_threshold == 0.5
        assert model.predict(RECORD)["predictedLabel"] == "1"


def test_home_defaults_to_emrml_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMRML_HOME", str(home))
    assert load_model("ml-1").score_threshold == 0.9


def test_load_errors(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ResourceNotFoundException, match="'ml-none' does not exist"):
        load_model("ml-none", home=home)
    with pytest.raises(ResourceNotFoundException, match="no metastore"):
        load_model("ml-1", home=tmp_path / "empty")
    assert not (tmp_path / "empty").exists()  # looking did not create a home
    with pytest.raises(InvalidInputException, match="'ml-queued' is PENDING"):
        load_model("ml-queued", home=home)
    with pytest.raises(InvalidInputException, match="does not exist"):
        load_model(str(tmp_path / "missing" / "model.zip"))
    (tmp_path / "bad.zip").write_text("not a model")
    with pytest.raises(InvalidInputException, match="not a zip archive"):
        load_model(tmp_path / "bad.zip")


def test_score_arrow_data(home: Path) -> None:
    model = load_model(artifact(home))
    xs = [str(i) for i in range(10)]
    words = ["good day" if i % 2 else "bad day" for i in range(10)]
    batch = pa.RecordBatch.from_pydict({"x": xs, "words": words, "other": ["z"] * 10})
    expected = np.array(
        [
            next(iter(model.predict({"x": x, "words": w})["predictedScores"].values()))
            for x, w in zip(xs, words, strict=True)
        ]
    )
    np.testing.assert_allclose(score(model, batch), expected, rtol=0, atol=1e-12)
    table = pa.Table.from_batches([batch.slice(0, 3), batch.slice(3, 0), batch.slice(3)])
    np.testing.assert_allclose(score(model, table), expected, rtol=0, atol=1e-12)
    numbers = pa.table({"x": list(range(10)), "words": words})
    np.testing.assert_allclose(score(model, numbers), expected, rtol=0, atol=1e-12)
    assert score(model, table.slice(0, 0)).shape == (0,)
    with pytest.raises(InvalidInputException, match="or a list of records"):
        score(model, RECORD)  # one record: predict's, or a list of one


def test_score_records_without_arrow_or_pandas_at_hand(home: Path) -> None:
    """Code without pandas had to build an Arrow table to score records it holds as dicts, the very
    records ``predict`` takes; a list of them now scores as the table of their values would."""
    model = load_model(artifact(home))
    records = [{"x": "7", "words": "good day"}, {"x": 8, "words": "bad day", "other": "z"}, {"words": "day"}]
    expected = score(model, pa.table({"x": ["7", "8", None], "words": ["good day", "bad day", "day"]}))
    np.testing.assert_allclose(score(model, records), expected, rtol=0, atol=1e-12)
    singles = [next(iter(model.predict(r)["predictedScores"].values())) for r in records[::2]]
    np.testing.assert_allclose(score(model, records)[::2], singles, rtol=0, atol=1e-12)
    assert score(model, []).shape == (0,)
    # Any iterable of records, e.g. a generator reading them (it was refused as "not generator").
    np.testing.assert_array_equal(score(model, (dict(r) for r in records)), score(model, records))
    with pytest.raises(InvalidInputException, match=r"^score\(\) takes records as dicts .*, not int$"):
        score(model, iter([RECORD, 7]))
    with pytest.raises(InvalidInputException, match="attribute names are strings"):
        score(model, [{1: "7"}])
    # Values are written as Model.predict writes them: NaN (pandas' missing value) is missing, a list
    # is refused by name where it was scored as the text "[7]".
    nan = score(model, [{"x": float("nan"), "words": "day"}, {"x": True, "words": "day"}])
    np.testing.assert_allclose(nan, score(model, [{"words": "day"}, {"x": "true", "words": "day"}]))
    with pytest.raises(InvalidInputException, match=r"^score\(\): the value of 'x' is a list"):
        score(model, [{"x": [7]}])


def test_a_loaded_model_says_what_it_is(home: Path) -> None:
    """``model.predictor()`` in a notebook showed ``<emrml.core.predict.Predictor object at 0x…>``."""
    assert (
        repr(load_model("ml-1", home=home)) == "Predictor(BINARY, target='y', 2 inputs, score_threshold=0.9)"
    )


def test_score_pandas(home: Path) -> None:
    pandas = pytest.importorskip("pandas")
    model = load_model(artifact(home))
    frame = pandas.DataFrame({"x": [7, 8], "words": ["good day", "bad day"]})
    expected = score(model, pa.table({"x": ["7", "8"], "words": ["good day", "bad day"]}))
    np.testing.assert_allclose(score(model, frame), expected, rtol=0, atol=1e-12)


def test_a_model_handle_is_loaded_and_anything_else_refused_by_name(home: Path) -> None:
    """``emrml.score(model, ...)`` with the handle ``client.train`` returns failed with an AttributeError
    (``score_batch``) and ``load_model(model)`` with a TypeError from pathlib."""
    from emrml.library import Client, Model

    with Client(home, progress=False) as client:
        handle = Model(client, "ml-1")
        assert repr(load_model(handle)) == repr(load_model("ml-1", home=home))
        table = pa.table({"x": ["7", "8"], "words": ["good day", "bad day"]})
        np.testing.assert_array_equal(score(handle, table), score(load_model("ml-1", home=home), table))
    with pytest.raises(InvalidInputException, match=r"^score\(\) takes a model loaded by .* not str$"):
        score("ml-1", table)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputException, match=r"^load_model\(\) takes a model file, .* not int$"):
        load_model(42)  # type: ignore[arg-type]
