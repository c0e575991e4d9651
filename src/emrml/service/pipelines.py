"""Pipelines: datasources → models → evaluations → batch predictions declared in one JSON file and run to
the end (``emrml run PIPELINE.json``), as a transient cluster runs its job and shuts down (docs/spark.md).

A pipeline is a list of steps, each one Amazon ML ``Create*`` request under its operation's name, with an
optional ``After`` (ids of steps that must complete first)::

    {"Steps": [
      {"CreateDataSourceFromS3": {"DataSourceId": "ds-train", "DataSpec": {...}, "ComputeStatistics": true}},
      {"CreateMLModel": {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-train"}},
      {"CreateBatchPrediction": {"BatchPredictionId": "bp", "MLModelId": "ml", ...}, "After": ["ev"]}
    ]}

A step waits for the steps whose ids its request names (``TrainingDataSourceId``, ``MLModelId``…) and for
its ``After``. Everything is checked before anything runs: the file's shape (an unknown key is refused with
its place in the file, and each request is checked as the API checks it), that every reference names a
step or an existing object, that the steps have no cycle, and each step against the metastore with the
API's own idempotency rule — an object with the step's id and the same request is the step already done (a
re-run resumes: completed objects are skipped, FAILED ones run again), one with other parameters is
``IdempotentParameterMismatchException``. Steps then run in dependency order through ``EmrML.call``, as any
other request; the first object that ends FAILED stops the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emrml.core.json_text import load_json
from emrml.errors import AmazonMLError, InvalidInputException
from emrml.service.operations import CREATE_OPERATIONS, ID_MEMBER, reused_id
from emrml.service.validation import validate_request

if TYPE_CHECKING:
    from emrml.service.app import EmrML

#: Request members that name another object, by the kind they name.
REFERENCES = {
    "TrainingDataSourceId": "DataSource",
    "EvaluationDataSourceId": "DataSource",
    "BatchPredictionDataSourceId": "DataSource",
    "MLModelId": "MLModel",
}
STEP_KEYS = (*CREATE_OPERATIONS, "After")


@dataclass
class Step:
    operation: str
    request: dict[str, Any]
    after: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return CREATE_OPERATIONS[self.operation]

    @property
    def id(self) -> str:
        return str(self.request[ID_MEMBER[self.kind]])

    def needs(self) -> list[str]:
        """Ids this step waits for: the objects its request names, and its After."""
        named = [
            value
            for member, value in self.request.items()
            if member in REFERENCES and value != self.id and isinstance(value, str)
        ]
        return [*named, *self.after]


@dataclass(frozen=True)
class Outcome:
    step: Step
    status: str
    #: Whether the object existed, COMPLETED, before this run (a resumed pipeline skips it).
    skipped: bool
    message: str | None = None


def parse(text: str, source: str) -> list[Step]:
    """The steps of a pipeline file (``source`` names it in errors), or InvalidInputException."""
    document = load_json(text, source)
    if not isinstance(document, dict) or set(document) - {"Steps", "Comment"}:
        unknown = sorted(set(document) - {"Steps", "Comment"}) if isinstance(document, dict) else []
        where = f"unknown key {unknown[0]!r}" if unknown else "not a JSON object"
        raise InvalidInputException(f"{source}: {where} (a pipeline has Steps and an optional Comment)")
    steps_json = document.get("Steps")
    if not isinstance(steps_json, list) or not steps_json:
        raise InvalidInputException(f"{source}: Steps must be a non-empty list")
    steps: list[Step] = []
    for index, item in enumerate(steps_json):
        where = f"{source}: Steps[{index}]"
        if not isinstance(item, dict):
            raise InvalidInputException(f"{where} must be an object")
        unknown = sorted(set(item) - set(STEP_KEYS))
        if unknown:
            raise InvalidInputException(
                f"{where}: unknown key {unknown[0]!r} (a step is one of {', '.join(CREATE_OPERATIONS)}, "
                "with an optional After)"
            )
        operations = [key for key in item if key in CREATE_OPERATIONS]
        if len(operations) != 1:
            raise InvalidInputException(f"{where} must hold exactly one Create* request")
        request, after = item[operations[0]], item.get("After", [])
        if not isinstance(request, dict):
            raise InvalidInputException(f"{where}.{operations[0]} must be an object")
        if not isinstance(after, list) or not all(isinstance(name, str) for name in after):
            raise InvalidInputException(f"{where}.After must be a list of step ids")
        try:  # the request as the API would check it, so a bad member stops the run before it starts
            validate_request(operations[0], request)
            _check_members(operations[0], request)
        except AmazonMLError as exc:
            raise type(exc)(f"{where}.{operations[0]}: {exc.message}") from None
        step = Step(operations[0], request, after)
        if not isinstance(request.get(ID_MEMBER[step.kind]), str):
            raise InvalidInputException(f"{where}.{operations[0]}.{ID_MEMBER[step.kind]} is required")
        if step.id in {other.id for other in steps}:
            raise InvalidInputException(f"{where}: the id {step.id!r} is already a step of the pipeline")
        steps.append(step)
    return steps


def _check_members(operation: str, request: dict[str, Any]) -> None:
    """The members the operation itself refuses before creating anything, checked with its own parsers
    and needing neither the metastore nor the data: otherwise ``--check`` passes a pipeline whose run
    stops at that step (a split past 100 %, a training parameter that is not a number, a recipe that is not
    valid JSON or whose expressions do not parse, an output folder whose key is refused)."""
    if operation.startswith("CreateDataSourceFrom"):
        from emrml.core.rearrange import parse_rearrangement

        parse_rearrangement(request["DataSpec"].get("DataRearrangement"), member="DataSpec.DataRearrangement")
    elif operation == "CreateMLModel":
        from emrml.service.parameters import parse_parameters

        parse_parameters(request.get("Parameters"))
        if request.get("Recipe"):
            from emrml.core.recipe.grammar import check_recipe_syntax

            check_recipe_syntax(request["Recipe"])  # its names are resolved with the schema, at the run
    elif operation == "CreateBatchPrediction":
        from emrml.service.batch_predictions import check_output_uri

        check_output_uri(request["OutputUri"])


def order(steps: list[Step], exists: Callable[[str], bool], source: str) -> list[Step]:
    """The steps in an order that runs each after what it needs; refuses unknown references and cycles."""
    by_id = {step.id: step for step in steps}
    for step in steps:
        for needed in step.needs():
            if needed not in by_id and not exists(needed):
                raise InvalidInputException(
                    f"{source}: step {step.id!r} needs {needed!r}, which is neither a step nor an existing "
                    "object"
                )
    ordered: list[Step] = []
    state: dict[str, str] = {}

    def visit(step: Step, path: list[str]) -> None:
        if state.get(step.id) == "done":
            return
        if state.get(step.id) == "visiting":
            cycle = " → ".join([*path[path.index(step.id) :], step.id])
            raise InvalidInputException(f"{source}: the steps form a cycle: {cycle}")
        state[step.id] = "visiting"
        for needed in step.needs():
            if needed in by_id:
                visit(by_id[needed], [*path, step.id])
        state[step.id] = "done"
        ordered.append(step)

    for step in steps:
        visit(step, [])
    return ordered


def _exists(app: EmrML, entity_id: str) -> bool:
    for kind, member in ID_MEMBER.items():
        try:
            app.call(f"Get{kind}", {member: entity_id})
            return True
        except AmazonMLError:
            continue
    return False


def plan(app: EmrML, text: str, source: str) -> list[Step]:
    """Parse and check a pipeline against the metastore without running anything (the module doc)."""
    steps = order(parse(text, source), lambda entity_id: _exists(app, entity_id), source)
    for step in steps:
        try:
            if reused_id(app, step.operation, step.request) is not None:
                status = app.call(f"Get{step.kind}", {ID_MEMBER[step.kind]: step.id})["Status"]
                if status == "DELETED":
                    reserved = f"{step.kind} {step.id!r} is DELETED and its id stays reserved"
                    raise InvalidInputException(f"{reserved}: give the step a new id")
        except AmazonMLError as exc:
            raise type(exc)(f"{source}: step {step.id!r}: {exc.message}") from None
    return steps


def run(
    app: EmrML,
    steps: list[Step],
    on_step: Callable[[Step, str], None] | None = None,
    progress: Callable[[Step, float, str | None], None] | None = None,
) -> list[Outcome]:
    """Run checked steps in order; stop at the first that does not complete. ``on_step`` hears each step's
    start ("running") or skip ("skipped"); ``progress`` its job's progress."""
    outcomes: list[Outcome] = []
    for step in steps:
        kind, member = step.kind, ID_MEMBER[step.kind]
        before = None
        if reused_id(app, step.operation, step.request) is not None:
            before = app.call(f"Get{kind}", {member: step.id})["Status"]
        if before == "COMPLETED":
            outcomes.append(Outcome(step, "COMPLETED", skipped=True))
            if on_step is not None:
                on_step(step, "skipped")
            continue
        if on_step is not None:
            on_step(step, "running")
        if before == "FAILED":  # a re-run retries what failed, with the same request
            app.jobs.requeue_failed(kind, step.id)
        try:
            app.call(step.operation, step.request)
        except AmazonMLError as exc:  # refused by what only the run knows (a recipe against the schema)
            raise type(exc)(f"step {step.id!r} ({step.operation}): {exc.message}") from None
        report = None
        if progress is not None:

            def report(fraction: float, message: str | None, step: Step = step) -> None:
                progress(step, fraction, message)

        described = app.wait(kind, step.id, report)
        outcomes.append(Outcome(step, described["Status"], skipped=False, message=described.get("Message")))
        if described["Status"] != "COMPLETED":
            break
    return outcomes
