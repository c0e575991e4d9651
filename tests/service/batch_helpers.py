"""Generated data for the batch prediction tests (every model type, quoted cells, line breaks in cells,
invalid targets), small models trained on it, and the result files read back."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from emrml.config import Settings
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.training import DatasourceData, train_model
from emrml.service.parameters import parse_parameters

T = AttributeType
SEQUENTIAL = Parallelism(workers=1)


def generated_schema(kind: str, *, target: bool = True) -> Schema:
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


def generated_target(kind: str, i: int, x: float) -> str:
    if kind == "BINARY":
        return ["1", "0", "yes", "no", "", "maybe"][i % 6] if i % 7 == 0 else str(int(x > 0))
    if kind == "MULTICLASS":
        return ["low", "mid", "a,b"][int(x > -0.5) + int(x > 0.5)]
    return f"{3 * x + 1:.4f}"


def generated_rows(kind: str, count: int, seed: int = 0) -> list[dict[str, str]]:
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
                "y": generated_target(kind, i, x),
            }
        )
    return rows


def csv_text(
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


def train_generated(settings: Settings, kind: str, path: Path, model_id: str) -> Path:
    recipe = json.dumps({"outputs": ["quantile_bin(x,5)", "ALL_CATEGORICAL", "ngram(lowercase(note),2)"]})
    trained = train_model(
        model_id=model_id,
        model_type=kind,
        data=DatasourceData(str(path), generated_schema(kind), None),
        recipe_text=recipe,
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "3"}),
        settings=settings,
        progress=lambda *_: None,
    )
    return trained.artifact_path


def predict_to(
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


def result_file_lines(result: str) -> list[str]:
    """The lines of a result file (gzip, maybe several members), without the final line break."""
    text = gzip.decompress(Path(result).read_bytes()).decode()
    assert text.endswith("\n")
    return text[:-1].split("\n")


def result_file_rows(result: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(gzip.decompress(Path(result).read_bytes()).decode())))


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
