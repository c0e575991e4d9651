"""Two attempts of one job: an attempt the runner gave up while its worker still ran, and the next one."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_jobs import _pending_batch_prediction

from emrml.service.app import EmrML
from emrml.service.metastore import BatchPrediction


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
    _pending_batch_prediction(app, "two", out, shared_datasets)
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
