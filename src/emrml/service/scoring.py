"""What evaluations and batch predictions share: each scores a datasource with a model.

Their Create* operations check both parents alike, record the datasource's location, and inherit the tags
of both (spec 4.7); only their own columns and checks differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from emrml.service.operations import (
    ID_MEMBER,
    NAME_MEMBER,
    Request,
    Response,
    create_entity,
    created_by,
    usable,
)
from emrml.service.tags import inherit_tags

if TYPE_CHECKING:
    from emrml.service.app import EmrML
    from emrml.service.metastore import DataSource, MLModel

#: The request member naming the datasource, and the column that records it, per kind.
SOURCE = {
    "Evaluation": ("EvaluationDataSourceId", "evaluation_data_source_id"),
    "BatchPrediction": ("BatchPredictionDataSourceId", "batch_prediction_data_source_id"),
}


def create_scoring(
    app: EmrML,
    kind: str,
    request: Request,
    check: Callable[[MLModel, DataSource], None] | None = None,
    **columns: Any,
) -> Response:
    """Create an evaluation or batch prediction of ``request["MLModelId"]`` over its datasource.

    ``check(model, source)`` may refuse the pair; ``columns`` are the kind's own.
    """
    member, column = SOURCE[kind]
    with app.sessions() as session, session.begin():
        model = usable(session, "MLModel", request["MLModelId"], "MLModelId")
        source = usable(session, "DataSource", request[member], member)
        if check is not None:
            check(model, source)
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
            inherit_tags(session, (kind, request[ID_MEMBER[kind]]), parents)
    return {ID_MEMBER[kind]: request[ID_MEMBER[kind]]}
