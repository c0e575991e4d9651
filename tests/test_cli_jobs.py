"""``emrml jobs``: every object's job in one list, newest first, with why a job failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli_helpers import error_line, invoke, invoke_json
from emrml.errors import AccessDeniedException, AmazonMLError, InternalServerException
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("EMRML_HOME", str(home))
    return home


def test_jobs_lists_every_kinds_jobs_newest_first_saying_why_one_failed(home: Path, tmp_path: Path) -> None:
    data = write_bank_sample(tmp_path / "bank.csv", 500)
    schema = tmp_path / "bank.schema.json"
    schema.write_text(bank_sample_schema().to_json())
    wrong = tmp_path / "wrong.schema.json"  # three attributes: the data's lines have more fields
    attributes = [("a", "NUMERIC"), ("b", "CATEGORICAL"), ("y", "BINARY")]
    wrong.write_text(
        json.dumps(
            {
                "version": "1.0",
                "targetAttributeName": "y",
                "dataFileContainsHeader": True,
                "attributes": [{"attributeName": n, "attributeType": t} for n, t in attributes],
            }
        )
    )
    invoke("datasource", "create", "--id", "ds-good", "--data", str(data), "--schema", str(schema))
    invoke("model", "create", "--id", "ml-good", "--datasource", "ds-good", "--type", "BINARY")
    invoke("datasource", "create", "--id", "ds-bad", "--data", str(data), "--schema", str(wrong), code=2)

    listed = invoke_json("jobs")
    assert [(job["Kind"], job["Id"], job["Status"]) for job in listed["Jobs"]] == [
        ("DataSource", "ds-bad", "FAILED"),
        ("MLModel", "ml-good", "COMPLETED"),
        ("DataSource", "ds-good", "COMPLETED"),
    ]
    assert listed["Streams"] == []
    failed = invoke_json("jobs", "--status", "failed")["Jobs"]
    assert [job["Id"] for job in failed] == ["ds-bad"]
    assert [job["Id"] for job in invoke_json("jobs", "--limit", "1")["Jobs"]] == ["ds-bad"]

    shown = invoke("jobs", columns=200).stdout
    lines = [line for line in shown.splitlines() if "ds-bad" in line]
    assert len(lines) == 1 and "FAILED" in lines[0]
    assert failed[0]["Message"][:40] in lines[0]  # why, on its line
    assert "No INPROGRESS jobs." in invoke("jobs", "--status", "INPROGRESS").stdout


def _refusing(
    monkeypatch: pytest.MonkeyPatch, *operations: str, error: type[AmazonMLError] | None = None
) -> None:
    """Make the service refuse ``operations`` as it refuses a user whose groups do not allow them (or fail
    them with ``error``)."""
    call = EmrML.call

    def refused(self: EmrML, operation: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if operation in operations:
            if error is not None:
                raise error(f"{operation} failed")
            raise AccessDeniedException(f"not authorized to perform machinelearning:{operation}")
        return call(self, operation, *args, **kwargs)

    monkeypatch.setattr(EmrML, "call", refused)


def test_jobs_lists_the_kinds_it_may_and_warns_of_those_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_bank_sample(tmp_path / "bank.csv", 200)
    schema = tmp_path / "bank.schema.json"
    schema.write_text(bank_sample_schema().to_json())
    invoke("datasource", "create", "--id", "ds-seen", "--data", str(data), "--schema", str(schema))
    _refusing(monkeypatch, "DescribeMLModels", "DescribeStreams")

    result = invoke("--output", "json", "jobs")
    assert [job["Id"] for job in json.loads(result.stdout)["Jobs"]] == ["ds-seen"]
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: left out "), result.stderr
    assert (
        "MLModels (AccessDeniedException: not authorized to perform machinelearning:DescribeMLModels)"
        in (warning[0])
    )
    assert "Streams (AccessDeniedException: " in warning[0]
    assert "DataSources" not in warning[0] and "Evaluations" not in warning[0]
    assert "ds-seen" in invoke("jobs", columns=200).stdout


def test_jobs_fails_when_no_kind_may_be_listed(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = ("DataSources", "MLModels", "Evaluations", "BatchPredictions")
    _refusing(monkeypatch, *(f"Describe{kind}" for kind in kinds), "DescribeStreams")
    line = error_line(invoke("jobs", code=7))
    assert line.startswith("error: AccessDeniedException: not authorized to perform machinelearning:Describe")


def test_jobs_fails_on_an_error_other_than_a_refusal(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a kind the caller may not list is left out with a warning: a fault is an error."""
    _refusing(monkeypatch, "DescribeMLModels", error=InternalServerException)
    line = error_line(invoke("jobs", code=1))
    assert line.startswith("error: InternalServerException: DescribeMLModels failed"), line
