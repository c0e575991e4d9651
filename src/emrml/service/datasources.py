"""Datasource operations: CreateDataSourceFrom{S3,RDS,Redshift}, Get, Update, Delete, and two extensions.

Extensions (not in Amazon ML; the CLI and console use them): ``InferDataSchema`` guesses a schema from a
sample of the data, ``GetDataSourceStatistics`` returns the record counts, invalid-record examples and the
data insights that Amazon ML showed only in its console.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from emrml.core.json_text import load_json
from emrml.core.rearrange import parse_rearrangement
from emrml.core.schema import parse_schema, stored_target
from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service import describe
from emrml.service.confinement import check_location, check_schema_beside, checked_as_opened
from emrml.service.operations import (
    Request,
    Response,
    create_entity,
    created_by,
    document_member,
    find,
    operation,
    register_lifecycle,
    timing_members,
)
from emrml.service.validation import optional_string, require_id, require_string
from emrml.storage import locations

if TYPE_CHECKING:
    from emrml.service.app import EmrML
    from emrml.service.rows import DataSource


def _spec_member(request: Request) -> str:
    """The member holding the request's data spec: what the errors about its members start their path with."""
    return "RDSData" if "RDSData" in request else "DataSpec"


def _create(app: EmrML, request: Request, location: str, spec: dict[str, Any], **columns: Any) -> Response:
    # A malformed rearrangement or DataSchema is a bad request, refused at once (spec 1.1); what needs the
    # data or a file (a schema that does not fit the data, a schema file's content, the max_attributes
    # limit, checked in one place for every way a schema arrives) is found by the job, which records a
    # FAILED datasource whose Message says what is wrong. Errors name the member by its path in the request
    # (DataSpec.DataRearrangement), as validation does.
    within = _spec_member(request)
    for member in ("DataSchemaLocationS3", "DataSchemaUri"):
        if spec.get(member):
            check_location(app, spec[member], member=f"{within}.{member}")
    parse_rearrangement(spec.get("DataRearrangement"), member=f"{within}.DataRearrangement")
    if spec.get("DataSchema"):
        parse_schema(spec["DataSchema"], source=f"{within}.DataSchema")
    with app.sessions() as session, session.begin():
        create_entity(
            session,
            "DataSource",
            request,
            name=request.get("DataSourceName"),
            created_by=created_by(app),
            data_location=location,
            data_rearrangement=spec.get("DataRearrangement"),
            compute_statistics=bool(request.get("ComputeStatistics", False)),
            **columns,
        )
    return {"DataSourceId": request["DataSourceId"]}


@operation("CreateDataSourceFromS3")
def create_data_source_from_s3(app: EmrML, request: Request) -> Response:
    spec = request["DataSpec"]
    check_location(app, spec["DataLocationS3"], member="DataSpec.DataLocationS3", below=True)
    if not (spec.get("DataSchema") or spec.get("DataSchemaLocationS3")):
        check_schema_beside(app, spec["DataLocationS3"])
    # An empty folder or prefix is refused now rather than by a FAILED datasource (it is listed up to its
    # first file, none opened; a missing location, or the store's error, is the job's to report).
    locations.check_holds_files(spec["DataLocationS3"], what="DataSpec.DataLocationS3")
    return _create(app, request, spec["DataLocationS3"], spec)


def _staged_location(app: EmrML, request: Request, staging: str) -> str:
    # Imported here: storage.sql loads Arrow, which commands that only read the metastore do without.
    from emrml.storage import sql_staging

    check_location(app, staging, member=f"{_spec_member(request)}.S3StagingLocation", write=True, below=True)
    return sql_staging.staged_location(staging, request["DataSourceId"])


@operation("CreateDataSourceFromRDS")
def create_data_source_from_rds(app: EmrML, request: Request) -> Response:
    from emrml.service.credentials import seal  # cryptography: loaded by SQL datasources only

    stored, password = seal(app.settings, "CreateDataSourceFromRDS", request)
    spec = request["RDSData"]
    metadata = {
        "Database": spec["DatabaseInformation"],
        "DatabaseUserName": spec["DatabaseCredentials"]["Username"],
        "SelectSqlQuery": spec["SelectSqlQuery"],
        "ResourceRole": spec["ResourceRole"],
        "ServiceRole": spec["ServiceRole"],
    }
    return _create(
        app,
        stored,
        _staged_location(app, request, spec["S3StagingLocation"]),
        spec,
        role_arn=request["RoleARN"],
        rds_metadata=json.dumps(metadata),
        database_password=password,
    )


@operation("CreateDataSourceFromRedshift")
def create_data_source_from_redshift(app: EmrML, request: Request) -> Response:
    from emrml.service.credentials import seal  # cryptography: loaded by SQL datasources only

    stored, password = seal(app.settings, "CreateDataSourceFromRedshift", request)
    spec = request["DataSpec"]
    metadata = {
        "RedshiftDatabase": spec["DatabaseInformation"],
        "DatabaseUserName": spec["DatabaseCredentials"]["Username"],
        "SelectSqlQuery": spec["SelectSqlQuery"],
    }
    return _create(
        app,
        stored,
        _staged_location(app, request, spec["S3StagingLocation"]),
        spec,
        role_arn=request["RoleARN"],
        redshift_metadata=json.dumps(metadata),
        database_password=password,
    )


def describe_data_source(entity: DataSource, *, verbose: bool = False) -> Response:
    """The DataSource shape (spec 4.2); ``verbose`` adds the Get-only members."""
    members: Response = {"DataSourceId": entity.id, "DataLocationS3": entity.data_location}
    members.update(timing_members(entity))
    members["ComputeStatistics"] = entity.compute_statistics
    if entity.data_rearrangement:
        members["DataRearrangement"] = entity.data_rearrangement
    if entity.data_size is not None:
        members["DataSizeInBytes"] = entity.data_size
        members["NumberOfFiles"] = entity.number_of_files
    if entity.status == "COMPLETED" and entity.compute_statistics and entity.compute_time is not None:
        members["ComputeTime"] = entity.compute_time
    if entity.role_arn:
        members["RoleARN"] = entity.role_arn
    for column, member in (("redshift_metadata", "RedshiftMetadata"), ("rds_metadata", "RDSMetadata")):
        metadata = getattr(entity, column)
        if metadata:
            shown = json.loads(metadata)
            if not verbose:
                shown.pop("SelectSqlQuery", None)
            members[member] = shown
    # Not an Amazon ML member (boto3 ignores it): the target of the validated schema (absent: none), which a
    # list of datasources to evaluate a model on needs of each (the console's evaluate form).
    if (target := stored_target(entity.data_schema)) is not None:
        members["TargetAttributeName"] = target
    if entity.total_records is not None:
        # Not Amazon ML members (boto3 ignores them): the record counts of the datasource summary.
        members["TotalRecordCount"] = entity.total_records
        members["InvalidRecordCount"] = entity.invalid_records
    return members


@operation("GetDataSource")
def get_data_source(app: EmrML, request: Request) -> Response:
    with app.sessions() as session:
        entity = find(session, "DataSource", request["DataSourceId"])
        verbose = bool(request.get("Verbose", False))
        members = describe_data_source(entity, verbose=verbose)
        if verbose:
            schema = entity.data_schema or _requested_schema(entity)
            if schema:
                members["DataSourceSchema"] = document_member(schema)
        return members


def _requested_schema(entity: DataSource) -> str | None:
    """The DataSchema text of the Create request: what is known of the schema until the job has validated
    it (and re-serialized it into ``data_schema``), or when the job failed."""
    request = json.loads(entity.request)
    spec = request.get("DataSpec") or request.get("RDSData") or {}
    return spec.get("DataSchema")


register_lifecycle("DataSource")


@operation("GetDataSourceStatistics")
def get_data_source_statistics(app: EmrML, request: Request) -> Response:
    entity_id = require_id(request, "DataSourceId")
    with app.sessions() as session:
        entity = find(session, "DataSource", entity_id)
    members: Response = {"DataSourceId": entity.id, "Status": entity.status}
    if entity.total_records is not None:
        members["TotalRecordCount"] = entity.total_records
        members["InvalidRecordCount"] = entity.invalid_records
        members["InvalidRecordExamples"] = json.loads(entity.invalid_examples or "[]")
    if entity.statistics:
        # Statistics stored before figures that overflow became null may hold Infinity or NaN, which a
        # JSON answer cannot carry: they read as null too.
        members["Statistics"] = json.loads(entity.statistics, parse_constant=lambda _: None)
    return members


@operation("InferDataSchema")
def infer_data_schema(app: EmrML, request: Request) -> Response:
    from emrml.engine.location_schema import infer_location_schema

    location = require_string(request, "DataLocationS3")
    check_location(app, location, member="DataLocationS3", below=True)
    has_header = request.get("DataFileContainsHeader", True)
    if not isinstance(has_header, bool):
        raise InvalidInputException("DataFileContainsHeader must be true or false")
    use_beside = request.get("UseSchemaBeside", False)
    if not isinstance(use_beside, bool):
        raise InvalidInputException("UseSchemaBeside must be true or false")
    if use_beside:
        beside = _schema_beside(app, request, location)
        if beside is not None:
            return beside
    # A folder's files are listed and read now, not by a job: each is checked as a confined job's are.
    with checked_as_opened(app):
        inferred = infer_location_schema(
            location,
            target=optional_string(request, "TargetAttributeName"),
            row_id=optional_string(request, "RowId"),
            has_header=has_header,
            settings=app.settings,
            named=("TargetAttributeName", "RowId"),
        )
    # What the schema was inferred from: a sample, which the user is to review the schema against.
    sample = {
        "NumberOfFiles": inferred.files,
        "NumberOfFilesRead": inferred.files_read,
        "NumberOfRecordsRead": inferred.records,
        "Description": inferred.description(),
    }
    return {"DataSchema": inferred.schema.to_json(), "Sample": sample}


def _schema_beside(app: EmrML, request: Request, location: str) -> Response | None:
    """InferDataSchema's answer when ``UseSchemaBeside`` asks for the schema file a datasource given no
    schema reads (spec 5.1's ``<data>.schema``): its schema, the target and row id given applied, and
    ``SchemaLocation``; None (infer one) when there is no such file, or the caller may not read it."""
    beside = locations.schema_location_for(location)
    try:
        check_location(app, beside, member="the schema file beside DataLocationS3")
    except AccessDeniedException:
        return None
    with checked_as_opened(app):
        if not locations.exists(beside, what="the schema file beside DataLocationS3"):
            return None
        text = locations.read_text(beside, what="the schema file beside DataLocationS3")
    document = load_json(text, f"schema file {beside}")
    if not isinstance(document, dict):
        raise InvalidInputException(f"schema file {beside}: not a JSON object")
    for member, key in (("TargetAttributeName", "targetAttributeName"), ("RowId", "rowId")):
        given = optional_string(request, member)
        if given is not None:
            document[key] = given
    schema = parse_schema(
        json.dumps(document), source=f"schema file {beside}", max_attributes=app.settings.max_attributes
    )
    return {"DataSchema": schema.to_json(), "SchemaLocation": beside}


describe.register("DescribeDataSources", "DataSource", describe_data_source)
