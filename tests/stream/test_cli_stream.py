"""``emrml stream``: start a consumer process, watch it, stop it; predictions in gzip CSV parts."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from stream_helpers import Kinesalite, record, wait_until

from emrml.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli_helpers import error_line, invoke, invoke_json


@pytest.fixture
def cli_env(stream_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in {
        "EMRML_HOME": str(stream_settings.home),
        "EMRML_KINESIS_ENDPOINT_URL": stream_settings.kinesis_endpoint_url,
        "EMRML_STREAM_LEASE_SECONDS": "3",
        "EMRML_STREAM_ROLL_SECONDS": "1",
        "EMRML_STREAM_IDLE_SECONDS": "0.2",
    }.items():
        monkeypatch.setenv(name, value)
    return stream_settings.home


def test_start_show_list_stop_with_file_output(cli_env: Path, kinesalite: Kinesalite, tmp_path: Path) -> None:
    kinesalite.create("cli-in", 2)
    kinesalite.put("cli-in", [(record(i), f"k,{i}") for i in range(50)])
    out = tmp_path / "scored"
    invoke(
        "stream",
        "start",
        "--id",
        "st-cli",
        "--model",
        "ml-binary",
        "--input",
        "kinesis://cli-in",
        "--output",
        str(out),
    )
    try:
        wait_until(lambda: invoke_json("stream", "show", "st-cli")["RecordsOut"] == 50, 60, 0.3)
        shown = invoke("stream", "show", "st-cli", columns=200).stdout
        assert "shardId-000000000000" in shown and "RUNNING" in shown
        listed = invoke_json("stream", "list")["Results"]
        assert [(s["StreamId"], s["Status"], s["RecordsIn"]) for s in listed] == [("st-cli", "RUNNING", 50)]
        listed_text = invoke("stream", "list", columns=80).stdout
        assert "st-cli" in listed_text and "RUNNING" in listed_text  # not folded in a narrow terminal
    finally:
        stopped = invoke_json("stream", "stop", "st-cli")
    assert stopped["Status"] == "STOPPED"
    parts = sorted(out.glob("part-*.gz"))
    assert parts and not list(out.glob(".*"))  # published parts only, no temporaries left
    lines = []
    for part in parts:
        text = gzip.decompress(part.read_bytes()).decode().splitlines()
        assert text[0] == "shardId,sequenceNumber,partitionKey,bestAnswer,score"
        lines += text[1:]
    assert len(lines) == 50
    source = {r["SequenceNumber"]: json.loads(r["Data"]) for r in kinesalite.read_all("cli-in")}
    keys = set()
    for line in lines:
        _shard, sequence, rest = line.split(",", 2)
        key, answer, score = rest.rsplit(",", 2)
        keys.add(key)
        assert answer == ("1" if float(score) >= 0.5 else "0")
        assert answer == str(int(source[sequence]["x"]) % 2)
    assert keys == {f'"k,{i}"' for i in range(50)}  # quoted as the batch prediction format quotes text


def test_errors_are_one_line_with_their_exit_code(cli_env: Path, kinesalite: Kinesalite) -> None:
    result = invoke("stream", "show", "st-none", code=3)
    assert "ResourceNotFoundException" in error_line(result)
    result = invoke(
        "stream",
        "start",
        "--id",
        "st-x",
        "--model",
        "ml-binary",
        "--input",
        "kinesis://nope",
        "--output",
        "kinesis://nope",
        code=2,
    )
    assert "the Kinesis stream 'nope' does not exist" in error_line(result)
    kinesalite.create("clicks-when", 1)
    where = ("--input", "kinesis://clicks-when", "--output", "kinesis://clicks-when", "--consumers", "0")
    result = invoke(
        "stream", "start", "--id", "st-x", "--model", "ml-binary", *where, "--timestamp", "5", code=2
    )
    assert error_line(result).endswith(
        "--timestamp: StartingTimestamp is for StartingPosition AT_TIMESTAMP; "
        "StartingPosition is TRIM_HORIZON"
    )
    assert invoke_json("stream", "list") == {"Results": []}


def test_ctrl_c_stops_a_foreground_consumer_cleanly(
    cli_env: Path, kinesalite: Kinesalite, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess

    kinesalite.create("cli-ctrl-c", 1)
    kinesalite.create("cli-ctrl-c-scored", 1)
    kinesalite.put("cli-ctrl-c", [(record(i), str(i)) for i in range(30)])
    invoke("stream", "start", "--id", "st-fg", "--model", "ml-binary", "--input", "kinesis://cli-ctrl-c",
           "--output", "kinesis://cli-ctrl-c-scored", "--consumers", "0")  # fmt: skip
    foreground = subprocess.Popen(
        [sys.executable, "-m", "emrml", "stream", "run", "st-fg"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        wait_until(lambda: invoke_json("stream", "show", "st-fg")["RecordsIn"] == 30, 60, 0.3)
    finally:
        foreground.send_signal(signal.SIGINT)
        out, err = foreground.communicate(timeout=60)
    assert foreground.returncode == 0, err[-2000:]
    assert "Ctrl-C stops it" in out and out.strip().endswith("stopped.") and "Traceback" not in err
    shown = invoke_json("stream", "show", "st-fg")
    (lease,) = shown["ShardLeases"]
    assert "Owner" not in lease  # given up at once: another consumer may take it now
    last = max(int(r["SequenceNumber"]) for r in kinesalite.read_all("cli-ctrl-c"))
    assert int(lease["Checkpoint"]) == last and shown["RecordsOut"] == 30
    invoke("stream", "stop", "st-fg")


def test_a_foreground_consumer_whose_output_is_closed_stops_cleanly(
    cli_env: Path, kinesalite: Kinesalite
) -> None:
    """``emrml stream run ID | head -0``: the consumer, registered as it starts, gives its place up and the
    command ends as a Unix tool ends on a closed pipe (exit 141), not with an error nor running unread."""
    import os

    kinesalite.create("cli-unread", 1)
    kinesalite.create("cli-unread-scored", 1)
    invoke("stream", "start", "--id", "st-unread", "--model", "ml-binary", "--input", "kinesis://cli-unread",
           "--output", "kinesis://cli-unread-scored", "--consumers", "0")  # fmt: skip
    reader, writer = os.pipe()
    os.close(reader)
    try:
        command = [sys.executable, "-m", "emrml", "stream", "run", "st-unread"]
        ran = subprocess.run(command, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)
    assert (ran.returncode, ran.stderr) == (141, "")
    shown = invoke_json("stream", "show", "st-unread")
    assert shown["Status"] == "RUNNING" and shown["ConsumerProcesses"] == []  # it ended, not FAILED
    assert all("Owner" not in lease for lease in shown["ShardLeases"])
    invoke("stream", "stop", "st-unread")


def test_a_stream_is_started_again_by_its_id_alone(cli_env: Path, kinesalite: Kinesalite) -> None:
    """``emrml stream start --id ID`` starts a stream no consumer runs (stopped, FAILED) again with the
    parameters it was started with; options of a new stream are refused there, naming them."""
    kinesalite.create("cli-again", 1)
    kinesalite.create("cli-again-scored", 1)
    invoke("stream", "start", "--id", "st-again", "--model", "ml-binary", "--input", "kinesis://cli-again",
           "--output", "kinesis://cli-again-scored", "--format", "json", "--consumers", "0")  # fmt: skip
    assert invoke_json("stream", "stop", "st-again")["Status"] == "STOPPED"
    started = invoke_json("stream", "start", "--id", "st-again", "--consumers", "0")
    assert started == {"StreamId": "st-again", "ConsumersStarted": 0}
    shown = invoke_json("stream", "show", "st-again")
    assert (shown["Status"], shown["RecordFormat"], shown["InputStream"]) == (
        "RUNNING",
        "json",
        "kinesis://cli-again",
    )
    refused = invoke("stream", "start", "--id", "st-again", "--format", "csv", code=2)
    assert "--format: a stream started again keeps its own" in refused.output
    refused = invoke("stream", "start", "--id", "st-new", "--model", "ml-binary", code=2)
    assert "a new stream needs --model, --input and --output" in refused.output
    assert "ResourceNotFoundException" in error_line(invoke("stream", "start", "--id", "st-none", code=3))
    invoke("stream", "stop", "st-again")


def test_a_consumer_of_a_stopped_stream_is_refused_saying_how_to_start_it(
    cli_env: Path, kinesalite: Kinesalite
) -> None:
    """``emrml stream run`` of a stopped stream stopped at once, exit 0, saying only that it stopped."""
    kinesalite.create("cli-stopped", 1)
    kinesalite.create("cli-stopped-scored", 1)
    invoke("stream", "start", "--id", "st-stopped", "--model", "ml-binary", "--input", "kinesis://cli-stopped",
           "--output", "kinesis://cli-stopped-scored", "--consumers", "0")  # fmt: skip
    invoke("stream", "stop", "st-stopped")
    refused = invoke("stream", "run", "st-stopped", code=2)
    line = error_line(refused)
    assert "Ctrl-C" not in refused.stdout  # it never ran: nothing to stop
    assert "stream 'st-stopped' is STOPPED: consumers run only a RUNNING stream" in line
    assert "`emrml stream start --id st-stopped` starts it again" in line
    # A process of its own (where no test harness takes the log records): the error said once.
    command = [sys.executable, "-m", "emrml", "stream", "run", "st-stopped"]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 2 and ran.stderr.strip().splitlines() == [line], ran.stderr
    assert ran.stdout == ""
    shown = invoke_json("stream", "show", "st-stopped")
    assert shown["Status"] == "STOPPED" and "Message" not in shown  # no consumer recorded as failed


def test_the_list_says_why_a_stream_failed(
    cli_env: Path, kinesalite: Kinesalite, stream_settings: Settings, tmp_path: Path
) -> None:
    """A FAILED stream's Message (here: its consumer could not start, the model's file missing on its
    machine) is printed below the list, which has no column for it."""
    from sqlalchemy import update

    from emrml.service.app import EmrML
    from emrml.service.rows import MLModel

    kinesalite.create("cli-why", 1)
    kinesalite.create("cli-why-scored", 1)
    invoke("stream", "start", "--id", "st-why", "--model", "ml-binary", "--input", "kinesis://cli-why",
           "--output", "kinesis://cli-why-scored", "--consumers", "0")  # fmt: skip
    app = EmrML(stream_settings)
    try:
        with app.sessions() as session, session.begin():
            gone = str(tmp_path / "elsewhere.model")
            session.execute(update(MLModel).where(MLModel.id == "ml-binary").values(artifact_location=gone))
    finally:
        app.close()
    assert "the file does not exist" in error_line(invoke("stream", "run", "st-why", code=2))
    listed = invoke("stream", "list", columns=400).stdout
    assert "FAILED" in listed
    assert "st-why: consumer " in listed and "could not start: InvalidInputException" in listed
    invoke("stream", "stop", "st-why")


def test_start_whose_consumer_dies_before_it_runs_says_the_stream_failed_and_why(
    cli_env: Path, kinesalite: Kinesalite, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinesalite.create("cli-dies", 1)
    monkeypatch.setenv("PYTHONHOME", "/nonexistent/python-home")  # the consumer's Python dies at once
    result = invoke(
        "stream", "start", "--id", "st-dies", "--model", "ml-binary",
        "--input", "kinesis://cli-dies", "--output", str(cli_env / "scored"), code=2,
    )  # fmt: skip
    line = error_line(result)
    assert line.startswith("error: stream st-dies is FAILED: consumer process ")
    assert "ended before it ran (exit code 1)" in line and "RUNNING" not in result.stdout
