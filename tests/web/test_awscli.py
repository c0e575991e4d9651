"""The aws CLI (``aws machinelearning ... --endpoint-url``) against the real server, as people run it.

Each aws CLI run costs a second or two of interpreter start-up, so the tests make few runs, start the
independent ones together, and check some results in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def aws_command(
    live_server: Any, home: Path, args: str | list[str], secret: str | None = None
) -> subprocess.Popen:
    """Start ``aws machinelearning ARGS`` with the test user's key in the environment and no config files."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": live_server.key.access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret or live_server.key.secret_access_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }
    words = args.split() if isinstance(args, str) else args
    command = [sys.executable, "-m", "awscli", "machinelearning", *words, "--endpoint-url", live_server.url]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def aws(live_server: Any, home: Path, args: str | list[str]) -> Any:
    """Run one aws CLI command that must succeed; its JSON output (None if it prints nothing)."""
    code, stdout, stderr = finish(aws_command(live_server, home, args))
    assert code == 0, stderr
    return json.loads(stdout) if stdout.strip() else None


def test_datasource_lifecycle_with_the_aws_cli(
    live_server: Any, shared_datasets: Path, tmp_path: Path
) -> None:
    folder = shared_datasets / "bank_marketing"
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "DataLocationS3": str(folder / "data.csv"),
                "DataSchema": (folder / "data.csv.schema").read_text(),
                "DataRearrangement": json.dumps({"splitting": {"percentBegin": 0, "percentEnd": 10}}),
            }
        )
    )
    created = aws(
        live_server,
        tmp_path,
        "create-data-source-from-s3 --data-source-id cli-ds --data-source-name aws-cli-datasource "
        f"--data-spec file://{spec} --no-compute-statistics --output json",
    )
    assert created == {"DataSourceId": "cli-ds"}
    live_server.service.wait("DataSource", "cli-ds")
    # The CLI's waiter polls every 30 s; the datasource is complete, so its first poll succeeds.
    aws(
        live_server,
        tmp_path,
        "wait data-source-available --filter-variable Name --eq aws-cli-datasource",
    )
    got = aws(live_server, tmp_path, "get-data-source --data-source-id cli-ds --verbose --output json")
    assert got["Status"] == "COMPLETED" and got["ComputeStatistics"] is False
    assert got["CreatedByIamUser"] == "arn:aws:iam::000000000000:user/tester"
    assert json.loads(got["DataSourceSchema"])["targetAttributeName"] == "y"
    assert isinstance(got["CreatedAt"], int | float)  # --output json prints epoch timestamps as numbers

    aws(
        live_server,
        tmp_path,
        "add-tags --resource-id cli-ds --resource-type DataSource --tags Key=team,Value=cli",
    )
    tags = live_server.service.call("DescribeTags", {"ResourceId": "cli-ds", "ResourceType": "DataSource"})
    assert tags["Tags"] == [{"Key": "team", "Value": "cli"}]
    listed = aws(
        live_server,
        tmp_path,
        "describe-data-sources --filter-variable Name --prefix aws --query Results[].[DataSourceId,Status] "
        "--output json",
    )
    assert listed == [["cli-ds", "COMPLETED"]]
    aws(live_server, tmp_path, "delete-data-source --data-source-id cli-ds")
    assert live_server.service.call("GetDataSource", {"DataSourceId": "cli-ds"})["Status"] == "DELETED"


def test_errors_reach_the_aws_cli(live_server: Any, tmp_path: Path) -> None:
    cases = [
        ("get-ml-model --ml-model-id cli-missing", None, "(ResourceNotFoundException)"),
        ("get-ml-model --ml-model-id bad!id", None, "(InvalidInputException)"),
        ("describe-ml-models", "wrong-secret-" * 3, "(InvalidSignatureException)"),
    ]
    running = [(aws_command(live_server, tmp_path, args, secret), error) for args, secret, error in cases]
    for process, error in running:
        code, _, stderr = finish(process)
        assert code != 0
        assert error in stderr
