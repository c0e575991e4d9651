"""What evaluations and batch predictions share: each scores a datasource with a model.

Their Create* operations check both parents alike, record the datasource's location, and inherit the tags
of both (spec 4.7); only their own columns and checks differ.

A datasource lacking attributes the model uses is refused at request time whenever both schemas are known
(the model's, or its training datasource's while it trains; the datasource's once it is COMPLETED); the
job checks again otherwise, with the same list (engine.training.evaluation_schema, engine.batch.batch_schema);
an evaluation's target likewise (core.model.check_evaluation_target, in the evaluation job).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emrml.core.schema import parse_schema
from emrml.errors import InvalidInputException
from emrml.service.operations import (
    ID_MEMBER,
    NAME_MEMBER,
    Request,
    Response,
    create_entity,
    created_by,
    usable,
)
from emrml.service.rows import DataSource, MLModel
from emrml.service.tags import inherit_tags

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from emrml.service.app import EmrML

#: The request member naming the datasource, and the column that records it, per kind.
SOURCE = {
    "Evaluation": ("EvaluationDataSourceId", "evaluation_data_source_id"),
    "BatchPrediction": ("BatchPredictionDataSourceId", "batch_prediction_data_source_id"),
}


def create_scoring(
    app: EmrML,
    kind: str,
    request: Request,
    check_source: Callable[[DataSource], None] | None = None,
    **columns: Any,
) -> Response:
    """Create an evaluation or batch prediction of ``request["MLModelId"]`` over its datasource;
    ``check_source`` refuses a datasource for the kind's own reasons; ``columns`` are the kind's own."""
    member, column = SOURCE[kind]
    with app.sessions() as session, session.begin():
        model = usable(session, "MLModel", request["MLModelId"], "MLModelId")
        source = usable(session, "DataSource", request[member], member)
        _check_attributes(session, kind, model, source)
        if check_source is not None:
            check_source(source)
        _, created = create_entity(
            session,
            kind,
            request,
            name=request.get(NAME_MEMBER[kind]),
            created_by=created_by(app),
            ml_model_id=model.id,
            input_data_location=source.data_location,
            **{column: source.id},
            **columns,
        )
        if created:
            parents = [("DataSource", source.id), ("MLModel", model.id)]
            inherit_tags(app, session, (kind, request[ID_MEMBER[kind]]), parents)
    return {ID_MEMBER[kind]: request[ID_MEMBER[kind]]}


def _check_attributes(session: Session, kind: str, model: MLModel, source: DataSource) -> None:
    """Refuse a datasource lacking an input attribute of the model, or, for an evaluation, its target
    (named as the datasource's target and typed as the model type needs)."""
    model_text = model.data_schema
    if not model_text:
        # Not trained yet: the model's schema will be that of its training datasource.
        training = session.get(DataSource, model.training_data_source_id)
        model_text = training.data_schema if training is not None else None
    if not (model_text and source.data_schema):
        return
    model_schema, data_schema = parse_schema(model_text), parse_schema(source.data_schema)
    needed = [a.name for a in model_schema.input_attributes]
    if kind == "Evaluation" and model_schema.target:
        needed.append(model_schema.target)  # an evaluation compares the predictions with it
    missing = [name for name in needed if name not in data_schema]
    if missing:
        raise InvalidInputException(
            f"{SOURCE[kind][0]} {source.id!r} lacks attributes the model {model.id!r} uses: "
            + ", ".join(missing)
        )
    if kind == "Evaluation":
        from emrml.core.model import check_evaluation_target

        check_evaluation_target(model_schema, data_schema, what=f"{SOURCE[kind][0]} {source.id!r}")
