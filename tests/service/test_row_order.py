"""Good models without tuning: data sorted by its target trains as well as the same rows shuffled.

For each shared dataset, the README's split (a fixed permutation, 70 % to train) gives one training set,
written twice — shuffled, and sorted by the target — and one evaluation set. Both models train with the
defaults; the sorted copy's metric must be within 2 % of the shuffled one's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from emrml.service.app import EmrML

DATASETS = {
    "bank_marketing": ("BINARY", "BinaryAUC"),
    "sms_spam": ("BINARY", "BinaryAUC"),
    "wine_quality": ("MULTICLASS", "MulticlassAvgFScore"),
    "bike_sharing_hourly": ("REGRESSION", "RegressionRMSE"),
    "california_housing": ("REGRESSION", "RegressionRMSE"),
}
#: How much worse the sorted copy's metric may be, relative to the shuffled copy's.
TOLERANCE = 0.02


def _write(table: pa.Table, path: Path) -> str:
    pcsv.write_csv(table, path)
    return str(path)


def _model_metric(app: EmrML, name: str, train: str, test_id: str, schema: str, model_type: str) -> float:
    spec = {"DataLocationS3": train, "DataSchema": schema}
    app.call(
        "CreateDataSourceFromS3", {"DataSourceId": f"ds-{name}", "DataSpec": spec, "ComputeStatistics": True}
    )
    app.call(
        "CreateMLModel",
        {"MLModelId": f"ml-{name}", "MLModelType": model_type, "TrainingDataSourceId": f"ds-{name}"},
    )
    request = {"EvaluationId": f"ev-{name}", "MLModelId": f"ml-{name}", "EvaluationDataSourceId": test_id}
    app.call("CreateEvaluation", request)
    evaluation = app.wait("Evaluation", f"ev-{name}")
    assert evaluation["Status"] == "COMPLETED", evaluation.get("Message")
    return float(next(iter(evaluation["PerformanceMetrics"]["Properties"].values())))


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_rows_sorted_by_the_target_train_as_well_as_shuffled_rows(
    sqlite_app: EmrML, shared_datasets: Path, tmp_path: Path, dataset: str
) -> None:
    model_type, metric = DATASETS[dataset]
    folder = shared_datasets / dataset
    schema_text = (folder / "data.csv.schema").read_text()
    import json

    target = json.loads(schema_text)["targetAttributeName"]
    table = pcsv.read_csv(folder / "data.csv", convert_options=pcsv.ConvertOptions(strings_can_be_null=False))
    order = np.random.default_rng(42).permutation(table.num_rows)
    cut = int(0.7 * table.num_rows)
    train, test = table.take(order[:cut]), table.take(order[cut:])
    by_target = pc.sort_indices(train, sort_keys=[(target, "ascending")])
    test_location = _write(test, tmp_path / "test.csv")
    spec = {"DataLocationS3": test_location, "DataSchema": schema_text}
    app = sqlite_app
    app.call(
        "CreateDataSourceFromS3", {"DataSourceId": "ds-test", "DataSpec": spec, "ComputeStatistics": True}
    )
    shuffled = _model_metric(
        app, "shuffled", _write(train, tmp_path / "shuffled.csv"), "ds-test", schema_text, model_type
    )
    ordered = _model_metric(
        app,
        "sorted",
        _write(train.take(by_target), tmp_path / "sorted.csv"),
        "ds-test",
        schema_text,
        model_type,
    )
    if metric == "RegressionRMSE":
        assert ordered <= (1 + TOLERANCE) * shuffled, (ordered, shuffled)
    else:
        assert ordered >= (1 - TOLERANCE) * shuffled, (ordered, shuffled)
