"""Batch predictions of the inputs a datasource can have: rearranged (split) rows, several files, file
URIs, parallel byte ranges cut anywhere in quoted records, and output that appears whole or not at all
(generated edge cases)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from batch_helpers import (
    csv_text,
    files_under,
    generated_rows,
    generated_schema,
    predict_to,
    result_file_lines,
    result_file_rows,
)

from emrml.config import Settings
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import Schema
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.record_starts import count_quotes, record_start
from emrml.engine.training import DatasourceBatches, DatasourceData
from emrml.errors import DataError, InvalidInputException


@pytest.fixture(scope="module")
def settings(workspace: Path) -> Settings:
    return Settings.load(environ={}, home=workspace / "home")


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
    schema = generated_schema("BINARY")
    rows = generated_rows("BINARY", 90, seed=6)
    (folder / "a.csv").write_text(csv_text(rows[:50], schema.names))
    (folder / "b.csv").write_text(csv_text(rows[50:], schema.names, bad={10: "short,row"}))
    rearrangement = json.dumps(split)
    output = workspace / f"{folder.name}-out"
    result = predict_to(settings, models["BINARY"], folder, schema, output, rearrangement=rearrangement)
    data = DatasourceData(str(folder), schema, parse_rearrangement(rearrangement))
    selected = [tag for batch in DatasourceBatches(data, settings) for tag in batch.column("id").to_pylist()]
    tags = [
        line[0] for location in result.results.values() for line in result_file_rows(location)[1:] if line
    ]
    assert tags == selected and 0 < len(tags) < 90
    assert result.total_records - result.invalid_records == len(selected)


def test_several_files_one_result_each_and_the_manifest(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    folder = workspace / "many"
    (folder / "sub").mkdir(parents=True)
    schema = generated_schema("BINARY")
    rows = generated_rows("BINARY", 30, seed=7)
    (folder / "one.csv").write_text(csv_text(rows[:10], schema.names))
    (folder / "two.csv.gz").write_bytes(gzip.compress(csv_text(rows[10:20], schema.names).encode()))
    (folder / "sub" / "one.csv").write_text(csv_text(rows[20:], schema.names))
    (folder / "empty.csv").write_text(",".join(schema.names) + "\n")
    result = predict_to(settings, models["BINARY"], folder, schema, workspace / "out many")
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
    tags = {
        uri: [line.split(",")[0] for line in result_file_lines(location)[1:]]
        for uri, location in manifest.items()
    }
    assert tags[str(folder / "one.csv")] == [f"r{i}" for i in range(10)]
    assert tags[str(folder / "two.csv.gz")] == [f"r{i}" for i in range(10, 20)]
    assert tags[str(folder / "sub" / "one.csv")] == [f"r{i}" for i in range(20, 30)]
    assert result.total_records == 30
    assert files_under(workspace / "out many") == sorted(
        ["batch-prediction/bp-1.manifest"]
        + [f"batch-prediction/result/{Path(p).name}" for p in manifest.values()]
    )


def test_file_uri_output(workspace: Path, settings: Settings, models: dict[str, Path]) -> None:
    data = workspace / "uri.csv"
    data.write_text(csv_text(generated_rows("BINARY", 5), generated_schema("BINARY").names))
    result = batch_predict(
        batch_prediction_id="bp-uri",
        artifact_location=models["BINARY"],
        data=DatasourceData(str(data), generated_schema("BINARY"), None),
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
    schema = generated_schema("BINARY")
    rows = generated_rows("BINARY", count, seed=8)
    for i in range(0, count, 5):
        rows[i]["note"] = 'a "quoted"\r\nmulti, line\n' * (i % 3 + 1)
    text = csv_text(
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
    (data.parent / "small.csv").write_text(csv_text(generated_rows("BINARY", 30, seed=9), schema.names))
    sequential = predict_to(
        settings, models["BINARY"], data.parent, schema, workspace / f"tricky-{name}-seq", rearrangement=split
    )
    parallel = predict_to(
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
    data.write_text(csv_text(generated_rows("BINARY", 300, seed=5), generated_schema("BINARY").names))
    schema = workspace / "probe.csv.schema"
    schema.write_text(generated_schema("BINARY").to_json())
    arguments = [str(models["BINARY"]), str(data), str(schema), str(workspace / "probe-out")]
    result = subprocess.run(
        [sys.executable, "-c", POOL_PROBE, *arguments], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "[True]"


# --- atomic output -------------------------------------------------------------------------------------


def test_unwritable_output_fails_before_scoring(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    blocker = workspace / "a-file"
    blocker.write_text("not a directory")
    data = workspace / "unwritable.csv"
    data.write_text(csv_text(generated_rows("BINARY", 5), generated_schema("BINARY").names))
    with pytest.raises(
        InvalidInputException, match=rf"cannot write to OutputUri '{blocker}/out'.*Not a directory"
    ):
        predict_to(settings, models["BINARY"], data, generated_schema("BINARY"), blocker / "out")
    assert blocker.read_text() == "not a directory"


def test_failure_midway_leaves_no_results(
    workspace: Path, settings: Settings, models: dict[str, Path]
) -> None:
    folder = workspace / "broken"
    folder.mkdir()
    schema = generated_schema("BINARY")
    (folder / "a.csv").write_text(csv_text(generated_rows("BINARY", 20), schema.names))
    (folder / "b.csv.gz").write_bytes(
        gzip.compress(csv_text(generated_rows("BINARY", 2000), schema.names).encode())[:3000]
    )
    output = workspace / "out-broken"
    with pytest.raises(DataError, match=r"b\.csv\.gz"):
        predict_to(settings, models["BINARY"], folder, schema, output)
    # The first file's finished result was never published, and the temporaries are gone.
    assert files_under(output) == []
