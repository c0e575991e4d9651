"""A job's fenced step (the one that makes an output appear) runs outside any metastore transaction, the
job held for its attempt meanwhile: the completion of an S3 upload waiting on the network no longer keeps
the metastore's other writers waiting (SQLite locks the whole database for a write)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.rows import DataSource
from emrml.service.worker import JobContext, JobStopped
from emrml.storage import locations
from emrml.storage.locations import atomic_write
from emrml.storage.s3 import MIN_PART_BYTES, S3Store
from s3_server import S3


@pytest.fixture
def app(tmp_path: Path) -> Iterator[EmrML]:
    """On SQLite, whose writers all wait for the one holding the database; a lease of a second, so that a
    runner gives up a silent attempt at once."""
    application = EmrML(Settings.load(environ={}, home=tmp_path / "home", job_lease_seconds=1.0))
    yield application
    application.close()


def _claimed(app: EmrML, entity_id: str, shared_datasets: Path) -> JobContext:
    schema = (shared_datasets / "bank_marketing" / "data.csv.schema").read_text()
    location = str(shared_datasets / "bank_marketing" / "data.csv")
    app.call(
        "CreateDataSourceFromS3",
        {"DataSourceId": entity_id, "DataSpec": {"DataLocationS3": location, "DataSchema": schema}},
    )
    attempt = app.jobs.claim("DataSource", entity_id)
    return JobContext(app.settings, "DataSource", entity_id, app.sessions, attempt)


class InThread:
    """``function()`` on a thread; ``join`` returns what it raised (None when it returned)."""

    def __init__(self, function: Callable[[], None]) -> None:
        self.raised: BaseException | None = None

        def run() -> None:
            try:
                function()
            except BaseException as exc:
                self.raised = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self) -> BaseException | None:
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.raised


def _held_in_step(context: JobContext) -> tuple[InThread, threading.Event]:
    """``context.fenced`` running on a thread with a step that waits (returned once it is in the step) until
    the event is set; ``join`` the thread to learn what the fenced step raised."""
    started, release = threading.Event(), threading.Event()

    def step() -> None:
        started.set()
        assert release.wait(60)

    stepping = InThread(lambda: context.fenced(step))
    assert started.wait(60)
    return stepping, release


def _write_elsewhere(app: EmrML) -> None:
    """A write by another connection that waits at most a second for the database."""
    connection = sqlite3.connect(make_url(app.settings.database_url).database, timeout=1.0)
    try:
        connection.execute("UPDATE data_sources SET name = 'renamed' WHERE id = 'ds-other'")
        connection.commit()
    finally:
        connection.close()


def test_the_metastore_takes_writes_while_a_fenced_upload_completes(
    app: EmrML, s3: S3, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = _claimed(app, "ds-upload", shared_datasets)
    _claimed(app, "ds-other", shared_datasets)
    store = S3Store(replace(locations._S3.store.settings, part_bytes=MIN_PART_BYTES))
    monkeypatch.setattr(locations._S3, "store", store)
    completing, release = threading.Event(), threading.Event()

    def held(**_: Any) -> None:
        completing.set()
        assert release.wait(60)

    store.client.meta.events.register("before-call.s3.CompleteMultipartUpload", held)
    data = os.urandom(MIN_PART_BYTES + 1000)  # two parts: a multipart upload

    def publish() -> None:
        with atomic_write(s3.uri("out/sample.bin"), context.fenced) as out:
            out.write(data)

    publishing = InThread(publish)
    try:
        assert completing.wait(60)
        _write_elsewhere(app)  # "database is locked" while the step held the metastore's transaction
        time.sleep(1.5)  # the lease runs out: only the step's reservation keeps the job the attempt's
        app.jobs.recover()
        with app.sessions() as session:
            row = session.get(DataSource, "ds-upload")
            assert (row.status, row.attempts) == ("INPROGRESS", context.attempt)
        assert s3.list_keys("out/") == []  # not visible before its completion
    finally:
        release.set()
    assert publishing.join() is None
    assert s3.get("out/sample.bin") == data
    with app.sessions() as session:
        assert session.get(DataSource, "ds-other").name == "renamed"


def test_a_fenced_step_of_an_attempt_no_longer_holding_the_job_does_not_run(
    app: EmrML, shared_datasets: Path
) -> None:
    context = _claimed(app, "ds-stale", shared_datasets)
    assert app.jobs._retry_or_fail("DataSource", "ds-stale", context.attempt, "the worker stopped responding")
    ran: list[str] = []
    with pytest.raises(JobStopped):
        context.fenced(lambda: ran.append("step"))
    assert ran == []


def test_an_object_deleted_while_its_fenced_step_ran_stops_the_job(app: EmrML, shared_datasets: Path) -> None:
    context = _claimed(app, "ds-deleted", shared_datasets)
    stepping, release = _held_in_step(context)
    try:
        app.call("DeleteDataSource", {"DataSourceId": "ds-deleted"})  # not kept waiting by the step
    finally:
        release.set()
    assert isinstance(stepping.join(), JobStopped)  # its job unwinds; what the step wrote is removed


def test_a_worker_silent_in_the_middle_of_a_fenced_step_is_given_up_within_the_lease(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step's reservation reaches a little ahead and is renewed while the step runs: a runner (on
    another machine, which cannot see the worker's process) that hears nothing from it for a lease and
    that little gives the attempt up, as it gives up any silent worker."""
    from emrml.service import jobs

    context = _claimed(app, "ds-silent", shared_datasets)
    stepping, release = _held_in_step(context)
    try:
        lease = app.settings.job_lease_seconds
        # The runner's clock two leases on: its last renewal (at most now) is more than a lease and a
        # reservation old.
        monkeypatch.setattr(jobs, "now", lambda: time.time() + 2 * lease)
        app.jobs.recover()
        with app.sessions() as session:
            row = session.get(DataSource, "ds-silent")
            assert (row.status, row.tries) == ("PENDING", 1), row.message
            assert "stopped responding" in row.message
    finally:
        release.set()
    assert isinstance(stepping.join(), JobStopped)  # given up: the attempt records nothing after its step


def test_the_metastore_takes_writes_while_a_failed_jobs_results_are_removed(
    app: EmrML, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal of a FAILED job's results (S3 deletions waiting on the network) runs outside any
    transaction, the row held meanwhile: another writer is not kept waiting, and a re-run queues the job
    again only once the removal is done (its next attempt's results are not removed with the failed one's)."""
    from emrml.service import tasks, worker  # noqa: F401  (tasks registers its own removals: first)

    context = _claimed(app, "ds-failed", shared_datasets)
    _claimed(app, "ds-other", shared_datasets)
    assert context.write(status="FAILED", message="the data was not there yet", worker=None)
    removing, release = threading.Event(), threading.Event()
    removed: list[str] = []

    def discard(_settings: Settings, entity: Any) -> None:
        removing.set()
        assert release.wait(60)
        removed.append(entity.id)

    monkeypatch.setitem(worker.JOB_DISCARDS, "DataSource", discard)
    discarded: list[bool] = []
    requeued: list[bool] = []
    removal = InThread(
        lambda: discarded.append(
            worker.discard_failed(app.settings, app.sessions, "DataSource", "ds-failed", context.attempt)
        )
    )
    try:
        assert removing.wait(60)
        _write_elsewhere(app)  # "database is locked" while the removal held the metastore's transaction
        requeue = InThread(lambda: requeued.append(app.jobs.requeue_failed("DataSource", "ds-failed")))
        requeue.thread.join(1.0)
        assert requeue.thread.is_alive()  # waiting for the removal
        with app.sessions() as session:
            assert session.get(DataSource, "ds-failed").status == "FAILED"
    finally:
        release.set()
    assert removal.join() is None and requeue.join() is None
    assert discarded == requeued == [True] and removed == ["ds-failed"]
    with app.sessions() as session:
        assert session.get(DataSource, "ds-failed").status == "PENDING"
        assert session.get(DataSource, "ds-other").name == "renamed"
