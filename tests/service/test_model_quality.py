"""Good models without tuning, on the shared datasets: the suggested recipe and each door's defaults.

Split by emrml's own random DataRearrangement (70 % to train, the rest to evaluate), as the Amazon ML
tutorial splits bank_marketing. bank_marketing's ``data.csv`` is chronological with a drifting positive
rate, so the API's defaults (``sgd.shuffleType=none``) train on rows in time order; the tutorial's model
reached AUC 0.94. The seeds are bench/quality.py's tutorial anchor's; every model is deterministic.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.service.app import EmrML

#: The seeds of bench/quality.py's tutorial anchor.
SEEDS = ("tutorial-1", "tutorial-2", "tutorial-3")


@pytest.fixture
def api_defaults_app(tmp_path: Path) -> Iterator[EmrML]:
    """An app whose unset training parameters take the Amazon ML API's defaults (no shuffle, no L2)."""
    application = EmrML(Settings.load(environ={}, home=tmp_path / "home", training_defaults="api"))
    yield application
    application.close()


def _metric(app: EmrML, folder: Path, model_type: str, seed: str, suffix: str) -> float:
    """Train on a random 70 % (suggested recipe, defaults) and evaluate on the rest: the headline metric."""
    schema = (folder / "data.csv.schema").read_text()
    for datasource_id, complement in ((f"ds-train-{suffix}", False), (f"ds-eval-{suffix}", True)):
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
        "CreateMLModel",
        {
            "MLModelId": f"ml-{suffix}",
            "MLModelType": model_type,
            "TrainingDataSourceId": f"ds-train-{suffix}",
        },
    )
    app.call(
        "CreateEvaluation",
        {
            "EvaluationId": f"ev-{suffix}",
            "MLModelId": f"ml-{suffix}",
            "EvaluationDataSourceId": f"ds-eval-{suffix}",
        },
    )
    evaluation = app.wait("Evaluation", f"ev-{suffix}")
    assert evaluation["Status"] == "COMPLETED", evaluation.get("Message")
    return float(next(iter(evaluation["PerformanceMetrics"]["Properties"].values())))


@pytest.mark.slow
def test_bank_marketing_in_time_order_reaches_the_tutorial_auc_with_the_api_defaults(
    api_defaults_app: EmrML, shared_datasets: Path
) -> None:
    folder = shared_datasets / "bank_marketing"
    aucs = [
        _metric(api_defaults_app, folder, "BINARY", seed, f"{number}") for number, seed in enumerate(SEEDS)
    ]
    # Measured 0.9405, 0.9431, 0.9445. Before the L-BFGS refinement: 0.9345, 0.9385, 0.9407 (ten SGD
    # passes over rows in time order had left the models far from their objective's minimum).
    assert statistics.median(aucs) >= 0.94 and min(aucs) > 0.9395, aucs
