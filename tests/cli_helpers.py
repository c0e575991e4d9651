"""Running the ``emrml`` command line: in-process, as the CLI tests do, or as a server in a process of its
own (waiting for it to answer); a small binary dataset and its schema to give it."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from emrml.cli import app


def invoke(*args: str, code: int = 0, columns: int | None = None) -> Result:
    """Run ``emrml ARGS``; assert its exit code (stdout and stderr in the message when it differs)."""
    env = {"COLUMNS": str(columns)} if columns else None
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def every_command() -> Iterator[tuple[str, Any]]:
    """Each command and group of ``emrml`` (click's objects) with its path, e.g. ``emrml model show``."""
    import typer.main

    def commands(group: Any, path: str) -> Iterator[tuple[str, Any]]:
        for name, command in getattr(group, "commands", {}).items():
            yield f"{path} {name}", command
            yield from commands(command, f"{path} {name}")

    return commands(typer.main.get_command(app), "emrml")


def invoke_json(*args: str, code: int = 0) -> Any:
    return json.loads(invoke("--output", "json", *args, code=code).stdout)


def cli(home: Path, *args: str, code: int = 0, columns: int | None = None) -> Result:
    """``invoke`` with ``--home HOME``."""
    return invoke("--home", str(home), *args, code=code, columns=columns)


def cli_json(home: Path, *args: str, code: int = 0) -> Any:
    return invoke_json("--home", str(home), *args, code=code)


def ids(home: Path, command: str, *args: str) -> list[str]:
    """The ids ``emrml COMMAND list ARGS`` lists, in its order."""
    key = {"datasource": "DataSourceId", "model": "MLModelId", "evaluation": "EvaluationId"}[command]
    return [item[key] for item in cli_json(home, command, "list", *args)["Results"]]


def quickstart_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result, dict[str, Any]]:
    """A home where the quickstart has run twice: the first run's table output, the second's JSON."""
    home = tmp_path_factory.mktemp("quickstart") / "home"
    first = cli(home, "quickstart")
    again = cli_json(home, "quickstart")
    return home, first, again


def error_line(result: Result) -> str:
    """The single line a failing command prints on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def free_port() -> int:
    """A TCP port free on the loopback interface just now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answered(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail with the end of the process's ``log`` if the process exits
    or ``timeout`` seconds pass first."""
    import httpx2

    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx2.get(url, timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer: {log.read_text()[-3000:]}"
        time.sleep(0.2)


def write_binary_data(path: Path, rows: int, *, blank_target_every: int = 0, seed: int = 7) -> Path:
    """``x`` (NUMERIC), ``c`` (CATEGORICAL) and a target ``y`` that follows them; every
    ``blank_target_every``-th record has an empty target."""
    rng = random.Random(seed)
    lines = ["x,c,y"]
    for i in range(rows):
        x = rng.uniform(0, 10)
        c = rng.choice("abc")
        y = int(x + (2 if c == "a" else 0) + rng.gauss(0, 1) > 6)
        target = "" if blank_target_every and i % blank_target_every == 0 else str(y)
        lines.append(f"{x:.3f},{c},{target}")
    path.write_text("\n".join(lines) + "\n")
    return path


def binary_schema(path: Path, *, header: bool = True) -> Path:
    schema = {
        "version": "1.0",
        "targetAttributeName": "y",
        "dataFormat": "CSV",
        "dataFileContainsHeader": header,
        "attributes": [
            {"attributeName": "x", "attributeType": "NUMERIC"},
            {"attributeName": "c", "attributeType": "CATEGORICAL"},
            {"attributeName": "y", "attributeType": "BINARY"},
        ],
    }
    path.write_text(json.dumps(schema))
    return path
