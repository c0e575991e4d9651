"""Evaluation operations: CreateEvaluation, GetEvaluation, UpdateEvaluation, DeleteEvaluation, Describe.

Extension: ``GetEvaluationInsights`` returns what the Amazon ML console drew: score histograms and the
threshold trade-off (binary), the confusion matrix (multiclass), residuals (regression), baselines, alerts.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from emrml.service import describe
from emrml.service.operations import (
    Request,
    Response,
    find,
    operation,
    register_lifecycle,
    result_members,
    timing_members,
)
from emrml.service.rows import Evaluation, MLModel
from emrml.service.scoring import create_scoring
from emrml.service.validation import require_id

if TYPE_CHECKING:
    from emrml.service.app import EmrML


@operation("CreateEvaluation")
def create_evaluation(app: EmrML, request: Request) -> Response:
    return create_scoring(app, "Evaluation", request)


def describe_evaluation(entity: Evaluation) -> Response:
    members: Response = {
        "EvaluationId": entity.id,
        "MLModelId": entity.ml_model_id,
        "EvaluationDataSourceId": entity.evaluation_data_source_id,
    }
    members.update(timing_members(entity))
    members.update(result_members(entity))
    if entity.performance_metrics:
        members["PerformanceMetrics"] = {"Properties": json.loads(entity.performance_metrics)}
    return members


@operation("GetEvaluation")
def get_evaluation(app: EmrML, request: Request) -> Response:
    with app.sessions() as session:
        return describe_evaluation(find(session, "Evaluation", request["EvaluationId"]))


register_lifecycle("Evaluation")


@operation("GetEvaluationInsights")
def get_evaluation_insights(app: EmrML, request: Request) -> Response:
    evaluation_id = require_id(request, "EvaluationId")
    with app.sessions() as session:
        entity = find(session, "Evaluation", evaluation_id)
        model = session.get(MLModel, entity.ml_model_id)
    members: Response = {"EvaluationId": entity.id, "Status": entity.status}
    if model is not None:
        members["MLModelType"] = model.model_type
        if model.score_threshold is not None:
            members["ScoreThreshold"] = model.score_threshold
        # The threshold cannot change while an endpoint serves with it (UpdateMLModel): the console's
        # threshold explorer then offers no save.
        members["MLModelEndpointStatus"] = model.endpoint_status
    if entity.insights:
        members["Insights"] = json.loads(entity.insights)
    return members


describe.register("DescribeEvaluations", "Evaluation", describe_evaluation)
