"""The notebook API (``import emrml``): datasources, training, evaluation and predictions through the real
service, results, progress, interruption and inferred schemas."""

from __future__ import annotations

import gzip
import json
import re
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.csv  # loaded before the memory of reading results is traced
import pytest
from library_helpers import ROWS, SPLIT

import emrml
from emrml import library, loading
from emrml import results as result_files
from emrml.errors import InvalidInputException
from emrml.samples import bank_sample_schema
from s3_server import S3


def test_the_public_names_are_the_library_s() -> None:
    assert emrml.__all__ == [
        "BatchPrediction",
        "Client",
        "DataSource",
        "Evaluation",
        "JobFailed",
        "Model",
        "load_model",
        "score",
    ]
    assert emrml.Client is library.Client and emrml.JobFailed is library.JobFailed
    assert emrml.load_model is loading.load_model and emrml.score is loading.score
    assert issubclass(emrml.JobFailed, InvalidInputException)
    with pytest.raises(AttributeError, match="no attribute 'Predictor'"):
        _ = emrml.Predictor  # type: ignore[attr-defined]


def test_split_train_evaluate(client: emrml.Client, sample: tuple[Path, Path]) -> None:
    data, schema = sample
    train = client.datasource(data, schema=schema, split=SPLIT, id="ds-train", name="train")
    test = client.datasource(
        str(data), schema=json.loads(schema.read_text()), split=SPLIT, complement=True, statistics=False
    )
    assert train == emrml.DataSource(client, "ds-train")
    assert test.id.startswith("ds-") and len(test.id) == len("ds-") + 12
    described = test.describe()
    assert described["Status"] == "COMPLETED" and described["DataLocationS3"] == str(data.resolve())
    assert json.loads(described["DataRearrangement"])["splitting"] == {**SPLIT, "complement": True}
    sizes = [source.statistics()["TotalRecordCount"] for source in (train, test)]
    assert sum(sizes) == ROWS and 0.65 * ROWS < sizes[0] < 0.75 * ROWS

    recipe = {"outputs": ["ALL_CATEGORICAL", "ALL_TEXT", "quantile_bin(ALL_NUMERIC,50)"]}
    model = client.train(
        train, "BINARY", recipe=recipe, parameters={"sgd.maxPasses": 5, "sgd.shuffleType": "auto"}
    )
    assert model.id.startswith("ml-")
    details = model.describe()
    assert details["TrainingParameters"]["sgd.maxPasses"] == "5"
    assert json.loads(details["Recipe"])["outputs"] == recipe["outputs"]
    top = model.top_features
    assert top and all(isinstance(item["weight"], float) for item in top)
    assert abs(top[0]["weight"]) >= abs(top[-1]["weight"])
    assert model.insights()["TrainingReport"]["passes"] <= 5

    evaluation = model.evaluate(test, id="ev-lib")
    assert evaluation == emrml.Evaluation(client, "ev-lib")
    auc = evaluation.metric
    assert 0.7 < auc <= 1.0
    assert auc == float(evaluation.describe()["PerformanceMetrics"]["Properties"]["BinaryAUC"])
    insights = evaluation.insights()
    assert insights["metrics"]["BinaryAUC"] == pytest.approx(auc)
    assert insights["records"] == sizes[1]
    held_out = next(
        alert for alert in insights["alerts"] if alert["name"] == "Evaluation done on held-out data"
    )
    assert held_out["passed"] is True


def test_batch_and_single_predictions(
    client: emrml.Client, sample: tuple[Path, Path], tmp_path: Path
) -> None:
    data, schema = sample
    train = client.datasource(data, schema=schema, split=SPLIT, id="ds-fit")
    everything = client.datasource(data, schema=schema, statistics=False)
    # Any case, as the CLI's --type takes it: the API's spelling is sent.
    model = client.train(train, "binary", parameters={"sgd.maxPasses": 3}, id="ml-pred")
    assert model.describe()["MLModelType"] == "BINARY"

    batch = model.batch_predict(everything, tmp_path / "out", id="bp-lib")
    assert batch == emrml.BatchPrediction(client, "bp-lib")
    described = batch.describe()
    assert described["Status"] == "COMPLETED"
    assert described["OutputUri"] == f"{(tmp_path / 'out').resolve()}/"
    results = batch.results()
    assert results.num_rows == ROWS == described["TotalRecordCount"]
    assert results.column_names == ["trueLabel", "bestAnswer", "score"]
    assert results.schema.types == [pa.string(), pa.string(), pa.float64()]
    assert pa.Table.from_batches(list(batch.iter_results())).equals(results)
    assert "bp-lib" in batch._repr_html_()

    # Each record scored alone in this process gives the batch's row for it (rows are in input order).
    names = bank_sample_schema().names
    lines = data.read_text().splitlines()[1:51]
    records = [dict(zip(names, line.split(","), strict=True)) for line in lines]
    predictor = model.predictor()
    for record, row in zip(records, results.slice(0, len(records)).to_pylist(), strict=True):
        inputs = {key: value for key, value in record.items() if key != "y"}
        predicted = predictor.predict(inputs)
        assert predicted["predictedLabel"] == row["bestAnswer"] and row["trueLabel"] == record["y"]
        assert predicted["predictedScores"][row["bestAnswer"]] == pytest.approx(row["score"], rel=1e-6)
    assert model.predict(inputs) == predicted
    # Numbers are written as Python writes them: the same record given with numbers scores the same.
    numbers = {
        key: float(value) if key == "euribor3m" else int(value) if key == "age" else value
        for key, value in inputs.items()
    }
    assert numbers != inputs and model.predict(numbers) == predicted

    with pytest.raises(InvalidInputException, match="expected a DataSource handle or its id, not int"):
        model.batch_predict(42, tmp_path / "other")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputException, match="parameters must be a dict"):
        client.train(train, "BINARY", parameters="sgd.maxPasses=3")  # type: ignore[arg-type]


def test_predict_loads_the_model_once_until_its_threshold_changes_or_it_is_deleted(
    client: emrml.Client, sample: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, schema = sample
    model = client.train(client.datasource(data, schema=schema), "BINARY", parameters={"sgd.maxPasses": 1})
    loads: list[str] = []
    original = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loads.append(a[0]) or original(*a, **k))
    record = {"age": "41", "job": "admin."}
    first = model.predict(record)
    assert all(model.predict(record) == first for _ in range(5))
    assert emrml.Model(client, model.id).predict(record) == first  # another handle, the same client
    assert len(loads) == 1
    for threshold, label in ((0.0, "1"), (1.0, "0")):
        client.service.call("UpdateMLModel", {"MLModelId": model.id, "ScoreThreshold": threshold})
        assert model.predict(record)["predictedLabel"] == label
    assert len(loads) == 3
    client.service.call("DeleteMLModel", {"MLModelId": model.id})
    with pytest.raises(InvalidInputException, match="DELETED"):
        model.predict(record)


@pytest.mark.parametrize("model_type", ["BINARY", "REGRESSION"])
def test_batch_results_keep_a_row_for_each_record_that_could_not_be_read(
    client: emrml.Client,
    sample: tuple[Path, Path],
    tmp_path: Path,
    model_type: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The result file has an empty line for a record that could not be read; a reader skipping it would
    shift every later row against the input (and lose the ones at the end)."""
    data, schema = sample
    lines = data.read_text().splitlines()
    broken = tmp_path / "broken.csv"
    bad = {0, 7, 8, 39}  # the first record, two in a row, and the last
    body = ["1,2,3" if position in bad else line for position, line in enumerate(lines[1:41])]
    broken.write_text("\n".join([lines[0], *body]) + "\n")
    target = "y" if model_type == "BINARY" else "age"
    model = client.train(
        client.datasource(data, schema=schema, target=target), model_type, parameters={"sgd.maxPasses": 1}
    )
    source = client.datasource(broken, schema=schema, target=target, statistics=False)
    batch = model.batch_predict(source, tmp_path / "out")
    results = batch.results()
    assert results.num_rows == 40
    # Many batches, some starting with empty lines.
    monkeypatch.setattr(result_files, "RESULT_BLOCK_BYTES", 64)
    streamed = list(batch.iter_results())
    assert len(streamed) > 4 and pa.Table.from_batches(streamed).equals(results)
    position = bank_sample_schema().names.index(target)
    for index, row in enumerate(results.to_pylist()):
        if index in bad:
            assert set(row.values()) == {None}, index
        else:
            assert row["trueLabel"] == body[index].split(",")[position] and row["score"] is not None
    assert results.column("score").type == pa.float64()


def test_result_files_are_read_a_block_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streaming the results holds about one block of a file, not the file (nor a decoded copy of it)."""
    path = tmp_path / "bp-result.gz"
    rows = 800_000  # 25 MB decompressed
    with gzip.open(path, "wt", compresslevel=1) as out:
        out.write("tag,trueLabel,bestAnswer,score\n")
        out.writelines(f'"r{i}\n",{i % 2},{i % 2},0.{i:06d}\n' if i % 1000 else "\n" for i in range(rows))
    monkeypatch.setattr(result_files, "RESULT_BLOCK_BYTES", 256 << 10)
    tracemalloc.start()
    try:
        count = unscored = 0
        arrow_peak = 0
        for batch in result_files.result_batches(str(path)):
            count += batch.num_rows
            unscored += batch.column("score").null_count
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (count, unscored) == (rows, rows // 1000)
    assert python_peak < 8 << 20 and arrow_peak < 8 << 20


def test_batch_prediction_results_read_from_s3(
    s3: S3, sample: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, schema = sample
    monkeypatch.setenv("EMRML_S3_ENDPOINT_URL", s3.endpoint_url)
    with emrml.Client(home=tmp_path / "s3-home") as client:
        # The schema and the recipe may be files beside the data: they were read as local paths ("s3:/…").
        schema_uri = s3.put("in/bank.csv.schema", schema.read_bytes())
        source = client.datasource(s3.put("in/bank.csv", data.read_bytes()), schema=schema_uri, id="ds-s3")
        recipe = s3.put("in/bank.recipe", b'{"outputs": ["ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,10)"]}')
        model = client.train(source, "BINARY", recipe=recipe, parameters={"sgd.maxPasses": 2})
        assert json.loads(model.describe()["Recipe"])["outputs"][0] == "ALL_CATEGORICAL"
        with pytest.raises(InvalidInputException, match=r"^schema 's3://.*/in/none\.schema' does not exist"):
            client.datasource(s3.uri("in/bank.csv"), schema=s3.uri("in/none.schema"))
        batch = model.batch_predict(source, s3.uri("out"))
        assert batch.describe()["OutputUri"] == s3.uri("out/")
        results = batch.results()
    assert results.num_rows == ROWS and results.column_names == ["trueLabel", "bestAnswer", "score"]
    truth = [line.rsplit(",", 1)[1] for line in data.read_text().splitlines()[1:]]
    assert results.column("trueLabel").to_pylist() == truth


def test_progress_line_while_waiting(
    sample: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, schema = sample
    with emrml.Client(home=tmp_path / "home", progress=True) as client:
        client.datasource(data, schema=schema, id="ds-shown")
    shown = capsys.readouterr().err
    # The last status is padded with blanks over a longer progress text, when one was shown.
    assert shown.startswith("\rDataSource ds-shown: ")
    assert re.search(r"\rDataSource ds-shown: COMPLETED *\n\Z", shown), shown
    steps = [step.strip() for step in shown.strip().split("\r")]
    assert all(re.fullmatch(r"DataSource ds-shown: (\d+%.*|COMPLETED)", step) for step in steps), steps
    with emrml.Client(home=tmp_path / "home", progress=False) as client:
        client.datasource(data, schema=schema, id="ds-quiet", statistics=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(InvalidInputException, match=r"^progress must be True, False or None .*, not 'no'$"):
        emrml.Client(home=tmp_path / "home", progress="no")  # type: ignore[arg-type]

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    with emrml.Client(home=tmp_path / "home", progress=True) as client:
        monkeypatch.setattr(client.service, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt):
            client.datasource(data, schema=schema, id="ds-stopped", statistics=False)
    assert capsys.readouterr().err == "\rDataSource ds-stopped: interrupted\n"


def test_an_interrupted_call_says_how_to_resume_and_wait_finishes_it(
    sample: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook's interrupt during ``client.datasource(...)`` left an unfinished object with a generated
    id that nothing returned, and no handle could run its job again (the CLI has ``wait``)."""
    data, _ = sample

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C as the call starts waiting: the job is left queued

    with emrml.Client(home=tmp_path / "home", progress=False) as client:
        monkeypatch.setattr(client.service, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt) as stopped:
            client.datasource(data, target="y")
        monkeypatch.undo()
        source_id = re.findall(r"ds-[0-9a-f]{12}", str(stopped.value))[0]
        assert str(stopped.value) == (
            f"DataSource {source_id} is not finished; emrml.DataSource(client, '{source_id}').wait() "
            "runs it again"
        )
        source = emrml.DataSource(client, source_id)
        assert source.describe()["Status"] != "COMPLETED"
        assert source.wait() == source and source.describe()["Status"] == "COMPLETED"
        assert source.statistics()["TotalRecordCount"] == ROWS
        model = client.service.call(
            "CreateMLModel",
            {"MLModelId": "ml-api", "MLModelType": "BINARY", "TrainingDataSourceId": source_id},
        )
        assert emrml.Model(client, model["MLModelId"]).wait().describe()["Status"] == "COMPLETED"


def test_handles_rename_and_a_model_takes_a_score_threshold(
    client: emrml.Client, sample: tuple[Path, Path]
) -> None:
    """Setting the cut-off read off an evaluation, or naming an object, needed
    ``client.service.call("UpdateMLModel", ...)``: the CLI had ``update``, the handles nothing."""
    data, schema = sample
    source = client.datasource(data, schema)
    assert source.update(name="bank, all rows") == source
    assert source.describe()["Name"] == "bank, all rows"
    model = client.train(source, "BINARY", parameters={"sgd.maxPasses": 2})
    record = {"age": 41, "duration": 900, "poutcome": "success"}
    (score_value,) = model.predict(record)["predictedScores"].values()
    assert model.update(score_threshold=score_value + 1e-9, name="cut above") == model
    described = model.describe()
    assert described["ScoreThreshold"] == score_value + 1e-9 and described["Name"] == "cut above"
    assert model.predict(record)["predictedLabel"] == "0"
    model.update(score_threshold=score_value)
    assert model.predict(record)["predictedLabel"] == "1"
    with pytest.raises(InvalidInputException, match=r"update\(\) needs name= or score_threshold="):
        model.update()
    with pytest.raises(InvalidInputException, match="ScoreThreshold must be a number"):
        model.update(score_threshold="0.3")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputException, match="EvaluationName must be a string"):
        model.evaluate(source).update(name=5)  # type: ignore[arg-type]


def test_inferred_schema_takes_the_target(client: emrml.Client, sample: tuple[Path, Path]) -> None:
    data, _ = sample
    source = client.datasource(data, target="y", statistics=False)
    schema = json.loads(source.describe()["DataSourceSchema"])
    assert schema["targetAttributeName"] == "y"
    assert len(schema["attributes"]) == 21


def test_without_a_schema_the_one_beside_the_data_is_read(
    client: emrml.Client, shared_datasets: Path
) -> None:
    """``client.datasource("data.csv")`` inferred a schema though data.csv.schema was beside it, as the API
    and ``emrml datasource create`` read it: wine_quality's class became NUMERIC, unfit for MULTICLASS."""
    data = shared_datasets / "wine_quality" / "data.csv"
    source = client.datasource(data, statistics=False)
    stored = json.loads(source.describe()["DataSourceSchema"])
    beside = json.loads(Path(f"{data}.schema").read_text())
    assert (stored["attributes"], stored["targetAttributeName"]) == (beside["attributes"], "quality")
    assert {"attributeName": "quality", "attributeType": "CATEGORICAL"} in stored["attributes"]
    named = client.datasource(data, target="color", statistics=False)  # replaces the file's target
    assert json.loads(named.describe()["DataSourceSchema"])["targetAttributeName"] == "color"


def test_an_inferred_schema_can_be_edited_and_given_back(client: emrml.Client, shared_datasets: Path) -> None:
    """Bike sharing: inference types the hour NUMERIC, cannot know that ``casual`` and ``registered`` add up
    to the target, and ``instant`` is the row id. ``infer_schema`` gives the schema to change before the
    datasource is made; ``row_id`` names the row id as ``target`` names the target."""
    data = shared_datasets / "bike_sharing_hourly" / "data.csv"
    schema = client.infer_schema(data, target="cnt", row_id="instant")
    assert schema["targetAttributeName"] == "cnt" and schema["rowId"] == "instant"
    schema["excludedAttributeNames"] = ["casual", "registered", "dteday"]
    for attribute in schema["attributes"]:
        if attribute["attributeName"] == "hr":
            attribute["attributeType"] = "CATEGORICAL"
    source = client.datasource(data, schema, statistics=False)
    stored = json.loads(source.describe()["DataSourceSchema"])
    assert stored["excludedAttributeNames"] == ["casual", "registered", "dteday"]
    assert {"attributeName": "hr", "attributeType": "CATEGORICAL"} in stored["attributes"]
    # Without a schema, row_id goes to the inference; with one, it replaces the schema's.
    inferred = client.datasource(data, target="cnt", row_id="instant", statistics=False)
    assert json.loads(inferred.describe()["DataSourceSchema"])["rowId"] == "instant"
    schema["rowId"] = None
    replaced = client.datasource(data, schema, row_id="instant", statistics=False)
    assert json.loads(replaced.describe()["DataSourceSchema"])["rowId"] == "instant"
    with pytest.raises(InvalidInputException, match="no such file or folder"):
        client.infer_schema(data.parent / "nope.csv")


def test_a_complement_in_the_split_is_kept(client: emrml.Client, sample: tuple[Path, Path]) -> None:
    """``split={..., "complement": True}`` (the API's splitting, as the README's CLI example writes it) was
    sent with ``"complement": False``: the evaluation datasource silently held the training records."""
    data, schema = sample

    def rearrangement(source: emrml.DataSource) -> dict[str, object]:
        return json.loads(source.describe()["DataRearrangement"])["splitting"]

    held_out = client.datasource(data, schema, split={**SPLIT, "complement": True}, statistics=False)
    assert rearrangement(held_out) == {**SPLIT, "complement": True}
    both = client.datasource(
        data, schema, split={**SPLIT, "complement": True}, complement=True, statistics=False
    )
    assert rearrangement(both) == {**SPLIT, "complement": True}
    assert rearrangement(client.datasource(data, schema, split=SPLIT, statistics=False)) == {
        **SPLIT,
        "complement": False,
    }
    with pytest.raises(InvalidInputException, match="complement=True, but the split says complement False"):
        client.datasource(data, schema, split={**SPLIT, "complement": False}, complement=True)


def test_the_metric_of_a_failed_evaluation_says_why(
    client: emrml.Client, sample: tuple[Path, Path], tmp_path: Path
) -> None:
    """``evaluation.metric`` of a FAILED evaluation said only "it is FAILED", not its Message."""
    data, schema = sample
    model = client.train(client.datasource(data, schema), "BINARY", parameters={"sgd.maxPasses": 1})
    copy = tmp_path / "copy.csv"
    copy.write_bytes(data.read_bytes())
    later = client.datasource(copy, schema, statistics=False)
    copy.unlink()  # gone before the evaluation reads it
    with pytest.raises(emrml.JobFailed) as failed:
        model.evaluate(later, id="ev-gone")
    message = emrml.Evaluation(client, "ev-gone").describe()["Message"]
    assert message and message in str(failed.value)
    with pytest.raises(InvalidInputException, match="has no metric: it is FAILED: ") as no_metric:
        _ = emrml.Evaluation(client, "ev-gone").metric
    assert str(no_metric.value).endswith(message)
