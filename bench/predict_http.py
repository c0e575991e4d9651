"""HTTP throughput with ``wrk``: SigV4-signed ``Predict`` on ``emrml serve`` against a no-op Starlette app.

Run by hand from the repository root (not part of the tests; needs ``wrk``, Debian's ``apt install wrk``)::

    uv run --group bench python bench/predict_http.py     # 5 pairs of 10 s runs; writes the README section
    uv run --group bench python bench/predict_http.py --pairs 3 --seconds 5 --no-readme

Both servers run alone in their own process on the same uvicorn configuration (uvicorn's defaults, which
pick httptools and uvloop, both installed with emrml):

* **no-op**: Starlette answering ``POST /`` with ``{}``;
* **emrml Predict**: ``emrml serve --workers-jobs 0`` (SigV4 on, access log at its defaults) with a BINARY
  model trained on ``../shared/datasets/bank_marketing`` behind a READY real-time endpoint, its rate limits
  raised out of the way (this measures capacity, not the quota).

``--floor`` adds a third side, ``bench/predict_floor.py``: uvicorn serving only the arithmetic of a signed
Predict (the signature recomputed without a check around it, the scorer, orjson), what any Python
handler doing this work pays; its non-200 answers would be signatures it computed wrong.

``--spin US`` adds the no-op with ``US`` microseconds of busy work per request (a loop on the clock, in
the handler), a control for the tail: a server about as slow as emrml per request but with none of its
background threads, access log or allocations. Under ``wrk``'s closed loop of ``--connections`` requests
the mean latency is connections / throughput (Little's law), so a slower server has a higher p99 for that
reason alone; emrml's tail is its own only where its p99 exceeds the spinning no-op's at the same
throughput.

``--before SRC`` (the ``src`` folder of another checkout, e.g. ``git worktree add --detach /tmp/emrml-before
main``) adds the older code's ``emrml serve`` as one more side, run in turn with the others: before and after
measured in one run, each against the same no-op (print only; the README's section holds the plain runs).

``--workers N`` runs both with N server processes on the port (``emrml serve --workers N``; the no-op by
``uvicorn --workers N``); the README's section holds the one-process runs.

The load is ``wrk`` (one thread, ``--connections`` keep-alive connections) running a Lua script that
replays requests built and signed by this script just before each run: 64 Predicts of different records
of the bank file, each signed with botocore's SigV4 signer, which the server accepts again within the
signature's 15-minute validity, as AWS does; the no-op side gets one plain ``POST /``. The two sides
alternate (the order swaps every pair), so a change in the machine's load hits both; the table gives each
side's median and the median of the pair ratios. Every emrml answer must be a 200 (``wrk`` counts the
others). With one server process, each run also gives the server's CPU time (user and system, every thread:
``/proc/PID/stat``) per answered request, which time spent waiting for a processor on a loaded machine does
not inflate: ``--before`` compares it too.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from common import load_average, machine_report, write_readme_section
from startup import EMRML, NOOP_APP, NOOP_SERVER, REGION, SHARED, free_port, prepare_home

RECORDS = 64
LUA = """
local requests = {}
local count = 0
%s
local i = 0
request = function()
  i = i %% count + 1
  return requests[i]
end
"""


#: The no-op with a busy loop of ``argv[2]`` microseconds per request (``--spin``), served like the no-op.
SPIN_SERVER = (
    NOOP_APP.replace(
        "async def noop(request):\n",
        "async def noop(request):\n"
        "    end = time.perf_counter_ns() + SPIN_NS\n"
        "    while time.perf_counter_ns() < end:\n"
        "        pass\n",
    )
    + """
import sys, time, uvicorn
SPIN_NS = int(sys.argv[2]) * 1000
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning")
"""
)


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    #: The server process's CPU time (user and system, all its threads) per answered request, in µs; 0 when
    #: not measured. Steadier than the rates on a loaded machine: time spent descheduled is not in it.
    cpu_us: float = 0.0


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def lua_script(requests: list[tuple[dict[str, str], bytes]], path: Path) -> Path:
    """A wrk script replaying ``requests`` (headers, body) in turn on ``POST /``."""
    lines = []
    for headers, body in requests:
        # "[ [==[" with spaces: "[[" would open a Lua long string.
        table = ", ".join(f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items())
        lines.append(
            f'count = count + 1; requests[count] = wrk.format("POST", "/", {{{table}}}, '
            f"{_lua_string(body.decode())})"
        )
    path.write_text(LUA % "\n".join(lines))
    return path


def signed_requests(
    port: int, model_id: str, endpoint: str, key: tuple[str, str], records: list[dict[str, str]]
) -> list[tuple[dict[str, str], bytes]]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = SigV4Auth(Credentials(*key), "machinelearning", REGION)
    out = []
    for record in records:
        body = json.dumps({"MLModelId": model_id, "Record": record, "PredictEndpoint": endpoint}).encode()
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AmazonML_20141212.Predict",
        }
        request = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body, headers=headers)
        signer.add_auth(request)
        # The signed Host header, given outright: wrk adds its own only after the script has run.
        out.append(({**dict(request.headers.items()), "Host": f"127.0.0.1:{port}"}, body))
    return out


def wrk(port: int, script: Path, connections: int, seconds: float) -> Run:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "-s", str(script)]
    output = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/"], check=True, capture_output=True, text=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(n) for n in socket_errors.groups())
    return Run(rate, _ms(percentiles["50"]), _ms(percentiles["99"]), failed)


def process_cpu_seconds(pid: int) -> float:
    """The user and system CPU time of process ``pid``'s threads so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


class Server:
    """A server process, started and waited for until ``POST /`` answers; stopped with ``stop``."""

    def __init__(self, command: list[str], port: int, environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment
        )
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{command} exited")
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"{}", method="POST")
                urllib.request.urlopen(request, timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # answered (the API refuses an unsigned request)
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"{command} did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes on each side (emrml serve --workers N)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="add a third side: bench/predict_floor.py, only the arithmetic of a signed Predict (no checks)",
    )
    parser.add_argument(
        "--spin",
        type=int,
        metavar="US",
        help="add a side: the no-op with US microseconds of busy work per request (a control for the tail)",
    )
    parser.add_argument(
        "--before", type=Path, help="src folder of an older checkout: its emrml serve as one more side"
    )
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if (args.floor or args.spin is not None) and args.workers != 1:
        raise SystemExit("--floor and --spin run one process: leave --workers at 1")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt install wrk)")
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment["EMRML_TOTAL_REQUESTS_PER_SECOND"] = "1000000000"
    before = load_average()
    print(f"load average {before}", flush=True)
    with tempfile.TemporaryDirectory(prefix="emrml-bench-http-") as work:
        home = Path(work) / "home"
        print("preparing a model with a READY endpoint ...", flush=True)
        model_id, _, key, _ = prepare_home(home, peak_requests_per_second=1_000_000_000)
        with (SHARED / "data.csv").open(newline="") as handle:
            rows = [row for _, row in zip(range(RECORDS), csv.DictReader(handle), strict=False)]
        records = [{k: v for k, v in row.items() if k != "y"} for row in rows]
        emrml_port, noop_port = free_port(), free_port()
        serve = [EMRML, "--home", str(home), "serve", "--port", str(emrml_port), "--workers-jobs", "0"]
        emrml = Server([*serve, "--workers", str(args.workers)], emrml_port, environment)
        if args.workers == 1:
            noop_command = [sys.executable, "-c", NOOP_SERVER, str(noop_port)]
        else:  # uvicorn's workers import the app by name
            (Path(work) / "noop_app.py").write_text(NOOP_APP)
            noop_command = [
                sys.executable, "-m", "uvicorn", "noop_app:app", "--app-dir", work, "--host", "127.0.0.1",
                "--port", str(noop_port), "--workers", str(args.workers), "--no-access-log",
                "--log-level", "warning",
            ]  # fmt: skip
        noop = Server(noop_command, noop_port, environment)
        noop_script = lua_script(
            [({"Content-Type": "application/x-amz-json-1.1", "Host": f"127.0.0.1:{noop_port}"}, b"{}")],
            Path(work) / "noop.lua",
        )
        servers = {"emrml": emrml, "noop": noop}
        ports = {"emrml": emrml_port, "noop": noop_port}
        if args.floor:
            ports["floor"] = free_port()
            floor = [sys.executable, str(Path(__file__).with_name("predict_floor.py"))]
            servers["floor"] = Server(
                [*floor, str(home), model_id, key[1], str(ports["floor"])], ports["floor"], environment
            )
        if args.spin is not None:
            ports["spin"] = free_port()
            spin_command = [sys.executable, "-c", SPIN_SERVER, str(ports["spin"]), str(args.spin)]
            servers["spin"] = Server(spin_command, ports["spin"], environment)
        if args.before is not None:
            ports["before"] = free_port()
            before_serve = [EMRML, "--home", str(home), "serve", "--port", str(ports["before"])]
            servers["before"] = Server(
                [*before_serve, "--workers-jobs", "0", "--workers", str(args.workers)],
                ports["before"],
                {**environment, "PYTHONPATH": str(args.before.resolve())},
            )
        runs: dict[str, list[Run]] = {side: [] for side in servers}
        try:
            for i in range(args.pairs):
                for side in list(servers) if i % 2 == 0 else list(servers)[::-1]:
                    if side in ("noop", "spin"):
                        script = noop_script
                    else:
                        # Signed now: valid for the next 15 minutes, far longer than a run.
                        # The EndpointUrl the server shows: its own URL, as boto3 would send it.
                        url = f"http://127.0.0.1:{ports[side]}"
                        requests = signed_requests(ports[side], model_id, url, key, records)
                        script = lua_script(requests, Path(work) / f"{side}.lua")
                    # With workers, the process started is their supervisor: its CPU time is not theirs.
                    pid = servers[side].process.pid if args.workers == 1 else None
                    cpu = process_cpu_seconds(pid) if pid else 0.0
                    run = wrk(ports[side], script, args.connections, args.seconds)
                    if pid:
                        answered = run.requests_per_second * args.seconds
                        run.cpu_us = (process_cpu_seconds(pid) - cpu) / answered * 1e6
                    runs[side].append(run)
                print(
                    f"  pair {i + 1}: "
                    + ", ".join(
                        f"{side} {runs[side][-1].requests_per_second:,.0f} req/s "
                        f"(p99 {runs[side][-1].p99_ms:.2f} ms, {runs[side][-1].errors} errors, "
                        f"CPU {runs[side][-1].cpu_us:.1f} µs a request)"
                        for side in servers
                    )
                    + f"; load {load_average()}",
                    flush=True,
                )
        finally:
            for server in servers.values():
                server.stop()
    body = report(runs, args, before, load_average())
    print(body)
    if "before" in runs:
        print(
            "\n" + _row(f"before: emrml from {args.before}", runs["before"]) + "\nMedian of pair ratios "
            f"after / before: **{_median_ratio(runs['emrml'], runs['before']):.2f}×**; before / no-op: "
            f"**{_median_ratio(runs['before'], runs['noop']):.2f}×**; the server's CPU a request after / "
            f"before: **{_median_cpu_ratio(runs['emrml'], runs['before']):.2f}×** (not written to the README)"
        )
    elif args.workers != 1:
        print("(--workers: the README's section holds the one-process runs; not written)")
    if args.workers == 1 and "before" not in runs and not args.no_readme:
        write_readme_section("http", body)


def report(runs: dict[str, list[Run]], args: argparse.Namespace, before: str, after: str) -> str:
    emrml, noop = runs["emrml"], runs["noop"]
    throughput = _median_ratio(emrml, noop)
    tail = statistics.median(e.p99_ms / n.p99_ms for e, n in zip(emrml, noop, strict=True))
    errors = sum(run.errors for run in emrml)
    lines = [
        "## HTTP API with wrk (`bench/predict_http.py`)",
        "",
        "```",
        f"uv run --group bench python bench/predict_http.py{' --floor' if args.floor else ''}"
        f"{f' --spin {args.spin}' if args.spin is not None else ''}",
        "```",
        "",
        f"Measured {datetime.now():%Y-%m-%d %H:%M}; load average (1, 5, 15 min) {before} before, {after} "
        f"after; {args.pairs} interleaved pairs of {args.seconds:g} s `wrk -t1 -c{args.connections}` runs, "
        f"{args.workers} server process(es) on each side "
        "(the script's "
        "docstring says what each side includes).",
        "",
        machine_report(),
        "",
        "| server | req/s (median) | p50 ms | p99 ms | non-200 answers | server CPU µs a request |",
        "|---|---:|---:|---:|---:|---:|",
        _row("no-op Starlette (same uvicorn configuration)", noop),
        _row("emrml Predict, SigV4", emrml),
    ]
    if "floor" in runs:
        lines.append(
            _row("floor: a signed Predict's arithmetic only (`bench/predict_floor.py`)", runs["floor"])
        )
    if "spin" in runs:
        lines.append(_row(f"no-op with {args.spin} µs of busy work per request (`--spin`)", runs["spin"]))
    lines += [
        "",
        f"Median of pair ratios emrml / no-op: throughput **{throughput:.2f}×** (goal ≥ 0.75×), p99 "
        f"**{tail:.2f}×** (goal ≤ 1.5×); {errors} emrml answers were not 200.",
    ]
    if "floor" in runs:
        lines[-1] += f" The floor / no-op: **{_median_ratio(runs['floor'], noop):.2f}×**."
    if "spin" in runs:
        spin = runs["spin"]
        lines[-1] += (
            f" emrml / the spinning no-op: throughput {_median_ratio(emrml, spin):.2f}×, p99 "
            f"{statistics.median(e.p99_ms / s.p99_ms for e, s in zip(emrml, spin, strict=True)):.2f}×."
        )
    return "\n".join(lines)


def _median_cpu_ratio(these: list[Run], those: list[Run]) -> float:
    return statistics.median(a.cpu_us / b.cpu_us for a, b in zip(these, those, strict=True))


def _median_ratio(these: list[Run], those: list[Run]) -> float:
    return statistics.median(
        a.requests_per_second / b.requests_per_second for a, b in zip(these, those, strict=True)
    )


def _row(name: str, runs: list[Run]) -> str:
    return (
        f"| {name} | {statistics.median(r.requests_per_second for r in runs):,.0f} | "
        f"{statistics.median(r.p50_ms for r in runs):.2f} | "
        f"{statistics.median(r.p99_ms for r in runs):.2f} | "
        f"{sum(r.errors for r in runs)} | {statistics.median(r.cpu_us for r in runs):.1f} |"
    )


if __name__ == "__main__":
    main()
