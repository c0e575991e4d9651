"""Start-up: how long emrml's commands take before they do anything, against anchors measured in the same run.

Run by hand from the repository root (not part of the tests)::

    uv run --group bench python bench/startup.py        # 7 pairs per comparison; writes the README section
    uv run --group bench python bench/startup.py --pairs 3 --no-readme
    uv run --group bench python bench/startup.py --before /tmp/emrml-main/src   # adds an older checkout
    uv run --group bench python bench/startup.py --only serve   # one comparison (repeatable), no README

Three comparisons, each a series of pairs: the two sides of a pair run back to back, in alternating order
(emrml first in even pairs, the anchor first in odd ones), so a change in the machine's load hits both. The
table gives each side's median and the **median of the pair ratios** (emrml / anchor):

* **help**: ``emrml --help`` against ``python -m uvicorn --help`` — a fresh process each (interpreter start,
  imports, click parsing, help text).
* **serve → first Predict**: from starting ``emrml serve`` (SigV4 on, jobs off: ``--workers-jobs 0``) to
  the answer of its first signed ``Predict`` on a model with a READY endpoint — interpreter start, imports,
  opening the metastore, uvicorn start, and the first Predict loading the model — against a bare Starlette
  app on the same uvicorn configuration, from start to the answer of its first ``POST /``. Both are polled
  every 5 ms with the same pre-signed request until one is answered.
* **datasource create**: ``emrml datasource create`` on a 5,000-row CSV (the quickstart's sample, with its
  schema; statistics on) into an existing home, wall time of the whole command against the job's own
  ``ComputeTime`` (CPU time of the worker) reported in the command's JSON output. The wall time includes the
  CLI's start, the job fork server's start (in parallel with the CLI's imports) and the worker.

With ``--before SRC`` (the ``src`` folder of another checkout, e.g. ``git worktree add /tmp/emrml-main
main``), every pair also runs that code's emrml (``PYTHONPATH=SRC``), in turn with the other two sides, and
the table gains its columns: before and after measured in one run.

Every process gets compiled bytecode: this script compiles emrml's source first (``compileall``) and runs
the commands without ``PYTHONDONTWRITEBYTECODE``, as an installed emrml runs; the README states whether
the environment's packages had their bytecode compiled.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from common import BENCH_DIR, load_average, machine_report, write_readme_section

SHARED = BENCH_DIR.parent.parent / "shared" / "datasets" / "bank_marketing"
REGION = "us-east-1"
SAMPLE_ROWS = 5_000
#: The anchor of the serve comparison: Starlette answering ``POST /`` with ``{}`` (as a module: ``app``) ...
NOOP_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def noop(request):
    return Response(b"{}", media_type="application/x-amz-json-1.1")

app = Starlette(routes=[Route("/", noop, methods=["POST"])])
"""
#: ... and served by uvicorn with its defaults (``python -c NOOP_SERVER PORT``).
NOOP_SERVER = (
    NOOP_APP
    + """
import sys, uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=False, log_level="warning")
"""
)


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


ENVIRONMENT = _environment()
EMRML = str(Path(sys.executable).with_name("emrml"))


#: The comparisons, by the names ``--only`` takes.
COMPARISONS = ("help", "serve", "create")

#: The environment of the older checkout's runs (``--before``), None without one.
BEFORE: dict[str, str] | None = None


@dataclass
class Comparison:
    name: str
    emrml: str
    anchor: str
    goal: float
    emrml_seconds: list[float]
    anchor_seconds: list[float]
    before_seconds: list[float]
    #: The anchor of the older emrml's runs when it is not the shared one (its own jobs' compute time).
    before_anchor_seconds: list[float] | None = None

    @property
    def ratios(self) -> list[float]:
        return [e / a for e, a in zip(self.emrml_seconds, self.anchor_seconds, strict=True)]

    @property
    def before_ratios(self) -> list[float]:
        anchors = self.before_anchor_seconds or self.anchor_seconds
        return [e / a for e, a in zip(self.before_seconds, anchors, strict=True)]


Side = Callable[[int, dict[str, str]], float]


def run_pairs(pairs: int, emrml: Side, anchor: Side) -> tuple[list[float], list[float], list[float]]:
    """``pairs`` rounds of both sides (and the older emrml with ``--before``), the order rotating each
    round; their seconds."""
    sides: list[tuple[str, Side, dict[str, str]]] = [
        ("emrml", emrml, ENVIRONMENT),
        ("anchor", anchor, ENVIRONMENT),
    ]
    if BEFORE is not None:
        sides.append(("before", emrml, BEFORE))
    seconds: dict[str, list[float]] = {name: [] for name, _, _ in sides}
    for i in range(pairs):
        shift = i % len(sides)
        for name, side, environment in sides[shift:] + sides[:shift]:
            seconds[name].append(side(i, environment))
        done = ", ".join(f"{name} {seconds[name][-1]:.3f} s" for name in seconds)
        print(f"  round {i + 1}: {done}", flush=True)
    return seconds["emrml"], seconds["anchor"], seconds.get("before", [])


def timed(command: list[str], environment: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=environment)
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------------ serve


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signed_predict(
    port: int, model_id: str, endpoint: str, key: tuple[str, str], record: dict[str, str]
) -> bytes:
    """A raw HTTP/1.1 Predict request signed for ``127.0.0.1:port`` (valid for 15 minutes); ``endpoint`` is
    the model's EndpointUrl, as boto3 sends it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"MLModelId": model_id, "Record": record, "PredictEndpoint": endpoint}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonML_20141212.Predict"}
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(*key), "machinelearning", REGION).add_auth(request)
    return raw_request(port, dict(request.headers.items()), body)


def raw_request(port: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = ["POST / HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines.append("Connection: close")
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def first_answer(
    command: list[str], port: int, request: bytes, environment: dict[str, str], timeout: float = 120.0
) -> float:
    """Seconds from starting ``command`` to the first complete 200 answer to ``request``; stops it after."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{command} exited: {process.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                    sock.sendall(request)
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
            except OSError:
                if time.perf_counter() - started > timeout:
                    raise SystemExit(f"{command} did not answer within {timeout} s") from None
                time.sleep(0.005)
                continue
            if not answer.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{command} answered {answer[:300]!r}")
            return time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def prepare_home(
    home: Path, peak_requests_per_second: int | None = None
) -> tuple[str, str, tuple[str, str], dict[str, str]]:
    """A home with a BINARY model on bank_marketing behind a READY endpoint (admitting
    ``peak_requests_per_second``, default the setting's); (model id, its EndpointUrl, an access key, a
    record)."""
    import csv

    from emrml.config import Settings
    from emrml.service.app import EmrML
    from emrml.service.identity import Identities

    overrides = (
        {} if peak_requests_per_second is None else {"peak_requests_per_second": peak_requests_per_second}
    )
    service = EmrML(Settings.load(environ={}, home=home, **overrides))
    try:
        schema = (SHARED / "data.csv.schema").read_text()
        spec = {"DataLocationS3": str(SHARED / "data.csv"), "DataSchema": schema}
        request = {"DataSourceId": "ds-bank", "DataSpec": spec, "ComputeStatistics": True}
        service.call("CreateDataSourceFromS3", request)
        request = {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"}
        service.call("CreateMLModel", request)
        if service.wait("MLModel", "ml-bank")["Status"] != "COMPLETED":
            raise SystemExit("the benchmark model did not train")
        created = service.call("CreateRealtimeEndpoint", {"MLModelId": "ml-bank"})
        endpoint = created["RealtimeEndpointInfo"]["EndpointUrl"]
        identities = Identities(service.sessions, home)
        identities.create_user("bench", ("predictors",))  # Predict only, as a scoring client would
        key = identities.create_key("bench")
    finally:
        service.close()
    with (SHARED / "data.csv").open(newline="") as handle:
        record = {k: v for k, v in next(csv.DictReader(handle)).items() if k != "y"}
    return "ml-bank", endpoint, (key.access_key_id, key.secret_access_key), record


def compute_seconds(described: object) -> float:
    """The ``ComputeTime`` (milliseconds) found in the command's JSON output, in seconds."""
    if isinstance(described, dict):
        if "ComputeTime" in described:
            return described["ComputeTime"] / 1000
        for value in described.values():
            found = compute_seconds(value)
            if found >= 0:
                return found
    return -1.0


# ------------------------------------------------------------------------------------------------ main


def bytecode_note() -> str:
    import typer

    compiled = any(Path(typer.__file__).parent.joinpath("__pycache__").glob("*.pyc"))
    variable = "set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "not set"
    return (
        f"- bytecode: emrml's source compiled by the script; the environment's packages "
        f"{'had' if compiled else 'had no'} compiled bytecode (`PYTHONDONTWRITEBYTECODE` {variable} in the "
        "shell, removed for the measured commands)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--before", type=Path, help="src folder of an older checkout to measure too")
    parser.add_argument(
        "--only",
        choices=COMPARISONS,
        action="append",
        help="run this comparison only (repeat for several; default: all three)",
    )
    args = parser.parse_args()
    only = set(args.only or COMPARISONS)
    import emrml

    global BEFORE
    if args.before is not None:
        BEFORE = {**ENVIRONMENT, "PYTHONPATH": str(args.before.resolve())}
        compileall.compile_dir(args.before / "emrml", quiet=1)

    compileall.compile_dir(Path(emrml.__file__).parent, quiet=1)
    before = load_average()
    print(f"load average {before}", flush=True)
    comparisons = []

    if "help" in only:
        print("emrml --help / python -m uvicorn --help", flush=True)
        runs = run_pairs(
            args.pairs,
            lambda _, environment: timed([EMRML, "--help"], environment),
            lambda _, environment: timed([sys.executable, "-m", "uvicorn", "--help"], environment),
        )
        comparisons.append(Comparison("help", "`emrml --help`", "`python -m uvicorn --help`", 1.5, *runs))

    with tempfile.TemporaryDirectory(prefix="emrml-bench-startup-") as work:
        home = Path(work) / "home"
        print("preparing a model with a READY endpoint ...", flush=True)
        model_id, _, key, record = prepare_home(home)

        if "serve" in only:

            def emrml_serve(_: int, environment: dict[str, str]) -> float:
                port = free_port()
                command = [EMRML, "--home", str(home), "serve", "--port", str(port), "--workers-jobs", "0"]
                # The EndpointUrl this server shows: its own URL, as boto3 would send it.
                request = signed_predict(port, model_id, f"http://127.0.0.1:{port}", key, record)
                return first_answer(command, port, request, environment)

            def noop_serve(_: int, environment: dict[str, str]) -> float:
                port = free_port()
                body = b"{}"
                request = raw_request(port, {"Content-Type": "application/x-amz-json-1.1"}, body)
                return first_answer(
                    [sys.executable, "-c", NOOP_SERVER, str(port)], port, request, environment
                )

            print("emrml serve → first signed Predict / Starlette start → first POST", flush=True)
            runs = run_pairs(args.pairs, emrml_serve, noop_serve)
            comparisons.append(
                Comparison(
                    "serve",
                    "`emrml serve` start → first signed Predict",
                    "bare Starlette start → first POST",
                    3.0,
                    *runs,
                )
            )

        if "create" in only:
            from emrml.samples import bank_sample_schema, write_bank_sample

            sample = write_bank_sample(Path(work) / "bank-5k.csv", SAMPLE_ROWS)
            schema = Path(work) / "bank-5k.csv.schema"
            schema.write_text(bank_sample_schema().to_json())

            def create(environment: dict[str, str], entity_id: str) -> tuple[float, float]:
                command = [EMRML, "--home", str(home), "--output", "json", "datasource", "create"]
                command += ["--id", entity_id, "--data", str(sample), "--schema", str(schema)]
                started = time.perf_counter()
                out = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
                return time.perf_counter() - started, compute_seconds(json.loads(out.stdout))

            print(f"datasource create on {SAMPLE_ROWS:,} rows: CLI wall / the job's ComputeTime", flush=True)
            walls, computes, before_walls, before_computes = [], [], [], []
            for i in range(args.pairs):
                # With --before, the two trees take turns going first, as in ``run_pairs``.
                if BEFORE is not None and i % 2:
                    before_wall, before_compute = create(BEFORE, f"ds-before-{i}")
                wall, compute = create(ENVIRONMENT, f"ds-start-{i}")
                if BEFORE is not None and not i % 2:
                    before_wall, before_compute = create(BEFORE, f"ds-before-{i}")
                walls.append(wall)
                computes.append(compute)
                line = f"  run {i + 1}: wall {wall:.3f} s, ComputeTime {compute:.3f} s"
                if BEFORE is not None:
                    before_walls.append(before_wall)
                    before_computes.append(before_compute)
                    line += f"; before: wall {before_wall:.3f} s, ComputeTime {before_compute:.3f} s"
                print(line, flush=True)
            comparisons.append(
                Comparison(
                    "create",
                    f"`emrml datasource create` on {SAMPLE_ROWS:,} rows, CLI wall",
                    "the job's own ComputeTime",
                    1.5,
                    walls,
                    computes,
                    before_walls,
                    before_computes,
                )
            )
    after = load_average()
    body = report(comparisons, before, after, args.pairs)
    print(body)
    if args.no_readme:
        return
    if only != set(COMPARISONS):
        # The README's table holds all three comparisons of one run: a part of it is not written over it.
        print("--only: bench/README.md left as it is", flush=True)
        return
    write_readme_section("startup", body)


def report(comparisons: list[Comparison], before: str, after: str, pairs: int) -> str:
    lines = [
        "## Start-up (`bench/startup.py`)",
        "",
        "```",
        "uv run --group bench python bench/startup.py",
        "```",
        "",
        f"Measured {datetime.now():%Y-%m-%d %H:%M}; load average (1, 5, 15 min) {before} before, {after} "
        f"after; {pairs} interleaved pairs per comparison (the script's docstring says what each side "
        "includes).",
        "",
        machine_report(),
        bytecode_note(),
        "",
        "| what | emrml median s | anchor | anchor median s | median of pair ratios | goal | | "
        "before: median s | before: ratio |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for c in comparisons:
        ratio = statistics.median(c.ratios)
        verdict = "met" if ratio <= c.goal else "**missed**"
        before = (
            f"{statistics.median(c.before_seconds):.3f} | {statistics.median(c.before_ratios):.2f}×"
            if c.before_seconds
            else " | "
        )
        lines.append(
            f"| {c.emrml} | {statistics.median(c.emrml_seconds):.3f} | {c.anchor} | "
            f"{statistics.median(c.anchor_seconds):.3f} | {ratio:.2f}× | ≤ {c.goal}× | {verdict} | {before} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
