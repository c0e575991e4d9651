"""``JobRunner.wait`` scans for jobs to recover only while the job it waits for has not ended: not for
each ended job a queued one depends on, nor once its run is over (service/jobs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrml.service.app import EmrML


@pytest.fixture
def recoveries(app: EmrML, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per ``recover`` call of the app's job runner."""
    calls: list[int] = []
    recover = app.jobs.recover

    def counted() -> None:
        calls.append(1)
        recover()

    monkeypatch.setattr(app.jobs, "recover", counted)
    return calls


def test_a_queued_job_is_recovered_once_and_an_ended_one_not_at_all(
    app: EmrML, tmp_path: Path, recoveries: list[int]
) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(50)))
    schema = (
        '{"version": "1.0", "targetAttributeName": "y", "dataFormat": "CSV", "dataFileContainsHeader": true,'
        ' "attributes": [{"attributeName": "x", "attributeType": "NUMERIC"},'
        ' {"attributeName": "y", "attributeType": "BINARY"}]}'
    )
    spec = {"DataLocationS3": str(data), "DataSchema": schema}
    app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-wait", "DataSpec": spec})
    assert app.wait("DataSource", "ds-wait")["Status"] == "COMPLETED"
    assert len(recoveries) == 1  # before its run; the look after it finds the job ended
    assert app.wait("DataSource", "ds-wait")["Status"] == "COMPLETED"
    assert len(recoveries) == 1
