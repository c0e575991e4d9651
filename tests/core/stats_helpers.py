"""Helpers shared by the datasource statistics' tests (test_stats_by_type, test_stats_merge_and_sample,
test_stats_correlation_and_threads)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from emrml.core.schema import Attribute, AttributeType, Schema
from emrml.core.stats import StatisticsAccumulator

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"

N = AttributeType.NUMERIC
B = AttributeType.BINARY
C = AttributeType.CATEGORICAL
T = AttributeType.TEXT


def make_schema(*columns: tuple[str, AttributeType], **roles: Any) -> Schema:
    return Schema(tuple(Attribute(name, kind) for name, kind in columns), **roles)


def feed(
    acc: StatisticsAccumulator, data: dict[str, list[str]], *, batch_rows: int = 1000, key0: int = 0
) -> None:
    table = pa.table({name: pa.array(values, type=pa.string()) for name, values in data.items()})
    keys = np.arange(key0, key0 + table.num_rows, dtype=np.uint64)
    for start in range(0, table.num_rows, batch_rows):
        batch = table.slice(start, batch_rows).combine_chunks().to_batches()[0]
        acc.update(batch, keys[start : start + batch.num_rows])


def stats_of(schema: Schema, data: dict[str, list[str]], **kwargs: Any) -> dict[str, Any]:
    acc = StatisticsAccumulator(schema, **kwargs)
    feed(acc, data)
    return acc.result()


def attribute(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in result["attributes"] if a["name"] == name)


def load_dataset(name: str) -> tuple[Schema, pa.Table]:
    path = DATASETS / name / "data.csv"
    spec = json.loads((DATASETS / name / "data.csv.schema").read_text())
    schema = Schema(
        tuple(Attribute(a["attributeName"], AttributeType(a["attributeType"])) for a in spec["attributes"]),
        target=spec.get("targetAttributeName"),
        has_header=True,
    )
    table = pacsv.read_csv(
        path, convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in schema.names})
    )
    return schema, table


def approx_equal(left: Any, right: Any, rel: float = 1e-9) -> bool:
    """Deep equality with a relative tolerance for floats (means and deviations depend on summation order)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(approx_equal(left[k], right[k], rel) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(
            approx_equal(a, b, rel) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=rel, abs_tol=1e-12)
    return bool(left == right)
