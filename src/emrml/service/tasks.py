"""What each kind of job does, between the metastore row and the engine.

The datasource job's code is imported with this module (every flow starts with a datasource); training,
evaluation and batch prediction import theirs when they run, or when the fork server preloads them
(``emrml.service.forkserver``), so a CLI command that builds a datasource does not wait for the learner.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyarrow import ipc
from sqlalchemy import select

from emrml.config import Settings
from emrml.core.rearrange import Rearrangement, parse_rearrangement
from emrml.core.schema import Schema, parse_schema
from emrml.engine.local import build_datasource
from emrml.errors import DataError, InvalidInputException
from emrml.service import credentials as sealed
from emrml.service.confinement import check_job_output, confined_job, confined_writes
from emrml.service.metastore import Sessions
from emrml.service.rows import BatchPrediction, DataSource, MLModel
from emrml.service.worker import JobContext, discards, job
from emrml.storage import sql, sql_staging
from emrml.storage.locations import (
    atomic_write,
    exists,
    read_text,
    remove_temporaries,
    schema_location_for,
)

if TYPE_CHECKING:
    from emrml.engine.training import DatasourceData


def sample_path(settings: Settings, data_source_id: str) -> Path:
    """Where a datasource's row sample lives (Arrow IPC; the suggested recipe is chosen from it)."""
    folder = settings.home / "datasources"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{data_source_id}.sample.arrow"


def read_sample(settings: Settings, data_source_id: str) -> pa.Table:
    with ipc.open_file(str(sample_path(settings, data_source_id))) as reader:
        return reader.read_all()


def _datasource_schema(entity: Any, settings: Settings, inferred: Schema | None = None) -> Schema:
    """The schema from DataSchema, DataSchemaLocationS3 (DataSchemaUri), else ``inferred`` (a SQL query's,
    from its column types), else ``<data>.schema`` (spec open question 6). The user gave it: the
    ``max_attributes`` setting applies."""
    request = json.loads(entity.request)
    # The members are named by their path in the request (DataSpec.DataSchema), as its validation names them.
    within = "RDSData" if "RDSData" in request else "DataSpec"
    spec = request.get(within) or {}
    limit = settings.max_attributes
    if spec.get("DataSchema"):
        return parse_schema(spec["DataSchema"], source=f"{within}.DataSchema", max_attributes=limit)
    member = "DataSchemaLocationS3" if spec.get("DataSchemaLocationS3") else "DataSchemaUri"
    location = spec.get(member)
    if not location:
        if inferred is not None:
            return inferred
        location = schema_location_for(entity.data_location)
        if not exists(location):
            raise InvalidInputException(
                f"no {within}.DataSchema was given and there is no schema file {location} beside the data"
            )
        text = read_text(location, what="the schema file beside the data")
    else:
        text = read_text(location, what=f"{within}.{member}")
    return parse_schema(text, source=f"schema file {location}", max_attributes=limit)


def _stage_sql(entity: DataSource, context: JobContext) -> Schema:
    """Run an RDS or Redshift datasource's SelectSqlQuery into its staged file; the schema its types give."""
    request = json.loads(entity.request)
    api, spec = ("RDS", request["RDSData"]) if entity.rds_metadata else ("Redshift", request["DataSpec"])
    database = spec["DatabaseInformation"]
    credentials = spec["DatabaseCredentials"]
    source = sql.resolve(
        context.settings.sql_connections,
        api,
        database["InstanceIdentifier" if api == "RDS" else "ClusterIdentifier"],
        database["DatabaseName"],
        credentials["Username"],
        sealed.password(context.settings, entity, credentials["Password"]),
        connect_seconds=context.settings.sql_connect_seconds,
    )
    if entity.confined:
        check_job_output(context.settings, entity.data_location, member="S3StagingLocation")
    try:
        with confined_writes(context.settings, entity.confined):
            staged = sql_staging.stage_query(
                source,
                spec["SelectSqlQuery"],
                entity.data_location,
                context.progress,
                max_attributes=context.settings.max_attributes,
                commit=context.fenced,
                stopped=context.stopped,
            )
    except DataError:
        context.raise_if_stopped()  # the query was ended because the job is to stop: no failure of it
        raise
    return staged.schema


def spark_of(context: JobContext) -> Any:
    """The process's SparkSession when jobs run on Spark (setting ``engine``), else None; the Spark jobs
    run for this job from here on are recorded in its row (the jobs browser shows them), their executors'
    CPU time counted in its ComputeTime, and they are cancelled once the job is to stop."""
    if context.settings.engine != "spark":
        return None
    from emrml.engine.spark.runner import SPARK_CPU, SPARK_JOBS, SPARK_STOP
    from emrml.engine.spark.session import hold

    SPARK_JOBS.set(context.record_spark_jobs)
    SPARK_STOP.set(context.raise_if_stopped)
    SPARK_CPU.set(context.add_executor_cpu)
    # The application's start takes 10-30 s when its JVM starts too (a job's own worker, a server's first
    # job): the job says so meanwhile rather than stand at its progress with no message.
    started: list[str] = []

    def starting(message: str) -> None:
        started.append(message)
        context.note(message)

    # Held until the job ends: a job with other Spark settings waits for it rather than stop its application.
    spark, release = hold(context.settings, starting=starting, check_stop=context.raise_if_stopped)
    context.on_end(release)
    if started:
        context.note(None)  # started: the job's steps report what they do from here on
    return spark


def rearrangement_of(source: DataSource) -> Rearrangement | None:
    """The datasource's split, hashing file keys by the scheme recorded with it."""
    return parse_rearrangement(source.data_rearrangement, relative_keys=source.split_keys == "relative")


@job("DataSource")
def build(context: JobContext) -> dict[str, Any]:
    entity = context.load()
    with confined_job(context.settings, entity.confined):
        return _build(context, entity)


def _build(context: JobContext, entity: DataSource) -> dict[str, Any]:
    progress, inferred = context.progress, None
    if entity.rds_metadata or entity.redshift_metadata:
        # The query's result is staged first; reading the staged file is the second half of the job.
        inferred = _stage_sql(entity, context)

        def progress(fraction: float, message: str | None) -> None:
            context.progress(0.5 + fraction / 2, message)

    schema = _datasource_schema(entity, context.settings, inferred)
    build = build_datasource
    spark = spark_of(context)
    if spark is not None:
        from emrml.engine.spark.datasource import build_datasource as build_on_spark

        build = functools.partial(build_on_spark, spark=spark)
    summary = build(
        entity.data_location,
        schema,
        rearrangement_of(entity),
        compute_statistics=entity.compute_statistics,
        settings=context.settings,
        progress=progress,
    )
    if summary.sample is not None:
        sample = str(sample_path(context.settings, entity.id))
        # Through ``fenced``: an attempt given up must not replace the sample of the attempt after it.
        with atomic_write(sample, context.fenced) as out, ipc.new_file(out, summary.sample.schema) as writer:
            writer.write_table(summary.sample)
        _remove_temporaries(context, sample)
    return {
        "data_schema": schema.to_json(),
        "data_size": summary.data_size,
        "number_of_files": summary.number_of_files,
        "total_records": summary.total_records,
        "invalid_records": summary.invalid_records,
        "invalid_examples": json.dumps(summary.invalid_examples),
        "statistics": json.dumps(summary.statistics) if summary.statistics is not None else None,
    }


def _remove_temporaries(context: JobContext, location: str) -> None:
    """Remove what attempts killed while they wrote ``location`` left beside it, once this attempt wrote
    it: through ``fenced``, so that no attempt given up removes the temporary file of the one writing."""
    context.fenced(lambda: remove_temporaries(location))


def _datasource_data(source: DataSource) -> DatasourceData:
    from emrml.engine.training import DatasourceData

    return DatasourceData(
        source.data_location,
        parse_schema(source.data_schema or "", source=f"datasource {source.id} schema"),
        rearrangement_of(source),
    )


@job("MLModel")
def train(context: JobContext) -> dict[str, Any]:
    from emrml.core.model import check_target
    from emrml.engine.training import train_model
    from emrml.service.parameters import parse_parameters

    model = context.load()
    with context.session() as session:
        source = session.get(DataSource, model.training_data_source_id)
    data = _datasource_data(source)
    check_target(data.schema, model.model_type)
    with confined_job(context.settings, model.confined or source.confined):
        recipe = model.recipe
        # Read as GetDataSourceStatistics reads them: a NaN stored in them counts as unknown.
        statistics = json.loads(source.statistics or "null", parse_constant=lambda _: None)
        if recipe is None and model.recipe_uri:
            recipe = read_text(model.recipe_uri, what="RecipeUri")
        trained = train_model(
            model_id=model.id,
            model_type=model.model_type,
            data=data,
            recipe_text=recipe,
            sample=read_sample(context.settings, source.id),
            parameters=parse_parameters(json.loads(model.training_parameters)),
            settings=context.settings,
            progress=context.progress,
            spark=spark_of(context),
            statistics=statistics,
            commit=context.fenced,
        )
    _remove_temporaries(context, str(trained.artifact_path))
    return {
        "artifact_location": str(trained.artifact_path),
        "size_in_bytes": trained.size_in_bytes,
        "recipe": trained.recipe,
        "data_schema": data.schema.to_json(),
    }


@job("Evaluation")
def evaluate(context: JobContext) -> dict[str, Any]:
    from emrml.core.model import check_evaluation_target
    from emrml.engine.evaluation import evaluate_model

    evaluation = context.load()
    with context.session() as session:
        model = session.get(MLModel, evaluation.ml_model_id)
        source = session.get(DataSource, evaluation.evaluation_data_source_id)
        training = session.get(DataSource, model.training_data_source_id)
    data = _datasource_data(source)
    if model.data_schema:
        # CreateEvaluation checked this when the datasource was COMPLETED; it may not have been then.
        check_evaluation_target(
            parse_schema(model.data_schema, source=f"model {model.id} schema"),
            data.schema,
            what=f"EvaluationDataSourceId {source.id!r}",
        )
    with confined_job(context.settings, evaluation.confined or source.confined):
        result = evaluate_model(
            artifact_location=Path(model.artifact_location),
            data=data,
            same_datasource=source.id == training.id,
            datasource_id=source.id,
            training_records=(training.total_records or 0) - (training.invalid_records or 0),
            settings=context.settings,
            progress=context.progress,
            spark=spark_of(context),
            expected=model.expected(),
        )
    return {
        "performance_metrics": json.dumps(result.performance_metrics),
        "insights": json.dumps(result.insights),
    }


@job("BatchPrediction")
def predict_batch(context: JobContext) -> dict[str, Any]:
    from emrml.engine.batch import batch_predict

    prediction = context.load()
    with context.session() as session:
        model = session.get(MLModel, prediction.ml_model_id)
        source = session.get(DataSource, prediction.batch_prediction_data_source_id)
    # The threshold is the model's at the start of the job (spec 9), read from the metastore: an
    # UpdateMLModel after training changes the row, not the artifact.
    if prediction.confined:
        # Its results go to batch-prediction/ below the output folder: that folder is what must stay inside.
        check_job_output(context.settings, prediction.output_uri + "batch-prediction/", member="OutputUri")
    with (
        confined_job(context.settings, prediction.confined or source.confined),
        confined_writes(context.settings, prediction.confined),
    ):
        result = batch_predict(
            batch_prediction_id=prediction.id,
            artifact_location=Path(model.artifact_location),
            data=_datasource_data(source),
            output_uri=prediction.output_uri,
            score_threshold=model.score_threshold,
            settings=context.settings,
            progress=context.progress,
            spark=spark_of(context),
            attempt=context.attempt,
            commit=context.fenced,
            expected=model.expected(),
        )
    return {
        "total_records": result.total_records,
        "invalid_records": result.invalid_records,
        "unparsed_records": result.unparsed_records,
    }


def sweep_scratch(settings: Settings, sessions: Sessions) -> None:
    """Remove the scratch files of jobs not running: the training folders of processes gone, the batch
    prediction folders of attempts no longer INPROGRESS (``JobRunner.sweep_scratch``)."""
    from emrml.engine.batch_output import sweep_batch_scratch
    from emrml.engine.training import sweep_training_scratch

    sweep_training_scratch(settings)
    with sessions() as session:
        rows = session.execute(
            select(BatchPrediction.id, BatchPrediction.attempts).where(BatchPrediction.status == "INPROGRESS")
        )
        running = {(entity_id, int(attempt)) for entity_id, attempt in rows}
    sweep_batch_scratch(settings, running)


# --- what a job that did not complete leaves, removed (service.worker.discard_results) ---------------------


@discards("DataSource")
def discard_sample(settings: Settings, source: DataSource) -> None:
    path = sample_path(settings, source.id)
    path.unlink(missing_ok=True)
    remove_temporaries(str(path))  # a worker killed while writing it


@discards("MLModel")
def discard_model(settings: Settings, model: MLModel) -> None:
    from emrml.engine.training import artifact_path, sweep_training_scratch

    path = artifact_path(settings, model.id)
    path.unlink(missing_ok=True)
    remove_temporaries(str(path))  # a worker killed while saving the model
    sweep_training_scratch(settings)  # a killed worker's copy of the training data


@discards("BatchPrediction")
def discard_batch_output(settings: Settings, prediction: BatchPrediction) -> None:
    from emrml.engine.batch_output import discard_output

    # Unguarded (the guards are process-wide, and this may run in a server): only the files this batch
    # prediction writes, by name, are removed.
    discard_output(prediction.output_uri, settings, prediction.id, prediction.input_data_location)
