"""The Spark engine on a real Spark standalone cluster: a master and two workers started here on loopback
(the pip package has no start-master.sh: ``spark-class`` runs them), a batch prediction run by a driver
process against it, and one worker killed — its executor with it — in the middle of the job: Spark runs the
lost tasks again on the other worker and the result files are still byte for byte the local engine's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emrml.config import Settings
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.training import DatasourceData
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.app import EmrML
from emrml.service.rows import MLModel

CUT = {"workers": 2, "range_bytes": 256 << 10, "min_bytes": 64 << 10}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def wait_for_port(port: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self.web_port = free_port()
        # Encryption in transit is on for a spark:// master (spark_encryption "auto"): the daemons share the
        # application's secret, as a standalone cluster's spark-defaults.conf would give it (docs/spark.md).
        self.secret = os.urandom(16).hex()
        # C1 only, as the tests' drivers (tests/conftest.py): the daemons' and executors' starts cost half.
        options = (
            f"-Dspark.authenticate=true -Dspark.authenticate.secret={self.secret} "
            "-Dspark.network.crypto.enabled=true -XX:TieredStopAtLevel=1"
        )
        self.env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(folder / "work"),
                    "SPARK_DAEMON_JAVA_OPTS": options}  # fmt: skip
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *arguments: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        # Each in its own process group: killing a worker's group kills its executor with it.
        process = subprocess.Popen(
            [str(spark_class()), *arguments], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, list[Any]]]:
    folder = tmp_path_factory.mktemp("spark-cluster")
    cluster = Cluster(folder)
    try:
        cluster.start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                      "--port", str(cluster.port), "--webui-port", str(cluster.web_port))  # fmt: skip
        wait_for_port(cluster.port)
        workers = [
            cluster.start(f"worker-{n}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                          "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()), cluster.url)
            for n in range(2)
        ]  # fmt: skip
        yield cluster, workers
    finally:
        cluster.stop()


DRIVER = """
import json, sys
from pathlib import Path
from emrml.config import Settings
from emrml.engine.batch import Parallelism, batch_predict
from emrml.engine.spark.session import spark_session
from emrml.engine.training import DatasourceData
from emrml.samples import bank_sample_schema

master, home, artifact, data, out = sys.argv[1:6]
conf = {"spark.executor.cores": "1", "spark.cores.max": "2", "spark.authenticate.secret": sys.argv[7],
        "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1"}
settings = Settings.load(environ={}, home=Path(home), engine="spark", spark_master=master, spark_conf=conf)
spark = spark_session(settings)
while spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 3:  # the driver, two executors
    import time; time.sleep(0.5)
print("READY", flush=True)

def progress(fraction, message):
    print(f"PROGRESS {fraction:.3f}", flush=True)

result = batch_predict(batch_prediction_id="bp", artifact_location=Path(artifact),
    data=DatasourceData(data, bank_sample_schema(), None), output_uri=out, score_threshold=None,
    settings=settings, progress=progress, parallelism=Parallelism(**json.loads(sys.argv[6])), spark=spark)
print("RESULT", json.dumps([result.total_records, result.invalid_records]), flush=True)
"""


def test_a_batch_prediction_survives_a_worker_killed_mid_job(
    cluster: tuple[Cluster, list[Any]], tmp_path: Path
) -> None:
    spark_cluster, workers = cluster
    data = write_bank_sample(tmp_path / "bank.csv", 60_000)  # ~10 MB: some forty units of work
    # The model scores the data; what it learned from does not matter here, so it learns from a few rows.
    training = write_bank_sample(tmp_path / "training" / "bank.csv", 4_000)
    home = tmp_path / "home"
    app = EmrML(Settings.load(environ={}, home=home))
    try:
        spec = {"DataLocationS3": str(training), "DataSchema": bank_sample_schema().to_json()}
        request = {"DataSourceId": "ds", "DataSpec": spec, "ComputeStatistics": True}
        app.call("CreateDataSourceFromS3", request)
        app.call("CreateMLModel", {"MLModelId": "ml", "MLModelType": "BINARY", "TrainingDataSourceId": "ds"})
        assert app.wait("MLModel", "ml")["Status"] == "COMPLETED"
        with app.sessions() as metastore:
            artifact = metastore.get(MLModel, "ml").artifact_location
    finally:
        app.close()
    batch_predict(
        batch_prediction_id="bp", artifact_location=Path(artifact),
        data=DatasourceData(str(data), bank_sample_schema(), None), output_uri=str(tmp_path / "local") + "/",
        score_threshold=None, settings=Settings.load(environ={}, home=home), progress=lambda *_: None,
        parallelism=Parallelism(**CUT),
    )  # fmt: skip
    errors = (tmp_path / "driver.log").open("w+")
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, spark_cluster.url, str(home), artifact, str(data),
         str(tmp_path / "spark") + "/", json.dumps(CUT), spark_cluster.secret],
        stdout=subprocess.PIPE, stderr=errors, text=True,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )  # fmt: skip
    assert driver.stdout is not None
    killed = False
    lines = []
    for line in driver.stdout:
        lines.append(line)
        # Kill a worker as the scoring job starts (its span starts at 0.1), its tasks still to do: each task
        # is a run of units (about four a core), too few for a report to come between the first and the last.
        if line.startswith("PROGRESS") and not killed and 0.1 <= float(line.split()[1]) < 0.6:
            spark_cluster.kill(workers[0])
            killed = True
    status = driver.wait(timeout=300)
    log = (tmp_path / "driver.log").read_text()
    assert status == 0, log[-3000:]
    assert killed, "".join(lines)[-2000:]
    # The driver saw the executor go, and ran its tasks elsewhere (its log is in the home, not on stderr).
    assert "Lost executor" in (home / "logs" / "spark.log").read_text()
    result = json.loads(next(line for line in lines if line.startswith("RESULT")).split(" ", 1)[1])
    assert result == [60_000, 0]
    name = "batch-prediction/result/bp-bank.csv.gz"
    assert (tmp_path / "spark" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_the_masters_port_passes_the_check_at_the_door_and_its_web_uis_does_not(
    cluster: tuple[Cluster, list[Any]], tmp_path: Path
) -> None:
    """The check at the door probes the port: a real master (authenticating, encrypting) stays silent, its
    web UI answers as a web server (a job given it failed after about 90 s, with "Too large frame")."""
    from emrml.engine.spark.session import SparkEngineError, check_master

    spark_cluster, _ = cluster
    wait_for_port(spark_cluster.web_port)
    home = tmp_path / "home"
    check_master(Settings.load(environ={}, home=home, spark_master=spark_cluster.url))
    web = f"spark://127.0.0.1:{spark_cluster.web_port}"
    with pytest.raises(
        SparkEngineError, match=r"is not a Spark master's address \(127\.0\.0\.1:\d+: a web server"
    ):
        check_master(Settings.load(environ={}, home=home, spark_master=web))
