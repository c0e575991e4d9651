"""Helpers shared by the data schema's tests (test_schema_parsing, test_schema_errors,
test_schema_checks_and_inference): the shared datasets' schemas and samples, schema documents."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

import pytest

from emrml.core.inference import infer_schema
from emrml.core.schema import AttributeType, Schema, parse_schema
from emrml.errors import InvalidInputException

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
DATASET_NAMES = ["bank_marketing", "bike_sharing_hourly", "california_housing", "sms_spam", "wine_quality"]
SAMPLE_ROWS = 10_000

B, C, N, T = AttributeType.BINARY, AttributeType.CATEGORICAL, AttributeType.NUMERIC, AttributeType.TEXT


@cache
def dataset_schema(name: str) -> Schema:
    path = DATASETS / name / "data.csv.schema"
    return parse_schema(path.read_text(), source=str(path))


@cache
def dataset_sample(name: str) -> tuple[list[str], list[list[str]]]:
    with open(DATASETS / name / "data.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [row for _, row in zip(range(SAMPLE_ROWS), reader, strict=False)]
    return header, rows


def inferred(name: str, **kwargs: object) -> Schema:
    header, rows = dataset_sample(name)
    return infer_schema(header, rows, **kwargs)  # type: ignore[arg-type]


def types_of(schema: Schema) -> dict[str, AttributeType]:
    return {a.name: a.type for a in schema.attributes}


def doc(**top: object) -> str:
    """A schema document: two attributes (id CATEGORICAL, y BINARY) overridden by ``top``."""
    base: dict[str, object] = {
        "version": "1.0",
        "dataFormat": "CSV",
        "dataFileContainsHeader": True,
        "attributes": [
            {"attributeName": "id", "attributeType": "CATEGORICAL"},
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
    base.update(top)
    return json.dumps({k: v for k, v in base.items() if v is not OMIT})


OMIT = object()


def rejected(text: str, **kwargs: object) -> str:
    with pytest.raises(InvalidInputException) as info:
        parse_schema(text, **kwargs)  # type: ignore[arg-type]
    return info.value.message
