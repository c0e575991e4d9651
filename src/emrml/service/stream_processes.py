"""The consumer processes ``StartStream`` spawns on this machine: started detached, with every setting in
their environment, and awaited until they run (or recorded FAILED on the stream when they die before)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from emrml.service.metastore import Sessions, now
from emrml.service.rows import Stream, StreamConsumer

if TYPE_CHECKING:
    from emrml.config import Settings


def consumer_environment(settings: Settings) -> dict[str, str]:
    """The environment of a consumer process: this one's, with every setting as its ``EMRML_*`` variable."""
    env = dict(os.environ)
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if isinstance(value, dict):
            env[f"EMRML_{item.name.upper()}"] = json.dumps(value)
        elif isinstance(value, tuple):
            env[f"EMRML_{item.name.upper()}"] = os.pathsep.join(str(path) for path in value)
        else:
            env[f"EMRML_{item.name.upper()}"] = str(value)
    env["EMRML_METASTORE_URL"] = settings.database_url
    return env


#: The environment variable naming the descriptor a consumer process writes a byte to once it runs
#: (``emrml.stream.__main__``); its spawner learns so that it started (``await_started``).
READY_FD = "EMRML_STREAM_READY_FD"
#: Seconds ``StartStream`` waits for its consumers to run (Python started, the settings read), or to die.
START_SECONDS = 20.0


@dataclasses.dataclass
class Spawned:
    """A consumer process just started, and how to learn whether it runs (``await_started``)."""

    process: subprocess.Popen[bytes]
    #: The read end of the pipe the process writes a byte to once it runs; EOF without it: it died.
    ready: int
    log: Path
    #: The log's size before the process started: what it wrote comes after.
    log_start: int


def spawn_consumer(settings: Settings, stream_id: str) -> Spawned:
    """Start a consumer process, detached (it outlives the CLI or server that started it), logging to
    ``<home>/logs/stream-<id>.log``."""
    folder = settings.home / "logs"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = folder / f"stream-{stream_id}.log"
    descriptor = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    ready, signal_end = os.pipe()
    env = {**consumer_environment(settings), READY_FD: str(signal_end)}
    try:
        with os.fdopen(descriptor, "ab") as log_file:
            log_start = os.fstat(log_file.fileno()).st_size
            process = subprocess.Popen(
                [sys.executable, "-m", "emrml.stream", stream_id],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(signal_end,),
            )
    except BaseException:
        os.close(ready)
        raise
    finally:
        os.close(signal_end)
    return Spawned(process, ready, log_path, log_start)


def await_started(sessions: Sessions, stream_id: str, spawned: list[Spawned]) -> int:
    """Wait (up to ``START_SECONDS``) for consumer processes to run; record each that died before (a
    Python that cannot start: a broken interpreter or environment; settings it cannot read) FAILED on the
    stream, with its exit code and the last line it wrote, as a consumer that cannot start records itself
    (GetStream then says FAILED and why, rather than RUNNING with nobody reading it). Returns how many
    died. One still starting when the time is up is left to say for itself."""
    deadline = time.monotonic() + START_SECONDS
    died = 0
    with selectors.DefaultSelector() as selector:
        for item in spawned:
            selector.register(item.ready, selectors.EVENT_READ, item)
        try:
            while selector.get_map() and (left := deadline - time.monotonic()) > 0:
                for key, _events in selector.select(left):
                    selector.unregister(key.fd)
                    if os.read(key.fd, 1):
                        continue  # it runs: it records its own failures from now on
                    died += 1
                    _record_died(sessions, stream_id, key.data)
        finally:
            for item in spawned:
                os.close(item.ready)
    return died


def _record_died(sessions: Sessions, stream_id: str, item: Spawned) -> None:
    try:
        code = item.process.wait(5.0)
    except subprocess.TimeoutExpired:
        code = None
    last = ""
    with contextlib.suppress(OSError), item.log.open("rb") as log_file:
        log_file.seek(item.log_start)
        lines = [line.strip() for line in log_file.read()[-4096:].decode(errors="replace").splitlines()]
        # The error it died of: a traceback's last line, or, for a Python that could not start, the error
        # line of its fatal error report (the lines after it tell threads and frames it had none of).
        said = [line for line in lines if line]
        last = next((line for line in reversed(said) if "Error" in line), said[-1] if said else "")
    pid = item.process.pid
    message = (
        f"consumer process {pid} on {socket.gethostname()} ended before it ran (exit code {code})"
        + (f": {last[:300]}" if last else "")
        + f"; its log: {item.log}"
    )
    record_not_running(sessions, stream_id, pid, message)


def record_not_running(sessions: Sessions, stream_id: str, pid: int, message: str) -> None:
    """Record a consumer process that never ran FAILED with ``message`` (GetStream says it)."""
    host = socket.gethostname()
    moment = now()
    with sessions() as session, session.begin():
        stream = session.get(Stream, stream_id)
        if stream is None or stream.status != "RUNNING":
            return
        session.add(
            StreamConsumer(
                id=f"{host}:{pid}:{uuid.uuid4().hex[:8]}", stream_id=stream_id, host=host, pid=pid,
                started_at=moment, heartbeat_at=moment, status="FAILED", message=message,
                records_per_second=0.0,
            )
        )  # fmt: skip
