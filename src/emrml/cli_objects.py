"""The commands every kind of Amazon ML object has, from one table: ``wait``, ``show``, ``list``,
``update --name`` and ``delete`` for datasources, models, evaluations and batch predictions.

``KINDS`` says, per kind, how to name it, fetch it (the operations ``show`` calls, also its JSON output),
draw it, list it and filter lists. ``register`` adds the commands to each kind's command group; the
commands that differ (``create``, ``model update``, ``evaluation show``) live in ``emrml.cli``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from emrml import cli_render as render
from emrml.cli_common import (
    INTERRUPTED_EXIT_CODE,
    JOB_FAILED_EXIT_CODE,
    State,
    call_and_report,
    fail,
    job_progress,
    limit_option,
    named_as_options,
    present,
    print_json,
    print_sections,
    reports_errors,
    state,
)
from emrml.errors import AmazonMLError, InvalidInputException

if TYPE_CHECKING:
    from rich.console import RenderableType

    from emrml.service.app import EmrML

#: Largest page the Describe* operations return.
PAGE_LIMIT = 100


class Status(StrEnum):
    PENDING = "PENDING"
    INPROGRESS = "INPROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DELETED = "DELETED"


class SortOrder(StrEnum):
    asc = "asc"
    dsc = "dsc"


def _sort_order(value: str) -> SortOrder:
    """``--sort``: ``asc|dsc``, Amazon ML's spelling, as the help shows it; ``desc``, the usual one, is
    taken as ``dsc`` rather than refused."""
    if value == "desc":
        return SortOrder.dsc
    if value not in SortOrder.__members__:
        raise typer.BadParameter(f"{value!r} is not one of 'asc', 'dsc' (or 'desc')")
    return SortOrder(value)


class ModelType(StrEnum):
    BINARY = "BINARY"
    MULTICLASS = "MULTICLASS"
    REGRESSION = "REGRESSION"


@dataclass(frozen=True)
class ListFilter:
    """A ``list`` option that becomes the Describe* filter ``FilterVariable``/``comparator``."""

    option: str
    variable: str
    comparator: str
    type: Any
    help: str
    metavar: str | None = None  # default: by its type or name (cli_common.name_option_values)

    @property
    def parameter(self) -> str:
        return self.option.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Kind:
    """How the CLI names, fetches, draws and lists one kind of object."""

    kind: str  # "MLModel"
    label: str  # the command group and the word in messages: "model"
    noun: str  # in help texts: "model"
    operations: tuple[str, ...]  # the Get* operations ``show`` calls, in order
    view: Callable[[dict[str, Any], int], list[RenderableType]]
    summary: Callable[[dict[str, Any]], str]
    columns: Sequence[render.Column]
    filters: tuple[ListFilter, ...]
    show_help: str
    delete_help: str
    #: False when the kind's ``update`` does more than rename (written in emrml.cli).
    rename: bool = True

    @property
    def id_member(self) -> str:
        return "DataSourceId" if self.kind == "DataSource" else f"{self.kind}Id"

    @property
    def name_member(self) -> str:
        return "DataSourceName" if self.kind == "DataSource" else f"{self.kind}Name"

    def describe(self, service: EmrML, entity_id: str) -> dict[str, Any]:
        """The raw outputs ``show`` renders, keyed by operation name (also the JSON output)."""
        verbose = {"GetDataSource", "GetMLModel"}
        return {
            name: service.call(
                name, {self.id_member: entity_id, **({"Verbose": True} if name in verbose else {})}
            )
            for name in self.operations
        }


def _status_filter(noun: str) -> ListFilter:
    return ListFilter("--status", "Status", "EQ", Status | None, f"Only {noun} with this status.")


def _name_filter() -> ListFilter:
    return ListFilter(
        "--name-prefix", "Name", "Prefix", str | None, "Only names starting with this.", "PREFIX"
    )


def _model_filter(noun: str) -> ListFilter:
    return ListFilter("--model", "MLModelId", "EQ", str | None, f"Only {noun} of this model.", "ID")


def _without_width(view: Callable[[dict[str, Any]], list[RenderableType]]) -> Callable[..., Any]:
    return lambda described, _width: view(described)


KINDS: dict[str, Kind] = {
    "DataSource": Kind(
        "DataSource",
        "datasource",
        "datasource",
        ("GetDataSource", "GetDataSourceStatistics"),
        _without_width(render.datasource_view),
        render.datasource_summary,
        render.DATASOURCE_COLUMNS,
        (_status_filter("datasources"), _name_filter()),
        "Show a datasource: status, schema, record counts, invalid records and statistics.",
        "Delete a datasource (its status becomes DELETED; the id stays reserved).",
    ),
    "MLModel": Kind(
        "MLModel",
        "model",
        "model",
        ("GetMLModel", "GetMLModelInsights"),
        _without_width(render.model_view),
        render.model_summary,
        render.MODEL_COLUMNS,
        (
            _status_filter("models"),
            ListFilter("--type", "MLModelType", "EQ", ModelType | None, "Only models of this type."),
            _name_filter(),
        ),
        "Show a model: parameters, size, training time and losses, the recipe used and its top features.",
        "Delete a model (its status becomes DELETED; the id stays reserved).",
        rename=False,
    ),
    "Evaluation": Kind(
        "Evaluation",
        "evaluation",
        "evaluation",
        ("GetEvaluation", "GetEvaluationInsights"),
        render.evaluation_view,
        render.evaluation_summary,
        render.EVALUATION_COLUMNS,
        (_model_filter("evaluations"), _status_filter("evaluations"), _name_filter()),
        "",  # evaluation show has a --score-threshold option: written in emrml.cli
        "Delete an evaluation (its status becomes DELETED; the id stays reserved).",
    ),
    "BatchPrediction": Kind(
        "BatchPrediction",
        "batch-prediction",
        "batch prediction",
        ("GetBatchPrediction",),
        _without_width(render.batch_prediction_view),
        render.batch_prediction_summary,
        render.BATCH_PREDICTION_COLUMNS,
        (_model_filter("batch predictions"), _status_filter("batch predictions"), _name_filter()),
        "Show a batch prediction: status, progress, total and invalid records, output manifest.",
        "Mark a batch prediction DELETED (its result files stay where they are).",
    ),
}


def register(groups: Mapping[str, typer.Typer]) -> None:
    """Add wait, show, list, update and delete to each kind's command group (``groups`` by kind)."""
    for name, group in groups.items():
        kind = KINDS[name]
        for command, function in _commands(kind).items():
            group.command(command)(reports_errors(function))


def _commands(kind: Kind) -> dict[str, Callable[..., None]]:
    id_help = f"{kind.noun.capitalize()} id."

    def wait(ctx: typer.Context, entity_id: str = typer.Argument(..., metavar="ID", help=id_help)) -> None:
        wait_and_show(state(ctx), kind.kind, entity_id)

    def show(ctx: typer.Context, entity_id: str = typer.Argument(..., metavar="ID", help=id_help)) -> None:
        print_view(state(ctx), kind.kind, kind.describe(state(ctx).service(), entity_id))

    def update(
        ctx: typer.Context,
        entity_id: str = typer.Argument(..., metavar="ID", help=id_help),
        name: str = typer.Option(..., "--name", help="The new name."),
    ) -> None:
        request = {kind.id_member: entity_id, kind.name_member: name}
        with named_as_options({kind.name_member: "--name"}):
            call_and_report(
                state(ctx), f"Update{kind.kind}", request, f"Renamed {kind.noun} {entity_id} to {name!r}."
            )

    def delete(ctx: typer.Context, entity_id: str = typer.Argument(..., metavar="ID", help=id_help)) -> None:
        current = state(ctx)
        request = {kind.id_member: entity_id}
        # The API accepts a Delete of a DELETED object (a retry is safe) and answers as for any: the status
        # before says which happened. A caller not allowed the Get is told only that it is deleted.
        try:
            before = current.service().call(f"Get{kind.kind}", dict(request)).get("Status")
        except AmazonMLError:
            before = None
        message = f"Deleted {kind.noun} {entity_id}."
        if before == "DELETED":
            message = f"{kind.noun.capitalize()} {entity_id} was already deleted; it stays DELETED."
        call_and_report(current, f"Delete{kind.kind}", request, message)

    def list_(ctx: typer.Context, **options: Any) -> None:
        filters = {f.option: (f.variable, f.comparator, options[f.parameter]) for f in kind.filters}
        request = list_request(options["sort"], filters)
        current = state(ctx)
        results = all_pages(current.service(), f"Describe{kind.kind}s", request, options["limit"])
        if current.json:
            print_json({"Results": results})
        elif not results:
            current.console.print(f"No {kind.noun}s.")
        else:
            current.console.print(render.list_table(kind.columns, results, current.console.width))

    keyword = inspect.Parameter.KEYWORD_ONLY
    list_.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
            *(
                inspect.Parameter(
                    f.parameter,
                    keyword,
                    annotation=f.type,
                    # --type binary, --status completed: the values are the API's, any case accepted.
                    default=typer.Option(
                        None, f.option, help=f.help, case_sensitive=False, metavar=f.metavar
                    ),
                )
                for f in kind.filters
            ),
            inspect.Parameter(
                "sort",
                keyword,
                annotation=SortOrder,
                default=typer.Option(
                    SortOrder.asc,
                    "--sort",
                    parser=_sort_order,
                    metavar="<asc|dsc>",
                    help="Order by the filtered field (creation time without a filter).",
                ),
            ),
            inspect.Parameter(
                "limit",
                keyword,
                annotation=int | None,
                default=limit_option(None, "Show at most N"),
            ),
        ]
    )
    # No "e.g." in a first sentence: the command list shows a help up to its first ". ".
    a_noun = f"{'an' if kind.noun[0] in 'aeiou' else 'a'} {kind.noun}"
    wait.__doc__ = f"Run or await {a_noun}'s job (one created with --no-wait), then show it."
    show.__doc__ = kind.show_help
    update.__doc__ = f"Rename {a_noun}."
    delete.__doc__ = kind.delete_help
    list_.__doc__ = f"List {kind.noun}s (all pages), oldest first."
    commands: dict[str, Callable[..., None]] = {"wait": wait, "list": list_, "delete": delete}
    if kind.show_help:
        commands["show"] = show
    if kind.rename:
        commands["update"] = update
    return commands


# ------------------------------------------------------------------------------------------ shared steps


def list_request(sort: SortOrder, filters: Mapping[str, tuple[str, str, str | None]]) -> dict[str, Any]:
    """A Describe* request from the list options: ``filters`` maps an option to (FilterVariable,
    comparator, value or None). The API filters on one variable, so at most one option may be given."""
    given = [(option, spec) for option, spec in filters.items() if spec[2] is not None]
    if len(given) > 1:
        options = " and ".join(option for option, _ in given)
        raise InvalidInputException(f"{options} cannot be combined: filter on one field")
    request: dict[str, Any] = {"SortOrder": sort.value}
    for _, (variable, comparator, value) in given:
        request |= {"FilterVariable": variable, comparator: str(value)}
    return request


def all_pages(service: EmrML, operation: str, request: dict[str, Any], limit: int | None) -> list[Any]:
    """Follow NextToken until the last page (pages may be short or empty) or ``limit`` results."""
    results: list[Any] = []
    token: str | None = None
    while limit is None or len(results) < limit:
        page_limit = PAGE_LIMIT if limit is None else min(PAGE_LIMIT, limit - len(results))
        page = service.call(operation, present({**request, "Limit": page_limit, "NextToken": token}))
        results.extend(page.get("Results", []))
        token = page.get("NextToken")
        if not token:
            break
    return results if limit is None else results[:limit]


def report_created(
    current: State, kind: str, entity_id: str, response: dict[str, Any], no_wait: bool
) -> None:
    """After a Create*: report the accepted request (``--no-wait``) or wait for the job and show it."""
    if not no_wait:
        wait_and_show(current, kind, entity_id)
    elif current.json:
        print_json(response)
    else:
        label = KINDS[kind].label
        current.console.print(f"Accepted {label} {entity_id}; `emrml {label} wait {entity_id}` runs it.")


def wait(current: State, kind: str, entity_id: str) -> None:
    """Run or await the object's job (and the jobs it depends on) with a progress bar on stderr."""
    label = f"{KINDS[kind].label} {entity_id}"
    progress = job_progress(current)
    with progress:
        task = progress.add_task(label, total=1.0)

        def report(fraction: float, message: str | None) -> None:
            progress.update(task, completed=fraction, description=f"{label}: {message}" if message else label)

        try:
            current.service().wait(kind, entity_id, progress=report)
        except KeyboardInterrupt:
            # The job's worker ends with this process; its object stays where it was, and is run again by
            # the next wait (the runner requeues a job whose processes are gone).
            progress.stop()
            command = f"emrml {KINDS[kind].label} wait {entity_id}"
            message = f"interrupted: {label} is not finished; `{command}` runs it again"
            raise fail(message, INTERRUPTED_EXIT_CODE) from None


def wait_and_show(current: State, kind: str, entity_id: str) -> None:
    """Wait for the object's job, show the object, and fail unless it COMPLETED."""
    wait(current, kind, entity_id)
    described = KINDS[kind].describe(current.service(), entity_id)
    print_view(current, kind, described)
    require_completed(kind, entity_id, described)


def require_completed(kind: str, entity_id: str, described: dict[str, Any]) -> None:
    entity = described[f"Get{kind}"]
    if entity.get("Status") != "COMPLETED":
        detail = f": {entity['Message']}" if entity.get("Message") else ""
        message = f"{KINDS[kind].label} {entity_id} is {entity.get('Status')}{detail}"
        raise fail(message, JOB_FAILED_EXIT_CODE)


def print_view(
    current: State, kind: str, described: dict[str, Any], sections: list[RenderableType] | None = None
) -> None:
    """The object's JSON, or its ``sections`` (default: its kind's view) and, while its job has not ended,
    how to run it: without a server, a job accepted with --no-wait waits for its ``wait`` command."""
    if current.json:
        print_json(described)
        return
    print_sections(current, sections or KINDS[kind].view(described, current.console.width))
    entity = described[f"Get{kind}"]
    if entity.get("Status") in ("PENDING", "INPROGRESS"):
        label = KINDS[kind].label
        entity_id = entity.get(KINDS[kind].id_member)
        current.console.print(f"\n`emrml {label} wait {entity_id}` runs or awaits its job.", style="dim")
