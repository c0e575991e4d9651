"""Console evaluation pages and the API under console load (the console issue's other two goals).

Run by hand from the repository root (not part of the tests; needs Debian's chromium and the dev group)::

    uv run python bench/console_charts.py               # writes its bench/README.md section
    uv run python bench/console_charts.py --no-readme --predicts 300

One home, served by a real ``emrml serve`` (a subprocess, SigV4 on):

* **Evaluation pages**: a 100-class MULTICLASS model (synthetic, 30,000 rows) and a BINARY model evaluated
  on the 1M-row ``bench/data/bank-1m.csv``. For each evaluation page: the size of its JSON twin (goal ≤ 200
  KB) and, in Chromium (Playwright), the time from the navigation's start to the first chart drawn —
  ``performance.now()`` when the page's script marks ``data-charts=drawn`` — median of 5 loads (goal ≤ 1 s).
* **Predict under console load**: signed ``Predict`` calls (boto3) one after another, alone and then while
  8 processes load console pages (home, lists, the evaluation page): each a page a second, as people
  browse, and then page after page without pause (a stress beyond the goal, reported beside it), measured
  once every loader has started and logged in (their start-up is not console traffic); goal:
  the loaded p99 ≤ 1.5× the idle p99. Client, load and server share the 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from common import BENCH_DIR, create_datasource, load_average, machine_report, train, write_readme_section
from emrml.config import Settings
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML
from emrml.service.identity import Identities
from emrml.service.logins import Logins

PASSWORD = "bench-password-1"
CHROMIUM = "/usr/bin/chromium"
BIG = BENCH_DIR / "data" / "bank-1m.csv"
CLASSES = 100


def write_multiclass(path: Path, rows: int = 30_000) -> str:
    """100 classes told apart by a categorical code and a noisy number; returns the schema JSON."""
    rng = random.Random(7)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["code", "x", "label"])
        for _ in range(rows):
            k = rng.randrange(CLASSES)
            code = k if rng.random() < 0.6 else rng.randrange(CLASSES)
            out.writerow([f"c{code}", f"{k + rng.gauss(0, 8):.3f}", f"class-{k:03d}"])
    return json.dumps(
        {
            "version": "1.0",
            "targetAttributeName": "label",
            "dataFileContainsHeader": True,
            "attributes": [
                {"attributeName": "code", "attributeType": "CATEGORICAL"},
                {"attributeName": "x", "attributeType": "NUMERIC"},
                {"attributeName": "label", "attributeType": "CATEGORICAL"},
            ],
        }
    )


def prepare(home: Path, url: str) -> dict[str, str]:
    if not BIG.exists():
        write_bank_sample(BIG, 1_000_000)
    app = EmrML(Settings.load(environ={}, home=home, public_url=url))  # the endpoint's URL
    try:
        Identities(app.sessions, home).create_user("bench", ("admins",))
        key = Identities(app.sessions, home).create_key("bench")
        Logins(app.sessions).set_password("bench", PASSWORD)
        schema = write_multiclass(home / "classes.csv")
        create_datasource(app, "ds-classes", home / "classes.csv", schema)
        train(app, "ml-classes", "MULTICLASS", "ds-classes")
        small = write_bank_sample(home / "bank-50k.csv", 50_000)
        create_datasource(app, "ds-bank", small, bank_sample_schema().to_json())
        create_datasource(app, "ds-big", BIG, bank_sample_schema().to_json())
        train(app, "ml-bank", "BINARY", "ds-bank")
        for evaluation, model, source in (
            ("ev-classes", "ml-classes", "ds-classes"),
            ("ev-big", "ml-bank", "ds-big"),
        ):
            app.call(
                "CreateEvaluation",
                {"EvaluationId": evaluation, "MLModelId": model, "EvaluationDataSourceId": source},
            )
            assert app.wait("Evaluation", evaluation)["Status"] == "COMPLETED"
        app.call("CreateRealtimeEndpoint", {"MLModelId": "ml-bank"})
    finally:
        app.close()
    return {"key": key.access_key_id, "secret": key.secret_access_key}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Browser:
    """A logged-in console session (cookies kept) for plain HTTP page loads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        page = self.session.get(f"{url}/console/login", timeout=60)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        form = {"csrf_token": token, "username": "bench", "password": PASSWORD}
        self.session.post(f"{url}/console/login", data=form, allow_redirects=False, timeout=60)

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=60)


def logged_in(url: str) -> Browser:
    return Browser(url)


def charts(url: str, loads: int) -> dict[str, tuple[int, float]]:
    """Per evaluation: (JSON twin bytes, median ms from navigation start to the first chart drawn)."""
    from playwright.sync_api import sync_playwright

    sizes = {
        name: len(logged_in(url).get(f"/console/evaluations/{name}?format=json").content)
        for name in ("ev-classes", "ev-big")
    }
    out = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/console/login")
        page.fill("#username", "bench")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/console/$"))
        for name in ("ev-classes", "ev-big"):
            times = []
            for _ in range(loads):
                page.goto(f"{url}/console/evaluations/{name}")
                page.wait_for_selector("html[data-charts=drawn]")
                times.append(page.evaluate("performance.now()"))
            out[name] = (sizes[name], statistics.median(times))
        browser.close()
    return out


def _load_pages(url: str, stop: Any, interval: float, ready: Any) -> None:
    """Load console pages until ``stop``: one every ``interval`` seconds (a person browsing), or back to
    back when 0 (a stress the goal does not ask for, reported beside it). ``ready`` gets a token once this
    loader has started, logged in and loaded its first page (its start-up is not console traffic)."""
    client = logged_in(url)
    client.get("/console/")
    ready.put(True)
    paths = [
        "/console/",
        "/console/datasources",
        "/console/models",
        "/console/evaluations/ev-classes",
        "/console/jobs",
    ]
    while not stop.is_set():
        for path in paths:
            client.get(path)
            if interval and stop.wait(interval):
                return


def predict_latencies(url: str, credentials: dict[str, str], count: int) -> list[float]:
    import boto3

    client = boto3.client(
        "machinelearning", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=credentials["key"], aws_secret_access_key=credentials["secret"],
    )  # fmt: skip
    with BIG.open(newline="") as handle:
        record = {k: v for k, v in next(csv.DictReader(handle)).items() if k != "y"}
    for _ in range(20):
        client.predict(MLModelId="ml-bank", Record=record, PredictEndpoint=url)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        client.predict(MLModelId="ml-bank", Record=record, PredictEndpoint=url)
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--predicts", type=int, default=500)
    parser.add_argument("--no-readme", action="store_true")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        print("preparing the models and evaluations ...", flush=True)
        credentials = prepare(home, url)
        server = subprocess.Popen(
            [sys.executable, "-m", "emrml", "--home", str(home), "serve", "--port", str(port),
             "--public-url", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{url}/console/login", timeout=2)
                    break
                except requests.RequestException:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.3)
            load_before = load_average()
            pages = charts(url, arguments.loads)
            idle = predict_latencies(url, credentials, arguments.predicts)
            loaded = {}
            for interval in (1.0, 0.0):
                spawn = multiprocessing.get_context("spawn")
                stop, ready = spawn.Event(), spawn.Queue()
                loaders = [
                    spawn.Process(target=_load_pages, args=(url, stop, interval, ready)) for _ in range(8)
                ]
                for loader in loaders:
                    loader.start()
                for _ in loaders:  # measure the load, not the loaders' start (imports, logins)
                    ready.get(timeout=300)
                time.sleep(2)
                loaded[interval] = predict_latencies(url, credentials, arguments.predicts)
                stop.set()
                for loader in loaders:
                    loader.join(30)
        finally:
            server.terminate()
            server.wait(30)
    idle_p99 = float(np.percentile(idle, 99)) * 1000

    def under(interval: float, what: str) -> str:
        p99 = float(np.percentile(loaded[interval], 99)) * 1000
        return (
            f"- {what}: p50 {np.median(loaded[interval]) * 1000:.2f} ms, p99 {p99:.2f} ms: "
            f"**{p99 / idle_p99:.2f}×** the idle p99 (goal ≤ 1.5×)"
        )

    body = "\n".join(
        [
            f"Load average before {load_before}, after {load_average()}.",
            "",
            "| evaluation page | JSON twin | goal | first chart drawn (median of loads) | goal |",
            "| --- | ---: | ---: | ---: | ---: |",
            *(
                f"| {name} | {size / 1024:.1f} KB | ≤ 200 KB | {ms:.0f} ms | ≤ 1000 ms |"
                for name, (size, ms) in pages.items()
            ),
            "",
            f"Predict through `emrml serve` (boto3, signed, one at a time, {arguments.predicts} calls): idle "
            f"p50 {np.median(idle) * 1000:.2f} ms, p99 {idle_p99:.2f} ms; while 8 processes load console "
            "pages:",
            under(1.0, "each a page a second (people browsing)"),
            under(0.0, "each page after page without pause (a stress beyond the goal)"),
            "",
            machine_report(),
        ]
    )
    print(body)
    if not arguments.no_readme:
        write_readme_section("console-charts", body)


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    main()
