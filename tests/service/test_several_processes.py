"""Several processes on one home and metastore: servers of ``emrml serve --workers``, two servers, a server
and CLI commands. Each process is played here by an object of its own on the same metastore, driven by hand
so that the interleaving is the one under test."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_jobs import create_bank

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.jobs import TERMINAL, JobRunner
from emrml.service.metastore import DataSource


def test_a_job_claimed_by_another_process_holds_no_job_slot_here(
    settings: Settings, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server lists a job as queued, another process claims it first: the server's slot goes to its next
    job at once rather than waiting out the other process's run."""
    from emrml.web.scheduler import JobScheduler

    # A long lease: the other process's job is not taken over as silent while the test runs.
    app = EmrML(Settings(**{**settings.__dict__, "job_lease_seconds": 3600.0}))
    bank = shared_datasets / "bank_marketing" / "data.csv"
    create_bank(app, "ds-elsewhere", bank, shared_datasets)
    create_bank(app, "ds-here", bank, shared_datasets)
    listed = app.jobs.pending()
    assert listed == [("DataSource", "ds-elsewhere"), ("DataSource", "ds-here")]
    # Another server claims the first job after this one listed it, and runs it for longer than the test.
    assert JobRunner(app.settings, app.sessions).claim("DataSource", "ds-elsewhere") == 1
    listings = iter([listed])
    current = app.jobs.pending
    monkeypatch.setattr(app.jobs, "pending", lambda: next(listings, None) or current())
    scheduler = JobScheduler(app, slots=1, poll_seconds=0.1)
    scheduler.start()
    try:
        deadline = time.monotonic() + 120
        while (result := app.call("GetDataSource", {"DataSourceId": "ds-here"}))["Status"] not in TERMINAL:
            assert time.monotonic() < deadline, f"ds-here never ran: {result['Status']}"
            time.sleep(0.1)
        assert result["Status"] == "COMPLETED", result.get("Message")
        with app.sessions() as session:
            assert session.get(DataSource, "ds-elsewhere").status == "INPROGRESS"  # left to its runner
    finally:
        with app.sessions() as session, session.begin():
            session.get(DataSource, "ds-elsewhere").status = "FAILED"  # ends any thread still waiting on it
        scheduler.stop(timeout=30)
        app.close()
