"""The ``emrml`` command line: a thin layer over ``EmrML.call`` that renders results with rich.

Every command builds an Amazon ML request, calls the service and prints either rich tables and charts
(``--output table``, the default; drawn by ``emrml.cli_render``) or the operations' raw JSON output
(``--output json``, for scripts). Errors are one line on stderr, ``error: <ErrorType>: <message>``, and the
exit code tells scripts what happened (see ``EXIT_CODES_HELP``).
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from emrml import cli_render as render
from emrml import cli_server
from emrml.config import Settings
from emrml.core.schema import parse_schema
from emrml.errors import AmazonMLError, InvalidInputException
from emrml.library import absolute_location
from emrml.samples import bank_sample_schema, write_bank_sample

if TYPE_CHECKING:
    from emrml.service.app import EmrML

#: Exit code when the request was accepted but its job ended FAILED (or the object is DELETED): the
#: same as for invalid input, since a failed job means its data, schema or recipe cannot be used.
JOB_FAILED_EXIT_CODE = InvalidInputException.exit_code
EXIT_CODES_HELP = (
    "Exit codes: 0 success, 1 internal error, 2 invalid input (including an object whose job ended FAILED), "
    "3 object not found, 4 idempotency mismatch, 5 limit exceeded."
)
QUICKSTART_ID = "ds-quickstart-bank"
QUICKSTART_TRAIN_ID = "ds-quickstart-train"
QUICKSTART_EVAL_ID = "ds-quickstart-eval"
QUICKSTART_MODEL_ID = "ml-quickstart-bank"
QUICKSTART_EVALUATION_ID = "ev-quickstart-bank"
QUICKSTART_BATCH_ID = "bp-quickstart-bank"
QUICKSTART_ROWS = 5_000
#: The quickstart's random split: this seed, the first QUICKSTART_TRAIN_PERCENT % to train on.
QUICKSTART_SEED = "emrml-quickstart"
QUICKSTART_TRAIN_PERCENT = 70
#: Largest page the Describe* operations return.
PAGE_LIMIT = 100


class Output(StrEnum):
    table = "table"
    json = "json"


class Status(StrEnum):
    PENDING = "PENDING"
    INPROGRESS = "INPROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DELETED = "DELETED"


class SortOrder(StrEnum):
    asc = "asc"
    dsc = "dsc"


class ResourceType(StrEnum):
    DataSource = "DataSource"
    MLModel = "MLModel"
    Evaluation = "Evaluation"
    BatchPrediction = "BatchPrediction"


class ModelType(StrEnum):
    BINARY = "BINARY"
    MULTICLASS = "MULTICLASS"
    REGRESSION = "REGRESSION"


@dataclass
class _State:
    """Per-invocation options and the service, opened on first use and closed when the command ends."""

    output: Output
    home: Path | None
    # No markup: names and messages are user text and may contain square brackets.
    console: Console = field(default_factory=lambda: Console(markup=False))
    _service: EmrML | None = None

    @property
    def json(self) -> bool:
        return self.output is Output.json

    def service(self) -> EmrML:
        if self._service is None:
            # Imported here so that --help and argument errors do not pay for the service's imports.
            from emrml.service.app import EmrML

            self._service = EmrML(Settings.load(home=self.home))
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()


app = typer.Typer(
    name="emrml",
    help="emrml: a self-hosted Amazon Machine Learning.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasource_app = typer.Typer(help="Create, list, show, rename and delete datasources.", no_args_is_help=True)
model_app = typer.Typer(help="Train, list, show, update and delete ML models.", no_args_is_help=True)
evaluation_app = typer.Typer(
    help="Evaluate models on held-out data; list, show, rename and delete evaluations.", no_args_is_help=True
)
tags_app = typer.Typer(help="Add, list and delete tags of an object.", no_args_is_help=True)
batch_app = typer.Typer(help="Score a datasource into CSV result files.", no_args_is_help=True)
endpoint_app = typer.Typer(help="Mount a model for real-time predictions.", no_args_is_help=True)
app.add_typer(datasource_app, name="datasource")
app.add_typer(model_app, name="model")
app.add_typer(evaluation_app, name="evaluation")
app.add_typer(tags_app, name="tags")
app.add_typer(batch_app, name="batch-prediction")
app.add_typer(endpoint_app, name="endpoint")
cli_server.register(app)

P = ParamSpec("P")
R = TypeVar("R")


def _fail(message: str, exit_code: int) -> typer.Exit:
    """Print ``error: <message>`` as one stderr line; return the Exit for the caller to raise."""
    # Plain echo, not rich: rich would wrap a long message over several lines.
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)
    return typer.Exit(exit_code)


def _reports_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Turn service errors into one stderr line and their exit code; never show a traceback."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except AmazonMLError as exc:
            raise _fail(f"{exc.type_name}: {exc.message}", exc.exit_code) from None
        except Exception as exc:
            raise _fail(f"internal error: {type(exc).__name__}: {exc}", 1) from None

    return run


def _state(ctx: typer.Context) -> _State:
    return ctx.obj


@app.callback()
def main(
    ctx: typer.Context,
    output: Output = typer.Option(
        Output.table, "--output", "-o", help="table for people, json (the raw operation output) for scripts."
    ),
    home: Path | None = typer.Option(
        None,
        "--home",
        envvar="EMRML_HOME",
        help="emrml home folder (metastore, samples); default ~/.emrml.",
        file_okay=False,
    ),
) -> None:
    state = _State(output=output, home=home)
    ctx.obj = state
    ctx.call_on_close(state.close)


# ---------------------------------------------------------------------------------------------- datasource


@datasource_app.command("create")
@_reports_errors
def datasource_create(
    ctx: typer.Context,
    datasource_id: str = typer.Option(..., "--id", help="Datasource id (letters, digits, - _ .)."),
    data: str = typer.Option(..., "--data", help="CSV file or folder (a local path or an s3:// URI)."),
    schema: Path | None = typer.Option(None, "--schema", help="Data schema JSON file.", dir_okay=False),
    infer_schema: bool = typer.Option(False, "--infer-schema", help="Infer the schema from the data."),
    target: str | None = typer.Option(None, "--target", help="Target attribute (with --infer-schema)."),
    row_id: str | None = typer.Option(None, "--row-id", help="Row id attribute (with --infer-schema)."),
    name: str | None = typer.Option(None, "--name", help="Datasource name."),
    rearrangement: str | None = typer.Option(
        None, "--rearrangement", help="DataRearrangement JSON, e.g. '{\"splitting\":{...}}'."
    ),
    no_statistics: bool = typer.Option(False, "--no-statistics", help="Do not compute statistics."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Create a datasource from a CSV file, wait for it (with a progress bar) and show it."""
    state = _state(ctx)
    location = absolute_location(data, what="--data")
    if (schema is None) == (not infer_schema):
        raise InvalidInputException("give exactly one of --schema FILE and --infer-schema")
    if not infer_schema and (target or row_id):
        raise InvalidInputException("--target and --row-id go with --infer-schema; a schema file names them")
    service = state.service()
    if schema is not None:
        schema_text = _read_schema_file(schema, service.settings)
    else:
        request = {"DataLocationS3": location, "TargetAttributeName": target, "RowId": row_id}
        schema_text = service.call("InferDataSchema", _present(request))["DataSchema"]
    spec = {"DataLocationS3": location, "DataSchema": schema_text, "DataRearrangement": rearrangement}
    request = {
        "DataSourceId": datasource_id,
        "DataSourceName": name,
        "DataSpec": _present(spec),
        "ComputeStatistics": not no_statistics,
    }
    created = service.call("CreateDataSourceFromS3", _present(request))
    _created(state, "DataSource", datasource_id, created, no_wait)


@datasource_app.command("wait")
@_reports_errors
def datasource_wait(
    ctx: typer.Context, datasource_id: str = typer.Argument(..., help="Datasource id.")
) -> None:
    """Run or await a datasource's job (e.g. after create --no-wait), then show it."""
    _wait_and_show(_state(ctx), "DataSource", datasource_id)


@datasource_app.command("list")
@_reports_errors
def datasource_list(
    ctx: typer.Context,
    status: Status | None = typer.Option(None, "--status", help="Only datasources with this status."),
    name_prefix: str | None = typer.Option(None, "--name-prefix", help="Only names starting with this."),
    sort: SortOrder = typer.Option(
        SortOrder.asc, "--sort", help="Order by the filtered field (creation time without a filter)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Show at most this many."),
) -> None:
    """List datasources (all pages), oldest first."""
    request = _list_request(
        sort, {"--status": ("Status", "EQ", status), "--name-prefix": ("Name", "Prefix", name_prefix)}
    )
    _list(_state(ctx), "DescribeDataSources", request, limit, render.datasource_table, "No datasources.")


@datasource_app.command("show")
@_reports_errors
def datasource_show(
    ctx: typer.Context, datasource_id: str = typer.Argument(..., help="Datasource id.")
) -> None:
    """Show a datasource: status, schema, record counts, invalid records and statistics."""
    _show(_state(ctx), "DataSource", datasource_id)


@datasource_app.command("update")
@_reports_errors
def datasource_update(
    ctx: typer.Context,
    datasource_id: str = typer.Argument(..., help="Datasource id."),
    name: str = typer.Option(..., "--name", help="The new name."),
) -> None:
    """Rename a datasource."""
    request = {"DataSourceId": datasource_id, "DataSourceName": name}
    _call_and_report(
        _state(ctx), "UpdateDataSource", request, f"Renamed datasource {datasource_id} to {name!r}."
    )


@datasource_app.command("delete")
@_reports_errors
def datasource_delete(
    ctx: typer.Context, datasource_id: str = typer.Argument(..., help="Datasource id.")
) -> None:
    """Delete a datasource (its status becomes DELETED; the id stays reserved)."""
    request = {"DataSourceId": datasource_id}
    _call_and_report(_state(ctx), "DeleteDataSource", request, f"Deleted datasource {datasource_id}.")


# ---------------------------------------------------------------------------------------------- model


@model_app.command("create")
@_reports_errors
def model_create(
    ctx: typer.Context,
    model_id: str = typer.Option(..., "--id", help="Model id (letters, digits, - _ .)."),
    model_type: ModelType = typer.Option(..., "--type", help="What the target is: 0/1, a class, a number."),
    datasource_id: str = typer.Option(
        ..., "--datasource", help="Training datasource id (created with statistics)."
    ),
    recipe: str | None = typer.Option(
        None, "--recipe", help="Recipe JSON file, or the recipe JSON itself; default: the suggested recipe."
    ),
    params: list[str] | None = typer.Option(
        None, "--param", help="Training parameter KEY=VALUE, repeatable, e.g. --param sgd.maxPasses=20."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Train a model on a datasource, wait for it (with a progress bar) and show it."""
    state = _state(ctx)
    parameters = _parse_parameters(params or [])
    recipe_file = recipe if recipe is not None and not recipe.lstrip().startswith("{") else None
    recipe_text = _read_recipe_file(recipe_file) if recipe_file is not None else recipe
    request = {
        "MLModelId": model_id,
        "MLModelType": model_type.value,
        "TrainingDataSourceId": datasource_id,
        "MLModelName": name,
        "Parameters": parameters or None,
        "Recipe": recipe_text,
    }
    try:
        created = state.service().call("CreateMLModel", _present(request))
    except InvalidInputException as exc:
        # The service speaks of "Recipe"; the user knows the file.
        if recipe_file is not None and exc.message.startswith("Recipe"):
            raise InvalidInputException(f"--recipe {recipe_file}: {exc.message}") from None
        raise
    _created(state, "MLModel", model_id, created, no_wait)


@model_app.command("wait")
@_reports_errors
def model_wait(ctx: typer.Context, model_id: str = typer.Argument(..., help="Model id.")) -> None:
    """Run or await a model's training (e.g. after create --no-wait), then show it."""
    _wait_and_show(_state(ctx), "MLModel", model_id)


@model_app.command("show")
@_reports_errors
def model_show(ctx: typer.Context, model_id: str = typer.Argument(..., help="Model id.")) -> None:
    """Show a model: parameters, size, training time and losses, the recipe used and its top features."""
    _show(_state(ctx), "MLModel", model_id)


@model_app.command("list")
@_reports_errors
def model_list(
    ctx: typer.Context,
    status: Status | None = typer.Option(None, "--status", help="Only models with this status."),
    model_type: ModelType | None = typer.Option(None, "--type", help="Only models of this type."),
    sort: SortOrder = typer.Option(
        SortOrder.asc, "--sort", help="Order by the filtered field (creation time without a filter)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Show at most this many."),
) -> None:
    """List models (all pages), oldest first."""
    request = _list_request(
        sort, {"--status": ("Status", "EQ", status), "--type": ("MLModelType", "EQ", model_type)}
    )
    _list(_state(ctx), "DescribeMLModels", request, limit, render.model_table, "No models.")


@model_app.command("update")
@_reports_errors
def model_update(
    ctx: typer.Context,
    model_id: str = typer.Argument(..., help="Model id."),
    name: str | None = typer.Option(None, "--name", help="The new name."),
    score_threshold: float | None = typer.Option(
        None, "--score-threshold", help="BINARY models: scores at or above it are predicted 1 (0 to 1)."
    ),
) -> None:
    """Rename a model and/or change its score threshold."""
    if name is None and score_threshold is None:
        raise InvalidInputException("nothing to update: give --name, --score-threshold or both")
    changes = []
    if name is not None:
        changes.append(f"name {name!r}")
    if score_threshold is not None:
        changes.append(f"score threshold {score_threshold}")
    request = {"MLModelId": model_id, "MLModelName": name, "ScoreThreshold": score_threshold}
    message = f"Updated model {model_id}: {', '.join(changes)}."
    _call_and_report(_state(ctx), "UpdateMLModel", _present(request), message)


@model_app.command("delete")
@_reports_errors
def model_delete(ctx: typer.Context, model_id: str = typer.Argument(..., help="Model id.")) -> None:
    """Delete a model (its status becomes DELETED; the id stays reserved)."""
    _call_and_report(_state(ctx), "DeleteMLModel", {"MLModelId": model_id}, f"Deleted model {model_id}.")


# ---------------------------------------------------------------------------------------------- evaluation


@evaluation_app.command("create")
@_reports_errors
def evaluation_create(
    ctx: typer.Context,
    evaluation_id: str = typer.Option(..., "--id", help="Evaluation id (letters, digits, - _ .)."),
    model_id: str = typer.Option(..., "--model", help="The model to evaluate."),
    datasource_id: str = typer.Option(
        ..., "--datasource", help="Evaluation datasource id: data the model was not trained on."
    ),
    name: str | None = typer.Option(None, "--name", help="Evaluation name."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Evaluate a model on a datasource, wait for it (with a progress bar) and show the results."""
    state = _state(ctx)
    request = {
        "EvaluationId": evaluation_id,
        "MLModelId": model_id,
        "EvaluationDataSourceId": datasource_id,
        "EvaluationName": name,
    }
    created = state.service().call("CreateEvaluation", _present(request))
    _created(state, "Evaluation", evaluation_id, created, no_wait)


@evaluation_app.command("wait")
@_reports_errors
def evaluation_wait(
    ctx: typer.Context, evaluation_id: str = typer.Argument(..., help="Evaluation id.")
) -> None:
    """Run or await an evaluation's job (e.g. after create --no-wait), then show it."""
    _wait_and_show(_state(ctx), "Evaluation", evaluation_id)


@evaluation_app.command("show")
@_reports_errors
def evaluation_show(
    ctx: typer.Context,
    evaluation_id: str = typer.Argument(..., help="Evaluation id."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="BINARY: the cut-off to draw and tabulate (default: the model's score threshold).",
    ),
) -> None:
    """Show an evaluation: the metric against its baseline, the charts of its model type, and alerts.

    BINARY: the score histograms of actual 1s and 0s with the cut-off, and the trade-off table.
    MULTICLASS: the confusion matrix with per-class F1. REGRESSION: the residual histogram.
    """
    state = _state(ctx)
    described = _describe_evaluation(state.service(), evaluation_id)
    model_type = described["GetEvaluationInsights"].get("MLModelType")
    if threshold is not None and model_type != "BINARY":
        raise InvalidInputException(
            f"--threshold applies to BINARY models; {evaluation_id} evaluates a {model_type} model"
        )
    if state.json:
        _print_json(described)
    else:
        _print_sections(state, render.evaluation_view(described, state.console.width, threshold))


@evaluation_app.command("list")
@_reports_errors
def evaluation_list(
    ctx: typer.Context,
    model_id: str | None = typer.Option(None, "--model", help="Only evaluations of this model."),
    status: Status | None = typer.Option(None, "--status", help="Only evaluations with this status."),
    sort: SortOrder = typer.Option(
        SortOrder.asc, "--sort", help="Order by the filtered field (creation time without a filter)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Show at most this many."),
) -> None:
    """List evaluations (all pages) with their metric, oldest first."""
    request = _list_request(
        sort, {"--model": ("MLModelId", "EQ", model_id), "--status": ("Status", "EQ", status)}
    )
    _list(_state(ctx), "DescribeEvaluations", request, limit, render.evaluation_table, "No evaluations.")


@evaluation_app.command("update")
@_reports_errors
def evaluation_update(
    ctx: typer.Context,
    evaluation_id: str = typer.Argument(..., help="Evaluation id."),
    name: str = typer.Option(..., "--name", help="The new name."),
) -> None:
    """Rename an evaluation."""
    request = {"EvaluationId": evaluation_id, "EvaluationName": name}
    message = f"Renamed evaluation {evaluation_id} to {name!r}."
    _call_and_report(_state(ctx), "UpdateEvaluation", request, message)


@evaluation_app.command("delete")
@_reports_errors
def evaluation_delete(
    ctx: typer.Context, evaluation_id: str = typer.Argument(..., help="Evaluation id.")
) -> None:
    """Delete an evaluation (its status becomes DELETED; the id stays reserved)."""
    request = {"EvaluationId": evaluation_id}
    _call_and_report(_state(ctx), "DeleteEvaluation", request, f"Deleted evaluation {evaluation_id}.")


# ---------------------------------------------------------------------------------------------- quickstart


# ------------------------------------------------------------------------------------------ batch prediction


@batch_app.command("create")
@_reports_errors
def batch_prediction_create(
    ctx: typer.Context,
    prediction_id: str = typer.Option(..., "--id", help="Batch prediction id (letters, digits, - _ .)."),
    model_id: str = typer.Option(..., "--model", help="The model that scores."),
    datasource_id: str = typer.Option(..., "--datasource", help="The datasource to score."),
    output: str = typer.Option(
        ..., "--output", help="Folder (local path, file:// or s3:// URI) for the results and the manifest."
    ),
    name: str | None = typer.Option(None, "--name", help="Batch prediction name."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Score every record of a datasource; results appear under OUTPUT/batch-prediction/ when complete."""
    state = _state(ctx)
    location = output if "://" in output else str(Path(output).expanduser().resolve())
    request = {
        "BatchPredictionId": prediction_id,
        "MLModelId": model_id,
        "BatchPredictionDataSourceId": datasource_id,
        "OutputUri": location,
        "BatchPredictionName": name,
    }
    created = state.service().call("CreateBatchPrediction", _present(request))
    _created(state, "BatchPrediction", prediction_id, created, no_wait)


@batch_app.command("wait")
@_reports_errors
def batch_prediction_wait(
    ctx: typer.Context, prediction_id: str = typer.Argument(..., help="Batch prediction id.")
) -> None:
    """Run or await a batch prediction's job (e.g. after create --no-wait), then show it."""
    _wait_and_show(_state(ctx), "BatchPrediction", prediction_id)


@batch_app.command("show")
@_reports_errors
def batch_prediction_show(
    ctx: typer.Context, prediction_id: str = typer.Argument(..., help="Batch prediction id.")
) -> None:
    """Show a batch prediction: status, progress, total and invalid records, output manifest."""
    _show(_state(ctx), "BatchPrediction", prediction_id)


@batch_app.command("list")
@_reports_errors
def batch_prediction_list(
    ctx: typer.Context,
    model_id: str | None = typer.Option(None, "--model", help="Only batch predictions of this model."),
    status: Status | None = typer.Option(None, "--status", help="Only batch predictions with this status."),
    sort: SortOrder = typer.Option(SortOrder.asc, "--sort", help="Creation time order."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Show at most this many."),
) -> None:
    """List batch predictions (DELETED ones only with --status DELETED)."""
    request = _list_request(
        sort,
        {
            "--model": ("MLModelId", "EQ", model_id),
            "--status": ("Status", "EQ", status.value if status else None),
        },
    )
    _list(
        _state(ctx),
        "DescribeBatchPredictions",
        request,
        limit,
        render.batch_prediction_table,
        "No batch predictions.",
    )


@batch_app.command("update")
@_reports_errors
def batch_prediction_update(
    ctx: typer.Context,
    prediction_id: str = typer.Argument(..., help="Batch prediction id."),
    name: str = typer.Option(..., "--name", help="The new name."),
) -> None:
    """Rename a batch prediction."""
    request = {"BatchPredictionId": prediction_id, "BatchPredictionName": name}
    _call_and_report(_state(ctx), "UpdateBatchPrediction", request, f"Renamed {prediction_id}.")


@batch_app.command("delete")
@_reports_errors
def batch_prediction_delete(
    ctx: typer.Context, prediction_id: str = typer.Argument(..., help="Batch prediction id.")
) -> None:
    """Mark a batch prediction DELETED (its result files stay where they are)."""
    request = {"BatchPredictionId": prediction_id}
    _call_and_report(_state(ctx), "DeleteBatchPrediction", request, f"Deleted {prediction_id}.")


# ----------------------------------------------------------------------------------- real-time predictions


@endpoint_app.command("create")
@_reports_errors
def endpoint_create(ctx: typer.Context, model_id: str = typer.Argument(..., help="Model id.")) -> None:
    """Mount a COMPLETED model for real-time predictions."""
    _endpoint_call(_state(ctx), "CreateRealtimeEndpoint", model_id)


@endpoint_app.command("delete")
@_reports_errors
def endpoint_delete(ctx: typer.Context, model_id: str = typer.Argument(..., help="Model id.")) -> None:
    """Unmount a model's real-time endpoint."""
    _endpoint_call(_state(ctx), "DeleteRealtimeEndpoint", model_id)


def _endpoint_call(state: _State, operation: str, model_id: str) -> None:
    result = state.service().call(operation, {"MLModelId": model_id})
    if state.json:
        _print_json(result)
    else:
        state.console.print(render.endpoint_view(model_id, result["RealtimeEndpointInfo"]))


@app.command("predict")
@_reports_errors
def predict(
    ctx: typer.Context,
    model_id: str = typer.Argument(..., help="Model id (its real-time endpoint must be READY)."),
    record: str = typer.Option(..., "--record", help='The record as a JSON object, e.g. \'{"age": "41"}\'.'),
) -> None:
    """Predict one record through the model's real-time endpoint."""
    state = _state(ctx)
    try:
        values = json.loads(record)
    except json.JSONDecodeError as exc:
        raise InvalidInputException(f"--record is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise InvalidInputException("--record must be a JSON object of attribute names to values")
    service = state.service()
    model = service.call("GetMLModel", {"MLModelId": model_id})
    endpoint = (model.get("EndpointInfo") or {}).get("EndpointUrl", "")
    request = {"MLModelId": model_id, "Record": values, "PredictEndpoint": endpoint}
    result = service.call("Predict", request)
    if state.json:
        _print_json(result)
    else:
        state.console.print(render.prediction_view(result["Prediction"]))


@app.command("quickstart")
@_reports_errors
def quickstart(
    ctx: typer.Context,
    serve: bool = typer.Option(
        False,
        "--serve",
        help="Then serve the Amazon ML API with the sample model mounted (as `emrml serve`).",
    ),
) -> None:
    """Build a bank-marketing sample, train a BINARY model on a random 70 % and evaluate it on the rest.

    Writes a 5,000-row sample and creates the datasources ds-quickstart-bank (all rows, shown with its
    statistics), ds-quickstart-train and ds-quickstart-eval (a random 70/30 split), the model
    ml-quickstart-bank (suggested recipe) and the evaluation ev-quickstart-bank, which it shows; then scores
    the held-out rows with the batch prediction bp-quickstart-bank (results under
    <home>/quickstart-output/), mounts the model's real-time endpoint and predicts one record. Safe to
    run again: the sample is rewritten with identical bytes and every object is reused.
    """
    state = _state(ctx)
    service = state.service()
    sample = write_bank_sample(service.settings.home / "samples" / "bank-sample.csv", QUICKSTART_ROWS)
    if not state.json:
        state.console.print(f"Sample data: {sample} ({QUICKSTART_ROWS:,} rows)")
    schema = bank_sample_schema().to_json()
    outputs: dict[str, Any] = {}
    try:
        for datasource_id, name, rearrangement in (
            (QUICKSTART_ID, "Bank marketing sample", None),
            (
                QUICKSTART_TRAIN_ID,
                "Bank marketing sample, training 70 %",
                _quickstart_split(complement=False),
            ),
            (
                QUICKSTART_EVAL_ID,
                "Bank marketing sample, evaluation 30 %",
                _quickstart_split(complement=True),
            ),
        ):
            spec = {"DataLocationS3": str(sample), "DataSchema": schema, "DataRearrangement": rearrangement}
            request = {
                "DataSourceId": datasource_id,
                "DataSourceName": name,
                "DataSpec": _present(spec),
                "ComputeStatistics": True,
            }
            service.call("CreateDataSourceFromS3", request)
            _quickstart_step(state, "DataSource", datasource_id, outputs, full=datasource_id == QUICKSTART_ID)
        model_request = {
            "MLModelId": QUICKSTART_MODEL_ID,
            "MLModelType": "BINARY",
            "TrainingDataSourceId": QUICKSTART_TRAIN_ID,
            "MLModelName": "Bank marketing sample",
        }
        service.call("CreateMLModel", model_request)
        _quickstart_step(state, "MLModel", QUICKSTART_MODEL_ID, outputs, full=False)
        evaluation_request = {
            "EvaluationId": QUICKSTART_EVALUATION_ID,
            "MLModelId": QUICKSTART_MODEL_ID,
            "EvaluationDataSourceId": QUICKSTART_EVAL_ID,
            "EvaluationName": "Bank marketing sample, held-out 30 %",
        }
        service.call("CreateEvaluation", evaluation_request)
        _quickstart_step(state, "Evaluation", QUICKSTART_EVALUATION_ID, outputs, full=True)
        batch_request = {
            "BatchPredictionId": QUICKSTART_BATCH_ID,
            "MLModelId": QUICKSTART_MODEL_ID,
            "BatchPredictionDataSourceId": QUICKSTART_EVAL_ID,
            "OutputUri": str(service.settings.home / "quickstart-output") + "/",
            "BatchPredictionName": "Bank marketing sample, held-out 30 %",
        }
        service.call("CreateBatchPrediction", batch_request)
        _quickstart_step(state, "BatchPrediction", QUICKSTART_BATCH_ID, outputs, full=True)
        outputs["CreateRealtimeEndpoint"] = service.call(
            "CreateRealtimeEndpoint", {"MLModelId": QUICKSTART_MODEL_ID}
        )
        record = _first_record(sample)
        endpoint = outputs["CreateRealtimeEndpoint"]["RealtimeEndpointInfo"]["EndpointUrl"]
        predict_request = {"MLModelId": QUICKSTART_MODEL_ID, "Record": record, "PredictEndpoint": endpoint}
        outputs["Predict"] = service.call("Predict", predict_request)
        if not state.json:
            state.console.print(f"Real-time prediction for the first sample record {json.dumps(record)}:")
            state.console.print(render.prediction_view(outputs["Predict"]["Prediction"]))
    finally:
        if state.json:
            _print_json(outputs)
    if serve:
        _print_quickstart_snippets(state.service().settings, outputs["Predict"])
        state.close()
        cli_server.serve(
            ctx,
            host="127.0.0.1",
            port=8080,
            no_auth=False,
            workers_jobs=None,
            public_url=None,
            max_request_bytes=cli_server.DEFAULT_MAX_REQUEST_BYTES,
        )
        return
    if not state.json:
        state.console.print(
            f"Next: `emrml model show {QUICKSTART_MODEL_ID}`, "
            f"`emrml evaluation show {QUICKSTART_EVALUATION_ID} --threshold 0.3`, "
            f'`emrml predict {QUICKSTART_MODEL_ID} --record \'{{"age": "41"}}\'`.'
        )


def _print_quickstart_snippets(settings: Settings, predicted: dict[str, Any]) -> None:
    """Ready-to-paste boto3 and aws CLI calls against the server about to start."""
    credentials = settings.home / "admin-credentials.json"
    url = settings.public_url
    lines = [
        "",
        "The API is starting with ml-quickstart-bank mounted. From another terminal (credentials: the file",
        f"{credentials}, written by the first start):",
        "",
        "    import json, boto3",
        f'    ml = boto3.client("machinelearning", endpoint_url="{url}", region_name="us-east-1",',
        f'                      **json.load(open("{credentials}")))',
        '    print(ml.describe_ml_models()["Results"][0]["MLModelId"])',
        f'    print(ml.predict(MLModelId="{QUICKSTART_MODEL_ID}", Record={{"age": "41", "job": "admin."}},',
        f'                     PredictEndpoint="{url}")["Prediction"])',
        "",
        "    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... aws machinelearning describe-ml-models \\",
        f"        --region us-east-1 --endpoint-url {url}",
        "",
        f"(the quickstart's own prediction: {json.dumps(predicted['Prediction'])})",
        "",
    ]
    typer.echo("\n".join(lines), err=True)


def _first_record(sample: Path) -> dict[str, str]:
    """The first data record of the sample CSV as a Predict ``Record`` (target left out)."""
    with sample.open(newline="") as handle:
        reader = csv.DictReader(handle)
        row = next(reader)
    target = bank_sample_schema().target
    return {name: value for name, value in row.items() if name != target}


def _quickstart_split(*, complement: bool) -> str:
    splitting: dict[str, Any] = {
        "percentBegin": 0,
        "percentEnd": QUICKSTART_TRAIN_PERCENT,
        "strategy": "random",
        "strategyParams": {"randomSeed": QUICKSTART_SEED},
    }
    if complement:
        splitting["complement"] = True
    return json.dumps({"splitting": splitting})


def _quickstart_step(
    state: _State, kind: str, entity_id: str, outputs: dict[str, Any], *, full: bool
) -> None:
    """Wait for one object; print its full view or a one-line summary; stop unless it COMPLETED."""
    _wait(state, kind, entity_id)
    described = _KINDS[kind].describe(state.service(), entity_id)
    outputs[entity_id] = described
    if not state.json:
        if full:
            _print_sections(state, _KINDS[kind].view(described, state.console.width))
            state.console.print()
        else:
            state.console.print(_KINDS[kind].summary(described))
    _require_completed(kind, entity_id, described)


# ---------------------------------------------------------------------------------------------- tags


@tags_app.command("add")
@_reports_errors
def tags_add(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", help="Object id."),
    resource_type: ResourceType = typer.Option(ResourceType.DataSource, "--type", help="Object type."),
    tags: list[str] = typer.Argument(..., help="KEY=VALUE pairs (KEY alone: a tag without value)."),
) -> None:
    """Add tags to an object; an existing key gets the new value."""
    request = {"ResourceId": resource_id, "ResourceType": resource_type.value, "Tags": _parse_tags(tags)}
    message = f"Tagged {resource_type.value} {resource_id} with {len(tags)} tag(s)."
    _call_and_report(_state(ctx), "AddTags", request, message)


@tags_app.command("list")
@_reports_errors
def tags_list(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", help="Object id."),
    resource_type: ResourceType = typer.Option(ResourceType.DataSource, "--type", help="Object type."),
) -> None:
    """List an object's tags."""
    state = _state(ctx)
    result = state.service().call(
        "DescribeTags", {"ResourceId": resource_id, "ResourceType": resource_type.value}
    )
    if state.json:
        _print_json(result)
        return
    tags = result.get("Tags", [])
    state.console.print(
        render.tags_table(tags) if tags else f"{resource_type.value} {resource_id} has no tags."
    )


@tags_app.command("delete")
@_reports_errors
def tags_delete(
    ctx: typer.Context,
    resource_id: str = typer.Option(..., "--id", help="Object id."),
    resource_type: ResourceType = typer.Option(ResourceType.DataSource, "--type", help="Object type."),
    keys: list[str] = typer.Argument(..., help="Tag keys to remove (unknown keys are ignored)."),
) -> None:
    """Delete tags of an object by key."""
    request = {"ResourceId": resource_id, "ResourceType": resource_type.value, "TagKeys": keys}
    message = f"Removed {len(keys)} tag key(s) from {resource_type.value} {resource_id}."
    _call_and_report(_state(ctx), "DeleteTags", request, message)


# ---------------------------------------------------------------------------------------------- requests


def _present(members: Mapping[str, Any]) -> dict[str, Any]:
    """The members that have a value: absent and None mean different things to the API."""
    return {key: value for key, value in members.items() if value is not None}


def _read_schema_file(path: Path, settings: Settings) -> str:
    """The schema file's text, checked before anything is created so a mistake costs no job."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputException(f"--schema {path}: cannot read the file ({exc})") from None
    parse_schema(text, source=str(path), max_attributes=settings.max_attributes)
    return text


def _read_recipe_file(path: str) -> str:
    """A ``--recipe`` file's text; the service checks it against the training schema."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputException(f"--recipe {path}: cannot read the file ({exc})") from None


def _parse_parameters(pairs: Iterable[str]) -> dict[str, str]:
    """``--param KEY=VALUE`` options as the CreateMLModel ``Parameters`` map (string values)."""
    parameters: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = (part.strip() for part in pair.partition("="))
        if not separator or not key or not value:
            raise InvalidInputException(f"--param {pair!r}: expected KEY=VALUE, e.g. sgd.maxPasses=10")
        if key in parameters:
            raise InvalidInputException(f"--param {key} is given twice")
        parameters[key] = value
    return parameters


def _parse_tags(pairs: Iterable[str]) -> list[dict[str, str]]:
    tags = []
    for pair in pairs:
        key, separator, value = pair.partition("=")
        tags.append({"Key": key, "Value": value} if separator else {"Key": key})
    return tags


def _list_request(sort: SortOrder, filters: Mapping[str, tuple[str, str, str | None]]) -> dict[str, Any]:
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


def _all_pages(service: EmrML, operation: str, request: dict[str, Any], limit: int | None) -> list[Any]:
    """Follow NextToken until the last page (pages may be short or empty) or ``limit`` results."""
    results: list[Any] = []
    token: str | None = None
    while limit is None or len(results) < limit:
        page_limit = PAGE_LIMIT if limit is None else min(PAGE_LIMIT, limit - len(results))
        page = service.call(operation, _present({**request, "Limit": page_limit, "NextToken": token}))
        results.extend(page.get("Results", []))
        token = page.get("NextToken")
        if not token:
            break
    return results if limit is None else results[:limit]


# ---------------------------------------------------------------------------------------------- objects


def _describe_batch_prediction(service: EmrML, prediction_id: str) -> dict[str, Any]:
    return {"GetBatchPrediction": service.call("GetBatchPrediction", {"BatchPredictionId": prediction_id})}


def _describe_datasource(service: EmrML, datasource_id: str) -> dict[str, Any]:
    return {
        "GetDataSource": service.call("GetDataSource", {"DataSourceId": datasource_id, "Verbose": True}),
        "GetDataSourceStatistics": service.call("GetDataSourceStatistics", {"DataSourceId": datasource_id}),
    }


def _describe_model(service: EmrML, model_id: str) -> dict[str, Any]:
    return {
        "GetMLModel": service.call("GetMLModel", {"MLModelId": model_id, "Verbose": True}),
        "GetMLModelInsights": service.call("GetMLModelInsights", {"MLModelId": model_id}),
    }


def _describe_evaluation(service: EmrML, evaluation_id: str) -> dict[str, Any]:
    return {
        "GetEvaluation": service.call("GetEvaluation", {"EvaluationId": evaluation_id}),
        "GetEvaluationInsights": service.call("GetEvaluationInsights", {"EvaluationId": evaluation_id}),
    }


@dataclass(frozen=True)
class _Kind:
    """How the CLI fetches and draws one kind of object."""

    label: str  # in messages and as the command group: "model"
    #: The raw outputs ``show`` renders, keyed by operation name (also the JSON output).
    describe: Callable[[EmrML, str], dict[str, Any]]
    view: Callable[[dict[str, Any], int], list[RenderableType]]
    summary: Callable[[dict[str, Any]], str]


_KINDS = {
    "DataSource": _Kind(
        "datasource",
        _describe_datasource,
        lambda described, _width: render.datasource_view(described),
        render.datasource_summary,
    ),
    "MLModel": _Kind(
        "model", _describe_model, lambda described, _width: render.model_view(described), render.model_summary
    ),
    "Evaluation": _Kind(
        "evaluation", _describe_evaluation, render.evaluation_view, render.evaluation_summary
    ),
    "BatchPrediction": _Kind(
        "batch-prediction",
        _describe_batch_prediction,
        lambda described, _width: render.batch_prediction_view(described),
        render.batch_prediction_summary,
    ),
}


def _created(state: _State, kind: str, entity_id: str, created: dict[str, Any], no_wait: bool) -> None:
    """After a Create*: report the accepted request (``--no-wait``) or wait for the job and show it."""
    if not no_wait:
        _wait_and_show(state, kind, entity_id)
    elif state.json:
        _print_json(created)
    else:
        label = _KINDS[kind].label
        state.console.print(f"Accepted {label} {entity_id}; `emrml {label} wait {entity_id}` runs it.")


def _wait(state: _State, kind: str, entity_id: str) -> None:
    """Run or await the object's job (and the jobs it depends on) with a progress bar on stderr."""
    label = f"{_KINDS[kind].label} {entity_id}"
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=state.json,
    )
    with progress:
        task = progress.add_task(label, total=1.0)

        def report(fraction: float, message: str | None) -> None:
            progress.update(task, completed=fraction, description=f"{label}: {message}" if message else label)

        state.service().wait(kind, entity_id, progress=report)


def _wait_and_show(state: _State, kind: str, entity_id: str) -> None:
    """Wait for the object's job, show the object, and fail unless it COMPLETED."""
    _wait(state, kind, entity_id)
    described = _KINDS[kind].describe(state.service(), entity_id)
    _print_view(state, kind, described)
    _require_completed(kind, entity_id, described)


def _require_completed(kind: str, entity_id: str, described: dict[str, Any]) -> None:
    entity = described[f"Get{kind}"]
    if entity.get("Status") != "COMPLETED":
        detail = f": {entity['Message']}" if entity.get("Message") else ""
        message = f"{_KINDS[kind].label} {entity_id} is {entity.get('Status')}{detail}"
        raise _fail(message, JOB_FAILED_EXIT_CODE)


def _show(state: _State, kind: str, entity_id: str) -> None:
    _print_view(state, kind, _KINDS[kind].describe(state.service(), entity_id))


def _print_view(state: _State, kind: str, described: dict[str, Any]) -> None:
    if state.json:
        _print_json(described)
    else:
        _print_sections(state, _KINDS[kind].view(described, state.console.width))


def _list(
    state: _State,
    operation: str,
    request: dict[str, Any],
    limit: int | None,
    table: Callable[[list[dict[str, Any]]], RenderableType],
    empty: str,
) -> None:
    results = _all_pages(state.service(), operation, request, limit)
    if state.json:
        _print_json({"Results": results})
    else:
        state.console.print(table(results) if results else empty)


def _call_and_report(state: _State, operation: str, request: dict[str, Any], message: str) -> None:
    """Call an operation that changes an object; print its output (json) or ``message``."""
    result = state.service().call(operation, request)
    if state.json:
        _print_json(result)
    else:
        state.console.print(message)


def _print_sections(state: _State, sections: list[RenderableType]) -> None:
    for position, section in enumerate(sections):
        if position:
            state.console.print()
        state.console.print(section)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))
