"""A plain script without a ``__main__`` guard can run jobs: workers do not re-run the caller's script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_script_without_main_guard_runs_a_job(tmp_path: Path, shared_datasets: Path) -> None:
    folder = shared_datasets / "sms_spam"
    script = tmp_path / "script.py"
    script.write_text(
        "import emrml\n"
        f"client = emrml.Client(home={str(tmp_path / 'home')!r})\n"
        f"ds = client.datasource({str(folder / 'data.csv')!r}, {str(folder / 'data.csv.schema')!r},"
        " id='ds-sms')\n"
        "print('STATUS', ds.describe()['Status'])\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("STATUS COMPLETED") == 1
