"""The command line on S3 data, with the S3 endpoint given in ``emrml.toml`` as users give it: the data is
looked for there, and S3's refusals are reported as access errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import error_line, invoke, invoke_json
from emrml.config import Settings
from emrml.storage import locations
from s3_server import S3


@pytest.fixture
def home(s3: S3, tmp_path: Path) -> Path:
    """A home whose emrml.toml names the test server; this process's storage is left at its defaults (AWS),
    as a command line starts, so that only the command's own settings can lead it to the server."""
    folder = tmp_path / "cli"
    folder.mkdir()
    (folder / "emrml.toml").write_text(f's3_endpoint_url = "{s3.endpoint_url}"\n')
    locations.configure(Settings.load(environ={}, home=tmp_path / "defaults"))
    return folder


def test_data_is_looked_for_at_the_configured_endpoint(s3: S3, home: Path) -> None:
    # `datasource create` checked that --data exists before it opened the service, which configures
    # storage: the check asked AWS's S3, not emrml.toml's endpoint, and failed.
    s3.put("in/data.csv", "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(50)))
    create = ("--home", str(home), "datasource", "create", "--id", "ds-s3", "--data", s3.uri("in/data.csv"))
    created = invoke_json(*create, "--infer-schema", "--target", "y")
    described = created["GetDataSource"]
    assert described["Status"] == "COMPLETED" and described["DataLocationS3"] == s3.uri("in/data.csv")


def test_the_cli_exits_7_when_s3_refuses_access(s3: S3, home: Path) -> None:
    """Every access error has one exit code, whoever refuses: S3 refusing the schema inference's read of
    the data, or emrml's own authorization."""
    s3.put("in/data.csv", "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(50)))
    s3.deny("s3:GetObject", f"arn:aws:s3:::{s3.bucket}/in/*")
    create = (
        "--home",
        str(home),
        "datasource",
        "create",
        "--id",
        "ds-denied",
        "--data",
        s3.uri("in/data.csv"),
    )
    line = error_line(invoke(*create, "--infer-schema", "--target", "y", code=7))
    assert line.startswith("error: AccessDeniedException: ") and "AccessDenied" in line
    assert s3.uri("in/data.csv") in line


def test_data_that_cannot_be_read_is_named_by_its_option(
    s3: S3, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 read error of ``--data`` said "location 's3://…' cannot be read: NoCredentials…", where every
    other create error names the option the user typed."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    data = s3.uri("in/data.csv")
    create = ("--home", str(home), "datasource", "create", "--id", "ds-no-credentials", "--data", data)
    line = error_line(invoke(*create, "--infer-schema", "--target", "y", code=2))
    assert line.startswith(f"error: InvalidInputException: --data '{data}' cannot be read: NoCredentials")
    line = error_line(invoke("--home", str(home), "datasource", "infer-schema", "--data", data, code=2))
    assert line.startswith(f"error: InvalidInputException: --data '{data}' cannot be read: NoCredentials")


def test_the_schema_and_the_recipe_may_be_s3_files(s3: S3, home: Path) -> None:
    """``--schema s3://…`` (a Path option) was read as the local path ``s3:/…``, and ``--recipe s3://…``
    too: files beside S3 data had to be copied to the machine first."""
    data = s3.put("in/data.csv", "x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(50)))
    attributes = [
        {"attributeName": "x", "attributeType": "NUMERIC"},
        {"attributeName": "y", "attributeType": "BINARY"},
    ]
    schema = json.dumps(
        {"targetAttributeName": "y", "dataFileContainsHeader": True, "attributes": attributes}
    )
    create = ("--home", str(home), "datasource", "create", "--id", "ds-s3-schema", "--data", data)
    invoke(*create, "--schema", s3.put("in/data.schema.json", schema))
    recipe = s3.put("in/x.recipe", '{"outputs": ["quantile_bin(x,5)"]}')
    train = ("--home", str(home), "model", "create", "--id", "ml-s3-recipe", "--type", "BINARY")
    created = invoke_json(*train, "--datasource", "ds-s3-schema", "--recipe", recipe)
    assert '"quantile_bin(x,5)"' in created["GetMLModel"]["Recipe"]
    missing = s3.uri("in/none.schema")
    line = error_line(invoke(*create[:-4], "--id", "ds-none", "--data", data, "--schema", missing, code=2))
    assert line == f"error: InvalidInputException: --schema '{missing}' does not exist"
