"""Running the ``emrml`` command line in-process, as the CLI tests do."""

from __future__ import annotations

import json
from typing import Any

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


def invoke_json(*args: str, code: int = 0) -> Any:
    return json.loads(invoke("--output", "json", *args, code=code).stdout)


def error_line(result: Result) -> str:
    """The single line a failing command prints on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]
