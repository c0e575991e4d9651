"""``emrml quickstart``: the whole Amazon ML flow on a generated sample, from data to a served model.

It writes a bank-marketing-like sample, creates a datasource with statistics and a random 70/30 split,
trains and evaluates a BINARY model, scores the held-out rows, mounts the real-time endpoint and predicts
one record, through the same operations as every other command; ``--serve`` then serves the API.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer

from emrml import cli_render as render
from emrml import cli_server
from emrml.cli_common import State, present, print_json, print_sections, reports_errors, state
from emrml.cli_objects import KINDS, require_completed, wait
from emrml.config import Settings
from emrml.errors import InvalidInputException

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


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)


@reports_errors
def quickstart(
    ctx: typer.Context,
    serve: bool = typer.Option(
        False,
        "--serve",
        help="Then serve the Amazon ML API with the sample model mounted (as `emrml serve`).",
    ),
    port: int = typer.Option(
        8080, "--port", metavar="PORT", min=1, max=65535, help="With --serve: the TCP port."
    ),
) -> None:
    """Build a bank-marketing sample, train a BINARY model on a random 70 % and evaluate it on the rest.

    Writes a 5,000-row sample and creates the datasources ds-quickstart-bank (all rows, shown with its
    statistics), ds-quickstart-train and ds-quickstart-eval (a random 70/30 split), the model
    ml-quickstart-bank (suggested recipe) and the evaluation ev-quickstart-bank, which it shows; then scores
    the held-out rows with the batch prediction bp-quickstart-bank (results under
    <home>/data/quickstart-output/), mounts the model's real-time endpoint and predicts one record. Safe to
    run again: the sample is rewritten with identical bytes and every object is reused.
    """
    from emrml.core.arrow import skip_pandas_probe
    from emrml.samples import bank_sample_schema, sample_path, write_bank_sample  # numpy, Arrow: not at start

    skip_pandas_probe()  # the sample is written with Arrow, in this process
    current = state(ctx)
    if serve:
        # The endpoint's EndpointUrl (and Predict's PredictEndpoint) is the process's public_url: it must
        # be the URL the server about to start serves, not the default http://127.0.0.1:8080. With TLS
        # settings it serves HTTPS (as `emrml serve` does): their files are loaded now, so that a missing or
        # unreadable one stops the command before its flow and snippets, not when the server starts.
        from emrml.web.tls import TlsSettings

        settings = current.settings
        try:
            tls = TlsSettings.from_options(
                settings.tls_cert, settings.tls_key, settings.tls_client_ca, settings.tls_client_auth
            )
        except InvalidInputException as exc:
            raise InvalidInputException(f"--serve with the TLS settings (tls_*): {exc.message}") from None
        url = cli_server.served_url(settings, "127.0.0.1", port, tls=tls is not None)
        current.serve_at(url)
    service = current.service(runs_jobs=True)
    sample = write_bank_sample(sample_path(service.settings.home), QUICKSTART_ROWS, private=True)
    if not current.json:
        current.console.print(f"Sample data: {sample} ({QUICKSTART_ROWS:,} rows)")
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
                "DataSpec": present(spec),
                "ComputeStatistics": True,
            }
            service.call("CreateDataSourceFromS3", request)
            _quickstart_step(
                current, "DataSource", datasource_id, outputs, full=datasource_id == QUICKSTART_ID
            )
        model_request = {
            "MLModelId": QUICKSTART_MODEL_ID,
            "MLModelType": "BINARY",
            "TrainingDataSourceId": QUICKSTART_TRAIN_ID,
            "MLModelName": "Bank marketing sample",
        }
        service.call("CreateMLModel", model_request)
        _quickstart_step(current, "MLModel", QUICKSTART_MODEL_ID, outputs, full=False)
        evaluation_request = {
            "EvaluationId": QUICKSTART_EVALUATION_ID,
            "MLModelId": QUICKSTART_MODEL_ID,
            "EvaluationDataSourceId": QUICKSTART_EVAL_ID,
            "EvaluationName": "Bank marketing sample, held-out 30 %",
        }
        service.call("CreateEvaluation", evaluation_request)
        _quickstart_step(current, "Evaluation", QUICKSTART_EVALUATION_ID, outputs, full=True)
        batch_request = {
            "BatchPredictionId": QUICKSTART_BATCH_ID,
            "MLModelId": QUICKSTART_MODEL_ID,
            "BatchPredictionDataSourceId": QUICKSTART_EVAL_ID,
            "OutputUri": str(service.settings.home / "data" / "quickstart-output") + "/",
            "BatchPredictionName": "Bank marketing sample, held-out 30 %",
        }
        service.call("CreateBatchPrediction", batch_request)
        _quickstart_step(current, "BatchPrediction", QUICKSTART_BATCH_ID, outputs, full=True)
        outputs["CreateRealtimeEndpoint"] = service.call(
            "CreateRealtimeEndpoint", {"MLModelId": QUICKSTART_MODEL_ID}
        )
        record = _first_record(sample)
        endpoint = outputs["CreateRealtimeEndpoint"]["RealtimeEndpointInfo"]["EndpointUrl"]
        predict_request = {"MLModelId": QUICKSTART_MODEL_ID, "Record": record, "PredictEndpoint": endpoint}
        outputs["Predict"] = service.call("Predict", predict_request)
        if not current.json:
            current.console.print(f"Real-time prediction for the first sample record {json.dumps(record)}:")
            current.console.print(render.prediction_view(outputs["Predict"]["Prediction"]))
    finally:
        if current.json:
            print_json(outputs)
    if serve:
        _print_quickstart_snippets(current.settings, outputs["Predict"])
        current.close()
        cli_server.start_server(ctx, host="127.0.0.1", port=port, snippets=False)
        return
    if not current.json:
        current.console.print(
            f"Next: `emrml model show {QUICKSTART_MODEL_ID}`, "
            f"`emrml evaluation show {QUICKSTART_EVALUATION_ID} --score-threshold 0.3`, "
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
        f'    saved = json.load(open("{credentials}"))',
        f'    ml = boto3.client("machinelearning", endpoint_url="{url}", region_name="us-east-1",',
        '                      aws_access_key_id=saved["aws_access_key_id"],',
        '                      aws_secret_access_key=saved["aws_secret_access_key"])',
        '    print(ml.describe_ml_models()["Results"][0]["MLModelId"])',
        f'    print(ml.predict(MLModelId="{QUICKSTART_MODEL_ID}", Record={{"age": "41", "job": "admin."}},',
        f'                     PredictEndpoint="{url}")["Prediction"])',
        "",
        *cli_server.aws_profile_commands(credentials, url),
        "",
        f"(the quickstart's own prediction: {json.dumps(predicted['Prediction'])})",
        "",
    ]
    if url.startswith("https://"):
        lines += [*cli_server.PRIVATE_CA_NOTE, ""]
    typer.echo("\n".join(lines), err=True)


def _first_record(sample: Path) -> dict[str, str]:
    """The first data record of the sample CSV as a Predict ``Record`` (target left out)."""
    with sample.open(newline="") as handle:
        reader = csv.DictReader(handle)
        row = next(reader)
    from emrml.samples import bank_sample_schema

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
    current: State, kind: str, entity_id: str, outputs: dict[str, Any], *, full: bool
) -> None:
    """Wait for one object; print its full view or a one-line summary; stop unless it COMPLETED."""
    wait(current, kind, entity_id)
    described = KINDS[kind].describe(current.service(), entity_id)
    outputs[entity_id] = described
    if not current.json:
        if full:
            print_sections(current, KINDS[kind].view(described, current.console.width))
            current.console.print()
        else:
            current.console.print(KINDS[kind].summary(described))
    require_completed(kind, entity_id, described)
