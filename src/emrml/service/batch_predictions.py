"""Batch prediction operations: CreateBatchPrediction, GetBatchPrediction, UpdateBatchPrediction,
DeleteBatchPrediction, DescribeBatchPredictions (spec 9).

Extension: ``GetBatchPrediction`` (not Describe) also returns ``ManifestLocation``, where the manifest of a
COMPLETED batch prediction is (``<OutputUri>batch-prediction/<id>.manifest``); boto3 ignores the member.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from emrml.engine.outputs import manifest_location, output_prefix
from emrml.errors import InvalidInputException
from emrml.service import describe
from emrml.service.confinement import check_location
from emrml.service.operations import (
    Request,
    Response,
    find,
    operation,
    register_lifecycle,
    result_members,
    timing_members,
)
from emrml.service.scoring import create_scoring
from emrml.storage import locations

if TYPE_CHECKING:
    from emrml.service.app import EmrML
    from emrml.service.rows import BatchPrediction, DataSource

_S3 = re.compile(r"s3://([^/]+)(/.*)?", re.DOTALL)  # a line break in a key is told by check_location


def check_output_uri(uri: str) -> str:
    """``OutputUri`` as stored: a "directory" ending in ``/`` (spec 9 proposal).

    A local path, ``file://`` or ``s3://`` URI whose key part (the path; for S3 the object key) holds no
    ``:``, ``//``, ``/./`` or ``/../`` (spec 2); otherwise InvalidInputException.
    """
    if not uri.strip():
        raise InvalidInputException("OutputUri must name a directory (a local path, file:// or s3:// URI)")
    if uri.startswith("s3://"):
        match = _S3.fullmatch(uri)
        if match is None:
            raise InvalidInputException(
                f"OutputUri '{uri}' is not a valid S3 location (expected s3://bucket/key/)"
            )
        key = (match.group(2) or "/")[1:]
    elif uri.startswith("file://"):
        key = uri[len("file://") :].partition("/")[2]
    elif "://" in uri:
        raise InvalidInputException(f"OutputUri '{uri}': use a local path, a file:// URI or an s3:// URI")
    else:
        key = uri
    padded = f"/{key}/"
    for forbidden in (":", "//"):
        if forbidden in key:
            raise InvalidInputException(f"OutputUri '{uri}': the key part must not contain '{forbidden}'")
    for forbidden in ("/./", "/../"):
        if forbidden in padded:
            raise InvalidInputException(f"OutputUri '{uri}': the key part must not contain '{forbidden}'")
    return output_prefix(uri)


def _folder(location: str) -> str:
    """A location as the folder a listing of it reads, ending in ``/``: a local one as its real absolute
    path (``file://``, ``~`` and symbolic links resolved), so that two spellings of a place compare equal."""
    local = locations.local_directory(location)
    if local is not None:
        location = os.path.realpath(local)
    return location if location.endswith("/") else location + "/"


def check_output_outside(output: str, source: DataSource) -> None:
    """Refuse an ``OutputUri`` inside the folder the datasource reads: its results would become input
    records of every later job on that datasource (and of this one, on a store listed while written)."""
    data = source.data_location
    if data and _folder(output).startswith(_folder(data)):
        raise InvalidInputException(
            f"OutputUri '{output}' is inside the DataLocationS3 '{data}' of BatchPredictionDataSourceId "
            f"'{source.id}': the results would be read as data by later jobs on it; choose a folder "
            "outside it"
        )


@operation("CreateBatchPrediction")
def create_batch_prediction(app: EmrML, request: Request) -> Response:
    output = check_output_uri(request["OutputUri"])
    check_location(app, output, member="OutputUri", write=True, below=True)

    def check_source(source: DataSource) -> None:
        check_output_outside(output, source)

    return create_scoring(app, "BatchPrediction", request, check_source, output_uri=output)


def describe_batch_prediction(entity: BatchPrediction) -> Response:
    """The BatchPrediction shape of DescribeBatchPredictions (spec 4.2)."""
    members: Response = {
        "BatchPredictionId": entity.id,
        "MLModelId": entity.ml_model_id,
        "BatchPredictionDataSourceId": entity.batch_prediction_data_source_id,
        "OutputUri": entity.output_uri,
    }
    members.update(timing_members(entity))
    members.update(result_members(entity))
    if entity.total_records is not None:
        members["TotalRecordCount"] = entity.total_records
        members["InvalidRecordCount"] = entity.invalid_records
    if entity.unparsed_records is not None:
        # Not an Amazon ML member (boto3 ignores it): records scored with an unreadable value as missing.
        members["UnparsedRecordCount"] = entity.unparsed_records
    return members


@operation("GetBatchPrediction")
def get_batch_prediction(app: EmrML, request: Request) -> Response:
    with app.sessions() as session:
        entity = find(session, "BatchPrediction", request["BatchPredictionId"])
    members = describe_batch_prediction(entity)
    if entity.status == "COMPLETED":
        members["ManifestLocation"] = manifest_location(entity.output_uri, entity.id)
    return members


register_lifecycle("BatchPrediction")
describe.register("DescribeBatchPredictions", "BatchPrediction", describe_batch_prediction)
