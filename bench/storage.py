"""Storage benchmark: S3 against local files, and the cost of client-side encryption.

Run by hand from the repository root (not part of the tests; needs the dev group for moto)::

    uv run python bench/storage.py               # 3 pairs of each, medians of pair ratios; bench/README.md
    uv run python bench/storage.py --repeat 1 --no-readme

S3 is moto's server on a loopback port, in a thread of this process (the jobs run in worker processes).
Input: ``bench/data/bank-1m.csv`` (``emrml.samples.write_bank_sample``, 1,000,000 rows, 167 MB, seed 7),
uploaded to the bucket once per run.

* **(a) datasource + statistics from S3**: ``CreateDataSourceFromS3`` with ``ComputeStatistics`` over
  ``s3://…/bank-1m.csv`` against the same over the local file, alternating; goal: S3 time ≤ local / 0.8
  (S3 throughput ≥ 0.8× local).
* **(b) CSE-Custom on a batch prediction to S3**: a 1M-row batch prediction (the local file as input)
  written to S3 plain, and written with client-side encryption (``s3_cse_key = aes:…``), alternating;
  goal: encrypted time ≤ 1.15 × plain.
* **(c) AES-GCM throughput**: emrml's encrypting and decrypting streams over 256 MiB in 1 MiB writes /
  reads, against ``cryptography``'s ``AESGCM.encrypt`` / ``decrypt`` on the same buffers (one call per
  buffer); goal: ≥ 0.5×.

Every ratio is the median over pairs measured back to back, in alternating order, after a warm-up pair
(the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    BENCH_DIR,
    create_datasource,
    load_average,
    machine_report,
    single_threaded,
    train,
    write_readme_section,
)
from emrml.config import Settings
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML

DATA = BENCH_DIR / "data"
INPUT = DATA / "bank-1m.csv"
BUCKET = "emrml-bench"
MODEL_ID = "ml-bench-storage"
GOALS = {"s3": 0.8, "cse": 1.15, "gcm": 0.5}


def ensure_input() -> Path:
    if not INPUT.exists():
        write_bank_sample(INPUT, 1_000_000)
    return INPUT


def start_s3() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


#: CPU seconds this process spent during each datasource run: moto's server thread serving S3 (the job
#: runs in a worker process; this process only waits). S3's own CPU is not the client's cost on AWS, but
#: here it shares the job's two cores.
SERVER_CPU: dict[str, float] = {}


def bench_datasource(app: EmrML, location: str, run: str) -> float:
    cpu = time.process_time()
    seconds = timed(
        lambda: create_datasource(app, f"ds-storage-{run}", location, bank_sample_schema().to_json())
    )  # type: ignore[arg-type]
    SERVER_CPU[run] = time.process_time() - cpu
    return seconds


def bench_batch(app: EmrML, source_id: str, output: str, run: str) -> float:
    def go() -> None:
        app.call(
            "CreateBatchPrediction",
            {
                "BatchPredictionId": f"bp-{run}",
                "MLModelId": MODEL_ID,
                "BatchPredictionDataSourceId": source_id,
                "OutputUri": output,
            },
        )
        description = app.wait("BatchPrediction", f"bp-{run}")
        if description["Status"] != "COMPLETED":
            raise SystemExit(f"batch prediction {run}: {description.get('Message')}")

    return timed(go)


def bench_gcm(rounds: int = 16, block: int = 1 << 20, blocks: int = 16) -> tuple[float, float]:
    """(emrml encrypt throughput / AESGCM's, emrml decrypt throughput / AESGCM's): medians over rounds of
    16 MiB, the two sides alternating."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from emrml.storage.cse import DecryptingReader, EncryptingWriter, Envelope

    key, iv = os.urandom(32), os.urandom(12)
    buffer = os.urandom(block)
    aead = AESGCM(key)
    sealed = aead.encrypt(iv, buffer * blocks, None)
    envelope = Envelope("AES/GCM/NoPadding", "AES/GCM", b"", {}, iv)

    class Sink:
        size = 0

        def write(self, data: bytes) -> None:
            self.size += len(data)

        def tell(self) -> int:
            return self.size

    def ours_encrypt() -> None:
        writer = EncryptingWriter(Sink(), key, iv)
        for _ in range(blocks):
            writer.write(buffer)
        writer.finish()

    def ours_decrypt() -> None:
        reader = DecryptingReader(io.BytesIO(sealed), len(sealed), key, envelope, "bench")  # type: ignore[arg-type]
        target = bytearray(block)
        while reader.readinto(target):
            pass

    encrypt, decrypt = [], []
    for _ in range(rounds):
        theirs = timed(lambda: [aead.encrypt(iv, buffer, None) for _ in range(blocks)])
        encrypt.append(theirs / timed(ours_encrypt))
        theirs = timed(lambda: aead.decrypt(iv, sealed, None))
        decrypt.append(theirs / timed(ours_decrypt))
    return statistics.median(encrypt), statistics.median(decrypt)


def pairs(repeat: int, first, second) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    """``repeat`` pairs of timings, after one pair to warm up (fork servers, caches); the order alternates
    so that a drift in the machine's load falls on both sides."""
    results = []
    for run in range(repeat + 1):
        if run % 2:
            b = second(run)
            a = first(run)
        else:
            a = first(run)
            b = second(run)
        print(f"  pair {run}: {a:.2f} s / {b:.2f} s{' (warm-up)' if run == 0 else ''}", flush=True)
        if run:
            results.append((a, b))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    single_threaded()

    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    server, endpoint = start_s3()
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(ensure_input()), BUCKET, "bank-1m.csv")
    load_before = load_average()

    with tempfile.TemporaryDirectory() as scratch:
        key_file = Path(scratch) / "aes.key"
        key_file.write_text(base64.b64encode(os.urandom(32)).decode())
        home = Path(scratch) / "home"
        base = Settings.load(environ={}, home=home, s3_endpoint_url=endpoint, training_defaults="api")
        plain, encrypted = EmrML(base), EmrML(dataclasses.replace(base, s3_cse_key=f"aes:{key_file}"))
        try:
            print("(a) datasource + statistics: local / S3", flush=True)
            times_s3 = pairs(
                args.repeat,
                lambda run: bench_datasource(plain, str(INPUT), f"local-{run}"),
                lambda run: bench_datasource(plain, f"s3://{BUCKET}/bank-1m.csv", f"s3-{run}"),
            )
            train(plain, MODEL_ID, "BINARY", "ds-storage-local-0")
            spec = {"DataLocationS3": str(INPUT), "DataSchema": bank_sample_schema().to_json()}
            plain.call("CreateDataSourceFromS3", {"DataSourceId": "ds-batch", "DataSpec": spec})
            plain.wait("DataSource", "ds-batch")
            print("(b) batch prediction to S3: plain / CSE-Custom", flush=True)
            times_cse = pairs(
                args.repeat,
                lambda run: bench_batch(plain, "ds-batch", f"s3://{BUCKET}/plain-{run}/", f"plain-{run}"),
                lambda run: bench_batch(encrypted, "ds-batch", f"s3://{BUCKET}/cse-{run}/", f"cse-{run}"),
            )
        finally:
            plain.close()
            encrypted.close()
    encrypt_ratio, decrypt_ratio = bench_gcm()
    server.stop()  # type: ignore[attr-defined]

    s3_ratio = statistics.median(local / remote for local, remote in times_s3)
    runs = range(1, args.repeat + 1)
    server_cpu = statistics.median(SERVER_CPU[f"s3-{run}"] - SERVER_CPU[f"local-{run}"] for run in runs)
    cse_ratio = statistics.median(sealed / bare for bare, sealed in times_cse)
    verdict = lambda ok: "meets the goal" if ok else "**misses the goal**"  # noqa: E731
    body = "\n".join(
        [
            machine_report(),
            f"Load average before / after: {load_before} / {load_average()}; {args.repeat} pairs each.",
            "",
            "| measure | median of pairs | goal | |",
            "|---|---:|---:|---|",
            f"| (a) datasource + statistics, S3 throughput / local | {s3_ratio:.2f} | ≥ {GOALS['s3']} "
            f"| {verdict(s3_ratio >= GOALS['s3'])} |",
            f"| (b) batch prediction to S3, CSE-Custom time / plain | {cse_ratio:.2f} | ≤ {GOALS['cse']} "
            f"| {verdict(cse_ratio <= GOALS['cse'])} |",
            f"| (c) AES-GCM encrypt, emrml / cryptography AESGCM | {encrypt_ratio:.2f} | ≥ {GOALS['gcm']} "
            f"| {verdict(encrypt_ratio >= GOALS['gcm'])} |",
            f"| (c) AES-GCM decrypt, emrml / cryptography AESGCM | {decrypt_ratio:.2f} | ≥ {GOALS['gcm']} "
            f"| {verdict(decrypt_ratio >= GOALS['gcm'])} |",
            "",
            "Seconds per pair — (a) local / S3: "
            + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in times_s3)
            + "; (b) plain / CSE: "
            + ", ".join(f"{a:.1f} / {b:.1f}" for a, b in times_cse)
            + ".",
            f"CPU seconds of the S3 server (moto, this process) per S3 datasource run, beyond the same "
            f"process's during the local run: median {server_cpu:.2f} s.",
        ]
    )
    print(body)
    if not args.no_readme:
        write_readme_section("storage", body)


if __name__ == "__main__":
    sys.exit(main())
