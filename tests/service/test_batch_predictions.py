"""Batch predictions: result layout per model type, order, invalid records, splits, several files,
parallel byte ranges, atomic output, and the operations and job end to end (real bank data and generated
edge cases)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as run_settings
from hypothesis import strategies as st

from emrml.config import Settings
from emrml.core.floats import java_float_cells
from emrml.core.predict import Predictor
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.engine import result_lines
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.result_lines import ResultFormatter
from emrml.engine.training import DatasourceBatches, DatasourceData, train_model
from emrml.engine.units import count_quotes, record_start
from emrml.errors import DataError, IdempotentParameterMismatchException, InvalidInputException
from emrml.service.app import EmrML
from emrml.service.parameters import parse_parameters

T = AttributeType
SEQUENTIAL = Parallelism(workers=1)


# --- helpers ---------------------------------------------------------------------------------------------


def _schema(kind: str, *, target: bool = True) -> Schema:
    target_type = {"BINARY": T.BINARY, "MULTICLASS": T.CATEGORICAL, "REGRESSION": T.NUMERIC}[kind]
    attributes = [
        Attribute("id", T.CATEGORICAL),
        Attribute("x", T.NUMERIC),
        Attribute("color", T.CATEGORICAL),
        Attribute("note", T.TEXT),
    ]
    if target:
        attributes.append(Attribute("y", target_type))
    return Schema(tuple(attributes), target="y" if target else None, row_id="id", has_header=True)


COLORS = ["red", "green", "blue", "dark, red", 'say "hi"']
WORDS = ["good", "bad", "day", "night", "ünïcode", "x,y"]


def _target(kind: str, i: int, x: float) -> str:
    if kind == "BINARY":
        return ["1", "0", "yes", "no", "", "maybe"][i % 6] if i % 7 == 0 else str(int(x > 0))
    if kind == "MULTICLASS":
        return ["low", "mid", "a,b"][int(x > -0.5) + int(x > 0.5)]
    return f"{3 * x + 1:.4f}"


def _rows(kind: str, count: int, seed: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        x = float(rng.normal())
        words = rng.choice(WORDS, size=int(rng.integers(0, 4)))
        rows.append(
            {
                "id": f"r{i}",
                "x": "" if i % 11 == 0 else f"{x:.3f}",
                "color": str(rng.choice(COLORS)),
                "note": " ".join(words) + ("\nsecond line" if i % 13 == 0 else ""),
                "y": _target(kind, i, x),
            }
        )
    return rows


def _csv(
    rows: list[dict[str, str]], names: list[str], *, newline: str = "\n", bad: dict[int, str] | None = None
) -> str:
    """CSV text of ``rows`` (quoted as needed); ``bad`` puts a raw line before the row of that index."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(names)
    for i, row in enumerate(rows):
        if bad and i in bad:
            out.write(bad[i] + newline)
        writer.writerow([row[name] for name in names])
    return out.getvalue()


def _train(settings: Settings, kind: str, path: Path, model_id: str) -> Path:
    recipe = json.dumps({"outputs": ["quantile_bin(x,5)", "ALL_CATEGORICAL", "ngram(lowercase(note),2)"]})
    trained = train_model(
        model_id=model_id,
        model_type=kind,
        data=DatasourceData(str(path), _schema(kind), None),
        recipe_text=recipe,
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "3"}),
        settings=settings,
        progress=lambda *_: None,
    )
    return trained.artifact_path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch")


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    return Settings.load(environ={}, home=workspace / "home")


@pytest.fixture(scope="module")
def models(workspace: Path, settings: Settings) -> dict[str, Path]:
    """A small model of each type trained on generated data."""
    paths = {}
    for kind in ("BINARY", "MULTICLASS", "REGRESSION"):
        training = workspace / f"train-{kind}.csv"
        training.write_text(_csv(_rows(kind, 600, seed=1), _schema(kind).names))
        paths[kind] = _train(settings, kind, training, f"ml-{kind.lower()}")
    return paths


def _predict(
    settings: Settings,
    model: Path,
    location: Path,
    schema: Schema,
    output: Path,
    *,
    rearrangement: str | None = None,
    threshold: float | None = None,
    parallelism: Parallelism = SEQUENTIAL,
    prediction_id: str = "bp-1",
):
    return batch_predict(
        batch_prediction_id=prediction_id,
        artifact_location=model,
        data=DatasourceData(str(location), schema, parse_rearrangement(rearrangement)),
        output_uri=str(output),
        score_threshold=threshold,
        settings=settings,
        progress=lambda *_: None,
        parallelism=parallelism,
    )


def _lines(result: str) -> list[str]:
    """The lines of a result file (gzip, maybe several members), without the final line break."""
    text = gzip.decompress(Path(result).read_bytes()).decode()
    assert text.endswith("\n")
    return text[:-1].split("\n")


def _parsed(result: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(gzip.decompress(Path(result).read_bytes()).decode())))


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- result layout per model type --------------------------------------------------------------------------


def test_binary_results_with_tag_true_label_and_invalid_records(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    rows = _rows("BINARY", 300, seed=2)
    schema = _schema("BINARY")
    data = workspace / "binary.csv"
    # Two ragged records and a record that is not UTF-8, between valid ones; CRLF line ends.
    text = _csv(rows, schema.names, newline="\r\n", bad={5: "r-bad,1", 120: "a,b,c,d,e,f"})
    data.write_bytes(text.encode().replace(b"r299,", b"\xff\xfe299,"))
    result = _predict(settings, models["BINARY"], data, schema, workspace / "out-binary")
    (location,) = result.results.values()
    assert result.results == {str(data): location}
    assert location == str(workspace / "out-binary/batch-prediction/result/bp-1-binary.csv.gz")
    assert result.total_records == 302 and result.invalid_records == 3
    lines = _parsed(location)
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
    schema = _schema(kind, target=target)
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
    rows = _rows("MULTICLASS", 50, seed=3)
    data = workspace / "multiclass.csv"
    data.write_text(_csv(rows, _schema("MULTICLASS").names))
    result = _predict(settings, models["MULTICLASS"], data, _schema("MULTICLASS"), workspace / "out-multi")
    lines = _parsed(next(iter(result.results.values())))
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
    rows = _rows("REGRESSION", 40, seed=4)
    schema = _schema("REGRESSION", target=False)
    data = workspace / "regression.csv"
    data.write_text(_csv(rows, schema.names))
    result = _predict(settings, models["REGRESSION"], data, schema, workspace / "out-regression")
    lines = _lines(next(iter(result.results.values())))
    assert lines[0] == "tag,score"
    predictor = Predictor.load(models["REGRESSION"])
    for row, line in zip(rows, lines[1:], strict=True):
        tag, value = line.split(",")
        assert tag == row["id"] and "E" in value
        assert float(value) == pytest.approx(predictor.predict(row)["predictedValue"], rel=5e-7)


def test_no_row_id_no_tag_column(workspace: Path, settings: Settings, models: dict[str, Path]) -> None:
    rows = _rows("BINARY", 20, seed=5)
    schema = replace(_schema("BINARY", target=False), row_id=None)
    data = workspace / "plain.csv"
    data.write_text(_csv(rows, schema.names))
    result = _predict(settings, models["BINARY"], data, schema, workspace / "out-plain", threshold=0.0)
    lines = _lines(next(iter(result.results.values())))
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
        _predict(settings, models["BINARY"], data, schema, workspace / "out-narrow")
    assert not (workspace / "out-narrow").exists()


# --- selection, several files, order ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "split",
    [
        {"splitting": {"percentBegin": 30, "percentEnd": 80}},
        {"splitting": {"percentEnd": 40, "strategy": "random", "strategyParams": {"randomSeed": "s"}}},
    ],
)
def test_rearranged_datasource_outputs_the_selected_rows(
    workspace: Path, settings: Settings, models: dict[str, Path], split: dict
) -> None:
    folder = workspace / f"split-{split['splitting'].get('strategy', 'sequential')}"
    folder.mkdir()
    schema = _schema("BINARY")
    rows = _rows("BINARY", 90, seed=6)
    (folder / "a.csv").write_text(_csv(rows[:50], schema.names))
    (folder / "b.csv").write_text(_csv(rows[50:], schema.names, bad={10: "short,row"}))
    rearrangement = json.dumps(split)
    output = workspace / f"{folder.name}-out"
    result = _predict(settings, models["BINARY"], folder, schema, output, rearrangement=rearrangement)
    data = DatasourceData(str(folder), schema, parse_rearrangement(rearrangement))
    selected = [tag for batch in DatasourceBatches(data, settings) for tag in batch.column("id").to_pylist()]
    tags = [line[0] for location in result.results.values() for line in _parsed(location)[1:] if line]
    assert tags == selected and 0 < len(tags) < 90
    assert result.total_records - result.invalid_records == len(selected)


def test_several_files_one_result_each_and_the_manifest(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    folder = workspace / "many"
    (folder / "sub").mkdir(parents=True)
    schema = _schema("BINARY")
    rows = _rows("BINARY", 30, seed=7)
    (folder / "one.csv").write_text(_csv(rows[:10], schema.names))
    (folder / "two.csv.gz").write_bytes(gzip.compress(_csv(rows[10:20], schema.names).encode()))
    (folder / "sub" / "one.csv").write_text(_csv(rows[20:], schema.names))
    (folder / "empty.csv").write_text(",".join(schema.names) + "\n")
    result = _predict(settings, models["BINARY"], folder, schema, workspace / "out many")
    assert result.manifest_location == str(workspace / "out many/batch-prediction/bp-1.manifest")
    manifest = json.loads(Path(result.manifest_location).read_text())
    # A file without records has no result (open question 17); equal file names stay apart.
    assert manifest == {
        str(folder / "one.csv"): str(workspace / "out many/batch-prediction/result/bp-1-one.csv.gz"),
        str(folder / "sub" / "one.csv"): str(
            workspace / "out many/batch-prediction/result/bp-1-one.csv-2.gz"
        ),
        str(folder / "two.csv.gz"): str(workspace / "out many/batch-prediction/result/bp-1-two.csv.gz.gz"),
    }
    tags = {uri: [line.split(",")[0] for line in _lines(location)[1:]] for uri, location in manifest.items()}
    assert tags[str(folder / "one.csv")] == [f"r{i}" for i in range(10)]
    assert tags[str(folder / "two.csv.gz")] == [f"r{i}" for i in range(10, 20)]
    assert tags[str(folder / "sub" / "one.csv")] == [f"r{i}" for i in range(20, 30)]
    assert result.total_records == 30
    assert _files(workspace / "out many") == sorted(
        ["batch-prediction/bp-1.manifest"]
        + [f"batch-prediction/result/{Path(p).name}" for p in manifest.values()]
    )


def test_file_uri_output(workspace: Path, settings: Settings, models: dict[str, Path]) -> None:
    data = workspace / "uri.csv"
    data.write_text(_csv(_rows("BINARY", 5), _schema("BINARY").names))
    result = batch_predict(
        batch_prediction_id="bp-uri",
        artifact_location=models["BINARY"],
        data=DatasourceData(str(data), _schema("BINARY"), None),
        output_uri=f"file://{workspace}/uri out",
        score_threshold=None,
        settings=settings,
        progress=lambda *_: None,
    )
    assert result.manifest_location == f"file://{workspace}/uri out/batch-prediction/bp-uri.manifest"
    assert result.results == {
        str(data): f"file://{workspace}/uri out/batch-prediction/result/bp-uri-uri.csv.gz"
    }
    assert (workspace / "uri out/batch-prediction/result/bp-uri-uri.csv.gz").is_file()


# --- parallel byte ranges ----------------------------------------------------------------------------------


def _tricky_file(path: Path, count: int) -> Schema:
    """Quoted line breaks, commas and quotes, CRLF, empty lines and ragged records inside, a byte order
    mark, an unterminated last record."""
    schema = _schema("BINARY")
    rows = _rows("BINARY", count, seed=8)
    for i in range(0, count, 5):
        rows[i]["note"] = 'a "quoted"\r\nmulti, line\n' * (i % 3 + 1)
    text = _csv(
        rows, schema.names, newline="\r\n", bad={i: "" if i % 2 else "x,1" for i in range(7, count, 97)}
    )
    path.write_bytes(b"\xef\xbb\xbf" + text.encode() + b'r-last,1,red,"unterminated')
    return schema


@pytest.mark.parametrize(
    "split",
    [
        None,
        '{"splitting": {"percentBegin": 20, "percentEnd": 70}}',
        '{"splitting": {"percentEnd": 50, "strategy": "random", "complement": true}}',
    ],
)
def test_parallel_ranges_equal_one_sequential_pass(
    workspace: Path, settings: Settings, models: dict[str, Path], split: str | None
) -> None:
    name = "none" if split is None else json.loads(split)["splitting"].get("strategy", "sequential")
    data = workspace / f"tricky-{name}" / "data.csv"
    data.parent.mkdir()
    schema = _tricky_file(data, 2000)
    (data.parent / "small.csv").write_text(_csv(_rows("BINARY", 30, seed=9), schema.names))
    sequential = _predict(
        settings, models["BINARY"], data.parent, schema, workspace / f"tricky-{name}-seq", rearrangement=split
    )
    parallel = _predict(
        settings,
        models["BINARY"],
        data.parent,
        schema,
        workspace / f"tricky-{name}-par",
        rearrangement=split,
        parallelism=Parallelism(workers=2, range_bytes=20_000, min_bytes=0),
    )
    assert (parallel.total_records, parallel.invalid_records) == (
        sequential.total_records,
        sequential.invalid_records,
    )
    assert sequential.invalid_records >= 5
    for uri, location in sequential.results.items():
        raw = Path(parallel.results[uri]).read_bytes()
        assert gzip.decompress(raw) == gzip.decompress(Path(location).read_bytes())
    # The big file was cut into ranges, written as several gzip members one after another.
    assert Path(parallel.results[str(data)]).read_bytes().count(b"\x1f\x8b\x08") > 4


def test_quotes_are_counted_across_read_blocks(tmp_path: Path) -> None:
    # Three and a half blocks of random bytes, counted from and to positions inside blocks.
    content = np.random.default_rng(3).integers(32, 40, size=3_500_000, dtype=np.uint8).tobytes()
    path = tmp_path / "quotes.csv"
    path.write_bytes(content)
    for start, stop in [(0, len(content)), (1, 1 << 20), (999_999, 2_100_001), (5, 5)]:
        assert count_quotes(str(path), start, stop) == content[start:stop].count(b'"')


def test_record_start_resynchronizes_after_a_cut(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    content = b'h1,h2\n1,"a\n2,b\n3,c"\n\n\r\n4,d\n5,e\n\xef\xbb\xbf6,f\n7,g\n'
    path.write_bytes(content)
    inside = content.index(b"2,b")
    # Inside the quoted field the line breaks are data: the record ends after 3,c".
    assert record_start(str(path), inside, odd=True) == content.index(b'3,c"') + len(b'3,c"\n')
    # Without the quote count, the cut would look like a record start.
    assert record_start(str(path), inside, odd=False) == inside + len(b"2,b\n")
    # A range never ends with empty records (the reader would drop them as trailing empty lines).
    assert record_start(str(path), content.index(b"\n\n") + 1, odd=False) == content.index(b"5,e")
    # A record start followed by a byte order mark is skipped; none is fit near the end of the file.
    assert record_start(str(path), content.index(b"5,e"), odd=False) == content.index(b"7,g")
    assert record_start(str(path), content.index(b"7,g") + 1, odd=False) is None


# --- atomic output -------------------------------------------------------------------------------------


def test_unwritable_output_fails_before_scoring(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    blocker = workspace / "a-file"
    blocker.write_text("not a directory")
    data = workspace / "unwritable.csv"
    data.write_text(_csv(_rows("BINARY", 5), _schema("BINARY").names))
    with pytest.raises(
        InvalidInputException, match=rf"cannot write to OutputUri '{blocker}/out'.*Not a directory"
    ):
        _predict(settings, models["BINARY"], data, _schema("BINARY"), blocker / "out")
    assert blocker.read_text() == "not a directory"


def test_failure_midway_leaves_no_results(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    folder = workspace / "broken"
    folder.mkdir()
    schema = _schema("BINARY")
    (folder / "a.csv").write_text(_csv(_rows("BINARY", 20), schema.names))
    (folder / "b.csv.gz").write_bytes(
        gzip.compress(_csv(_rows("BINARY", 2000), schema.names).encode())[:3000]
    )
    output = workspace / "out-broken"
    with pytest.raises(DataError, match=r"b\.csv\.gz"):
        _predict(settings, models["BINARY"], folder, schema, output)
    # The first file's finished result was never published, and the temporaries are gone.
    assert _files(output) == []


# --- operations and the job, end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(workspace: Path) -> Iterator[EmrML]:
    application = EmrML(Settings.load(environ={}, home=workspace / "service-home"))
    yield application
    application.close()


def _datasource(app: EmrML, entity_id: str, location: Path, schema: dict, statistics: bool = False) -> None:
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": entity_id,
            "DataSpec": {"DataLocationS3": str(location), "DataSchema": json.dumps(schema)},
            "ComputeStatistics": statistics,
        },
    )


@pytest.fixture(scope="module")
def bank(app: EmrML, workspace: Path, shared_datasets: Path) -> dict:
    """A BINARY model trained on the first 4,000 bank marketing records, and the tutorial's batch input."""
    folder = shared_datasets / "bank_marketing"
    schema = json.loads((folder / "data.csv.schema").read_text())
    training = workspace / "bank-train.csv"
    with open(folder / "data.csv") as source:
        training.write_text("".join(line for _, line in zip(range(4001), source, strict=False)))
    _datasource(app, "ds-bank", training, schema, statistics=True)
    app.call(
        "AddTags",
        {"ResourceType": "DataSource", "ResourceId": "ds-bank", "Tags": [{"Key": "team", "Value": "data"}]},
    )
    app.call(
        "CreateMLModel", {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"}
    )
    assert app.wait("MLModel", "ml-bank")["Status"] == "COMPLETED"
    app.call(
        "AddTags",
        {
            "ResourceType": "MLModel",
            "ResourceId": "ml-bank",
            "Tags": [{"Key": "team", "Value": "ml"}, {"Key": "m"}],
        },
    )
    batch_schema = {**schema, "attributes": schema["attributes"][:-1]}
    del batch_schema["targetAttributeName"]
    _datasource(app, "ds-batch", folder / "aml-tutorial" / "banking-batch.csv", batch_schema)
    assert app.wait("DataSource", "ds-batch")["Status"] == "COMPLETED"
    return {"schema": schema, "batch_schema": batch_schema}


def _create(
    app: EmrML, prediction_id: str, output: Path | str, model: str = "ml-bank", source: str = "ds-batch"
) -> dict:
    request = {
        "BatchPredictionId": prediction_id,
        "MLModelId": model,
        "BatchPredictionDataSourceId": source,
        "OutputUri": str(output),
    }
    assert app.call("CreateBatchPrediction", request) == {"BatchPredictionId": prediction_id}
    return app.wait("BatchPrediction", prediction_id)


def test_tutorial_batch_input_end_to_end(
    app: EmrML, bank: dict, workspace: Path, shared_datasets: Path
) -> None:
    output = workspace / "service-out"
    description = _create(app, "bp-tutorial", output)
    assert description["Status"] == "COMPLETED", description.get("Message")
    # 294 good records and the truncated 295th (spec 9: an empty line in its place, counted as failed).
    assert description["TotalRecordCount"] == 295 and description["InvalidRecordCount"] == 1
    assert description["OutputUri"] == f"{output}/" and description["ComputeTime"] >= 0
    assert description["InputDataLocationS3"].endswith("aml-tutorial/banking-batch.csv")
    manifest_location = description["ManifestLocation"]
    assert manifest_location == f"{output}/batch-prediction/bp-tutorial.manifest"
    manifest = json.loads(Path(manifest_location).read_text())
    source = str(shared_datasets / "bank_marketing" / "aml-tutorial" / "banking-batch.csv")
    assert manifest == {source: f"{output}/batch-prediction/result/bp-tutorial-banking-batch.csv.gz"}
    lines = _lines(manifest[source])
    assert lines[0] == "bestAnswer,score" and len(lines) == 296 and lines[-1] == ""
    assert all(re.fullmatch(r"[01],[1-9]\.[0-9]+E-?[0-9]+", line) for line in lines[1:-1])
    described = app.call("DescribeBatchPredictions", {"FilterVariable": "MLModelId", "EQ": "ml-bank"})[
        "Results"
    ]
    listed = next(d for d in described if d["BatchPredictionId"] == "bp-tutorial")
    assert "ManifestLocation" not in listed and listed["TotalRecordCount"] == 295
    # Tags come from the datasource and the model; the model's win on a conflict (spec 4.7).
    tags = app.call("DescribeTags", {"ResourceType": "BatchPrediction", "ResourceId": "bp-tutorial"})["Tags"]
    assert {tag["Key"]: tag.get("Value") for tag in tags} == {"team": "ml", "m": None}
    app.call("UpdateBatchPrediction", {"BatchPredictionId": "bp-tutorial", "BatchPredictionName": "tutorial"})
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-tutorial"})["Name"] == "tutorial"
    app.call("DeleteBatchPrediction", {"BatchPredictionId": "bp-tutorial"})
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-tutorial"})["Status"] == "DELETED"


def test_threshold_is_the_models_at_job_start(app: EmrML, bank: dict, workspace: Path) -> None:
    scores: dict[float, list[tuple[str, float]]] = {}
    for threshold in (0.5, 0.05):
        app.call("UpdateMLModel", {"MLModelId": "ml-bank", "ScoreThreshold": threshold})
        description = _create(app, f"bp-threshold-{threshold}", workspace / f"threshold-{threshold}")
        assert description["UnparsedRecordCount"] == 0  # the real bank file has no unreadable value
        (location,) = json.loads(Path(description["ManifestLocation"]).read_text()).values()
        scores[threshold] = [
            (line.split(",")[0], float(line.split(",")[1])) for line in _lines(location)[1:-1]
        ]
    app.call("UpdateMLModel", {"MLModelId": "ml-bank", "ScoreThreshold": 0.5})
    assert [s for _, s in scores[0.5]] == [s for _, s in scores[0.05]]
    for threshold, pairs in scores.items():
        assert all(best == ("1" if score >= threshold else "0") for best, score in pairs)
    ones = {threshold: sum(best == "1" for best, _ in pairs) for threshold, pairs in scores.items()}
    assert ones[0.05] > ones[0.5]


def test_unwritable_output_fails_the_job(app: EmrML, bank: dict, workspace: Path) -> None:
    blocker = workspace / "service-blocker"
    blocker.write_text("x")
    description = _create(app, "bp-unwritable", blocker / "out")
    assert description["Status"] == "FAILED"
    assert f"cannot write to OutputUri '{blocker}/out/'" in description["Message"]
    assert "TotalRecordCount" not in description and "ManifestLocation" not in description


def test_waits_for_a_pending_model_and_refuses_a_failed_one(app: EmrML, bank: dict, workspace: Path) -> None:
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-pending", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"},
    )
    request = {
        "BatchPredictionId": "bp-pending",
        "MLModelId": "ml-pending",
        "BatchPredictionDataSourceId": "ds-batch",
        "OutputUri": str(workspace / "pending"),
    }
    app.call("CreateBatchPrediction", request)
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-pending"})["Status"] == "PENDING"
    description = app.wait("BatchPrediction", "bp-pending")
    assert description["Status"] == "COMPLETED" and description["TotalRecordCount"] == 295
    assert app.call("GetMLModel", {"MLModelId": "ml-pending"})["Status"] == "COMPLETED"

    one_class = workspace / "one-class.csv"
    one_class.write_text("age,job,y\n" + "".join(f"{i},admin.,0\n" for i in range(50)))
    schema = {
        "version": "1.0",
        "targetAttributeName": "y",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "age", "attributeType": "NUMERIC"},
            {"attributeName": "job", "attributeType": "CATEGORICAL"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
    _datasource(app, "ds-one-class", one_class, schema, statistics=True)
    app.call(
        "CreateMLModel",
        {"MLModelId": "ml-failed", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-one-class"},
    )
    assert app.wait("MLModel", "ml-failed")["Status"] == "FAILED"
    with pytest.raises(InvalidInputException, match="MLModelId 'ml-failed' is FAILED"):
        app.call("CreateBatchPrediction", {**request, "BatchPredictionId": "bp-x", "MLModelId": "ml-failed"})
    with pytest.raises(InvalidInputException, match="no such DataSource"):
        app.call(
            "CreateBatchPrediction",
            {**request, "BatchPredictionId": "bp-x", "BatchPredictionDataSourceId": "nope"},
        )


def test_create_checks(app: EmrML, bank: dict, workspace: Path) -> None:
    request = {
        "BatchPredictionId": "bp-checks",
        "MLModelId": "ml-bank",
        "BatchPredictionDataSourceId": "ds-batch",
        "OutputUri": "s3://bucket/out",
    }
    for uri, forbidden in [
        ("s3://bucket/a//b/", "//"),
        ("s3://bucket/a/./b", "/./"),
        (f"{workspace}/a/../b", "/../"),
        ("s3://bucket/a:b/", ":"),
        ("file:///tmp/x/..", "/../"),
    ]:
        with pytest.raises(InvalidInputException, match=f"must not contain '{forbidden}'"):
            app.call("CreateBatchPrediction", {**request, "OutputUri": uri})
    with pytest.raises(InvalidInputException, match="use a local path"):
        app.call("CreateBatchPrediction", {**request, "OutputUri": "http://host/out/"})
    app.call("CreateBatchPrediction", request)
    assert (
        app.call("GetBatchPrediction", {"BatchPredictionId": "bp-checks"})["OutputUri"] == "s3://bucket/out/"
    )
    assert app.call("CreateBatchPrediction", request) == {"BatchPredictionId": "bp-checks"}
    with pytest.raises(IdempotentParameterMismatchException):
        app.call("CreateBatchPrediction", {**request, "BatchPredictionName": "other"})
    # No S3 store answers (the tests' default endpoint is a closed port): the job fails and says why.
    description = app.wait("BatchPrediction", "bp-checks")
    assert description["Status"] == "FAILED"
    assert "OutputUri 's3://bucket/out/' cannot be read: EndpointConnectionError" in description["Message"]

    narrow = workspace / "narrow-bank.csv"
    narrow.write_text("age,job\n30,admin.\n")
    schema = {
        "version": "1.0",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "age", "attributeType": "NUMERIC"},
            {"attributeName": "job", "attributeType": "CATEGORICAL"},
        ],
    }
    _datasource(app, "ds-narrow", narrow, schema)
    assert app.wait("DataSource", "ds-narrow")["Status"] == "COMPLETED"
    with pytest.raises(InvalidInputException, match="lacks attributes the model 'ml-bank' uses: marital"):
        app.call(
            "CreateBatchPrediction",
            {**request, "BatchPredictionId": "bp-n", "BatchPredictionDataSourceId": "ds-narrow"},
        )


def test_records_with_unreadable_values_are_counted(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    rows = _rows("BINARY", 200, seed=4)
    for i in (3, 50, 51, 199):
        rows[i]["x"] = ("heavy", "inf", "1e999", "n/a")[i % 4]
    schema = _schema("BINARY")
    data = workspace / "unreadable.csv"
    data.write_text(_csv(rows, schema.names))
    result = _predict(settings, models["BINARY"], data, schema, workspace / "out-unreadable")
    assert result.total_records == 200 and result.invalid_records == 0
    assert result.unparsed_records == 4
    clean = workspace / "clean.csv"
    clean.write_text(_csv(_rows("BINARY", 200, seed=4), schema.names))
    assert _predict(settings, models["BINARY"], clean, schema, workspace / "out-clean").unparsed_records == 0


POOL_PROBE = """
import sys
from pathlib import Path
from emrml.config import Settings
from emrml.core.schema import parse_schema
from emrml.engine import batch
from emrml.engine.training import DatasourceData

forked_with = []
runner = batch._runner

def probing_runner(*args, **kwargs):
    forked_with.append("scipy.special" in sys.modules)
    return runner(*args, **kwargs)

batch._runner = probing_runner
model, data, schema, output = sys.argv[1:5]
batch.batch_predict(
    batch_prediction_id="bp-probe",
    artifact_location=Path(model),
    data=DatasourceData(data, parse_schema(Path(schema).read_text()), None),
    output_uri=output,
    score_threshold=None,
    settings=Settings.load(environ={}, home=Path(output) / "home"),
    progress=lambda *_: None,
    parallelism=batch.Parallelism(workers=2, range_bytes=4_000, min_bytes=0),
)
print(forked_with)
"""


def test_pool_workers_start_with_the_sigmoid_loaded(workspace: Path, models: dict[str, Path]) -> None:
    # scipy.special (the BINARY sigmoid) costs 0.15 s to import: the job loads it once before the pool
    # forks, not each pool worker on its first batch. A fresh interpreter: this one has it already.
    data = workspace / "probe.csv"
    data.write_text(_csv(_rows("BINARY", 300, seed=5), _schema("BINARY").names))
    schema = workspace / "probe.csv.schema"
    schema.write_text(_schema("BINARY").to_json())
    arguments = [str(models["BINARY"]), str(data), str(schema), str(workspace / "probe-out")]
    result = subprocess.run(
        [sys.executable, "-c", POOL_PROBE, *arguments], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "[True]"
