"""What each kind of job does, between the metastore row and the engine."""

from __future__ import annotations

import json
from typing import Any

from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import Schema, parse_schema
from emrml.engine.local import build_datasource
from emrml.errors import DataError, InvalidInputException
from emrml.service.jobs import JobContext, job
from emrml.storage.locations import exists, read_text, schema_location_for


def _datasource_schema(entity: Any) -> tuple[Schema, str]:
    """The schema from DataSchema, DataSchemaLocationS3, or ``<data>.schema`` (spec open question 6)."""
    if entity.data_schema:
        return parse_schema(entity.data_schema, source="DataSchema"), entity.data_schema
    spec = json.loads(entity.request).get("DataSpec", {})
    location = spec.get("DataSchemaLocationS3") or spec.get("DataSchemaUri")
    if not location:
        location = schema_location_for(entity.data_location)
        if not exists(location):
            raise InvalidInputException(
                f"no DataSchema was given and there is no schema file {location} beside the data"
            )
    text = read_text(location)
    return parse_schema(text, source=f"schema file {location}"), text


@job("DataSource")
def build(context: JobContext) -> dict[str, Any]:
    entity = context.load()
    if entity.rds_metadata or entity.redshift_metadata:
        raise DataError(
            "this emrml has no SQL connector for RDS or Redshift queries; stage the query result as CSV "
            "and use CreateDataSourceFromS3"
        )
    schema, schema_text = _datasource_schema(entity)
    summary = build_datasource(
        entity.data_location,
        schema,
        parse_rearrangement(entity.data_rearrangement),
        compute_statistics=entity.compute_statistics,
        settings=context.settings,
        progress=context.progress,
    )
    return {
        "data_schema": schema.to_json() if schema_text != entity.data_schema else entity.data_schema,
        "data_size": summary.data_size,
        "number_of_files": summary.number_of_files,
        "total_records": summary.total_records,
        "invalid_records": summary.invalid_records,
        "invalid_examples": json.dumps(summary.invalid_examples),
        "statistics": json.dumps(summary.statistics) if summary.statistics is not None else None,
    }
