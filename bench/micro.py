"""Micro-benchmarks of three hot spots, with the floors that used to be unit-test assertions.

Run by hand from the repository root: ``uv run python bench/micro.py``. Each measurement is the best of
five runs (the floors are about the code, not a busy machine) and is printed beside its floor:

- loading a 1,000,000-feature model artifact (floor: 100 ms);
- featurizing the bank-marketing file with a binned/one-hot recipe, as a batch (floor: 50,000 rows/s)
  and one record at a time (floor: 200 µs per record);
- updating a binary evaluation with a million scores (floor: 300 ms).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from common import load_average
from emrml.core.features import FeatureSpace
from emrml.core.linear import LinearModel, TrainingParameters
from emrml.core.metrics import BinaryEvaluation
from emrml.core.model import ModelArtifact, load_artifact, save_artifact
from emrml.core.recipe.grammar import parse_recipe
from emrml.core.schema import parse_schema

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def best_of(function: Callable[[], object], runs: int = 5) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def model_load_seconds(folder: Path) -> float:
    rng = np.random.default_rng(0)
    artifact = ModelArtifact(
        model_type="BINARY",
        schema_json=json.dumps({"version": "1.0", "targetAttributeName": "y", "attributes": []}),
        recipe='{"outputs": ["ALL_INPUTS"]}',
        feature_space={"features": []},
        linear=LinearModel("BINARY", rng.normal(size=(1_000_000, 1)), rng.normal(size=1)),
        labels=None,
        score_threshold=0.5,
        parameters=TrainingParameters().to_api(),
        report={"passes": 1, "losses": [0.5], "target_mean": None},
        metrics={},
        feature_names=None,
    )
    save_artifact(artifact, folder / "big.zip")
    return best_of(lambda: load_artifact(folder / "big.zip"))


def featurize_rates() -> tuple[float, float]:
    folder = DATASETS / "bank_marketing"
    schema = parse_schema((folder / "data.csv.schema").read_text())
    options = pcsv.ConvertOptions(column_types={name: pa.string() for name in schema.names})
    table = pcsv.read_csv(folder / "data.csv", convert_options=options)
    recipe = parse_recipe(
        json.dumps({"outputs": ["ALL_CATEGORICAL", "quantile_bin(ALL_NUMERIC,10)"]}), schema
    )
    space = FeatureSpace.fit(recipe, schema, table.to_batches(max_chunksize=8192))
    batch = table.combine_chunks().to_batches()[0]
    rows_per_second = batch.num_rows / best_of(lambda: space.transform(batch))
    records = batch.slice(0, 2000).to_pylist()

    def each() -> None:
        for record in records:
            space.transform_record(record)

    return rows_per_second, best_of(each) / len(records)


def evaluation_seconds() -> float:
    rng = np.random.default_rng(0)
    scores = rng.random(1_000_000)
    labels = rng.random(1_000_000) < scores
    return best_of(lambda: BinaryEvaluation().update(scores, labels))


def main() -> int:
    print(f"load average: {load_average()}")
    with tempfile.TemporaryDirectory() as folder:
        load = model_load_seconds(Path(folder))
    rows_per_second, per_record = featurize_rates()
    update = evaluation_seconds()
    results = [
        ("load a 1M-feature model", f"{load * 1e3:.1f} ms", "≤ 100 ms", load <= 0.1),
        (
            "featurize bank, batch",
            f"{rows_per_second:,.0f} rows/s",
            "≥ 50,000 rows/s",
            rows_per_second >= 50_000,
        ),
        ("featurize bank, per record", f"{per_record * 1e6:.1f} µs", "≤ 200 µs", per_record <= 200e-6),
        ("binary evaluation, 1M scores", f"{update * 1e3:.1f} ms", "≤ 300 ms", update <= 0.3),
    ]
    for what, measured, floor, met in results:
        print(f"{what:32} {measured:>18}  floor {floor:16} {'met' if met else 'MISSED'}")
    return 0 if all(met for *_, met in results) else 1


if __name__ == "__main__":
    sys.exit(main())
