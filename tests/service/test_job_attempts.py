"""Two attempts of one job: an attempt the runner gave up while its worker still ran, and the next one."""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jobs_helpers import bank_sample, create_bank, pending_bank, pending_batch_prediction

from cli_helpers import invoke
from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.rows import ENTITY_CLASSES, BatchPrediction


def test_a_given_up_attempt_still_running_keeps_to_its_own_temporary_folder(
    app: EmrML, shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 of a batch prediction is given up while its worker scores (its heartbeats were lost, say),
    and attempt 2 starts. Attempt 1 reaches its next progress point, stops and cleans up while attempt 2 is
    in the middle of its scoring: it removes its own temporaries only, and attempt 2 completes with every
    record and leaves no temporary behind. (Both attempts run on threads of the test, as ``serve --engine
    spark`` runs jobs, so that events can order them.)"""
    from emrml.service.worker import JobContext, run_job_in_this_process

    out = tmp_path / "out"
    pending_batch_prediction(app, "two", out, shared_datasets)
    report = JobContext.progress
    first_scoring, second_scoring, first_done = threading.Event(), threading.Event(), threading.Event()

    def interleaved(context: JobContext, fraction: float, message: str | None = None) -> None:
        if context.kind == "BatchPrediction" and message == "scoring records" and fraction > 0.1:
            if context.attempt == 1 and not first_scoring.is_set():
                first_scoring.set()
                assert second_scoring.wait(120)
            elif context.attempt == 2 and not second_scoring.is_set():
                second_scoring.set()
                assert first_done.wait(120)
        report(context, fraction, message)

    monkeypatch.setattr(JobContext, "progress", interleaved)

    def run(attempt: int, done: threading.Event | None = None) -> None:
        try:
            run_job_in_this_process(app.settings, "BatchPrediction", "bp-two", attempt, worker=False)
        finally:
            if done is not None:
                done.set()

    first = app.jobs.claim("BatchPrediction", "bp-two")
    stale = threading.Thread(target=run, args=(first, first_done))
    stale.start()
    assert first_scoring.wait(120)
    assert app.jobs._retry_or_fail("BatchPrediction", "bp-two", first, "the worker stopped responding")
    second = app.jobs.claim("BatchPrediction", "bp-two")
    assert second == 2
    run(second)
    stale.join(120)
    result = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-two"})
    assert result["Status"] == "COMPLETED", result.get("Message")
    assert result["TotalRecordCount"] == 41_188
    with app.sessions() as session:
        assert session.get(BatchPrediction, "bp-two").attempts == 2
    assert sorted(path.name for path in out.rglob("*")) == [
        "batch-prediction",
        "bp-two-data.csv.gz",
        "bp-two.manifest",
        "result",
    ]


def _stale_attempt_ends_after_the_next_completes(
    app: EmrML,
    tag: str,
    held: threading.Event,
    done: threading.Event,
    kind: str = "BatchPrediction",
    completed: Callable[[], None] = lambda: None,
) -> None:
    """Attempt 1 of the job of ``kind`` ``<prefix>-<tag>`` runs on a thread until it sets ``held`` (from a
    hook of the test's) and waits there for ``done``; the runner gives it up, attempt 2 runs to COMPLETED,
    and only then (``done``, after a call of ``completed``) does attempt 1 go on to its end. (Both attempts
    run on threads of the test, as ``serve --engine spark`` runs jobs.)"""
    from emrml.service.worker import run_job_in_this_process

    entity_id = {"BatchPrediction": "bp", "MLModel": "ml", "DataSource": "ds"}[kind] + f"-{tag}"
    first = app.jobs.claim(kind, entity_id)
    stale = threading.Thread(
        target=run_job_in_this_process,
        args=(app.settings, kind, entity_id, first),
        kwargs={"worker": False},
        name="attempt-1",
    )
    stale.start()
    try:
        assert held.wait(120)
        assert app.jobs._retry_or_fail(kind, entity_id, first, "the worker stopped responding")
        second = app.jobs.claim(kind, entity_id)
        assert second == first + 1
        run_job_in_this_process(app.settings, kind, entity_id, second, worker=False)
        with app.sessions() as session:
            row = session.get(ENTITY_CLASSES[kind], entity_id)
            assert row.status == "COMPLETED", row.message
        completed()
    finally:
        done.set()
        stale.join(120)
    assert not stale.is_alive()


def _output(out: Path) -> list[str]:
    return sorted(path.name for path in out.rglob("*"))


def test_a_given_up_attempt_that_publishes_late_leaves_the_next_attempts_output_alone(
    app: EmrML, shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 is given up as it publishes its results (its worker stuck on a slow disk or upload, its
    heartbeats lost), and attempt 2 completes the job. Attempt 1 then goes on: it must not
    write its manifest over attempt 2's, nor remove, as it stops, the results and manifest that are then
    attempt 2's (a COMPLETED batch prediction without its output)."""
    from emrml.storage import publishing

    out = tmp_path / "out"
    pending_batch_prediction(app, "late", out, shared_datasets)
    publish_file = publishing.publish_file
    held, done = threading.Event(), threading.Event()

    def slow_when_stale(source: str, target: str, *commit: Any) -> None:
        publish_file(source, target, *commit)
        if threading.current_thread().name == "attempt-1":
            held.set()
            assert done.wait(120)

    monkeypatch.setattr(publishing, "publish_file", slow_when_stale)
    _stale_attempt_ends_after_the_next_completes(app, "late", held, done)
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-late"})["Status"] == "COMPLETED"
    assert _output(out) == ["batch-prediction", "bp-late-data.csv.gz", "bp-late.manifest", "result"]


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_given_up_attempt_past_its_look_at_the_job_cannot_publish_over_the_next_attempts_output(
    store: str,
    app: EmrML,
    shared_datasets: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """Attempt 1 has scored and found that it still holds the job; its last write is under way (the
    manifest's on a slow disk, a result's upload to S3) when the runner gives it up. Meanwhile the model's
    ScoreThreshold changes and a second file joins the data, and attempt 2 completes the job with both.
    Attempt 1's write must then not land over attempt 2's output: the COMPLETED batch prediction's manifest
    names the results of both files, and its results give the best answers of the new threshold."""
    from emrml.engine import batch
    from emrml.storage import publishing

    if store == "s3":
        s3 = request.getfixturevalue("s3")
        out, read = s3.uri("out/"), lambda key: s3.get("out/" + key)
    else:
        folder = tmp_path / "out"
        out, read = str(folder) + "/", lambda key: (folder / key).read_bytes()
    data = tmp_path / "data"
    data.mkdir()
    with open(shared_datasets / "bank_marketing" / "data.csv", encoding="utf-8") as source:
        rows = [line for _, line in zip(range(3001), source, strict=False)]
    (data / "data.csv").write_text("".join(rows))
    create_bank(app, "ds-late", data, shared_datasets)
    request_model = {"MLModelId": "ml-late", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-late"}
    app.call("CreateMLModel", request_model)
    assert app.wait("MLModel", "ml-late")["Status"] == "COMPLETED"
    app.call(
        "CreateBatchPrediction",
        {
            "BatchPredictionId": "bp-late",
            "MLModelId": "ml-late",
            "BatchPredictionDataSourceId": "ds-late",
            "OutputUri": out,
        },
    )
    held, done = threading.Event(), threading.Event()

    def hold_the_stale_attempt() -> None:
        if threading.current_thread().name == "attempt-1" and not held.is_set():
            # Attempt 1 read the threshold (0.5) and listed the data at its start; attempt 2 will not.
            app.call("UpdateMLModel", {"MLModelId": "ml-late", "ScoreThreshold": 0.2})
            (data / "more.csv").write_text(rows[0] + "".join(rows[1:101]))
            held.set()
            assert done.wait(120)

    if store == "s3":
        # Held as its results are on their way, before the step that makes them appear: a small one's
        # PutObject is that step (``storage.publishing``).
        stage = publishing._stage

        def slow_upload(path: str, location: str) -> Any:
            hold_the_stale_attempt()
            return stage(path, location)

        monkeypatch.setattr(publishing, "_stage", slow_upload)
    else:
        atomic_write = batch.atomic_write

        def slow_disk(location: str, *commit: Any) -> Any:
            hold_the_stale_attempt()
            return atomic_write(location, *commit)

        monkeypatch.setattr(batch, "atomic_write", slow_disk)
    _stale_attempt_ends_after_the_next_completes(app, "late", held, done)

    completed = app.call("GetBatchPrediction", {"BatchPredictionId": "bp-late"})
    assert completed["Status"] == "COMPLETED" and completed["TotalRecordCount"] == 3100
    results = out + "batch-prediction/result/"
    manifest = json.loads(read("batch-prediction/bp-late.manifest"))
    assert sorted(manifest.values()) == [results + "bp-late-data.csv.gz", results + "bp-late-more.csv.gz"]
    lines = gzip.decompress(read("batch-prediction/result/bp-late-data.csv.gz")).decode().splitlines()
    assert lines[0] == "trueLabel,bestAnswer,score" and len(lines) == 3001
    answers = [line.split(",")[1:] for line in lines[1:]]
    assert all(answer == ("1" if float(score) >= 0.2 else "0") for answer, score in answers)
    # ...which the old threshold would not all have given.
    assert any(answer != ("1" if float(score) >= 0.5 else "0") for answer, score in answers)
    if store == "local":
        assert _output(folder) == [
            "batch-prediction", "bp-late-data.csv.gz", "bp-late-more.csv.gz", "bp-late.manifest", "result"
        ]  # fmt: skip


def test_a_given_up_attempt_that_starts_its_scoring_late_keeps_the_next_attempts_manifest(
    app: EmrML, shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 is given up before its scoring starts (its worker slow to start, its heartbeats lost), and
    attempt 2 completes the job. Attempt 1's scoring then starts, which removes the manifest an earlier
    attempt may have left: not the manifest of attempt 2, which tells readers its results are complete."""
    from emrml.service import tasks

    out = tmp_path / "out"
    pending_batch_prediction(app, "slow", out, shared_datasets)
    datasource_data = tasks._datasource_data
    held, done = threading.Event(), threading.Event()

    def slow_when_stale(source: Any) -> Any:
        if threading.current_thread().name == "attempt-1":
            held.set()
            assert done.wait(120)
        return datasource_data(source)

    monkeypatch.setattr(tasks, "_datasource_data", slow_when_stale)
    _stale_attempt_ends_after_the_next_completes(app, "slow", held, done)
    assert app.call("GetBatchPrediction", {"BatchPredictionId": "bp-slow"})["Status"] == "COMPLETED"
    assert _output(out) == ["batch-prediction", "bp-slow-data.csv.gz", "bp-slow.manifest", "result"]


@pytest.mark.parametrize("kind", ["DataSource", "MLModel"])
def test_a_given_up_attempt_cannot_replace_the_file_the_next_attempt_completed_with(
    kind: str, app: EmrML, shared_datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A datasource's row sample and a model's file have one name for every attempt of the job. Attempt 1
    is given up as it writes its file (the disk slow, its heartbeats lost), and attempt 2 completes the
    job; attempt 1's file must then not replace attempt 2's, which the COMPLETED object was recorded with
    (the model's size, the datasource's suggested recipe)."""
    from emrml.engine import training
    from emrml.service import tasks

    module, name = (tasks, "atomic_write") if kind == "DataSource" else (training, "save_artifact")
    write = getattr(module, name)
    held, done = threading.Event(), threading.Event()
    written: list[int] = []

    def slow_when_stale(*arguments: Any) -> Any:
        if threading.current_thread().name == "attempt-1":
            held.set()
            assert done.wait(120)
        return write(*arguments)

    # A sample of the bank data: each job writes its file all the same, in less time than of all of it.
    (tmp_path / "sample.csv").write_bytes(bank_sample(shared_datasets))
    create_bank(app, "ds-file", tmp_path / "sample.csv", shared_datasets)
    if kind == "DataSource":
        path = lambda: tasks.sample_path(app.settings, "ds-file")  # noqa: E731
    else:
        assert app.wait("DataSource", "ds-file")["Status"] == "COMPLETED"
        request = {"MLModelId": "ml-file", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-file"}
        app.call("CreateMLModel", request)
        path = lambda: training.artifact_path(app.settings, "ml-file")  # noqa: E731
    monkeypatch.setattr(module, name, slow_when_stale)
    completed = lambda: written.append(os.stat(path()).st_ino)  # noqa: E731
    _stale_attempt_ends_after_the_next_completes(app, "file", held, done, kind, completed)
    assert os.stat(path()).st_ino == written[0]
    assert [p.name for p in path().parent.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_job_given_up_by_its_runner_keeps_how_far_it_got_as_a_failed_job_does(
    settings: Settings, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that fails by itself keeps the progress it last reported; one its runner gives up (its worker
    died on the last attempt) keeps it too, and the API and the CLI show both alike."""
    from emrml.errors import InvalidInputException
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers the job functions)

    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 1}))
    pending_bank(app, "ds-given-up", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-given-up")
    worker.JobContext(app.settings, "DataSource", "ds-given-up", app.sessions, attempt).progress(
        0.4, "reading"
    )
    assert app.jobs._retry_or_fail("DataSource", "ds-given-up", attempt, "the worker process died")

    def failing(context: worker.JobContext) -> dict:
        context.progress(0.4, "reading")
        raise InvalidInputException("the data was bad")

    pending_bank(app, "ds-failed", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-failed")
    monkeypatch.setitem(worker.JOB_FUNCTIONS, "DataSource", failing)
    worker.run_job_in_this_process(app.settings, "DataSource", "ds-failed", attempt, worker=False)
    monkeypatch.setenv("EMRML_HOME", str(app.settings.home))
    monkeypatch.setenv("EMRML_METASTORE_URL", app.settings.database_url)
    for entity_id in ("ds-given-up", "ds-failed"):
        described = app.call("GetDataSource", {"DataSourceId": entity_id})
        assert (described["Status"], described["Progress"]) == ("FAILED", 40.0)
        assert "FAILED at 40%" in invoke("datasource", "show", entity_id).stdout
    # A job failed before it ran (what it needed failed) got nowhere: it shows no progress.
    request = {"MLModelId": "ml-never", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-never"}
    pending_bank(app, "ds-never", shared_datasets)
    app.call("CreateMLModel", request)
    app.jobs._fail_pending("MLModel", "ml-never", "DataSource 'ds-never' is FAILED")
    never = app.call("GetMLModel", {"MLModelId": "ml-never"})
    assert never["Status"] == "FAILED" and "Progress" not in never
    app.close()


def test_a_failed_job_queued_again_gets_new_attempt_numbers_and_its_tries_anew(
    settings: Settings, shared_datasets: Path
) -> None:
    """A pipeline re-run queues a FAILED job again (``requeue_failed``): its tries start anew, but its
    attempts get numbers it never had, so that a worker of its first run still alive (given up, its
    heartbeats lost) cannot record its outcome over the re-run's."""
    from emrml.service import worker

    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 2}))
    pending_bank(app, "ds-again", shared_datasets)
    first = app.jobs.claim("DataSource", "ds-again")
    stale = worker.JobContext(app.settings, "DataSource", "ds-again", app.sessions, first)
    assert app.jobs._retry_or_fail("DataSource", "ds-again", first, "the worker stopped responding")
    second = app.jobs.claim("DataSource", "ds-again")
    assert app.jobs._retry_or_fail("DataSource", "ds-again", second, "the worker process died")
    failed = app.call("GetDataSource", {"DataSourceId": "ds-again"})
    assert failed["Status"] == "FAILED" and "on attempt 2 of 2; giving up" in failed["Message"]

    assert app.jobs.requeue_failed("DataSource", "ds-again")
    third = app.jobs.claim("DataSource", "ds-again")
    assert third not in (first, second)
    assert not stale.write(status="COMPLETED", message=None)  # the first run's worker records nothing
    assert app.jobs._retry_or_fail("DataSource", "ds-again", third, "the worker process died")
    retried = app.call("GetDataSource", {"DataSourceId": "ds-again"})
    assert (
        retried["Status"] == "PENDING" and "on attempt 1 of 2; the job will be retried" in retried["Message"]
    )
    fourth = app.jobs.claim("DataSource", "ds-again")
    worker.run_job_in_this_process(app.settings, "DataSource", "ds-again", fourth, worker=False)
    completed = app.call("GetDataSource", {"DataSourceId": "ds-again"})
    assert completed["Status"] == "COMPLETED", completed.get("Message")
    assert completed["NumberOfFiles"] == 1
    app.close()


def test_the_temporary_files_of_a_killed_attempt_go_when_the_next_attempt_writes_the_file(
    app: EmrML, shared_datasets: Path, tmp_path: Path
) -> None:
    """A worker killed while it wrote a datasource's sample, a model's file or a batch prediction's
    manifest leaves a hidden temporary file beside it. The next attempt, which writes the file again and
    completes the job, removes it: nothing of the killed attempt stays behind for good, in the home or in
    the user's output folder."""
    from emrml.engine.training import artifact_path
    from emrml.service.tasks import sample_path

    out = tmp_path / "out"
    left = [
        sample_path(app.settings, "ds-killed").with_name(".ds-killed.sample.arrow.0123456789abcdef.tmp"),
        artifact_path(app.settings, "ml-killed").with_name(".ml-killed.zip.k1lled0_.tmp"),
        out / "batch-prediction" / ".bp-killed.manifest.0123456789abcdef.tmp",
    ]
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half written")
    pending_batch_prediction(app, "killed", out, shared_datasets)
    assert app.wait("BatchPrediction", "bp-killed")["Status"] == "COMPLETED"
    assert [path for path in left if path.exists()] == []
    assert _output(out) == ["batch-prediction", "bp-killed-data.csv.gz", "bp-killed.manifest", "result"]


def test_a_stopping_server_queues_again_the_jobs_it_runs_on_its_threads(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --engine spark`` runs jobs on its own threads. A restart is no failure of a job's there
    either: stopping the server stops them at their next progress point and queues them again, their try
    not counted, as it does jobs in worker processes (two restarts during a long training must not fail
    it, as the process's death would on the next start: 'the process running this job is gone')."""
    from emrml.service.rows import DataSource
    from emrml.service.worker import JobContext

    pending_bank(app, "ds-restart", shared_datasets)
    report = JobContext.progress
    running = threading.Event()

    def until_the_server_stops(context: JobContext, fraction: float, message: str | None = None) -> None:
        if not running.is_set():
            running.set()
            context.stopped.wait(20)
        report(context, fraction, message)

    monkeypatch.setattr(JobContext, "progress", until_the_server_stops)
    app.jobs.in_process = True
    thread = threading.Thread(target=app.jobs.wait, args=("DataSource", "ds-restart"))
    thread.start()
    try:
        assert running.wait(60)
        assert app.jobs.interrupt() == [("DataSource", "ds-restart")]
    finally:
        thread.join(60)
    assert not thread.is_alive()
    described = app.call("GetDataSource", {"DataSourceId": "ds-restart"})
    assert described["Status"] == "PENDING", described.get("Message")
    assert "stopped before it ended" in described["Message"]
    with app.sessions() as session:
        row = session.get(DataSource, "ds-restart")
        assert (row.tries, row.attempts, row.worker) == (0, 1, None)


def test_a_worker_whose_job_was_given_up_and_queued_again_is_stopped_so_the_job_runs_again(
    app: EmrML, shared_datasets: Path
) -> None:
    """A worker whose heartbeats stopped (hung on a disk, stopped by a signal) has its job given up and
    queued again, while its runner still waits for it: the runner stops it, and so runs the next attempt,
    rather than wait for it for good (the server's scheduler starts no other runner for a job it runs)."""
    _stopped_when_given_up(app, "ds-hung", "PENDING", shared_datasets)


def test_a_hung_worker_of_a_job_given_up_is_stopped_so_its_job_slot_is_freed(
    settings: Settings, shared_datasets: Path
) -> None:
    """A worker whose heartbeats stopped has its job given up (FAILED: its last attempt) while its runner
    still waits for it: the runner stops it rather than wait for it for good, since a server's scheduler
    counts the job as running, holding one of its job slots, until the runner returns."""
    app = EmrML(Settings(**{**settings.__dict__, "job_max_attempts": 1}))
    try:
        _stopped_when_given_up(app, "ds-failed", "FAILED", shared_datasets)
    finally:
        app.close()


def _stopped_when_given_up(app: EmrML, entity_id: str, status: str, shared_datasets: Path) -> None:
    """A hung worker of ``entity_id``'s job, given up (then ``status``) while its runner waits for it, is
    stopped by the runner's watch."""
    import multiprocessing
    import time

    pending_bank(app, entity_id, shared_datasets)
    attempt = app.jobs.claim("DataSource", entity_id)
    hung = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(120,), daemon=True)
    hung.start()
    assert app.jobs._retry_or_fail("DataSource", entity_id, attempt, "the worker stopped responding")
    assert app.call("GetDataSource", {"DataSourceId": entity_id})["Status"] == status
    stopped: list[bool] = []
    watcher = threading.Thread(
        target=lambda: stopped.append(app.jobs._watch(hung, "DataSource", entity_id, attempt, None))
    )
    watcher.start()
    watcher.join(60)
    try:
        assert stopped == [True] and not hung.is_alive()
    finally:
        hung.kill()
        watcher.join()


def test_a_failed_job_queued_again_at_once_keeps_the_results_of_its_next_attempt(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's failure is recorded, then what it wrote is removed. A pipeline re-run queues a FAILED job
    again (``requeue_failed``) as soon as the failure is recorded: should its next attempt complete before
    the failed attempt's removal, the removal must not take the results the next attempt published (a
    COMPLETED datasource without its sample)."""
    from emrml.errors import InvalidInputException
    from emrml.service import tasks, worker
    from emrml.service.worker import JOB_FUNCTIONS, JobContext

    build, record = JOB_FUNCTIONS["DataSource"], worker._record_outcome

    def failing_first(context: JobContext) -> dict[str, Any]:
        if context.attempt == 1:
            raise InvalidInputException("the data was not there yet")
        return build(context)

    def requeued_and_run_again(context: JobContext, values: dict[str, Any]) -> str | None:
        status = record(context, values)
        if context.attempt == 1:
            assert app.jobs.requeue_failed("DataSource", "ds-rerun")
            app.jobs.wait("DataSource", "ds-rerun")
        return status

    monkeypatch.setitem(JOB_FUNCTIONS, "DataSource", failing_first)
    monkeypatch.setattr(worker, "_record_outcome", requeued_and_run_again)
    app.jobs.in_process = True
    pending_bank(app, "ds-rerun", shared_datasets)
    app.jobs.wait("DataSource", "ds-rerun")
    described = app.call("GetDataSource", {"DataSourceId": "ds-rerun"})
    assert described["Status"] == "COMPLETED", described.get("Message")
    assert tasks.read_sample(app.settings, "ds-rerun").num_rows > 0


def test_a_job_queued_again_then_deleted_leaves_none_of_its_earlier_attempt_results(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt that published its datasource's sample is stopped before it records its outcome (its
    server stopping), and the job queued again: the next attempt would replace the sample. The object
    deleted before that attempt starts, no attempt of its job ever completes: the sample goes with it, as
    it goes when the object is deleted while its job runs."""
    from emrml.service import tasks, worker
    from emrml.service.worker import run_job_in_this_process

    pending_bank(app, "ds-queued", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-queued")
    with monkeypatch.context() as patched:
        patched.setattr(worker, "_record_outcome", lambda _context, _values: None)  # stopped right then
        run_job_in_this_process(app.settings, "DataSource", "ds-queued", attempt, worker=False)
    assert tasks.sample_path(app.settings, "ds-queued").exists()
    assert app.jobs._requeue("DataSource", "ds-queued", attempt)
    app.call("DeleteDataSource", {"DataSourceId": "ds-queued"})
    assert app.call("GetDataSource", {"DataSourceId": "ds-queued"})["Status"] == "DELETED"
    assert not tasks.sample_path(app.settings, "ds-queued").exists()


def test_a_running_job_says_what_it_does_now_until_it_ends(
    settings: Settings, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its progress message (a step, or what it waits for: a Spark job without an executor), which only the
    CLI's progress bar showed, is in Get*/Describe* while the job runs, and gone once it ended."""
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers the job functions)

    app = EmrML(settings)
    pending_bank(app, "ds-running", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-running")
    waiting = "waiting for an executor (12 s; the job fails at 300 s, setting spark_executor_wait_seconds)"
    worker.JobContext(app.settings, "DataSource", "ds-running", app.sessions, attempt).progress(0.2, waiting)
    described = app.call("GetDataSource", {"DataSourceId": "ds-running"})
    assert (described["Status"], described["Progress"], described["ProgressMessage"]) == (
        "INPROGRESS",
        20.0,
        waiting,
    )
    (listed,) = app.call("DescribeDataSources", {"FilterVariable": "Status", "EQ": "INPROGRESS"})["Results"]
    assert listed["ProgressMessage"] == waiting
    assert app.jobs._retry_or_fail("DataSource", "ds-running", attempt, "the worker process died")
    assert "ProgressMessage" not in app.call("GetDataSource", {"DataSourceId": "ds-running"})
    app.close()


def test_an_attempt_that_ends_without_its_outcome_logs_what_its_row_tells(
    app: EmrML, shared_datasets: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An attempt stopped before it recorded its outcome says why as far as the job's row tells it: a
    later attempt took the job over, the job was queued again or given up, or, the row still its own, it
    was asked to stop (its runner stopping, or a signal from another process): not one guess for all."""
    from emrml.service import worker
    from emrml.service.rows import DataSource

    pending_bank(app, "ds-why", shared_datasets)
    attempt = app.jobs.claim("DataSource", "ds-why")
    context = worker.JobContext(app.settings, "DataSource", "ds-why", app.sessions, attempt)

    def logged(**row: Any) -> str:
        with app.sessions() as session, session.begin():
            entity = session.get(DataSource, "ds-why")
            for name, value in row.items():
                setattr(entity, name, value)
        caplog.clear()
        with caplog.at_level("WARNING", logger="emrml.service.worker"):
            worker._not_recorded(context, "stopped")
        [message] = [record.getMessage() for record in caplog.records]
        return message

    assert logged() == (
        "DataSource ds-why attempt 1: asked to stop while the job was still this attempt's"
        " (its runner stopping, or a signal) (stopped)"
    )
    assert logged(status="PENDING") == "DataSource ds-why attempt 1: the job was queued again (stopped)"
    assert logged(status="FAILED") == "DataSource ds-why attempt 1: the job was given up (stopped)"
    assert logged(status="INPROGRESS", attempts=2) == (
        "DataSource ds-why attempt 1: attempt 2 took the job over (stopped)"
    )
