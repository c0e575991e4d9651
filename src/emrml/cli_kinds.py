"""The commands particular to one kind of object: ``create`` and the like of datasources, models,
evaluations and batch predictions, the real-time endpoints and ``predict``; ``emrml.cli_objects`` adds the
commands every kind has (wait, show, list, update, delete) to the same groups."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import typer

from emrml import cli_objects
from emrml import cli_render as render
from emrml.cli_common import (
    State,
    call_and_report,
    chosen_score_threshold,
    command_group,
    cut_off,
    named_as_options,
    present,
    print_json,
    reports_errors,
    score_threshold_option,
    state,
    threshold_alias_option,
)
from emrml.cli_objects import KINDS, ModelType, print_view, report_created
from emrml.config import Settings
from emrml.errors import InvalidInputException, PredictorNotMountedException

if TYPE_CHECKING:
    from emrml.service.app import EmrML

datasource_app = command_group(
    help="Create, list, show, rename and delete datasources.", no_args_is_help=True
)
model_app = command_group(help="Train, list, show, update and delete ML models.", no_args_is_help=True)
evaluation_app = command_group(
    help="Evaluate models on held-out data; list, show, rename and delete evaluations.", no_args_is_help=True
)
batch_app = command_group(help="Score a datasource into CSV result files.", no_args_is_help=True)
endpoint_app = command_group(help="Mount a model for real-time predictions.", no_args_is_help=True)
_GROUPS = {
    "DataSource": datasource_app,
    "MLModel": model_app,
    "Evaluation": evaluation_app,
    "BatchPrediction": batch_app,
}


def register(app: typer.Typer) -> None:
    """Add the kinds' groups, ``endpoint`` and ``predict`` to the emrml command line."""
    for kind, group in _GROUPS.items():
        app.add_typer(group, name=KINDS[kind].label)
    app.add_typer(endpoint_app, name="endpoint")
    app.command("predict")(predict)


# ---------------------------------------------------------------------------------------------- create and
# the commands particular to one kind


@datasource_app.command("create")
@reports_errors
def datasource_create(
    ctx: typer.Context,
    datasource_id: str = typer.Option(
        ..., "--id", metavar="ID", help="Datasource id (letters, digits, - _ .)."
    ),
    data: str = typer.Option(
        ..., "--data", metavar="PATH", help="CSV file or folder (a local path or an s3:// URI)."
    ),
    schema: str | None = typer.Option(
        None,
        "--schema",
        metavar="FILE",
        help="Data schema JSON file, a path or an s3:// URI (default: the data's .schema file beside it).",
    ),
    infer_schema: bool = typer.Option(False, "--infer-schema", help="Infer the schema from the data."),
    target: str | None = typer.Option(
        None, "--target", metavar="ATTRIBUTE", help="Target attribute (with --infer-schema)."
    ),
    row_id: str | None = typer.Option(
        None, "--row-id", metavar="ATTRIBUTE", help="Row id attribute (with --infer-schema)."
    ),
    name: str | None = typer.Option(None, "--name", help="Datasource name."),
    rearrangement: str | None = typer.Option(
        None, "--rearrangement", metavar="JSON", help="DataRearrangement JSON, e.g. '{\"splitting\":{...}}'."
    ),
    no_statistics: bool = typer.Option(False, "--no-statistics", help="Do not compute statistics."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Create a datasource from a CSV file, wait for it (with a progress bar) and show it."""
    current = state(ctx)
    location = current.existing_location(data, what="--data")
    if schema is not None and infer_schema:
        raise InvalidInputException("give exactly one of --schema FILE and --infer-schema")
    if not infer_schema and (target or row_id):
        raise InvalidInputException("--target and --row-id go with --infer-schema; a schema file names them")
    service = current.service(runs_jobs=not no_wait)
    if schema is not None:
        schema_text: str | None = _read_schema_file(schema, service.settings)
    elif infer_schema:
        schema_text = _infer_schema(service, location, target, row_id)["DataSchema"]
    else:
        # As the API does for a request without DataSchema, the job reads the schema beside the data.
        _check_schema_beside(location, service.settings)
        schema_text = None
    spec = {"DataLocationS3": location, "DataSchema": schema_text, "DataRearrangement": rearrangement}
    request = {
        "DataSourceId": datasource_id,
        "DataSourceName": name,
        "DataSpec": present(spec),
        "ComputeStatistics": not no_statistics,
    }
    options = {
        "DataSourceId": "--id",
        "DataSpec.DataRearrangement": "--rearrangement",
        "DataSpec.DataLocationS3": "--data",
    }
    with named_as_options(options):
        response = service.call("CreateDataSourceFromS3", present(request))
    report_created(current, "DataSource", datasource_id, response, no_wait)


@datasource_app.command("infer-schema")
@reports_errors
def datasource_infer_schema(
    ctx: typer.Context,
    data: str = typer.Option(
        ..., "--data", metavar="PATH", help="CSV file or folder (a local path or an s3:// URI)."
    ),
    target: str | None = typer.Option(None, "--target", metavar="ATTRIBUTE", help="Target attribute."),
    row_id: str | None = typer.Option(None, "--row-id", metavar="ATTRIBUTE", help="Row id attribute."),
) -> None:
    """Print the schema --infer-schema would use, to review and edit, then give with --schema FILE.

    E.g. `emrml datasource infer-schema --data wine.csv --target quality > wine.schema`, change the
    target's type to CATEGORICAL for a MULTICLASS model or list leaking columns in excludedAttributeNames,
    then `emrml datasource create --id ds-wine --data wine.csv --schema wine.schema`.
    """
    current = state(ctx)
    result = _infer_schema(current.service(), current.existing_location(data, what="--data"), target, row_id)
    if current.json:
        print_json(result)
    else:
        # Not through rich: the output is a file's content, and rich would wrap and colour it.
        typer.echo(json.dumps(json.loads(result["DataSchema"]), indent=2))
        typer.echo(f"The schema was {result['Sample']['Description']}.", err=True)


def _infer_schema(service: EmrML, location: str, target: str | None, row_id: str | None) -> dict[str, Any]:
    from emrml.core.arrow import skip_pandas_probe

    skip_pandas_probe()  # the inference reads a sample of the data with Arrow, in this process
    request = {"DataLocationS3": location, "TargetAttributeName": target, "RowId": row_id}
    # e.g. a folder without data files, a target not among the columns
    options = {"DataLocationS3": "--data", "TargetAttributeName": "--target", "RowId": "--row-id"}
    with named_as_options(options):
        return service.call("InferDataSchema", present(request))


@model_app.command("create")
@reports_errors
def model_create(
    ctx: typer.Context,
    model_id: str = typer.Option(..., "--id", metavar="ID", help="Model id (letters, digits, - _ .)."),
    model_type: ModelType = typer.Option(
        ..., "--type", help="What the target is: 0/1, a class, a number.", case_sensitive=False
    ),
    datasource_id: str = typer.Option(
        ..., "--datasource", metavar="ID", help="Training datasource id (created with statistics)."
    ),
    recipe: str | None = typer.Option(
        None, "--recipe", help="Recipe JSON file, or the recipe JSON itself; default: the suggested recipe."
    ),
    params: list[str] | None = typer.Option(
        None,
        "--param",
        metavar="KEY=VALUE",
        help="Training parameter KEY=VALUE, repeatable, e.g. --param sgd.maxPasses=20.",
    ),
    name: str | None = typer.Option(None, "--name", help="Model name."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Train a model on a datasource, wait for it (with a progress bar) and show it."""
    current = state(ctx)
    parameters = _parse_parameters(params or [])
    recipe_file = recipe if recipe is not None and not recipe.lstrip().startswith("{") else None
    recipe_text = _read_recipe_file(current, recipe_file) if recipe_file is not None else recipe
    request = {
        "MLModelId": model_id,
        "MLModelType": model_type.value,
        "TrainingDataSourceId": datasource_id,
        "MLModelName": name,
        "Parameters": parameters or None,
        "Recipe": recipe_text,
    }
    options = {"MLModelId": "--id", "TrainingDataSourceId": "--datasource", "Parameters": "--param"}
    try:
        with named_as_options(options):
            response = current.service(runs_jobs=not no_wait).call("CreateMLModel", present(request))
    except InvalidInputException as exc:
        # The service speaks of "Recipe"; the user knows the file.
        if recipe_file is not None and exc.message.startswith("Recipe"):
            raise InvalidInputException(f"--recipe {recipe_file}: {exc.message}") from None
        raise
    report_created(current, "MLModel", model_id, response, no_wait)


@model_app.command("update")
@reports_errors
def model_update(
    ctx: typer.Context,
    model_id: str = typer.Argument(..., metavar="ID", help="Model id."),
    name: str | None = typer.Option(None, "--name", help="The new name."),
    given_threshold: float | None = score_threshold_option(
        "BINARY models: scores at or above it are predicted 1 (0 to 1)."
    ),
    threshold_alias: float | None = threshold_alias_option(),
) -> None:
    """Rename a model and/or change its score threshold."""
    score_threshold = chosen_score_threshold(given_threshold, threshold_alias)
    if name is None and score_threshold is None:
        raise InvalidInputException("nothing to update: give --name, --score-threshold or both")
    changes = []
    if name is not None:
        changes.append(f"name {name!r}")
    if score_threshold is not None:
        changes.append(f"score threshold {score_threshold}")
    request = {"MLModelId": model_id, "MLModelName": name, "ScoreThreshold": score_threshold}
    message = f"Updated model {model_id}: {', '.join(changes)}."
    try:
        with named_as_options({"MLModelName": "--name", "ScoreThreshold": "--score-threshold"}):
            call_and_report(state(ctx), "UpdateMLModel", present(request), message)
    except InvalidInputException as error:
        # The service names the API operations; on the command line they are emrml commands.
        if "DeleteRealtimeEndpoint" not in error.message:
            raise
        commands = f"`emrml endpoint delete {model_id}`, then `emrml endpoint create {model_id}`"
        raise InvalidInputException(f"{error.message} ({commands})") from None


@evaluation_app.command("create")
@reports_errors
def evaluation_create(
    ctx: typer.Context,
    evaluation_id: str = typer.Option(
        ..., "--id", metavar="ID", help="Evaluation id (letters, digits, - _ .)."
    ),
    model_id: str = typer.Option(..., "--model", metavar="ID", help="The model to evaluate."),
    datasource_id: str = typer.Option(
        ..., "--datasource", metavar="ID", help="Evaluation datasource id: data the model was not trained on."
    ),
    name: str | None = typer.Option(None, "--name", help="Evaluation name."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Evaluate a model on a datasource, wait for it (with a progress bar) and show the results."""
    current = state(ctx)
    request = {
        "EvaluationId": evaluation_id,
        "MLModelId": model_id,
        "EvaluationDataSourceId": datasource_id,
        "EvaluationName": name,
    }
    options = {"EvaluationId": "--id", "MLModelId": "--model", "EvaluationDataSourceId": "--datasource"}
    with named_as_options(options):
        response = current.service(runs_jobs=not no_wait).call("CreateEvaluation", present(request))
    report_created(current, "Evaluation", evaluation_id, response, no_wait)


@evaluation_app.command("show")
@reports_errors
def evaluation_show(
    ctx: typer.Context,
    evaluation_id: str = typer.Argument(..., metavar="ID", help="Evaluation id."),
    given_threshold: float | None = score_threshold_option(
        "BINARY: the cut-off to draw and tabulate, to try one before `emrml model update --score-threshold` "
        "(default: the model's).",
        parser=cut_off,
    ),
    threshold_alias: float | None = threshold_alias_option(parser=cut_off),
) -> None:
    """Show an evaluation: the metric against its baseline, the charts of its model type, and alerts.

    BINARY: the score histograms of actual 1s and 0s with the cut-off, and the trade-off table.
    MULTICLASS: the confusion matrix with per-class F1. REGRESSION: the residual histogram.
    """
    threshold = chosen_score_threshold(given_threshold, threshold_alias)
    current = state(ctx)
    if threshold is not None and current.json:
        # The JSON is the operations' raw output, which a cut-off tried here does not change: a script
        # would take it for the output at that cut-off.
        raise InvalidInputException(
            "--score-threshold draws a cut-off in the table output; --output json prints every cut-off's "
            "figures (GetEvaluationInsights.Insights.metrics.thresholdTable)"
        )
    described = KINDS["Evaluation"].describe(current.service(), evaluation_id)
    model_type = described["GetEvaluationInsights"].get("MLModelType")
    if threshold is not None and model_type != "BINARY":
        raise InvalidInputException(
            f"--score-threshold applies to BINARY models; {evaluation_id} evaluates a {model_type} model"
        )
    sections = None if current.json else render.evaluation_view(described, current.console.width, threshold)
    print_view(current, "Evaluation", described, sections)
    metrics = (described["GetEvaluationInsights"].get("Insights") or {}).get("metrics") or {}
    if threshold is not None and "thresholdTable" not in metrics:
        status = described["GetEvaluation"].get("Status")
        has = "no scores yet" if status in ("PENDING", "INPROGRESS") else "no scores"
        typer.echo(
            f"warning: --score-threshold is not drawn: evaluation {evaluation_id} is {status} and has {has}",
            err=True,
        )


# ------------------------------------------------------------------------------------------ batch prediction


@batch_app.command("create")
@reports_errors
def batch_prediction_create(
    ctx: typer.Context,
    prediction_id: str = typer.Option(
        ..., "--id", metavar="ID", help="Batch prediction id (letters, digits, - _ .)."
    ),
    model_id: str = typer.Option(..., "--model", metavar="ID", help="The model that scores."),
    datasource_id: str = typer.Option(..., "--datasource", metavar="ID", help="The datasource to score."),
    output_uri: str = typer.Option(
        ...,
        "--output-uri",
        metavar="FOLDER",
        help="Folder (local path, file:// or s3:// URI) for the results and the manifest.",
    ),
    name: str | None = typer.Option(None, "--name", help="Batch prediction name."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the request is accepted."),
) -> None:
    """Score every record of a datasource; results appear under OUTPUT_URI/batch-prediction/ when complete."""
    from emrml.library import absolute_uri  # the library's modules and storage: not every command's start

    current = state(ctx)
    location = absolute_uri(output_uri, what="--output-uri")
    request = {
        "BatchPredictionId": prediction_id,
        "MLModelId": model_id,
        "BatchPredictionDataSourceId": datasource_id,
        "OutputUri": location,
        "BatchPredictionName": name,
    }
    options = {
        "BatchPredictionId": "--id",
        "MLModelId": "--model",
        "BatchPredictionDataSourceId": "--datasource",
        "OutputUri": "--output-uri",
    }
    with named_as_options(options):
        response = current.service(runs_jobs=not no_wait).call("CreateBatchPrediction", present(request))
    report_created(current, "BatchPrediction", prediction_id, response, no_wait)


# ----------------------------------------------------------------------------------- real-time predictions

_MODEL_ID = typer.Argument(..., metavar="MODEL_ID", help="Model id.")


@endpoint_app.command("create")
@reports_errors
def endpoint_create(ctx: typer.Context, model_id: str = _MODEL_ID) -> None:
    """Mount a COMPLETED model for real-time predictions."""
    _endpoint_call(state(ctx), "CreateRealtimeEndpoint", model_id)


@endpoint_app.command("delete")
@reports_errors
def endpoint_delete(ctx: typer.Context, model_id: str = _MODEL_ID) -> None:
    """Unmount a model's real-time endpoint."""
    # A sentence, not the endpoint's table: "Status NONE, 0 requests per second" reads as a broken endpoint.
    message = f"Deleted the real-time endpoint of {model_id}."
    call_and_report(state(ctx), "DeleteRealtimeEndpoint", {"MLModelId": model_id}, message)


def _endpoint_call(current: State, operation: str, model_id: str) -> None:
    result = current.service().call(operation, {"MLModelId": model_id})
    if current.json:
        print_json(result)
    else:
        current.console.print(render.endpoint_view(model_id, result["RealtimeEndpointInfo"]))


@reports_errors
def predict(
    ctx: typer.Context,
    model_id: str = typer.Argument(
        ..., metavar="MODEL_ID", help="Model id (its real-time endpoint must be READY)."
    ),
    record: str = typer.Option(
        ...,
        "--record",
        metavar="JSON",
        help='The record as a JSON object, e.g. \'{"age": 41, "job": "admin."}\'; numbers are sent as '
        "written (2.50 as 2.50), true/false as their text, null as a missing value.",
    ),
) -> None:
    """Predict one record through the model's real-time endpoint."""
    from emrml.core.record_values import json_record, unknown_attribute_warnings

    current = state(ctx)
    values = json_record(record, "--record")
    service = current.service()
    model = service.call("GetMLModel", {"MLModelId": model_id, "Verbose": True})
    endpoint = (model.get("EndpointInfo") or {}).get("EndpointUrl", "")
    request = {"MLModelId": model_id, "Record": values, "PredictEndpoint": endpoint}
    try:
        result = service.call("Predict", request)
    except PredictorNotMountedException as error:
        # The service names the API operation; on the command line the endpoint is one command away.
        raise PredictorNotMountedException(f"{error.message} (emrml endpoint create {model_id})") from None
    if current.json:
        print_json(result)
    else:
        current.console.print(render.prediction_view(result["Prediction"]))
    names = [a["attributeName"] for a in json.loads(model.get("Schema") or "{}").get("attributes", [])]
    for line in prediction_warnings(result["Prediction"]) + unknown_attribute_warnings(values, names):
        typer.echo(f"warning: {line}", err=True)


def prediction_warnings(prediction: dict[str, Any]) -> list[str]:
    """What the ``details`` of a prediction say is wrong with the record, one sentence each."""
    details = prediction.get("details", {})
    warnings = []
    if details.get("NoSchemaAttributes") == "true":
        warnings.append(
            "the record names none of the model's attributes: this is the prediction for a record of "
            "missing values (check the attribute names)"
        )
    if details.get("UnparsedAttributes"):
        names = details["UnparsedAttributes"].replace(",", ", ")
        warnings.append(f"values of {names} could not be read as their type and count as missing")
    return warnings


# ---------------------------------------------------------------------------------------------- requests


def _option_file_text(option: str, file: str) -> str:
    """The text of the file an option names: a local path, or a URI (``s3://``, ``file://``) read through
    the storage layer as ``--data`` is (a Path option made ``s3://b/k`` the local path ``s3:/b/k``)."""
    from emrml.storage.locations import read_named_text  # the storage layer: only commands reading a file

    return read_named_text(file, what=option)


def _read_schema_file(path: str, settings: Settings) -> str:
    """The schema file's text, checked before anything is created so a mistake costs no job."""
    from emrml.core.schema import parse_schema  # imports Arrow: only commands that read a schema pay

    text = _option_file_text("--schema", path)
    parse_schema(text, source=f"--schema {path}", max_attributes=settings.max_attributes)
    return text


def _check_schema_beside(location: str, settings: Settings) -> None:
    """Neither --schema nor --infer-schema: the schema file beside the data must be there, and valid, before
    anything is created."""
    from emrml.core.schema import parse_schema
    from emrml.storage.locations import exists, read_text, schema_location_for

    beside = schema_location_for(location)
    if not exists(beside, what="--data"):
        raise InvalidInputException(
            f"give --schema FILE or --infer-schema, or put the schema in {beside}, beside the data"
        )
    text = read_text(beside, what="the schema file beside --data")
    parse_schema(text, source=f"schema file {beside}", max_attributes=settings.max_attributes)


def _read_recipe_file(current: State, path: str) -> str:
    """A ``--recipe`` file's text; the service checks it against the training schema."""
    from emrml.storage.locations import configure

    configure(current.settings)  # an s3:// recipe is read where the service reads (emrml.toml's endpoint)
    return _option_file_text("--recipe", path)


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


cli_objects.register(_GROUPS)
