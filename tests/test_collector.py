"""The ``emrml`` program pauses the cyclic garbage collector while it starts (``emrml.collector``): its
commands, a server from the moment it listens, and every other program importing emrml collect as usual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from metastores import Templates

#: Run as a console script named ``emrml``: the collector's state at the start of the program, when it is
#: resumed (with whether SQLAlchemy was imported by then), when a server is about to listen
#: (``server.serve``, replaced once imported: it reports and returns), and at the exit.
PROGRAM = """
import atexit, gc, sys
from emrml import collector
from emrml.cli import app

resume = collector.resume
def resumed() -> None:
    print("resume", state(), "sqlalchemy" if "sqlalchemy" in sys.modules else "-")
    resume()
    if "emrml.web.server" in sys.modules:  # a server's start imported it: it does not listen here
        sys.modules["emrml.web.server"].serve = lambda *args, **kwargs: print("listen", state())
collector.resume = resumed

def state() -> str:
    return ("on" if gc.isenabled() else "off") + (" frozen" if gc.get_freeze_count() else "")

print("start", state())
atexit.register(lambda: print("exit", state()))
sys.exit(app())
"""


def _program(folder: Path, *args: str, module: bool = False) -> list[str]:
    """What ``PROGRAM`` printed, run as the console script (or as ``python -m emrml``) with ``args``."""
    if module:
        # runpy makes the module __main__, as ``python -m`` does.
        code = PROGRAM.replace("from emrml.cli import app", "").replace(
            "sys.exit(app())", "import runpy; runpy.run_module('emrml', run_name='__main__', alter_sys=True)"
        )
        command = [sys.executable, "-c", code, *args]
    else:
        script = folder / "emrml"
        script.write_text(PROGRAM)
        command = [sys.executable, str(script), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    steps = ("start", "resume", "listen", "exit")
    return [line for line in result.stdout.splitlines() if line.split(" ")[0] in steps]


def test_a_command_starts_with_the_collector_paused_and_runs_with_it(
    tmp_path: Path, metastore_templates: Templates
) -> None:
    home = metastore_templates.sqlite_home(tmp_path / "home")
    printed = _program(tmp_path, "--home", str(home), "--output", "json", "model", "list")
    # The service's imports (SQLAlchemy) are the program's start too: paused for them, then resumed.
    assert printed == ["start off", "resume off -", "resume off frozen sqlalchemy", "exit on frozen"]


def test_python_m_emrml_pauses_the_collector_too(tmp_path: Path, metastore_templates: Templates) -> None:
    home = metastore_templates.sqlite_home(tmp_path / "home")
    printed = _program(tmp_path, "--home", str(home), "--output", "json", "model", "list", module=True)
    # The module's own start is not seen (the program imports the command line itself): its end is.
    assert printed[-1] == "exit on frozen"


def test_a_server_collects_from_the_moment_it_listens(tmp_path: Path, metastore_templates: Templates) -> None:
    # Its start's imports (SQLAlchemy, the metastore's tables, Starlette) ran with the collector paused.
    home = metastore_templates.sqlite_home(tmp_path / "home")
    serve = ["serve", "--port", "1", "--workers-jobs", "0", "--console-in-process"]
    printed = _program(tmp_path, "--home", str(home), *serve)
    assert printed == ["start off", "resume off sqlalchemy", "listen on frozen", "exit on frozen"]


def test_other_programs_importing_emrml_keep_their_collector() -> None:
    code = "import gc, emrml, emrml.cli, emrml.__main__; assert gc.isenabled() and not gc.get_freeze_count()"
    subprocess.run([sys.executable, "-c", code], check=True)
