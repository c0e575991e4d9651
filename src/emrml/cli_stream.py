"""``emrml stream``: score every record of a Kinesis stream with a model (docs/streams.md).

``start`` records the stream and spawns consumer processes in the background; ``run`` is one consumer in
the foreground (Ctrl-C stops it cleanly: it finishes its batch, checkpoints and gives its leases up), the
way to add consumers on other machines that share the metastore; ``list``, ``show`` and ``stop`` call the
same operations as the API (StartStream, GetStream, DescribeStreams, StopStream).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from emrml.cli_common import (
    JOB_FAILED_EXIT_CODE,
    fail,
    named_as_options,
    present,
    print_json,
    print_sections,
    reports_errors,
    state,
)
from emrml.cli_render.lists import Column, list_table
from emrml.cli_render.parts import keep_numbers_whole, key_values, titled_table
from emrml.core.readable import format_number

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

stream_app = typer.Typer(help="Score every record of a Kinesis stream with a model.", no_args_is_help=True)


class Position(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


class RecordFormat(StrEnum):
    auto = "auto"
    json = "json"
    csv = "csv"


#: The options of ``start`` that only a new stream takes (parameter, flag): a stream started again by
#: ``--id`` alone keeps those it was started with.
_NEW_STREAM_OPTIONS = (
    ("dead_letter", "--dead-letter"),
    ("position", "--position"),
    ("timestamp", "--timestamp"),
    ("record_format", "--format"),
    ("name", "--name"),
)


def register(app: typer.Typer) -> None:
    app.add_typer(stream_app, name="stream")


@stream_app.command("start")
@reports_errors
def start(
    ctx: typer.Context,
    stream_id: str = typer.Option(..., "--id", metavar="ID", help="Stream id (letters, digits, _ . -)."),
    model_id: str | None = typer.Option(
        None, "--model", metavar="ID", help="A COMPLETED model to score with."
    ),
    input_uri: str | None = typer.Option(
        None, "--input", metavar="URI", help="kinesis://NAME: the stream to read."
    ),
    output_uri: str | None = typer.Option(
        None,
        "--output",
        metavar="URI",
        help="kinesis://NAME, or a directory (path, file://, s3://) for gzip CSV parts.",
    ),
    dead_letter: str | None = typer.Option(
        None,
        "--dead-letter",
        metavar="FOLDER",
        help="Where unreadable records go (default: <home>/streams/ID/dead-letter/).",
    ),
    position: Position = typer.Option(Position.TRIM_HORIZON, "--position", help="Where a new shard starts."),
    timestamp: float | None = typer.Option(
        None, "--timestamp", metavar="SECONDS", help="Epoch seconds, for AT_TIMESTAMP."
    ),
    record_format: RecordFormat = typer.Option(RecordFormat.auto, "--format", help="How records are read."),
    consumers: int = typer.Option(1, "--consumers", help="Consumer processes to start here (0: none)."),
    name: str | None = typer.Option(None, "--name", help="A name for people."),
) -> None:
    """Start scoring a stream (--model, --input, --output), or start again one no consumer runs (stopped,
    or FAILED) from its checkpoints: with the same options, or --id alone for those it was started with."""
    current = state(ctx)
    service = current.service()
    if model_id is None and input_uri is None and output_uri is None:
        # (By its name: typer's Context is of its own copy of click, not of the click installed beside it.)
        given = [
            flag
            for key, flag in _NEW_STREAM_OPTIONS
            if getattr(ctx.get_parameter_source(key), "name", None) == "COMMANDLINE"
        ]
        if given:
            raise typer.BadParameter(
                f"{', '.join(given)}: a stream started again keeps its own; a new stream needs --model, "
                "--input and --output"
            )
        # The stream's own parameters (GetStream says "no such stream" for an unknown id).
        recorded = service.call("GetStream", {"StreamId": stream_id})["StartParameters"]
        request = {**recorded, "Consumers": consumers}
    elif model_id is None or input_uri is None or output_uri is None:
        raise typer.BadParameter(
            "a new stream needs --model, --input and --output (--id alone starts a stream again with its own)"
        )
    else:
        request = present(
            {
                "StreamId": stream_id,
                "MLModelId": model_id,
                "InputStream": input_uri,
                "OutputUri": output_uri,
                "DeadLetterUri": dead_letter,
                "StartingPosition": position.value,
                "StartingTimestamp": timestamp,
                "RecordFormat": record_format.value,
                "Consumers": consumers,
                "StreamName": name,
            }
        )
    options = {
        "StreamId": "--id",
        "MLModelId": "--model",
        "InputStream": "--input",
        "OutputUri": "--output",
        "DeadLetterUri": "--dead-letter",
        "StartingPosition": "--position",
        "StartingTimestamp": "--timestamp",
        "Consumers": "--consumers",
    }
    with named_as_options(options):
        result = service.call("StartStream", request)
    started = result.get("ConsumersStarted", consumers)
    if started < consumers:
        # Fewer started than asked: consumers of it run already, or those started died before they ran.
        described = service.call("GetStream", {"StreamId": stream_id})
        if described["Status"] == "FAILED":
            if current.json:
                print_json({**result, "Status": "FAILED", "Message": described.get("Message")})
            raise fail(f"stream {stream_id} is FAILED: {described.get('Message')}", JOB_FAILED_EXIT_CODE)
    if current.json:
        print_json(result)
    else:
        why = ""
        if started < consumers:
            why = (
                " (its consumers run, or are starting, already)"
                if not started
                else " (one per open shard of the input stream: more would have no shard to read)"
            )
        current.console.print(
            f"Stream {stream_id} is RUNNING with {started} consumer process(es) started here{why}; "
            f"see it with: emrml stream show {stream_id}"
        )


@stream_app.command("run")
@reports_errors
def run(ctx: typer.Context, stream_id: str = typer.Argument(..., metavar="ID", help="Stream id.")) -> None:
    """Run one consumer of a started stream in the foreground until the stream stops or Ctrl-C."""
    from emrml.stream.__main__ import HUNG
    from emrml.stream.consumer import Consumer

    current = state(ctx)
    service = current.service()
    service.call("GetStream", {"StreamId": stream_id})  # a clear error for an unknown stream
    consumer = Consumer(service.settings, stream_id, sessions=service.sessions)
    previous = signal.signal(signal.SIGINT, lambda *_: consumer.stop())

    def started() -> None:
        # Said once it runs: a consumer that cannot start (the stream stopped, the model gone) is an error.
        try:
            current.console.print(f"Consumer {consumer.id} of stream {stream_id}: Ctrl-C stops it.")
        except BrokenPipeError:
            # Nobody reads the output (`emrml stream run ID | head -1`): the command ends as if killed by
            # the pipe, but cleanly, its leases given up; the next print ends it (exit 141).
            consumer.stop()

    try:
        # Stuck when asked to stop: the process ends (the stream says why: ``Consumer.run``).
        consumer.run(on_hung=lambda: os._exit(HUNG), on_started=started)
    finally:
        signal.signal(signal.SIGINT, previous)
    current.console.print(f"Consumer {consumer.id} stopped.")


@stream_app.command("stop")
@reports_errors
def stop(
    ctx: typer.Context,
    stream_id: str = typer.Argument(..., metavar="ID", help="Stream id."),
    wait: float = typer.Option(
        60.0, "--wait", metavar="SECONDS", help="Seconds to wait for the consumers to stop (0: none)."
    ),
) -> None:
    """Stop a stream: consumers finish their batch, checkpoint and exit."""
    current = state(ctx)
    service = current.service()
    result = service.call("StopStream", {"StreamId": stream_id})
    deadline = time.monotonic() + wait
    status = service.call("GetStream", {"StreamId": stream_id})["Status"]
    while status == "STOPPING" and time.monotonic() < deadline:
        time.sleep(0.25)
        status = service.call("GetStream", {"StreamId": stream_id})["Status"]
    if current.json:
        print_json({**result, "Status": status})
    else:
        current.console.print(f"Stream {stream_id} is {status}.")


@stream_app.command("list")
@reports_errors
def list_streams(ctx: typer.Context) -> None:
    """List the streams: status, consumers, records in/out/failed, throughput and lag."""
    current = state(ctx)
    described = current.service().call("DescribeStreams", {})
    if current.json:
        print_json(described)  # {"Results": [...]}, as every list
        return
    results = described["Results"]
    if not results:
        current.console.print("No streams.")
        return
    print_streams(current, results)


def print_streams(current: Any, results: list[dict[str, Any]]) -> None:
    """DescribeStreams' results as a table, each stream's Message below it (``list``, ``emrml jobs``)."""
    current.console.print(streams_table(results, current.console.width))
    # Why a stream is FAILED, or says no consumer runs it: what the table has no room for.
    for item in results:
        if item.get("Message"):
            current.console.print(f"{item['StreamId']}: {item['Message']}", highlight=False)


#: GetStream and DescribeStreams members shown, in order.
_SUMMARY_KEYS = ("Status", "Message", "MLModelId", "InputStream", "OutputUri", "DeadLetterUri",
                 "StartingPosition", "RecordFormat", "RecordsIn", "RecordsOut", "RecordsFailed",
                 "RecordsPerSecond", "MillisBehindLatest")  # fmt: skip


def _count(member: str) -> Callable[[dict[str, Any]], str]:
    return lambda item: format_number(item.get(member))


#: The columns of ``stream list``, in display order: on a narrow terminal the input, the consumers and the
#: throughput go first; the id, the status and the lag stay.
STREAM_COLUMNS = (
    Column("Id", lambda item: item["StreamId"], 0),
    Column("Status", lambda item: item["Status"], 0),
    Column("Model", lambda item: item["MLModelId"], 3),
    Column("Input", lambda item: item["InputStream"], 6, keep_end=True),
    *(
        Column(header, _count(member), priority, number=True)
        for header, member, priority in (
            ("Consumers", "Consumers", 5),
            ("In", "RecordsIn", 2),
            ("Out", "RecordsOut", 2),
            ("Failed", "RecordsFailed", 1),
            ("Records/s", "RecordsPerSecond", 4),
            ("Lag (ms)", "MillisBehindLatest", 1),
        )
    ),
)


def streams_table(results: list[dict[str, Any]], width: int) -> Table:
    """DescribeStreams' results, one line each fitted to ``width`` as the other lists are, counts as they
    write them (``12,345``); titled, as it follows the jobs' table in ``emrml jobs``."""
    table = list_table(STREAM_COLUMNS, results, width)
    table.title, table.title_justify, table.title_style = "Streams", "left", "bold"
    return table


def _time(epoch: float | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@stream_app.command("show")
@reports_errors
def show(ctx: typer.Context, stream_id: str = typer.Argument(..., metavar="ID", help="Stream id.")) -> None:
    """Show a stream: totals, each shard's lease and checkpoint, the live consumers."""
    current = state(ctx)
    item: dict[str, Any] = current.service().call("GetStream", {"StreamId": stream_id})
    if current.json:
        print_json(item)
        return
    print_sections(current, stream_sections(item))


def stream_sections(item: dict[str, Any]) -> list[RenderableType]:
    """GetStream's output: its totals, each shard's lease and checkpoint, the live consumers."""
    summary = key_values(f"Stream {item['StreamId']}", [(key, item.get(key)) for key in _SUMMARY_KEYS])
    counts = ("Lag (ms)", "In", "Out", "Failed")
    shards = titled_table(
        "Shard leases", "Shard", "Parents", "Owner", "Checkpoint", "Checkpointed", *counts, right=counts
    )
    for lease in item["ShardLeases"]:
        shards.add_row(
            lease["ShardId"],
            ", ".join(lease["ParentShardIds"]),
            lease.get("Owner", ""),
            lease.get("Checkpoint", ""),
            _time(lease.get("CheckpointedAt")),
            *(
                format_number(lease.get(key))
                for key in ("MillisBehindLatest", "RecordsIn", "RecordsOut", "RecordsFailed")
            ),
        )
    numbers = ("Pid", "Leases", "Records/s")
    consumers = titled_table("Consumers", "Consumer", "Host", *numbers, "Last heartbeat", right=numbers)
    for consumer in item["ConsumerProcesses"]:
        consumers.add_row(
            consumer["ConsumerId"],
            consumer["Host"],
            str(consumer["Pid"]),
            format_number(consumer["Leases"]),
            format_number(consumer["RecordsPerSecond"]),
            _time(consumer["LastHeartbeatAt"]),
        )
    return [summary, keep_numbers_whole(shards), keep_numbers_whole(consumers)]
