"""``emrml run PIPELINE.json``: a declared pipeline run to the end, as a transient cluster runs its job
(service/pipelines.py); ``--emr-step`` prints how to run it on Amazon EMR instead (docs/spark.md)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer

from emrml.cli_common import (
    INTERRUPTED_EXIT_CODE,
    JOB_FAILED_EXIT_CODE,
    fail,
    job_progress,
    print_json,
    reports_errors,
    state,
)


def register(app: typer.Typer) -> None:
    app.command("run")(run)


@reports_errors
def run(
    ctx: typer.Context,
    pipeline: str = typer.Argument(
        ..., metavar="PIPELINE", help="The pipeline file: a path or an s3:// URI."
    ),
    emr_step: bool = typer.Option(
        False, "--emr-step", help="Print the `aws emr add-steps` step and its spark-submit line; run nothing."
    ),
    check: bool = typer.Option(False, "--check", help="Check the pipeline and the metastore; run nothing."),
    environment: str | None = typer.Option(
        None,
        "--environment",
        metavar="ARCHIVE",
        help="With --emr-step: a packed virtualenv (venv-pack, e.g. s3://bucket/emrml-env.tar.gz) shipped "
        "to YARN's containers, whose Python runs the tasks.",
    ),
) -> None:
    """Run a pipeline's steps (datasources, models, evaluations, batch predictions) in order and exit 0
    when every object COMPLETED (2 at the first that ends FAILED); a re-run skips the completed ones."""
    from emrml.service import pipelines
    from emrml.storage.locations import read_text

    current = state(ctx)
    if environment and not emr_step:
        raise fail("--environment is for --emr-step: a local run uses this machine's Python", 2)
    if emr_step:  # the file is read on the cluster, not here
        location = pipeline if "://" in pipeline else str(Path(pipeline).resolve())
        _print_emr_step(current, location, environment)
        return
    location = current.existing_location(pipeline, what="pipeline")
    service = current.service()
    if service.settings.engine == "spark":
        # One Spark application for the whole run, its jobs on this process's thread, as `serve --engine
        # spark` runs them: a worker process per job would start an application per job, and under
        # spark-submit (the EMR step) each worker would join spark-submit's JVM, which holds one context
        # only: the second job would fail. A crash stops the run; a re-run resumes it.
        service.jobs.in_process = True
    steps = pipelines.plan(service, read_text(location, what="the pipeline file"), pipeline)
    if check:
        message = f"{pipeline}: {len(steps)} steps, in this order: " + ", ".join(s.id for s in steps)
        print_json({"Steps": [s.id for s in steps]}) if current.json else current.console.print(message)
        return
    try:
        outcomes = _run(current, service, steps)
    except KeyboardInterrupt:
        # As `wait` says for one object: the running step's worker ends with this process and its object
        # is run again by the next run, which skips the steps already COMPLETED.
        command = shlex.join(["emrml", "run", pipeline])
        message = f"interrupted: the pipeline is not finished; `{command}` resumes it"
        raise fail(message, INTERRUPTED_EXIT_CODE) from None
    if current.json:
        print_json({"Steps": [{"Id": o.step.id, "Status": o.status, "Skipped": o.skipped} for o in outcomes]})
    failed = [outcome for outcome in outcomes if outcome.status != "COMPLETED"]
    if failed:
        step = failed[0].step
        message = f"step {step.id!r} ended {failed[0].status}: {failed[0].message or ''}".rstrip(": ")
        # The exit code every command gives an object whose job ended FAILED, not 1 (an internal error).
        raise fail(message, JOB_FAILED_EXIT_CODE)
    if not current.json:
        for outcome in outcomes:
            note = " (already)" if outcome.skipped else ""
            current.console.print(f"{outcome.step.id} ({outcome.step.operation}): {outcome.status}{note}")
    if not current.json:
        skipped = sum(outcome.skipped for outcome in outcomes)
        done = f"{len(outcomes)} steps COMPLETED ({skipped} already were)"
        current.console.print(f"Pipeline {pipeline}: {done}.")


def _run(current: Any, service: Any, steps: list[Any]) -> list[Any]:
    from emrml.service import pipelines

    bar = job_progress(current)
    tasks: dict[str, Any] = {}

    def on_step(step: Any, what: str) -> None:
        label = f"{step.id} ({step.operation})"
        description = label if what == "running" else f"{label}: already COMPLETED"
        tasks[step.id] = bar.add_task(description, total=1.0)
        if what == "skipped":
            bar.update(tasks[step.id], completed=1.0)

    def progress(step: Any, fraction: float, message: str | None) -> None:
        bar.update(tasks[step.id], completed=fraction)

    with bar:
        return pipelines.run(service, steps, on_step=on_step, progress=progress)


def _print_emr_step(current: Any, location: str, environment: str | None) -> None:
    from emrml.config import Settings
    from emrml.engine.spark import submit

    settings = Settings.load(home=current.home)
    step = submit.emr_step(settings, location, environment=environment)
    if current.json:
        print_json({"Steps": step, "SparkSubmit": step[0]["Args"]})
    else:
        typer.echo("# aws emr add-steps --cluster-id CLUSTER_ID --steps file://step.json, with step.json:")
        typer.echo(submit.emr_step_json(settings, location, environment=environment))
        typer.echo("# the same as a spark-submit line on the master node:")
        typer.echo(shlex.join(step[0]["Args"]))  # type: ignore[arg-type]
    for note in submit.yarn(settings, location).notes:
        typer.echo(f"note: {note}", err=True)
