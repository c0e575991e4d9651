"""Where the event loop of ``emrml serve`` pauses under ``wrk``, and why: the attribution of its tail latency.

Run by hand from the repository root (needs ``wrk``; prints only)::

    uv run --group bench python bench/loop_pauses.py                      # 3 runs of 8 s
    uv run --group bench python bench/loop_pauses.py --before /tmp/emrml-before/src

The server runs in a process of this script's (``--serve``), which starts ``emrml serve --workers-jobs 0``
after wrapping, for measurement only: the API handler (each request's start and end on the monotonic
clock and on its thread's CPU clock), the background actions (``Remembered.refresh``: the policies' and
the access keys' rereads; ``MountedModels._check_all``; ``AccessLog.flush``: their thread, times and CPU)
and the garbage collector (``gc.callbacks``). ``wrk`` replays 64 signed Predicts as in
``bench/predict_http.py``.

A request's latency under ``wrk`` grows with every pause of the loop while it is in flight. Wall clocks
on a shared machine cannot say whose a pause is; the thread's CPU clock can: a pause longer than 300 µs
(between two requests, or inside one beyond its own CPU time) in which the loop's thread ran for less
than 70 % of the time was a pause of that thread — waiting for the interpreter lock if a background
action was running then, otherwise descheduled by the system for another process. One in which it ran
was the loop's own work outside the handlers (a collection, uvicorn). The table gives each kind's
pauses per second and their total milliseconds a second; each run also prints the kernel's count of the
time the loop's thread spent runnable but waiting for a processor (``/proc/PID/task/PID/schedstat``).
``--before SRC`` runs the older checkout's server too, in turn with this one.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import gc
import itertools
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

PAUSE_NS = 300_000
#: The first requests (connections opening, the first key and policy readings) are left out.
WARM_UP = 2000


def serve(home: str, port: str, out: str) -> None:
    """``emrml serve`` in this process, instrumented; SIGUSR1 writes what was noted to ``out``."""
    from array import array

    import emrml.web.server as server
    from emrml.service.mounted import MountedModels
    from emrml.service.remembered import Remembered
    from emrml.web.access_log import AccessLog

    requests = array("q")
    actions: list[tuple[str, int, int, int]] = []
    collections: list[tuple[int, int, int]] = []
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    handler = server.ApiHandler.__call__

    async def timed_request(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/" or scope["method"] != "POST":
            await handler(self, scope, receive, send)  # the app's other requests and its lifespan
            return
        started, started_cpu = clock(), cpu()
        await handler(self, scope, receive, send)
        requests.extend((started, clock(), started_cpu, cpu()))

    def timed(kind: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started, started_cpu = clock(), cpu()
            try:
                return function(*args, **kwargs)
            finally:
                thread = threading.current_thread().name
                actions.append((f"{kind}@{thread}", started, clock() - started, cpu() - started_cpu))

        return wrapper

    started_gc = [0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started_gc[0] = clock()
        else:
            collections.append((info["generation"], started_gc[0], clock() - started_gc[0]))

    server.ApiHandler.__call__ = timed_request  # type: ignore[method-assign]
    Remembered.refresh = timed("reread", Remembered.refresh)  # type: ignore[method-assign]
    MountedModels._check_all = timed("models check", MountedModels._check_all)  # type: ignore[method-assign]
    AccessLog.flush = timed("access log flush", AccessLog.flush)  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)

    def dump(*_: object) -> None:
        with open(out, "w") as handle:
            json.dump({"requests": list(requests), "actions": actions, "collections": collections}, handle)

    signal.signal(signal.SIGUSR1, dump)
    from emrml.cli import app

    sys.argv = ["emrml", "--home", home, "serve", "--port", port, "--workers-jobs", "0"]
    app()


def attribute(trace: dict[str, Any]) -> dict[str, Any]:
    flat = trace["requests"]
    requests = [tuple(flat[i : i + 4]) for i in range(0, len(flat), 4)][WARM_UP:]
    # Under load: the requests and the pauses between them, less the idle time between wrk runs.
    between = [(a, b) for a, b in itertools.pairwise(requests) if b[0] - a[1] < 200_000_000]
    seconds = (sum(r[1] - r[0] for r in requests) + sum(b[0] - a[1] for a, b in between)) / 1e9
    background = sorted(
        (start, start + wall, kind.split("@")[0])
        for kind, start, wall, _ in trace["actions"]
        if not kind.endswith("@MainThread")
    )

    def during(start: int, end: int) -> str | None:
        for action_start, action_end, kind in background:
            if action_start < end and action_end > start:
                return kind
        return None

    counts: Counter[str] = Counter()
    totals: Counter[str] = Counter()

    def note(wall: int, ran: int, start: int, end: int) -> None:
        if wall <= PAUSE_NS:
            return
        if ran >= 0.7 * wall:
            kind = "the loop's own work outside the handlers"
        else:
            action = during(start, end)
            kind = f"waiting while a background {action} ran" if action else "descheduled (another process)"
        counts[kind] += 1
        totals[kind] += wall

    for a, b in between:
        note(b[0] - a[1], b[2] - a[3], a[1], b[0])
    for start, end, start_cpu, end_cpu in requests:
        note(end - start - (end_cpu - start_cpu), 0, start, end)
    starts = [r[0] for r in requests]

    def under_load(moment: int) -> bool:  # a request started within 5 ms either side
        i = bisect.bisect_left(starts, moment - 5_000_000)
        return i < len(starts) and starts[i] <= moment + 5_000_000

    actions: dict[str, list[int]] = {}
    for kind, start, _, ran in trace["actions"]:
        if under_load(start):
            actions.setdefault(kind, []).append(ran)
    handler_cpu = sorted(r[3] - r[2] for r in requests)
    gcs = Counter(g for g, start, _ in trace["collections"] if under_load(start))
    gc_ms = sum(wall for _, start, wall in trace["collections"] if under_load(start)) / 1e6
    return {
        "requests_per_second": len(requests) / seconds,
        "handler_cpu_us": (
            handler_cpu[len(handler_cpu) // 2] / 1000,
            handler_cpu[len(handler_cpu) * 99 // 100] / 1000,
        ),
        "pauses": {kind: (counts[kind] / seconds, totals[kind] / seconds / 1e6) for kind in counts},
        "actions": {
            kind: (len(ran) / seconds, sorted(ran)[len(ran) // 2] / 1000) for kind, ran in actions.items()
        },
        "collections": {f"gen{g}": n / seconds for g, n in sorted(gcs.items())},
        "collections_ms_per_second": gc_ms / seconds,
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--before", type=Path, help="src folder of an older checkout: its server too, in turn"
    )
    args = parser.parse_args()
    from predict_http import RECORDS, Server, lua_script, signed_requests, wrk
    from startup import SHARED, free_port, prepare_home

    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment["EMRML_TOTAL_REQUESTS_PER_SECOND"] = "1000000000"
    with tempfile.TemporaryDirectory(prefix="emrml-bench-pauses-") as work:
        home = Path(work) / "home"
        print("preparing a model with a READY endpoint ...", flush=True)
        model_id, _, key, _ = prepare_home(home, peak_requests_per_second=1_000_000_000)
        with (SHARED / "data.csv").open(newline="") as handle:
            rows = [row for _, row in zip(range(RECORDS), csv.DictReader(handle), strict=False)]
        records = [{k: v for k, v in row.items() if k != "y"} for row in rows]
        sides = {"this checkout": None} | ({"before": args.before.resolve()} if args.before else {})
        servers, scripts, traces = {}, {}, {}
        for side, source in sides.items():
            port = free_port()
            traces[side] = Path(work) / f"{len(traces)}.json"
            command = [sys.executable, __file__, "--serve", str(home), str(port), str(traces[side])]
            side_environment = {**environment, "PYTHONPATH": str(source)} if source else environment
            servers[side] = (Server(command, port, side_environment), port)
            requests = signed_requests(port, model_id, f"http://127.0.0.1:{port}", key, records)
            scripts[side] = lua_script(requests, Path(work) / f"{len(scripts)}.lua")
        try:
            for i in range(args.runs):
                for side in list(sides) if i % 2 == 0 else list(sides)[::-1]:
                    before = run_queue_ns(servers[side][0].process.pid)
                    run = wrk(servers[side][1], scripts[side], 16, args.seconds)
                    waited = (run_queue_ns(servers[side][0].process.pid) - before) / args.seconds / 1e6
                    print(
                        f"  {side}: {run.requests_per_second:,.0f} req/s, p99 {run.p99_ms:.2f} ms; the "
                        f"loop's thread runnable but not running {waited:.0f} ms a second (schedstat)",
                        flush=True,
                    )
            for server, _ in servers.values():
                server.process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 30
            while not all(trace.exists() for trace in traces.values()) and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1.0)  # the last one written in full
        finally:
            for server, _ in servers.values():
                server.stop()
        for side, trace in traces.items():
            report(side, attribute(json.loads(trace.read_text())))


def run_queue_ns(pid: int) -> int:
    """Nanoseconds the process's main thread (the event loop's) has spent runnable on a run queue, waiting
    for a processor: the kernel's own count of the time other threads and processes took it."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1])


def report(side: str, found: dict[str, Any]) -> None:
    print(f"\n{side}: {found['requests_per_second']:,.0f} requests a second in the handler (load excluded)")
    p50, p99 = found["handler_cpu_us"]
    print(f"  a request's CPU in the handler: p50 {p50:.0f} µs, p99 {p99:.0f} µs")
    print("  pauses of the loop over 300 µs (per second, ms a second):")
    for kind, (rate, ms) in sorted(found["pauses"].items(), key=lambda item: -item[1][1]):
        print(f"    {rate:7.1f}/s {ms:7.2f} ms/s  {kind}")
    print("  actions (per second, median CPU):")
    for kind, (rate, cpu_us) in sorted(found["actions"].items()):
        print(f"    {rate:5.1f}/s {cpu_us:6.0f} µs  {kind}")
    rates = ", ".join(f"{g} {rate:.1f}/s" for g, rate in found["collections"].items()) or "none"
    print(f"  collections: {rates} ({found['collections_ms_per_second']:.2f} ms a second)")


if __name__ == "__main__":
    main()
