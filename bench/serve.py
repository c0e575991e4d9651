"""HTTP API throughput: SigV4-signed ``Predict`` over loopback, against a bare Starlette + uvicorn no-op and
MLflow's model server.

Run by hand from the repository root (not part of the tests)::

    uv run python bench/serve.py                    # writes the "HTTP API" README section
    uv run python bench/serve.py --seconds 10 --no-readme
    uv run python bench/serve.py --mlflow-python /tmp/mlflow-venv/bin/python   # adds MLflow

Every server runs alone in its own process (one uvicorn worker with the protocol and loop it picks:
httptools and uvloop, installed with emrml); the load comes from this process: an asyncio client
with ``--connections`` keep-alive connections (TCP_NODELAY, as urllib3 sets it) that each send a request,
read the whole answer, and send the next, for ``--seconds`` after a 2 s warm-up. The client writes
hand-built HTTP/1.1 requests, so it costs little next to any server. Latency is per request, from the
first byte written to the last byte read; req/s is answers per second over the measured period.

Servers:

* **no-op**: Starlette, ``POST /`` answering ``{}`` — the floor of any Starlette + uvicorn service here;
* **emrml Predict**: ``emrml.web.server.create_app`` with SigV4 authentication, a BINARY model trained on
  ``../shared/datasets/bank_marketing`` behind a READY real-time endpoint, and requests for 256 different
  records of that file. Requests are signed before the run (botocore's SigV4Auth): the server accepts a
  signed request again within the 15-minute clock-skew window, as AWS does, so the client need not sign
  in the loop. The per-endpoint and per-process rate limits (200 and 10,000 requests/s by default) are
  raised out of the way: this measures capacity, not the quota;
* the same with ``inline_predict=False`` (Predict through the thread pool like the other operations), to
  show why the server runs it on the event loop;
* the same while the server's job runner trains models on ``bench/data/bank-1m.csv`` (1,000,000 rows) in
  a worker process, one after the other for the whole measurement;
* **MLflow** (with ``--mlflow-python``, an interpreter with ``mlflow`` and ``scikit-learn``): ``mlflow
  models serve`` of a scikit-learn pipeline (one-hot categoricals, standardized numbers, logistic
  regression) fitted on the same file, ``POST /invocations`` of the same records one row at a time, no
  authentication.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from common import BENCH_DIR, load_average, machine_report, single_threaded, write_readme_section

SHARED = BENCH_DIR.parent.parent / "shared" / "datasets" / "bank_marketing"
BIG_DATA = BENCH_DIR / "data" / "bank-1m.csv"
RECORDS = 256
REGION = "us-east-1"
MLFLOW_TRAIN = """
import sys, pandas as pd, mlflow.sklearn
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
data = pd.read_csv(sys.argv[1])
y = data.pop("y")
numeric = list(data.select_dtypes(include="number").columns)
categorical = [c for c in data.columns if c not in numeric]
model = Pipeline([
    ("features", ColumnTransformer([
        ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ("numeric", StandardScaler(), numeric),
    ])),
    ("model", LogisticRegression(max_iter=1000)),
]).fit(data, y)
mlflow.sklearn.save_model(model, sys.argv[2])
"""


# ---------------------------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_noop(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def noop(request: object) -> Response:
        return Response(b"{}", media_type="application/x-amz-json-1.1")

    app = Starlette(routes=[Route("/", noop, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def serve_emrml(port: int, home: Path, inline_predict: bool) -> None:
    from emrml.config import Settings
    from emrml.service.app import EmrML
    from emrml.web import server

    settings = Settings.load(
        environ={},
        home=home,
        public_url=f"http://127.0.0.1:{port}",
        peak_requests_per_second=10_000_000,
        total_requests_per_second=10_000_000,
        # Jobs requested through the server read local files only under its data roots.
        data_roots=(BIG_DATA.parent, SHARED),
    )
    app = server.create_app(EmrML(settings), job_slots=2, inline_predict=inline_predict)
    server.serve(app, "127.0.0.1", port)


@contextmanager
def running(command: list[str], port: int, ready_path: str = "/health") -> Iterator[subprocess.Popen]:
    """Start a server process and wait until ``ready_path`` answers (any status); stop it afterwards."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server {command} exited: {process.stderr.read() if process.stderr else ''}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2).close()
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"server {command} did not start") from None
            time.sleep(0.2)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


# ---------------------------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray
    #: The 1-minute load average when the measurement ended: what else the machine was doing.
    load: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def http_request(port: int, headers: dict[str, str], body: bytes, path: str = "/") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [
        f"{name}: {value}"
        for name, value in headers.items()
        if name.lower() not in ("host", "content-length")
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(
    port: int, requests: list[bytes], start: float, warm_until: float, end: float, offset: int
) -> tuple[list[int], int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies: list[int] = []
    errors = 0
    index = offset
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        payload = requests[index % len(requests)]
        index += 1
        began = time.perf_counter_ns()
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        elapsed = time.perf_counter_ns() - began
        if now >= warm_until:
            latencies.append(elapsed)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
    writer.close()
    return latencies, errors


def load(name: str, port: int, requests: list[bytes], connections: int, seconds: float) -> Result:
    async def run() -> list[tuple[list[int], int]]:
        start = time.perf_counter()
        warm_until, end = start + 2.0, start + 2.0 + seconds
        tasks = [_connection(port, requests, start, warm_until, end, i * 7) for i in range(connections)]
        return await asyncio.gather(*tasks)

    outcomes = asyncio.run(run())
    latencies = np.array([value for values, _ in outcomes for value in values], dtype=np.float64) / 1e6
    errors = sum(count for _, count in outcomes)
    result = Result(name, len(latencies), errors, seconds, latencies, os.getloadavg()[0])
    print(
        f"{name}: {result.per_second:,.0f} req/s, p50 {result.percentile(50):.2f} ms, "
        f"p99 {result.percentile(99):.2f} ms, {errors} errors (load {load_average()})",
        flush=True,
    )
    return result


# ---------------------------------------------------------------------------------------------- setup


def _records() -> list[dict[str, str]]:
    """``RECORDS`` rows of the bank file, as Predict receives them: every value a string, no target."""
    with (SHARED / "data.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = np.random.default_rng(7).choice(len(rows), RECORDS, replace=False)
    return [{name: value for name, value in rows[int(i)].items() if name != "y"} for i in chosen]


def _signed_predicts(
    port: int, model_id: str, key: tuple[str, str], records: list[dict[str, str]]
) -> list[bytes]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = SigV4Auth(Credentials(*key), "machinelearning", REGION)
    url = f"http://127.0.0.1:{port}"
    out = []
    for record in records:
        body = json.dumps({"MLModelId": model_id, "Record": record, "PredictEndpoint": url}).encode()
        request = AWSRequest(
            method="POST",
            url=url + "/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "AmazonML_20141212.Predict",
            },
        )
        signer.add_auth(request)
        out.append(http_request(port, dict(request.headers.items()), body))
    return out


def prepare_home(home: Path) -> tuple[str, str]:
    """Train the Predict model and the 1M-row datasource in ``home``; returns an access key."""
    from emrml.config import Settings
    from emrml.samples import write_bank_sample
    from emrml.service.app import EmrML
    from emrml.service.identity import Identities

    if not BIG_DATA.exists():
        print(f"writing {BIG_DATA} ...", flush=True)
        write_bank_sample(BIG_DATA, 1_000_000, seed=7)
    service = EmrML(Settings.load(environ={}, home=home))
    try:
        schema = (SHARED / "data.csv.schema").read_text()
        from emrml.samples import bank_sample_schema

        for entity_id, location, schema_text in (
            ("ds-bank", SHARED / "data.csv", schema),
            ("ds-big", BIG_DATA, bank_sample_schema().to_json()),
        ):
            spec = {"DataLocationS3": str(location), "DataSchema": schema_text}
            service.call(
                "CreateDataSourceFromS3",
                {"DataSourceId": entity_id, "DataSpec": spec, "ComputeStatistics": True},
            )
        service.call(
            "CreateMLModel",
            {"MLModelId": "ml-bank", "MLModelType": "BINARY", "TrainingDataSourceId": "ds-bank"},
        )
        print("training the Predict model and summarizing the 1M-row datasource ...", flush=True)
        for kind, entity_id in (("MLModel", "ml-bank"), ("DataSource", "ds-big")):
            status = service.wait(kind, entity_id)["Status"]
            if status != "COMPLETED":
                raise SystemExit(f"{kind} {entity_id} is {status}")
        identities = Identities(service.sessions, home)
        identities.create_user("bench", ("admins",))  # its load also creates and describes objects
        key = identities.create_key("bench")
        return key.access_key_id, key.secret_access_key
    finally:
        service.close()


def _client(port: int, key: tuple[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "machinelearning",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}),
    )


class TrainingLoad:
    """Keeps one training job on the 1M-row datasource running in the server while the block lasts."""

    def __init__(self, port: int, key: tuple[str, str]) -> None:
        self.client = _client(port, key)
        self.prefix = f"ml-big-{port}"
        self.started = 0
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_one(self) -> str:
        model_id = f"{self.prefix}-{self.started}"
        self.client.create_ml_model(MLModelId=model_id, MLModelType="BINARY", TrainingDataSourceId="ds-big")
        self.started += 1
        return model_id

    def _status(self, model_id: str) -> str:
        return self.client.get_ml_model(MLModelId=model_id)["Status"]

    def _keep_training(self, model_id: str) -> None:
        while not self._stop.wait(0.5):
            status = self._status(model_id)
            if status == "FAILED":
                # A load that fails at once is no load: say why instead of measuring without it.
                self.failure = self.client.get_ml_model(MLModelId=model_id).get("Message", "")
                return
            if status == "COMPLETED":
                model_id = self._start_one()

    def __enter__(self) -> TrainingLoad:
        model_id = self._start_one()
        deadline = time.monotonic() + 120
        while self._status(model_id) == "PENDING":
            if time.monotonic() > deadline:
                raise SystemExit("the training job did not start")
            time.sleep(0.2)
        self._thread = threading.Thread(target=self._keep_training, args=(model_id,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.failure is not None:
            raise SystemExit(f"a training job of the load failed: {self.failure}")


def bench_emrml(
    home: Path, key: tuple[str, str], records: list[dict[str, str]], args: argparse.Namespace
) -> list[Result]:
    results = []
    for label, inline, training in (
        ("emrml Predict (SigV4)", True, False),
        ("emrml Predict (SigV4), through the thread pool", False, False),
        ("emrml Predict (SigV4) while models train on 1M rows", True, True),
    ):
        port = _free_port()
        command = [
            sys.executable,
            __file__,
            "--serve-emrml",
            str(home),
            str(port),
            "inline" if inline else "pool",
        ]
        with running(command, port):
            client = _client(port, key)
            client.create_realtime_endpoint(MLModelId="ml-bank")
            url = client.get_ml_model(MLModelId="ml-bank")["EndpointInfo"]["EndpointUrl"]
            assert url == f"http://127.0.0.1:{port}", url
            requests = _signed_predicts(port, "ml-bank", key, records)
            if training:
                with TrainingLoad(port, key) as trainer:
                    result = load(label, port, requests, args.connections, args.seconds)
                name = f"{label} ({trainer.started} training job(s) started, one at a time)"
                result = dataclasses.replace(result, name=name)
            else:
                result = load(label, port, requests, args.connections, args.seconds)
            client.delete_realtime_endpoint(MLModelId="ml-bank")
            results.append(result)
    return results


def bench_mlflow(python: str, records: list[dict[str, str]], args: argparse.Namespace, work: Path) -> Result:
    model_dir = work / "mlflow-model"
    print("fitting the scikit-learn pipeline for MLflow ...", flush=True)
    subprocess.run([python, "-c", MLFLOW_TRAIN, str(SHARED / "data.csv"), str(model_dir)], check=True)
    port = _free_port()
    mlflow = str(Path(python).with_name("mlflow"))
    command = [
        mlflow,
        "models",
        "serve",
        "-m",
        str(model_dir),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--env-manager",
        "local",
    ]
    env_path = os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")])
    os.environ["PATH"] = env_path
    columns = list(records[0])
    requests = []
    for record in records:
        values = [float(v) if v.replace(".", "", 1).lstrip("-").isdigit() else v for v in record.values()]
        body = json.dumps({"dataframe_split": {"columns": columns, "data": [values]}}).encode()
        requests.append(http_request(port, {"Content-Type": "application/json"}, body, "/invocations"))
    with running(command, port, "/ping"):
        return load(
            "MLflow models serve (/invocations, one row)", port, requests, args.connections, args.seconds
        )


def _uvicorn_picks() -> str:
    """The HTTP protocol and event loop uvicorn's ``auto`` settings choose here."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http}, {loop}"


def report(results: list[Result], args: argparse.Namespace) -> str:
    uvicorn_version = metadata.version("uvicorn")
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}: {args.connections} connections, {args.seconds:g} s per "
        "server after a 2 s warm-up, client and server on the same 2 cores. "
        f"uvicorn {uvicorn_version} ({_uvicorn_picks()}), starlette {metadata.version('starlette')}.",
        "",
        machine_report(),
        "",
        "| server | req/s | p50 ms | p99 ms | errors | load average |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    if any(result.name.startswith("MLflow") for result in results):
        lines[0] += f" MLflow {args.mlflow_version}."
    for result in results:
        lines.append(
            f"| {result.name} | {result.per_second:,.0f} | {result.percentile(50):.2f} | "
            f"{result.percentile(99):.2f} | {result.errors} | {result.load:.2f} |"
        )
    noop = next(r for r in results if r.name.startswith("no-op"))
    emrml = next(r for r in results if r.name == "emrml Predict (SigV4)")
    lines += [
        "",
        f"emrml Predict / no-op throughput: **{emrml.per_second / noop.per_second:.2f}×**.",
    ]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-emrml":
        serve_emrml(int(sys.argv[3]), Path(sys.argv[2]), sys.argv[4] == "inline")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-noop":
        serve_noop(int(sys.argv[2]))
        return
    single_threaded()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--mlflow-python", default=None, help="Python with mlflow and scikit-learn installed."
    )
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="emrml-bench-serve-") as work:
        home = Path(work) / "home"
        key = prepare_home(home)
        records = _records()
        results = []
        port = _free_port()
        with running([sys.executable, __file__, "--serve-noop", str(port)], port, "/"):
            requests = [http_request(port, {"Content-Type": "application/x-amz-json-1.1"}, b"{}")]
            results.append(load("no-op Starlette + uvicorn", port, requests, args.connections, args.seconds))
        results += bench_emrml(home, key, records, args)
        if args.mlflow_python:
            results.append(bench_mlflow(args.mlflow_python, records, args, Path(work)))
            version = [args.mlflow_python, "-c", "import mlflow; print(mlflow.__version__)"]
            args.mlflow_version = subprocess.run(
                version, capture_output=True, text=True, check=True
            ).stdout.strip()
    body = report(results, args)
    print(body)
    if not args.no_readme:
        write_readme_section("serve", body)


if __name__ == "__main__":
    main()
