"""sgd.maxMLModelSizeInBytes: the features pruned to fit the limit leave the model file, so its size
(SizeInBytes) follows the limit, and predictions are those of the pruned weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from emrml.core.model import load_artifact
from emrml.core.predict import Predictor
from emrml.service.app import EmrML

SCHEMA = {
    "version": "1.0",
    "targetAttributeName": "y",
    "dataFormat": "CSV",
    "dataFileContainsHeader": True,
    "attributes": [
        {"attributeName": "message", "attributeType": "TEXT"},
        {"attributeName": "y", "attributeType": "BINARY"},
    ],
}


def _write_messages(folder: Path) -> list[dict[str, str]]:
    """Messages of eight words from 20,000 (about 16,000 of them used): more strings than fit 100,000
    bytes at 16 bytes a feature; a message holding a word from the first thousand is spam."""
    rng = np.random.default_rng(5)
    rows = []
    for words in rng.integers(0, 20_000, size=(4_000, 8)):
        rows.append({"message": " ".join(f"word{w}" for w in words), "y": str(int((words < 1_000).any()))})
    with open(folder / "data.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["message", "y"])
        writer.writeheader()
        writer.writerows(rows)
    (folder / "data.csv.schema").write_text(json.dumps(SCHEMA))
    return rows


def _train(app: EmrML, model_id: str, max_size: int) -> dict:
    parameters = {"sgd.maxMLModelSizeInBytes": str(max_size)}
    request = {"MLModelId": model_id, "MLModelType": "BINARY", "TrainingDataSourceId": "ds-messages"}
    app.call("CreateMLModel", {**request, "Parameters": parameters})
    model = app.wait("MLModel", model_id)
    assert model["Status"] == "COMPLETED", model.get("Message")
    return model


def test_pruned_features_leave_the_model_file(sqlite_app: EmrML, tmp_path: Path) -> None:
    app = sqlite_app
    rows = _write_messages(tmp_path)
    spec = {"DataLocationS3": str(tmp_path / "data.csv")}
    app.call(
        "CreateDataSourceFromS3", {"DataSourceId": "ds-messages", "DataSpec": spec, "ComputeStatistics": True}
    )
    assert app.wait("DataSource", "ds-messages")["Status"] == "COMPLETED"
    full = _train(app, "ml-full", 104_857_600)
    capped = _train(app, "ml-capped", 150_000)

    artifact = load_artifact(app.settings.home / "models" / "ml-capped.zip")
    report = artifact.report
    assert report["pruned_features"] > 0
    # The file holds the kept features only: no string whose weight pruning set to zero.
    assert artifact.linear.n_features == len(artifact.feature_names or []) == report["nonzero_features"]
    assert np.count_nonzero(np.abs(artifact.linear.weights).sum(axis=1)) == report["nonzero_features"]
    # Every pruned string went: the size is near the limit, not the unpruned model's.
    assert capped["SizeInBytes"] < 0.8 * full["SizeInBytes"]
    assert capped["SizeInBytes"] < 1.2 * 150_000
    # The kept features score as they did: the capped model still tells spam from the rest.
    predictor = Predictor.load(app.settings.home / "models" / "ml-capped.zip")
    right = [
        predictor.predict({"message": row["message"]})["predictedLabel"] == row["y"] for row in rows[:400]
    ]
    assert np.mean(right) > 0.9
