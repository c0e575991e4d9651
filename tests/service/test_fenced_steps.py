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
from emrml.service.metastore import DataSource
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
    started, release = threading.Event(), threading.Event()

    def step() -> None:
        started.set()
        assert release.wait(60)

    stepping = InThread(lambda: context.fenced(step))
    try:
        assert started.wait(60)
        app.call("DeleteDataSource", {"DataSourceId": "ds-deleted"})  # not kept waiting by the step
    finally:
        release.set()
    assert isinstance(stepping.join(), JobStopped)  # its job unwinds; what the step wrote is removed
