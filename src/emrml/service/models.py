"""ML model operations: CreateMLModel, GetMLModel, UpdateMLModel, DeleteMLModel, DescribeMLModels.

Extensions: ``GetMLModelInsights`` returns the training report and the features with the largest weights;
``GetMLModelInputs`` what a Predict record needs, to whoever may predict with the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emrml.core.schema import stored_target
from emrml.errors import InvalidInputException
from emrml.service import describe
from emrml.service.confinement import check_location
from emrml.service.mounted import endpoint_url
from emrml.service.operations import (
    Request,
    Response,
    create_entity,
    created_by,
    deleting,
    document_member,
    find,
    find_live,
    lock_row,
    operation,
    result_members,
    timing_members,
    usable,
)
from emrml.service.tags import inherit_tags
from emrml.service.validation import require_id

if TYPE_CHECKING:
    from emrml.service.app import EmrML
    from emrml.service.rows import MLModel


@operation("CreateMLModel")
def create_ml_model(app: EmrML, request: Request) -> Response:
    # The learner, recipe and schema code (numpy, Arrow) load with the first CreateMLModel, not at start.
    from emrml.core.linear import TrainingParameters
    from emrml.core.model import check_target
    from emrml.core.recipe.grammar import check_recipe_syntax, parse_recipe
    from emrml.core.schema import parse_schema
    from emrml.service.parameters import echoed, parse_parameters

    model_type = request["MLModelType"]
    defaults = TrainingParameters.console() if app.settings.training_defaults == "console" else None
    parameters = parse_parameters(request.get("Parameters"), defaults)
    recipe, recipe_uri = request.get("Recipe") or None, request.get("RecipeUri") or None
    if recipe and recipe_uri:
        raise InvalidInputException("give either Recipe or RecipeUri, not both")
    if recipe_uri:
        check_location(app, recipe_uri, member="RecipeUri")
    with app.sessions() as session, session.begin():
        source_id = request["TrainingDataSourceId"]
        source = usable(session, "DataSource", source_id, "TrainingDataSourceId")
        if not source.compute_statistics:
            raise InvalidInputException(
                f"TrainingDataSourceId {source_id!r} was created with ComputeStatistics false; "
                "a training datasource needs statistics"
            )
        if source.status == "COMPLETED" and source.data_schema:
            # With the schema at hand, a bad target or recipe is refused now rather than by the job.
            schema = parse_schema(source.data_schema)
            check_target(schema, model_type, what=f"TrainingDataSourceId {source_id!r}")
            if recipe:
                parse_recipe(recipe, schema)
        elif recipe:
            # The schema comes with the datasource's job: until then, what needs none is refused now.
            check_recipe_syntax(recipe)
        _, created = create_entity(
            session,
            "MLModel",
            request,
            name=request.get("MLModelName"),
            created_by=created_by(app),
            model_type=model_type,
            training_data_source_id=source_id,
            input_data_location=source.data_location,
            training_parameters=json.dumps(echoed(parameters, request.get("Parameters"))),
            recipe=recipe,
            recipe_uri=recipe_uri,
            score_threshold=0.5 if model_type == "BINARY" else None,
            endpoint_status="NONE",
            peak_requests_per_second=0,
        )
        if created:
            inherit_tags(app, session, ("MLModel", request["MLModelId"]), [("DataSource", source_id)])
    return {"MLModelId": request["MLModelId"]}


def endpoint_info(entity: MLModel, url: str) -> Response:
    """``url``: this process's :func:`endpoint_url`."""
    info: Response = {
        "EndpointStatus": entity.endpoint_status,
        "PeakRequestsPerSecond": entity.peak_requests_per_second,
    }
    if entity.endpoint_status != "NONE":
        info["EndpointUrl"] = url
        if entity.endpoint_created_at is not None:
            info["CreatedAt"] = entity.endpoint_created_at
    return info


def describe_ml_model(entity: MLModel, url: str) -> Response:
    """The MLModel shape of DescribeMLModels (spec 4.2)."""
    members: Response = {
        "MLModelId": entity.id,
        "TrainingDataSourceId": entity.training_data_source_id,
        "MLModelType": entity.model_type,
        "Algorithm": "sgd",
        "TrainingParameters": json.loads(entity.training_parameters),
        "EndpointInfo": endpoint_info(entity, url),
    }
    members.update(timing_members(entity))
    members.update(result_members(entity))
    if entity.size_in_bytes is not None:
        members["SizeInBytes"] = entity.size_in_bytes
    if entity.score_threshold is not None:
        members["ScoreThreshold"] = entity.score_threshold
    if entity.score_threshold_updated_at is not None:
        members["ScoreThresholdLastUpdatedAt"] = entity.score_threshold_updated_at
    # Not an Amazon ML member (boto3 ignores it): the attribute the model predicts, once trained; a list of
    # models to evaluate needs it of each (the console's evaluate form).
    if (target := stored_target(entity.data_schema)) is not None:
        members["TargetAttributeName"] = target
    return members


@operation("GetMLModel")
def get_ml_model(app: EmrML, request: Request) -> Response:
    with app.sessions() as session:
        entity = find(session, "MLModel", request["MLModelId"])
    members = describe_ml_model(entity, endpoint_url(app))
    del members["Algorithm"]  # Describe-only member (spec 4.2)
    if request.get("Verbose"):
        if entity.recipe:
            members["Recipe"] = document_member(entity.recipe)
        if entity.data_schema:
            members["Schema"] = document_member(entity.data_schema)
    return members


@operation("UpdateMLModel")
def update_ml_model(app: EmrML, request: Request) -> Response:
    from emrml.service.metastore import now

    with app.sessions() as session, session.begin():
        lock_row(session, "MLModel", request["MLModelId"])
        entity = find_live(session, "MLModel", request["MLModelId"])
        moment = now()
        if request.get("ScoreThreshold") is not None:
            threshold = float(request["ScoreThreshold"])
            if entity.model_type != "BINARY":
                raise InvalidInputException(
                    f"ScoreThreshold applies to BINARY models only; {entity.id!r} is {entity.model_type}"
                )
            if entity.endpoint_status != "NONE":
                raise InvalidInputException(
                    "ScoreThreshold cannot change while the model has a real-time endpoint; delete the "
                    "endpoint first (DeleteRealtimeEndpoint), then create it again"
                )
            if not 0.0 <= threshold <= 1.0:
                raise InvalidInputException(f"ScoreThreshold must be between 0 and 1 (got {threshold})")
            # The default 0.5 given explicitly is a change: ScoreThresholdLastUpdatedAt appears (spec 4.2).
            if threshold != entity.score_threshold or entity.score_threshold_updated_at is None:
                entity.score_threshold = threshold
                entity.score_threshold_updated_at = moment
                entity.last_updated_at = moment
        # Both members are optional (spec 3): a request with neither, or with the values the model has,
        # changes nothing, and LastUpdatedAt, "the most recent change", stays.
        name = request.get("MLModelName")
        if name is not None and name != entity.name:
            entity.name = name
            entity.last_updated_at = moment
    return {"MLModelId": request["MLModelId"]}


@operation("DeleteMLModel")
def delete_ml_model(app: EmrML, request: Request) -> Response:
    with deleting(app, "MLModel", request["MLModelId"]) as entity:
        # A deleted model's endpoint goes with it (spec 4.5 proposal).
        entity.endpoint_status = "NONE"
        entity.peak_requests_per_second = 0
    app.mounted.unmount(request["MLModelId"])
    return {"MLModelId": request["MLModelId"]}


@operation("GetMLModelInsights")
def get_ml_model_insights(app: EmrML, request: Request) -> Response:
    model_id = require_id(request, "MLModelId")
    with app.sessions() as session:
        entity = find(session, "MLModel", model_id)
    members: dict[str, Any] = {"MLModelId": entity.id, "Status": entity.status}
    if entity.status == "COMPLETED" and entity.artifact_location:
        from emrml.core.model import insights, load_artifact

        members.update(insights(load_artifact(Path(entity.artifact_location), entity.expected())))
    return members


@operation("GetMLModelInputs")
def get_ml_model_inputs(app: EmrML, request: Request) -> Response:
    """What a record sent to Predict needs: the attributes the model reads (name and type, in column order),
    its type and status, and its real-time endpoint. Whoever may Predict with the model (or read it) may ask
    (``access_rules.OPERATION_ACCESS``), so it tells nothing else of it: no name, recipe, parameters or
    data."""
    from emrml.core.schema import parse_schema

    model_id = require_id(request, "MLModelId")
    with app.sessions() as session:
        entity = find(session, "MLModel", model_id)
    attributes = []
    if entity.data_schema:
        schema = parse_schema(entity.data_schema, source=f"model {entity.id} schema")
        attributes = [
            {"attributeName": attribute.name, "attributeType": attribute.type.value}
            for attribute in schema.input_attributes
        ]
    return {
        "MLModelId": entity.id,
        "MLModelType": entity.model_type,
        "Status": entity.status,
        "Attributes": attributes,
        "EndpointInfo": endpoint_info(entity, endpoint_url(app)),
    }


@operation("DescribeMLModels")
def describe_ml_models(app: EmrML, request: Request) -> Response:
    url = endpoint_url(app)
    return describe.describe(
        app, "MLModel", request, lambda entity: describe_ml_model(entity, url), "DescribeMLModels"
    )
