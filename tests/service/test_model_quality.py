"""Good models without tuning, on the shared datasets: the suggested recipe and each door's defaults.

Split by emrml's own random DataRearrangement (70 % to train, the rest to evaluate), as the Amazon ML
tutorial splits bank_marketing. bank_marketing's ``data.csv`` is chronological with a drifting positive
rate, so the API's defaults (``sgd.shuffleType=none``) train on rows in time order; the tutorial's model
reached AUC 0.94 (bench/quality.py measures all three of its seeds; every model is deterministic).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.service.app import EmrML


@pytest.fixture(params=["api", "console"])
def defaults_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmrML]:
    """An app whose unset training parameters take the API's or the console's defaults."""
    application = EmrML(Settings.load(environ={}, home=tmp_path / "home", training_defaults=request.param))
    yield application
    application.close()


def _metric(app: EmrML, folder: Path, model_type: str, seed: str) -> float:
    """Train on a random 70 % (suggested recipe, defaults) and evaluate on the rest: the headline metric."""
    schema = (folder / "data.csv.schema").read_text()
    for datasource_id, complement in (("ds-train", False), ("ds-eval", True)):
        splitting = {"percentBegin": 0, "percentEnd": 70, "strategy": "random", "complement": complement}
        splitting["strategyParams"] = {"randomSeed": seed}
        spec = {
            "DataLocationS3": str(folder / "data.csv"),
            "DataSchema": schema,
            "DataRearrangement": json.dumps({"splitting": splitting}),
        }
        request = {"DataSourceId": datasource_id, "DataSpec": spec, "ComputeStatistics": True}
        app.call("CreateDataSourceFromS3", request)
    app.call(
        "CreateMLModel", {"MLModelId": "ml-1", "MLModelType": model_type, "TrainingDataSourceId": "ds-train"}
    )
    app.call(
        "CreateEvaluation", {"EvaluationId": "ev-1", "MLModelId": "ml-1", "EvaluationDataSourceId": "ds-eval"}
    )
    evaluation = app.wait("Evaluation", "ev-1")
    assert evaluation["Status"] == "COMPLETED", evaluation.get("Message")
    return float(next(iter(evaluation["PerformanceMetrics"]["Properties"].values())))


@pytest.mark.slow
def test_bank_marketing_in_time_order_reaches_the_tutorial_auc(
    defaults_app: EmrML, shared_datasets: Path
) -> None:
    # Measured 0.9409 (API) and 0.9407 (console). The API's defaults gave 0.9345 before the refinement by
    # L-BFGS: ten SGD passes over rows in time order had left the model far from its objective's minimum.
    assert _metric(defaults_app, shared_datasets / "bank_marketing", "BINARY", "tutorial-1") >= 0.94
