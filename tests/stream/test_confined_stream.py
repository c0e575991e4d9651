"""A stream started through the server writes its local outputs only inside the data roots, each part
checked in its folder as opened: a folder swapped for a symbolic link after StartStream is refused."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from stream_helpers import Kinesalite, Running, record, wait_until

from emrml.errors import AccessDeniedException
from emrml.service.app import EmrML


def _start(app: EmrML, stream_id: str, *, remote: bool, **members: object) -> None:
    request = {"StreamId": stream_id, "MLModelId": "ml-binary", "Consumers": 0, **members}
    assert app.call("StartStream", request, remote=remote) == {"StreamId": stream_id, "ConsumersStarted": 0}


def _swap_for_link(folder: Path, target: Path) -> None:
    """What whoever may write in the data roots can do once StartStream has checked ``folder``."""
    target.mkdir()
    folder.rmdir()
    folder.symlink_to(target)


def _lines(folder: Path, pattern: str) -> list[bytes]:
    return [
        line
        for part in sorted(folder.glob(pattern))
        for line in gzip.decompress(part.read_bytes()).splitlines()
    ]


def test_a_confined_stream_writes_its_outputs_in_the_roots_and_its_dead_letters_in_its_home(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("clicks-confined", 1)
    kinesalite.put("clicks-confined", [(record(i), "good") for i in range(4)] + [(b"[]", "bad")])
    output = stream_app.settings.data_roots[0] / "scored"
    _start(
        stream_app, "st-confined", remote=True, InputStream="kinesis://clicks-confined", OutputUri=str(output)
    )
    consumers.append(Running(stream_app.settings, "st-confined"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-confined"})["RecordsIn"] == 5, 30)
    stream_app.call("StopStream", {"StreamId": "st-confined"})
    consumers[-1].join()
    assert len(_lines(output, "part-*.gz")) == 1 + 4  # the header and each record
    # The default dead-letter folder is emrml's own: the request named no file there.
    own = Path(stream_app.call("GetStream", {"StreamId": "st-confined"})["DeadLetterUri"])
    assert len(_lines(own, "dead-letter-*.gz")) == 1


@pytest.mark.parametrize("member", ["OutputUri", "DeadLetterUri"])
def test_a_folder_swapped_for_a_link_out_of_the_roots_after_the_start_is_not_written(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], tmp_path: Path, member: str
) -> None:
    name = f"clicks-swapped-{member.lower()}"
    kinesalite.create(name, 1)
    root = stream_app.settings.data_roots[0]
    folders = {"OutputUri": root / "scored", "DeadLetterUri": root / "dead"}
    for folder in folders.values():
        folder.mkdir(parents=True)
    _start(stream_app, "st-swapped", remote=True, InputStream=f"kinesis://{name}",
           **{key: str(folder) for key, folder in folders.items()})  # fmt: skip
    outside = tmp_path / "outside"
    _swap_for_link(folders[member], outside)
    kinesalite.put(name, [(record(i), "good") for i in range(3)] + [(b"[]", "bad")])
    consumers.append(Running(stream_app.settings, "st-swapped"))
    with pytest.raises(AccessDeniedException, match="is outside the data roots"):
        consumers[-1].join()
    assert list(outside.iterdir()) == []
    described = stream_app.call("GetStream", {"StreamId": "st-swapped"})
    assert described["Status"] == "FAILED"
    assert "AccessDeniedException" in described["Message"], described
    # Refused as the consumer started, before it read a record, not at its first part.
    refused = (
        f"could not start: AccessDeniedException: {member} '{folders[member]}/' is outside the data roots"
    )
    assert refused in described["Message"], described
    # Nothing was checkpointed: the records are read again once the folder is put right.
    assert described["RecordsIn"] == 0


def test_a_stream_the_cli_started_writes_where_its_user_can(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], tmp_path: Path
) -> None:
    kinesalite.create("clicks-own", 1)
    output = tmp_path / "mine"
    output.mkdir()
    _start(stream_app, "st-own", remote=False, InputStream="kinesis://clicks-own", OutputUri=str(output))
    outside = tmp_path / "elsewhere"
    _swap_for_link(output, outside)
    kinesalite.put("clicks-own", [(record(i), "good") for i in range(3)])
    consumers.append(Running(stream_app.settings, "st-own"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-own"})["RecordsIn"] == 3, 30)
    stream_app.call("StopStream", {"StreamId": "st-own"})
    consumers[-1].join()
    assert len(_lines(outside, "part-*.gz")) == 1 + 3


def test_a_stream_the_cli_started_is_confined_once_started_again_through_the_server(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], tmp_path: Path
) -> None:
    kinesalite.create("clicks-again", 1)
    output = stream_app.settings.data_roots[0] / "scored"
    output.mkdir(parents=True)
    members = {"InputStream": "kinesis://clicks-again", "OutputUri": str(output)}
    _start(stream_app, "st-again", remote=False, **members)
    stream_app.call("StopStream", {"StreamId": "st-again"})
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-again"})["Status"] == "STOPPED", 30)
    _start(stream_app, "st-again", remote=True, **members)
    outside = tmp_path / "outside"
    _swap_for_link(output, outside)
    kinesalite.put("clicks-again", [(record(i), "good") for i in range(3)])
    consumers.append(Running(stream_app.settings, "st-again"))
    with pytest.raises(AccessDeniedException, match="is outside the data roots"):
        consumers[-1].join()
    assert list(outside.iterdir()) == []
