"""Several processes on one home and metastore: servers of ``emrml serve --workers``, two servers, a server
and CLI commands. Each process is played here by an object of its own on the same metastore, driven by hand
so that the interleaving is the one under test."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest
from jobs_helpers import create_bank

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.jobs import TERMINAL, JobRunner
from emrml.service.rows import DataSource


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


#: A process opening the metastore of ``argv[1]`` with the home ``argv[2]``. After taking the migration lock
#: it looks at the schema again, then waits (up to a few seconds) for the other process to get as far, so
#: that without the lock both would migrate at once: ``argv[3]`` says it got there, ``argv[4]`` the other.
_OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from emrml.service import metastore

url, home, here, there = sys.argv[1:]
current, looks = metastore.schema_is_current, []

def looked(engine):
    answer = current(engine)
    looks.append(answer)
    if len(looks) == 2:
        Path(here).touch()
        deadline = time.monotonic() + 3
        while not Path(there).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return answer

metastore.schema_is_current = looked
metastore.migrate(metastore.open_engine(url), Path(home))
"""


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_machines_sharing_a_database_migrate_it_one_at_a_time(kind: str, tmp_path: Path) -> None:
    """Two processes, each with its own home (two machines), open one new PostgreSQL or MariaDB metastore at
    once: one migrates it, the other waits and finds it current, and neither fails."""
    from sqlalchemy import text

    from emrml.service.metastore import open_engine, schema_is_current
    from metastores import empty_metastore

    metastore_urls = empty_metastore(kind, tmp_path)
    url = next(metastore_urls)
    try:
        marks = [tmp_path / "looked-0", tmp_path / "looked-1"]
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _OPEN_AT_ONCE,
                    url,
                    str(tmp_path / f"home-{i}"),
                    str(marks[i]),
                    str(marks[1 - i]),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(2)
        ]
        outputs = [process.communicate(timeout=300)[0] for process in processes]
        assert [process.returncode for process in processes] == [0, 0], outputs
        engine = open_engine(url)
        try:
            assert schema_is_current(engine)
            with engine.connect() as connection:
                assert connection.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar() == 1
        finally:
            engine.dispose()
    finally:
        with suppress(StopIteration):
            next(metastore_urls)


def test_two_processes_creating_the_home_key_at_once_share_one_whole_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second process (another server, a CLI command) that opens a new home while the first writes its
    secrets.key reads a whole key, the same one, never a file created but not written yet."""
    from cryptography.fernet import Fernet

    from emrml.service.identity import SecretBox

    key_file = tmp_path / "secrets.key"
    other: list[SecretBox] = []
    generate = Fernet.generate_key

    def generate_while_another_starts() -> bytes:
        monkeypatch.setattr(Fernet, "generate_key", generate)
        other.append(SecretBox(key_file))  # the other process, as this one makes its key
        return generate()

    monkeypatch.setattr(Fernet, "generate_key", generate_while_another_starts)
    first = SecretBox(key_file)
    [second] = other
    assert second.decrypt(first.encrypt("secret")) == "secret"
    assert first.decrypt(second.encrypt("secret")) == "secret"
    assert [path.name for path in tmp_path.iterdir()] == ["secrets.key"]
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_servers_of_two_machines_starting_at_once_on_a_new_metastore_make_one_admin(
    app: EmrML, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each server of a new metastore shared by two machines (two homes) looks for users, finds none, and
    sets out to create the admin: one creates it and its password and writes them to its home; the other
    neither fails nor replaces the password the first wrote down."""
    from emrml.service.auth import ADMIN_CREDENTIALS_FILE, ensure_admin
    from emrml.service.identity import Identities
    from emrml.service.logins import Logins, ensure_admin_password

    homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    for home in homes:
        home.mkdir()
    identities = [Identities(app.sessions, home) for home in homes]
    logins = [Logins(app.sessions), Logins(app.sessions)]
    # What the second server saw before the first created anything.
    monkeypatch.setattr(identities[1], "count_users", iter([0, 1]).__next__)
    monkeypatch.setattr(logins[1], "has_password", lambda _user: False)

    created = ensure_admin(identities[0], homes[0])
    assert created is not None
    assert ensure_admin(identities[1], homes[1]) is None
    password = ensure_admin_password(logins[0], homes[0])
    assert password is not None
    assert ensure_admin_password(logins[1], homes[1]) is None

    written = json.loads((homes[0] / ADMIN_CREDENTIALS_FILE).read_text())
    assert written["aws_access_key_id"] == created[0].access_key_id
    assert logins[0].verify("admin", written["console_password"])
    assert not (homes[1] / ADMIN_CREDENTIALS_FILE).exists()
    assert [user.name for user in identities[0].list_users()] == ["admin"]


def test_a_job_of_a_container_with_the_same_host_name_is_not_taken_for_gone(
    app: EmrML, shared_datasets: Path
) -> None:
    """Containers sharing a host name (host networking, replicas given one ``hostname``) do not share pids:
    a job running in another one, whose pids do not exist here, is left to its lease, not retried at once
    (which then, seen from there, made this one's jobs look gone too, until both failed)."""
    import os
    import socket

    from emrml.lifetime import machine

    host, _, namespace = machine().partition("/")
    assert host == socket.gethostname() and namespace == str(os.stat("/proc/self/ns/pid").st_ino)
    bank = shared_datasets / "bank_marketing" / "data.csv"
    create_bank(app, "ds-next-door", bank, shared_datasets)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no process here has
    assert app.jobs.claim("DataSource", "ds-next-door") == 1
    with app.sessions() as session, session.begin():
        row = session.get(DataSource, "ds-next-door")
        row.worker = f"{host}/{int(namespace) + 1}:{gone.pid}:0123abcd pid={gone.pid}"
    app.jobs.recover()
    with app.sessions() as session:
        row = session.get(DataSource, "ds-next-door")
        assert (row.status, row.attempts) == ("INPROGRESS", 1)
