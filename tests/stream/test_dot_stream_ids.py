"""A stream whose id is "." or ".." (recorded before StartStream refused those ids to new streams) starts
again: its default dead-letter folder, named after its id, would be the streams' folder or the home, so it
gets one of its own below the streams' folder, saying so; nothing is made outside it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from stream_helpers import Kinesalite, wait_until

from emrml.errors import InvalidInputException
from emrml.service.app import EmrML
from emrml.service.rows import Stream


@pytest.mark.parametrize(("stream_id", "folder"), [(".", "%2E"), ("..", "%2E%2E")])
def test_a_stream_recorded_with_a_dot_id_starts_again_with_a_dead_letter_folder_of_its_own(
    stream_app: EmrML, kinesalite: Kinesalite, caplog: pytest.LogCaptureFixture, stream_id: str, folder: str
) -> None:
    source = f"dots-{len(stream_id)}"
    kinesalite.create(source, 1)
    kinesalite.create(f"{source}-scored", 1)
    request = {"StreamId": "st-dots", "MLModelId": "ml-binary", "InputStream": f"kinesis://{source}",
               "OutputUri": f"kinesis://{source}-scored", "RecordFormat": "json"}  # fmt: skip
    with pytest.raises(InvalidInputException, match="not allowed"):  # refused to a new stream
        stream_app.call("StartStream", {**request, "StreamId": stream_id, "Consumers": 0})
    stream_app.call("StartStream", {**request, "Consumers": 0})
    stream_app.call("StopStream", {"StreamId": "st-dots"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-dots"})["Status"] == "STOPPED", 30)
    home = stream_app.settings.home
    # As an older version recorded it: the id in the request and the default folder named after it.
    with stream_app.sessions() as session, session.begin():
        row = session.get(Stream, "st-dots")
        assert row is not None
        columns = {column.key: getattr(row, column.key) for column in Stream.__table__.columns}
        session.delete(row)
        session.flush()
        recorded = row.request.replace('"st-dots"', f'"{stream_id}"')
        old_folder = f"{home}/streams/{stream_id}/dead-letter/"
        session.add(
            Stream(**{**columns, "id": stream_id, "request": recorded, "dead_letter_uri": old_folder})
        )

    described = stream_app.call("GetStream", {"StreamId": stream_id})
    with caplog.at_level(logging.WARNING, logger="emrml.service.streams"):
        started = stream_app.call("StartStream", {**described["StartParameters"], "Consumers": 0})
    assert started == {"StreamId": stream_id, "ConsumersStarted": 0}
    now = stream_app.call("GetStream", {"StreamId": stream_id})
    assert now["Status"] == "RUNNING"
    assert now["DeadLetterUri"] == f"{home}/streams/{folder}/dead-letter/"
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warned) == 1 and old_folder in warned[0] and now["DeadLetterUri"] in warned[0], warned
    assert not (home / "dead-letter").exists() and not (home / "streams" / "dead-letter").exists()
    assert not Path(home.parent / "dead-letter").exists()
    stream_app.call("StopStream", {"StreamId": stream_id})
