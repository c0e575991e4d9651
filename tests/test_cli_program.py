"""The ``emrml`` program's start and end (``emrml.cli_program``): a command that runs a job starts the job
fork server before the command line's own imports; a command ends without the interpreter's teardown, as
does the fork server once its clients are gone, their ``atexit`` functions run and their output flushed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emrml.cli_program import runs_a_job
from emrml.samples import bank_sample_schema, write_bank_sample
from metastores import Templates


@pytest.mark.parametrize(
    ("words", "runs"),
    [
        ("datasource create --id d --data x.csv", True),
        ("--home h --output json datasource create --id d --data x.csv", True),
        ("-o json --home=h model create --id m", True),
        ("datasource --output json create --id d", True),
        ("evaluation create --id e", True),
        ("batch-prediction create --id b", True),
        ("quickstart", True),
        ("quickstart --port 8081 --serve", True),
        ("datasource create --id d --no-wait", False),
        ("datasource create --help", False),
        ("--help", False),
        ("datasource list", False),
        ("datasource show create", False),
        ("--home create datasource list", False),  # a folder named "create"
        ("model wait m", False),
        ("serve", False),
        ("", False),
    ],
)
def test_the_commands_that_run_a_job_are_known_by_their_words(words: str, runs: bool) -> None:
    assert runs_a_job(words.split()) is runs


#: Run as the console script ``emrml`` (the module ``$PROBE_PRELOAD`` added to the job fork server's
#: preload): says, when the job fork server is started, whether typer was imported by then, and prints at
#: its ``atexit`` (with whether rich was imported) and when its modules are torn down.
PROGRAM = """
import os, sys, types
from emrml.service import forkserver

if os.environ.get("PROBE_PRELOAD"):
    forkserver.PRELOAD.append(os.environ["PROBE_PRELOAD"])
start = forkserver.start_early
def start_early():
    print("fork server", "after typer" if "typer" in sys.modules else "before typer", flush=True)
    start()
forkserver.start_early = start_early

class Teardown:
    def __del__(self, write=os.write):
        write(1, b"teardown\\n")

def at_exit():
    # A module made now: the teardown leaves the modules frozen with the collector's resume as they are.
    module = types.ModuleType("teardown_probe")
    module.kept = Teardown()
    sys.modules[module.__name__] = module
    print("atexit", "rich" if "rich" in sys.modules else "-")

import atexit
atexit.register(at_exit)
from emrml.cli import app

sys.exit(app())
"""


def _program(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = folder / "emrml"
    script.write_text(PROGRAM)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_a_command_that_runs_a_job_starts_the_fork_server_before_typer(
    tmp_path: Path, metastore_templates: Templates
) -> None:
    home = metastore_templates.sqlite_home(tmp_path / "home")
    data = write_bank_sample(tmp_path / "bank.csv", 50)
    (tmp_path / "bank.csv.schema").write_text(bank_sample_schema().to_json())
    command = ["--home", str(home), "--output", "json", "datasource", "create", "--id", "ds-1"]
    created = _program(tmp_path, *command, "--data", str(data))
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    # (the service's opening asks again: the fork server already runs)
    assert lines[0] == "fork server before typer"
    assert '"Status": "COMPLETED"' in created.stdout
    assert lines[-1] == "atexit -"  # --output json: no progress bar drawn, and rich not imported for one


def test_a_command_ended_before_its_job_stops_the_fork_server_it_started(
    tmp_path: Path, metastore_templates: Templates
) -> None:
    # The fork server's preload does not end here: the command's output is read to its end (the fork
    # server holds it) once the command has ended all the same.
    (tmp_path / "endless_preload.py").write_text("import time\ntime.sleep(600)\n")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "PROBE_PRELOAD": "endless_preload"}
    home = metastore_templates.sqlite_home(tmp_path / "home")
    command = ["--home", str(home), "datasource", "create", "--id", "ds-1"]
    ended = _program(tmp_path, *command, "--data", str(tmp_path / "no.csv"), env=env)
    assert ended.returncode == 2, ended.stderr  # no such data
    assert ended.stdout.splitlines()[0] == "fork server before typer"


@pytest.mark.parametrize(("words", "status"), [(["datasource", "list"], 0), (["datasource", "show", "x"], 3)])
def test_a_command_ends_without_the_teardown_its_atexit_run(
    tmp_path: Path, metastore_templates: Templates, words: list[str], status: int
) -> None:
    home = metastore_templates.sqlite_home(tmp_path / "home")
    ended = _program(tmp_path, "--home", str(home), "--output", "json", *words)
    assert ended.returncode == status, ended.stderr
    assert ended.stdout.splitlines()[-1] == "atexit -"  # the output flushed, its atexit run: nothing after
    assert "teardown" not in ended.stdout


def test_a_command_leaving_a_thread_running_ends_as_python_ends(tmp_path: Path) -> None:
    # Python's exit waits for the threads that are not daemons: so does the program's.
    code = """
import threading, time
from emrml.cli_program import end_program

def work():
    time.sleep(0.2)
    print("thread done", flush=True)

threading.Thread(target=work).start()
end_program(4)
"""
    ended = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (ended.returncode, ended.stdout) == (4, "thread done\n")


#: Preloaded by the job fork server (``TEARDOWN_PROBE``): writes to the file ``$PROBE_FILE`` that it was
#: loaded, and when the modules are torn down at the exit.
PROBE_MODULE = """
import os, sys, types

out = os.open(os.environ["PROBE_FILE"], os.O_WRONLY | os.O_APPEND)
os.write(out, b"loaded\\n")

class Teardown:
    def __del__(self, write=os.write, out=out):
        write(out, b"teardown\\n")

def at_exit():
    # A module made now: the teardown leaves what the fork server preloaded (frozen by ``preload_end``) as
    # it is.
    module = types.ModuleType("teardown_at_exit")
    module.kept = Teardown()
    sys.modules[module.__name__] = module

import atexit
atexit.register(at_exit)
"""

#: Starts the job fork server as a command does, the probe among its preload, and forks a worker from it
#: (so the preload is done).
TEARDOWN_PROBE = """
from emrml.service import forkserver

forkserver.PRELOAD.append("teardown_probe")
forkserver.start_early()
spawn = forkserver.context()
with forkserver.main_hidden():
    worker = spawn.Process(target=print, args=("worker",))
    worker.start()
worker.join()
"""


def test_the_fork_server_ends_without_its_teardown_with_its_clients(tmp_path: Path) -> None:
    (tmp_path / "teardown_probe.py").write_text(PROBE_MODULE)
    probe_file = tmp_path / "probe.txt"
    probe_file.touch()
    path = os.pathsep.join([str(tmp_path), *sys.path])
    env = {**os.environ, "PYTHONPATH": path, "PROBE_FILE": str(probe_file)}
    # The output's end is read when every process holding it is gone: the fork server among them.
    result = subprocess.run(
        [sys.executable, "-c", TEARDOWN_PROBE], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "worker\n"
    assert probe_file.read_text() == "loaded\n"
