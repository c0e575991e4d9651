"""What a running stream's consumers check again of what StartStream checked: its creator's storage grants
(revoked while it runs, it stops FAILED), a confined stream's folders (also when the CLI starts it again),
and a consumer that goes silent rather than stopping makes the stream FAILED, not STOPPED."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from stream_helpers import Kinesalite, Running, record, wait_until

from emrml.errors import AccessDeniedException
from emrml.service.app import EmrML


def _start(app: EmrML, stream_id: str, *, remote: bool, caller: str | None = None, **members: object) -> None:
    request = {"StreamId": stream_id, "MLModelId": "ml-binary", "Consumers": 0, **members}
    started = app.call("StartStream", request, caller=caller, remote=remote)
    assert started == {"StreamId": stream_id, "ConsumersStarted": 0}


def _stopped(app: EmrML, stream_id: str) -> None:
    app.call("StopStream", {"StreamId": stream_id})
    wait_until(lambda: app.call("GetStream", {"StreamId": stream_id})["Status"] == "STOPPED", 30)


def _swap_for_link(folder: Path, target: Path) -> None:
    target.mkdir()
    folder.rmdir()
    folder.symlink_to(target)


def test_a_stream_whose_creator_loses_storage_write_stops_failed_saying_why(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running]
) -> None:
    kinesalite.create("revoked", 1)
    output = stream_app.settings.data_roots[0] / "revoked-scored"
    output.mkdir(parents=True)
    access = stream_app.access
    access.create_user("mallory", ("users",))
    access.create_group("streamers")
    access.add_member("streamers", "mallory")
    access.add_statement("streamers", {"Effect": "Allow", "Action": ["StartStream"], "Resource": ["*"]})
    access.add_statement(
        "streamers", {"Effect": "Allow", "Action": ["storage:Read"], "Resource": ["kinesis://revoked"]}
    )
    write = access.add_statement(
        "streamers",
        {"Effect": "Allow", "Action": ["storage:Write"], "Resource": [f"{os.path.realpath(output)}/*"]},
    )
    caller = f"arn:aws:iam::{stream_app.settings.account_id}:user/mallory"
    _start(stream_app, "st-revoked", remote=True, caller=caller,
           InputStream="kinesis://revoked", OutputUri=str(output))  # fmt: skip
    kinesalite.put("revoked", [(record(i), str(i)) for i in range(3)])
    consumers.append(Running(stream_app.settings, "st-revoked"))
    wait_until(lambda: stream_app.call("GetStream", {"StreamId": "st-revoked"})["RecordsIn"] == 3, 30)
    access.remove_statement("streamers", write)
    # Within a lease (3 s) and the policy's cache, not at some later start.
    with pytest.raises(AccessDeniedException, match="storage:Write"):
        consumers[-1].join(30)
    described = stream_app.call("GetStream", {"StreamId": "st-revoked"})
    assert described["Status"] == "FAILED"
    assert "storage:Write" in described["Message"] and str(output) in described["Message"], described
    assert "the stream stopped reading and writing" in described["Message"]


def test_a_confined_stream_started_again_from_the_cli_has_its_folders_checked_at_the_start(
    stream_app: EmrML, kinesalite: Kinesalite, tmp_path: Path
) -> None:
    kinesalite.create("clicks-restarted", 1)
    output = stream_app.settings.data_roots[0] / "scored"
    output.mkdir(parents=True)
    members = {"InputStream": "kinesis://clicks-restarted", "OutputUri": str(output)}
    _start(stream_app, "st-restarted", remote=True, **members)
    _stopped(stream_app, "st-restarted")
    outside = tmp_path / "outside"
    _swap_for_link(output, outside)
    with pytest.raises(AccessDeniedException, match=r"OutputUri '.*/scored/' is outside the data roots"):
        _start(stream_app, "st-restarted", remote=False, **members)
    assert stream_app.call("GetStream", {"StreamId": "st-restarted"})["Status"] == "STOPPED"


def test_a_confined_stream_stays_confined_when_the_cli_starts_it_again(
    stream_app: EmrML, kinesalite: Kinesalite, consumers: list[Running], tmp_path: Path
) -> None:
    # Its folders were named by a remote caller, who can still swap them for links: the CLI's start
    # resumes the same stream, with the same locations, so it stays confined.
    kinesalite.create("clicks-cli-again", 1)
    output = stream_app.settings.data_roots[0] / "scored"
    output.mkdir(parents=True)
    members = {"InputStream": "kinesis://clicks-cli-again", "OutputUri": str(output)}
    _start(stream_app, "st-cli-again", remote=True, **members)
    _stopped(stream_app, "st-cli-again")
    _start(stream_app, "st-cli-again", remote=False, **members)
    outside = tmp_path / "outside"
    _swap_for_link(output, outside)
    kinesalite.put("clicks-cli-again", [(record(i), str(i)) for i in range(3)])
    consumers.append(Running(stream_app.settings, "st-cli-again"))
    with pytest.raises(AccessDeniedException, match="is outside the data roots"):
        consumers[-1].join()
    assert list(outside.iterdir()) == []


def test_a_consumer_frozen_while_its_stream_stops_makes_it_failed_not_stopped(
    stream_app: EmrML, kinesalite: Kinesalite, cleanup: None
) -> None:
    kinesalite.create("frozen", 1)
    kinesalite.create("frozen-scored", 1)
    request = {"StreamId": "st-frozen", "MLModelId": "ml-binary", "Consumers": 1,
               "InputStream": "kinesis://frozen", "OutputUri": "kinesis://frozen-scored"}  # fmt: skip
    assert stream_app.call("StartStream", request)["ConsumersStarted"] == 1

    def described() -> dict:
        return stream_app.call("GetStream", {"StreamId": "st-frozen"})

    running = wait_until(lambda: (found := described())["ConsumerProcesses"] and found, 60, 0.3)
    pid = running["ConsumerProcesses"][0]["Pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        stream_app.call("StopStream", {"StreamId": "st-frozen"})
        ended = wait_until(lambda: (found := described())["Status"] != "STOPPING" and found, 60, 0.3)
        assert ended["Status"] == "FAILED", ended
        assert f"(pid {pid} on " in ended["Message"] and "instead of stopping" in ended["Message"]
        # It can be started again (the frozen process, were it to resume, finds the stream not RUNNING).
        request["Consumers"] = 0
        assert stream_app.call("StartStream", request)["ConsumersStarted"] == 0
        assert described()["Status"] == "RUNNING"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
