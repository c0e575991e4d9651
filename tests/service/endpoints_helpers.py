"""The models the real-time endpoint tests serve: small generated datasets trained by the real jobs, and
Predict's answers next to the batch path's scores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from emrml.core.predict import Predictor
from emrml.service.app import EmrML
from emrml.service.rows import MLModel

URL = "http://127.0.0.1:8080"
BANK = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "bank_marketing"


def schema_of(target: str, *attributes: tuple[str, str]) -> str:
    return json.dumps(
        {
            "version": "1.0",
            "targetAttributeName": target,
            "dataFileContainsHeader": True,
            "attributes": [{"attributeName": n, "attributeType": t} for n, t in attributes],
        }
    )


#: Small generated datasets: (folder name, model type, schema, CSV text).
DATASETS = {
    "binary": (
        "BINARY",
        schema_of("y", ("x", "NUMERIC"), ("words", "TEXT"), ("y", "BINARY")),
        # One row in seven is labelled against its words: scores stay clear of 0 and 1 (a threshold of
        # 0.999 is above every score), as on real data, where a model fitted to the end would near them.
        "x,words,y\n"
        + "".join(f"{i},{'good day' if i % 2 else 'bad day'},{(i + (i % 7 == 0)) % 2}\n" for i in range(300)),
    ),
    "multiclass": (
        "MULTICLASS",
        schema_of("fruit", ("x", "NUMERIC"), ("colour", "CATEGORICAL"), ("fruit", "CATEGORICAL")),
        "x,colour,fruit\n"
        + "".join(
            f"{i},{colour},{fruit}\n"
            for i in range(100)
            for colour, fruit in (("red", "apple"), ("green", "pear"), ("blue", "plum"))
        ),
    ),
    "regression": (
        "REGRESSION",
        schema_of("y", ("x", "NUMERIC"), ("y", "NUMERIC")),
        "x,y\n" + "".join(f"{i},{3 * i + 10}\n" for i in range(300)),
    ),
}


def create_datasource(app: EmrML, entity_id: str, location: Path, schema: str) -> None:
    app.call(
        "CreateDataSourceFromS3",
        {
            "DataSourceId": entity_id,
            "DataSpec": {"DataLocationS3": str(location), "DataSchema": schema},
            "ComputeStatistics": True,
        },
    )


def train_small(app: EmrML, folder: Path, name: str, recipe: str | None = None) -> str:
    """Create the datasource and model of a generated dataset (jobs not run); returns the model id."""
    model_type, schema, text = DATASETS[name]
    (folder / f"{name}.csv").write_text(text)
    create_datasource(app, f"ds-{name}", folder / f"{name}.csv", schema)
    request = {"MLModelId": f"ml-{name}", "MLModelType": model_type, "TrainingDataSourceId": f"ds-{name}"}
    if recipe is not None:
        request["Recipe"] = recipe
    app.call("CreateMLModel", request)
    return f"ml-{name}"


@dataclass
class Trained:
    app: EmrML
    home: Path
    bank_header: list[str] | None


def predict(app: EmrML, model_id: str, record: dict[str, Any], endpoint: str = URL) -> dict[str, Any]:
    response = app.call("Predict", {"MLModelId": model_id, "Record": record, "PredictEndpoint": endpoint})
    assert list(response) == ["Prediction"]
    return response["Prediction"]


def batch_scores(app: EmrML, model_id: str, records: list[dict[str, str]]) -> np.ndarray:
    """The batch path's scores for the same records: Predict must agree with it."""
    with app.sessions() as session:
        location = session.get(MLModel, model_id).artifact_location
    predictor = Predictor.load(Path(location))
    names = [a.name for a in predictor.schema.attributes]
    batch = pa.RecordBatch.from_pydict({n: [r.get(n, "") for r in records] for n in names})
    return predictor.score_batch(batch)
