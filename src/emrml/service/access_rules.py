"""What each operation touches, for ``service.access``: the object it acts on (and the id member naming
it), the other objects it uses, whether it lists or creates, and which other permissions grant it. One
table for every operation; ``Access.authorize`` reads it."""

from __future__ import annotations

from dataclasses import dataclass

from emrml.service.operations import NAMES
from emrml.service.policy import IAM_ACTIONS, STORAGE_ACTIONS
from emrml.service.tables import ENTITY_TABLES

#: Tag operations name their object by ResourceType and ResourceId.
TAGGED = "ResourceType"


@dataclass(frozen=True)
class Rule:
    """What an operation touches. ``kind``/``member``: the object it acts on and its id member (kind
    ``TAGGED``: named by ResourceType); ``uses``: other objects it refers to, (kind, id member); ``listing``:
    a Describe* whose results are filtered. An operation on no object (InferDataSchema) has kind None.
    ``granted_by``: other operations whose permission on the object allows this one too (it answers part of
    what they need or show), unless a statement denies this one itself. ``creates``: the id names a new
    object (an existing one of another user cannot be answered as missing: the id is taken)."""

    kind: str | None
    member: str | None = None
    uses: tuple[tuple[str, str], ...] = ()
    listing: bool = False
    granted_by: tuple[str, ...] = ()
    creates: bool = False


def _lifecycle(kind: str, member: str) -> dict[str, Rule]:
    return {f"{verb}{kind}": Rule(kind, member) for verb in ("Get", "Update", "Delete")}


_MODEL = ("MLModel", "MLModelId")
OPERATION_ACCESS: dict[str, Rule] = {
    **_lifecycle("DataSource", "DataSourceId"),
    **_lifecycle("MLModel", "MLModelId"),
    **_lifecycle("Evaluation", "EvaluationId"),
    **_lifecycle("BatchPrediction", "BatchPredictionId"),
    **{f"Describe{kind}s": Rule(kind, listing=True) for kind in (*ENTITY_TABLES, "Stream")},
    "CreateDataSourceFromS3": Rule("DataSource", "DataSourceId", creates=True),
    "CreateDataSourceFromRDS": Rule("DataSource", "DataSourceId", creates=True),
    "CreateDataSourceFromRedshift": Rule("DataSource", "DataSourceId", creates=True),
    "GetDataSourceStatistics": Rule("DataSource", "DataSourceId"),
    "InferDataSchema": Rule(None),
    "PlanCapacity": Rule(None),
    "CreateMLModel": Rule(*_MODEL, uses=(("DataSource", "TrainingDataSourceId"),), creates=True),
    "GetMLModelInsights": Rule(*_MODEL),
    # What a record sent to Predict needs: whoever may predict with the model, or read it, may know that.
    "GetMLModelInputs": Rule(*_MODEL, granted_by=("Predict", "GetMLModel")),
    "CreateRealtimeEndpoint": Rule(*_MODEL),
    "DeleteRealtimeEndpoint": Rule(*_MODEL),
    "Predict": Rule(*_MODEL),
    "CreateEvaluation": Rule(
        "Evaluation",
        "EvaluationId",
        uses=(_MODEL, ("DataSource", "EvaluationDataSourceId")),
        creates=True,
    ),
    "GetEvaluationInsights": Rule("Evaluation", "EvaluationId"),
    "CreateBatchPrediction": Rule(
        "BatchPrediction",
        "BatchPredictionId",
        uses=(_MODEL, ("DataSource", "BatchPredictionDataSourceId")),
        creates=True,
    ),
    "AddTags": Rule(TAGGED, "ResourceId"),
    "DescribeTags": Rule(TAGGED, "ResourceId"),
    "DeleteTags": Rule(TAGGED, "ResourceId"),
    "StartStream": Rule("Stream", "StreamId", uses=(_MODEL,), creates=True),
    "StopStream": Rule("Stream", "StreamId"),
    "GetStream": Rule("Stream", "StreamId"),
}


def known_actions() -> tuple[str, ...]:
    """Every action a statement may name: every operation's (by name, their modules not imported), the
    storage and IAM actions."""
    return (*(f"machinelearning:{name}" for name in sorted(NAMES)), *STORAGE_ACTIONS, *IAM_ACTIONS)
