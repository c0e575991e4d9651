"""Stream scoring benchmark: one emrml stream consumer against a bare botocore relay on the same
kinesalite stream, and micro-batch scoring against batch prediction on the same model.

Run by hand from the repository root (not part of the tests; needs node and ``npm ci --prefix
tests/stream/kinesalite``, as ``.ci/run`` does)::

    uv run python bench/stream.py            # 3 interleaved pairs, medians; writes bench/README.md
    uv run python bench/stream.py --repeat 1 --records 5000 --no-readme

Set up once into ``bench/data/`` (not measured): ``bank-stream.csv`` (``emrml.samples.write_bank_sample``,
seed 7, 20,000 rows) and a home ``stream-home`` with a BINARY model trained on it (suggested recipe).
The records are the file's rows as Predict-style JSON objects (every value a string, ~400 bytes).

* **Throughput**: a fresh 2-shard input stream is filled with ``--records`` records (not measured). (a)
  *relay*: one thread reads the shards round-robin (GetRecords, ``stream_batch_records`` records) and writes
  every record to an output stream with PutRecords, unchanged — the floor of any consumer; (b) *emrml*: one
  consumer (``emrml.stream.consumer.Consumer``, in this process) reads the same input stream from
  TRIM_HORIZON and writes predictions to its own output stream; timed from its start (leases taken, model
  loaded) until the checkpoints hold every record. Goal: (a) seconds / (b) seconds ≥ 0.7.
* **Latency**: a producer puts one record every 10 ms for ``--seconds``; the latency of a record is the
  time from its PutRecord's return to a reader (polling the output stream every 20 ms) seeing its output.
  Both sides wait 0.2 s after an empty read (the Kinesis limit is 5 reads/s per shard). Goal: emrml's p99
  ≤ 1.5× the relay's.
* **Scoring**: (a) ``MicroBatchScorer.score`` + ``csv_lines`` (the file output's lines) over micro-batches
  of ``stream_batch_records`` JSON records; (b) batch prediction (``engine.batch.batch_predict``, one
  worker) of the same rows from the CSV file: read, score, format, gzip. Goal: (a) records/s ≥ 0.8× (b)'s.

Which side of a throughput pair goes first alternates; ratios are medians of the per-pair ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pyarrow.csv as pcsv

from common import create_datasource, load_average, machine_report, train, write_readme_section
from emrml.config import Settings
from emrml.core.predict import Predictor
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.training import DatasourceData
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML
from emrml.service.rows import MLModel, StreamLease
from emrml.stream.consumer import Consumer
from emrml.stream.kinesis import Kinesis
from emrml.stream.scoring import MicroBatchScorer, Record

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "bench" / "data"
KINESALITE = ROOT / "tests" / "stream" / "kinesalite"
MODEL_ID = "ml-stream-bench"
ROWS = 20_000
#: Records per GetRecords on both sides, and per scored micro-batch: the consumer's default.
BATCH = Settings().stream_batch_records
IDLE = 0.2


def start_kinesalite() -> tuple[subprocess.Popen, str]:
    node = shutil.which("node")
    if node is None or not (KINESALITE / "node_modules" / "kinesalite").is_dir():
        raise SystemExit("needs node and: npm ci --prefix tests/stream/kinesalite")
    process = subprocess.Popen(
        [node, str(KINESALITE / "server.js"), "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    port = json.loads(process.stdout.readline())["port"]
    return process, f"http://127.0.0.1:{port}"


def ensure_model(home: Path) -> tuple[Path, list[bytes]]:
    """The sample file and the trained model's home (created on the first run); the JSON records."""
    data = DATA_DIR / "bank-stream.csv"
    if not data.exists():
        write_bank_sample(data, ROWS)
    app = EmrML(Settings.load(environ={}, home=home))
    try:
        try:
            done = app.call("GetMLModel", {"MLModelId": MODEL_ID})["Status"] == "COMPLETED"
        except Exception:
            done = False
        if not done:
            create_datasource(app, "ds-stream-bench", data, bank_sample_schema().to_json())
            train(app, MODEL_ID, "BINARY", "ds-stream-bench")
    finally:
        app.close()
    table = pcsv.read_csv(data, convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(
        bank_sample_schema().names, "string")))  # fmt: skip
    rows = table.drop_columns(["y"]).to_pylist()
    return data, [json.dumps(row).encode() for row in rows]


def fill(kinesis: Kinesis, name: str, records: list[bytes], shards: int) -> None:
    kinesis.call("create_stream", StreamName=name, ShardCount=shards)
    while kinesis.describe(name)["StreamStatus"] != "ACTIVE":
        time.sleep(0.05)
    if records:
        kinesis.put_records(name, [(data, str(i)) for i, data in enumerate(records)])


def relay(kinesis: Kinesis, source: str, target: str, stop: threading.Event, expected: int | None) -> float:
    """GetRecords → PutRecords until ``expected`` records are relayed (or ``stop``); returns seconds."""
    started = time.perf_counter()
    iterators = {
        shard.shard_id: kinesis.iterator(source, shard.shard_id, "TRIM_HORIZON")
        for shard in kinesis.shards(source)
    }
    due = dict.fromkeys(iterators, 0.0)
    done = 0
    while not stop.is_set() and (expected is None or done < expected):
        worked = False
        for shard_id, iterator in iterators.items():
            if due[shard_id] > time.monotonic():
                continue
            answer = kinesis.call("get_records", ShardIterator=iterator, Limit=BATCH)
            iterators[shard_id] = answer["NextShardIterator"]
            records = answer["Records"]
            if records:
                kinesis.put_records(target, [(r["Data"], r["PartitionKey"]) for r in records])
                done += len(records)
                worked = True
                due[shard_id] = time.monotonic() + 0.2
            else:
                due[shard_id] = time.monotonic() + IDLE
        if not worked:
            time.sleep(0.01)
    return time.perf_counter() - started


def consumer_settings(home: Path, endpoint: str) -> Settings:
    return Settings.load(
        environ={},
        home=home,
        kinesis_endpoint_url=endpoint,
        stream_idle_seconds=IDLE,
        stream_batch_records=BATCH,
    )


def start_stream(app: EmrML, stream_id: str, source: str, target: str) -> None:
    app.call(
        "StartStream",
        {"StreamId": stream_id, "MLModelId": MODEL_ID, "InputStream": f"kinesis://{source}",
         "OutputUri": f"kinesis://{target}", "Consumers": 0},
    )  # fmt: skip


def checkpointed(app: EmrML, stream_id: str) -> int:
    with app.sessions() as session:
        leases = session.query(StreamLease).filter(StreamLease.stream_id == stream_id).all()
    return sum(lease.records_in for lease in leases)


def emrml_throughput(app: EmrML, kinesis: Kinesis, source: str, expected: int) -> float:
    stream_id = f"st-{uuid.uuid4().hex[:8]}"
    target = f"out-{stream_id}"
    fill(kinesis, target, [], 1)
    start_stream(app, stream_id, source, target)
    consumer = Consumer(app.settings, stream_id)
    started = time.perf_counter()
    thread = threading.Thread(target=consumer.run)
    thread.start()
    while checkpointed(app, stream_id) < expected:
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    consumer.stop()
    thread.join()
    return seconds


def latencies(kinesis: Kinesis, source: str, target: str, seconds: float, by_sequence: bool) -> list[float]:
    """Put one record per 10 ms into ``source``; the delays until each shows up in ``target``."""
    put_at: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def read() -> None:
        shard = kinesis.shards(target)[0].shard_id
        iterator = kinesis.iterator(target, shard, "TRIM_HORIZON")
        while not stop.is_set():
            answer = kinesis.call("get_records", ShardIterator=iterator, Limit=10000)
            moment = time.perf_counter()
            for item in answer["Records"]:
                key = (
                    json.loads(item["Data"])["SequenceNumber"]
                    if by_sequence
                    else json.loads(item["Data"])["id"]
                )
                seen.setdefault(key, moment)
            iterator = answer["NextShardIterator"]
            time.sleep(0.02)

    reader = threading.Thread(target=read)
    reader.start()
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        data = json.dumps({"id": str(i), "age": "41", "job": "services"}).encode()
        answer = kinesis.call("put_record", StreamName=source, Data=data, PartitionKey=str(i))
        put_at[answer["SequenceNumber"] if by_sequence else str(i)] = time.perf_counter()
        i += 1
        time.sleep(0.01)
    end = time.perf_counter() + 10
    while len(seen) < len(put_at) and time.perf_counter() < end:
        time.sleep(0.05)
    stop.set()
    reader.join()
    return [seen[key] - put_at[key] for key in put_at if key in seen]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def scoring(home: Path, data: Path, records: list[bytes], output: Path) -> tuple[float, float]:
    """Records/s of micro-batch scoring and of batch prediction, on the same rows and model."""
    app = EmrML(Settings.load(environ={}, home=home))
    with app.sessions() as session:
        model = session.get(MLModel, MODEL_ID)
    app.close()
    predictor = Predictor.load(Path(model.artifact_location))
    scorer = MicroBatchScorer(predictor, MODEL_ID)
    wrapped = [Record("shardId-0", str(i), str(i), data, 0.0) for i, data in enumerate(records)]
    scorer.csv_lines(scorer.score(wrapped[:100])[0])  # a running consumer is past its first-call imports
    started = time.perf_counter()
    for start in range(0, len(wrapped), BATCH):
        scored, _ = scorer.score(wrapped[start : start + BATCH])
        scorer.csv_lines(scored)
    micro = len(records) / (time.perf_counter() - started)
    settings = Settings.load(environ={}, home=home)
    started = time.perf_counter()
    result = batch_predict(
        batch_prediction_id=f"bp-{uuid.uuid4().hex[:6]}",
        artifact_location=Path(model.artifact_location),
        data=DatasourceData(str(data), bank_sample_schema(), None),
        output_uri=str(output),
        score_threshold=None,
        settings=settings,
        progress=lambda *_: None,
        parallelism=Parallelism(workers=1),
    )
    batch = result.total_records / (time.perf_counter() - started)
    return micro, batch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    model_home = DATA_DIR / "stream-home"
    data, rows_as_records = ensure_model(model_home)
    records = (rows_as_records * (args.records // len(rows_as_records) + 1))[: args.records]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server, endpoint = start_kinesalite()
    load_before = load_average()
    rows: list[tuple[float, float, float, float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            home = Path(scratch) / "home"
            shutil.copytree(model_home, home)
            app = EmrML(consumer_settings(home, endpoint))
            kinesis = Kinesis(endpoint, "us-east-1")
            for run in range(args.repeat):
                source = f"in-{run}"
                fill(kinesis, source, records, 2)
                fill(kinesis, f"relay-{run}", [], 1)
                # Both read the same input from its start; which goes first alternates between runs.
                if run % 2:
                    emrml_seconds = emrml_throughput(app, kinesis, source, len(records))
                relay_seconds = relay(kinesis, source, f"relay-{run}", threading.Event(), len(records))
                if not run % 2:
                    emrml_seconds = emrml_throughput(app, kinesis, source, len(records))
                # Latency: the relay, then emrml, each on fresh streams.
                fill(kinesis, f"lat-in-r{run}", [], 1)
                fill(kinesis, f"lat-out-r{run}", [], 1)
                stop = threading.Event()
                relaying = threading.Thread(
                    target=relay, args=(kinesis, f"lat-in-r{run}", f"lat-out-r{run}", stop, None)
                )
                relaying.start()
                relay_lat = latencies(kinesis, f"lat-in-r{run}", f"lat-out-r{run}", args.seconds, False)
                stop.set()
                relaying.join()
                fill(kinesis, f"lat-in-e{run}", [], 1)
                fill(kinesis, f"lat-out-e{run}", [], 1)
                stream_id = f"st-lat-{run}"
                start_stream(app, stream_id, f"lat-in-e{run}", f"lat-out-e{run}")
                consumer = Consumer(app.settings, stream_id)
                thread = threading.Thread(target=consumer.run)
                thread.start()
                time.sleep(1.0)  # leases taken, model loaded
                emrml_lat = latencies(kinesis, f"lat-in-e{run}", f"lat-out-e{run}", args.seconds, True)
                consumer.stop()
                thread.join()
                micro, batch = scoring(home, data, rows_as_records, Path(scratch) / f"bp-{run}")
                rows.append((relay_seconds, emrml_seconds, p99(relay_lat), p99(emrml_lat), micro, batch))
                print(
                    f"run {run + 1}: throughput relay {len(records) / relay_seconds:,.0f}/s emrml "
                    f"{len(records) / emrml_seconds:,.0f}/s; p99 relay {p99(relay_lat) * 1000:.0f} ms emrml "
                    f"{p99(emrml_lat) * 1000:.0f} ms (p50 {statistics.median(relay_lat) * 1000:.0f} / "
                    f"{statistics.median(emrml_lat) * 1000:.0f}); scoring micro {micro:,.0f}/s "
                    f"batch {batch:,.0f}/s",
                    flush=True,
                )
            app.close()
    finally:
        server.kill()
        server.wait()
    throughput = statistics.median(r[0] / r[1] for r in rows)
    latency = statistics.median(r[3] / r[2] for r in rows)
    score = statistics.median(r[4] / r[5] for r in rows)
    n = len(records)
    table = "\n".join(
        [
            "| run | relay rec/s | emrml rec/s | relay p99 ms | emrml p99 ms | micro-batch rec/s "
            "| batch rec/s |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {i + 1} | {n / r[0]:,.0f} | {n / r[1]:,.0f} | {r[2] * 1000:.0f} | {r[3] * 1000:.0f} | "
                f"{r[4]:,.0f} | {r[5]:,.0f} |"
                for i, r in enumerate(rows)
            ),
        ]
    )
    summary = (
        f"Medians of per-pair ratios over {len(rows)} interleaved runs ({n:,} records, 2 shards): throughput "
        f"emrml/relay **{throughput:.2f}** (goal ≥ 0.7); p99 latency emrml/relay **{latency:.2f}** "
        "(goal ≤ 1.5); "
        f"scoring micro-batch/batch **{score:.2f}** (goal ≥ 0.8). Load average before: {load_before}; "
        f"after: {load_average()}."
    )
    print(summary)
    if not args.no_readme:
        write_readme_section(
            "stream",
            f"## Stream scoring (`bench/stream.py`)\n\nSee the script's docstring for what is measured.\n\n"
            f"{machine_report()}\n\n{table}\n\n{summary}\n",
        )


if __name__ == "__main__":
    main()
