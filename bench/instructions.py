"""Instructions per request, counted by valgrind: the request path measured without the machine's noise.

Run by hand from the repository root (not part of the tests; needs valgrind, Debian's ``apt install
valgrind``)::

    uv run --group bench python bench/instructions.py              # writes the README section
    uv run --group bench python bench/instructions.py --before /tmp/emrml-before/src --no-readme

On a shared 2-core machine the same request takes from 8 to 15 µs from one minute to the next, so a
change of a few percent is invisible to clocks unless measured for a long time. The number of machine
instructions a request executes does not move with the load: each side below runs in a fresh interpreter
under ``valgrind --tool=callgrind``, which counts only while ``itertools.starmap`` calls the request
(``--toggle-collect=starmap_next``): the ``--requests`` requests after 200 uncounted ones run through it,
and nothing else does. Two runs give the same count to within a few instructions per request (the hash
seed fixed). Instructions are not time — a cache miss costs more than an addition — but on this
pure-Python path they track it.

* **predict**: ``app.call("Predict", request)`` in process, the whole operation behind every interface;
* **http**: a SigV4-signed ``Predict`` (the bytes ``bench/predict_http.py`` replays) through emrml's ASGI
  application in process — headers, signature, JSON, authorization, the operation, the access log — with
  no socket, uvicorn or event-loop wake-up (those are the same for every ASGI app);
* **floor**: the same request through ``bench/predict_floor.py``'s application, a signed Predict's
  arithmetic only.

The model is the one ``bench/startup.py`` prepares (BINARY, bank_marketing, a READY endpoint, a user of
the ``predictors`` group calling). ``--before SRC`` adds the predict and http sides of an older checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from common import load_average, machine_report, write_readme_section
from startup import prepare_home, signed_predict

WARMUP = 200
PORT = 8123  # only named in the signed Host header: nothing listens


def child(kind: str, home: Path, requests: int) -> None:
    """Answer ``requests`` requests of ``kind`` after the warm-up (run under valgrind by :func:`count`)."""
    import logging

    from emrml.config import Settings
    from emrml.service.app import EmrML

    side = json.loads((home / "bench.json").read_text())
    model_id, endpoint, record = side["model_id"], side["endpoint"], side["record"]
    access_key_id, secret = side["key"]
    settings = Settings.load(
        environ={}, home=home, peak_requests_per_second=10**9, total_requests_per_second=10**9
    )
    service = EmrML(settings)
    # Nothing that depends on the clock: no policy, key or model is read again while counting.
    service.access.policies.ttl = 1e9
    stop = threading.Event()
    threading.Thread(target=service.mounted.keep_fresh, args=(stop, 1e9), daemon=True).start()
    while not service.mounted.kept_fresh:
        stop.wait(0.01)
    if kind == "predict":
        caller = f"arn:aws:iam::{settings.account_id}:user/bench"
        request = {"MLModelId": model_id, "Record": record, "PredictEndpoint": endpoint}
        counted(lambda: service.call("Predict", request, caller), requests)
        return
    access = logging.getLogger("emrml.access")
    access.setLevel(logging.INFO)  # the lines are made, as a server makes them, and dropped
    access.addHandler(logging.NullHandler())
    access.propagate = False
    if kind == "floor":
        from predict_floor import floor_app

        app = floor_app(home, model_id, secret)
    else:
        from emrml.web.server import create_app

        app = create_app(service, credential_ttl_seconds=1e9, console=False)
    raw = signed_predict(PORT, model_id, endpoint, (access_key_id, secret), record)
    head, body = raw.split(b"\r\n\r\n", 1)
    fields = (line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    headers = [(name.strip().lower(), value.strip()) for name, value in fields]
    headers = [(name, value) for name, value in headers if name != b"connection"]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", PORT),
        "client": ("127.0.0.1", 40000),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))  # type: ignore[call-overload]

    def request() -> None:
        # Driven without an event loop: once the key, policy and model are loaded, a request awaits
        # nothing that suspends, so one send() runs it to the end.
        coroutine = app(dict(scope), receive, send)
        try:
            coroutine.send(None)
        except StopIteration:
            return
        coroutine.close()
        raise SystemExit(f"{kind}: a request waited for something; it cannot be counted")

    asyncio.run(app(dict(scope), receive, send))  # the first request loads the key, in a thread
    counted(request, requests)
    if set(statuses) != {200}:
        raise SystemExit(f"{kind}: answers other than 200: {sorted(set(statuses))}")


def counted(function: Callable[[], object], requests: int) -> None:
    """``WARMUP`` calls of ``function``, then ``requests`` calls through ``itertools.starmap``: the only
    calls valgrind counts (``--toggle-collect=starmap_next``)."""
    for _ in range(WARMUP):
        function()
    collections.deque(itertools.starmap(function, itertools.repeat((), requests)), maxlen=0)


def count(kind: str, home: Path, requests: int, source: Path | None) -> float:
    """Instructions per request of ``kind`` (``source``: another checkout's src folder)."""
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    if source is not None:
        environment["PYTHONPATH"] = str(source)
    command = [
        "valgrind",
        "--tool=callgrind",
        "--toggle-collect=starmap_next",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        kind,
        str(home),
        str(requests),
    ]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or found is None:
        raise SystemExit(f"{kind} under valgrind failed:\n{done.stderr[-3000:]}")
    return int(found.group(1)) / requests


def prepare(home: Path) -> None:
    model_id, endpoint, key, record = prepare_home(home, peak_requests_per_second=10**9)
    side = {"model_id": model_id, "endpoint": endpoint, "key": key, "record": record}
    (home / "bench.json").write_text(json.dumps(side))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--before", type=Path, help="src folder of an older checkout to count too")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "HOME", "REQUESTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, home, requests = args.child
        child(kind, Path(home), int(requests))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt install valgrind)")
    started = load_average()
    sides = [("predict", None), ("http", None), ("floor", None)]
    before = args.before.resolve() if args.before is not None else None
    if before is not None:
        sides += [("predict", before), ("http", before)]
    with tempfile.TemporaryDirectory(prefix="emrml-bench-instructions-") as work:
        home = Path(work) / "home"
        print("preparing a model with a READY endpoint ...", flush=True)
        prepare(home)
        counts = {}
        for kind, source in sides:
            counts[kind, source] = count(kind, home, args.requests, source)
            label = kind if source is None else f"{kind} (before: {source})"
            print(f"  {label}: {counts[kind, source]:,.0f} instructions per request", flush=True)
    predict, http, floor = (counts[kind, None] for kind in ("predict", "http", "floor"))
    rows = [
        # No before side: None (the key ("predict", None) is this checkout's own count).
        '| `app.call("Predict")` in process | ' + _cell(predict, before and counts[("predict", before)]),
        "| signed Predict through the ASGI app | " + _cell(http, before and counts[("http", before)]),
        "| the floor's ASGI app, same request | " + _cell(floor, None) + (" |" if args.before else ""),
    ]
    before_column = " before |" if args.before is not None else ""
    body = "\n".join(
        [
            f"Measured {datetime.now():%Y-%m-%d %H:%M}; load average {started} (no bearing on the counts).",
            "",
            machine_report(),
            "",
            f"{args.requests:,} requests per side after {WARMUP} uncounted ones; instructions per request"
            + (f" (before: `{args.before}`, commit {_commit(args.before)}):" if args.before else ":"),
            "",
            "| path | instructions |" + before_column,
            "|---|---:|" + ("---:|" if args.before is not None else ""),
            *rows,
            "",
            f"The HTTP path over the floor: **{http / floor:.2f}×** the instructions; the Predict operation "
            f"is {predict / http:.0%} of the HTTP path.",
        ]
    )
    print(body)
    if not args.no_readme:
        write_readme_section("instructions", body)


def _commit(source: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _cell(value: float, before: float | None) -> str:
    return f"{value:,.0f} |" + ("" if before is None else f" {before:,.0f} |")


if __name__ == "__main__":
    main()
