"""What a user of the Spark engine sees when it cannot run: a master URL that is not one, a YARN master
without its Hadoop configuration, a driver JVM that refuses its settings or dies in the middle of a job,
an application that has no executor to run on."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from emrml.config import Settings
from emrml.engine.spark import launch_log, runner, session
from emrml.errors import InvalidInputException


def settings_at(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", **overrides)


@pytest.mark.parametrize(
    "master",
    ["spark://127.0.0.1", "spark//127.0.0.1:7077", "local[x]", "local[0]", "spark://h:7077/", "yarn-x", ""],
)
def test_a_master_url_that_is_not_one_is_refused_with_the_settings(tmp_path: Path, master: str) -> None:
    # Before, "spark://127.0.0.1" (no port) failed each job as a master that "does not answer", and the
    # others as Spark's parse error after the JVM's start.
    with pytest.raises(InvalidInputException, match=r"setting spark_master must be local, local\[N\].*got"):
        settings_at(tmp_path, spark_master=master)


@pytest.mark.parametrize(
    "master",
    ["local", "local[2]", "local[*]", "local[1,2]", "spark://127.0.0.1:7077", "spark://a:7077,b:7077",
     "spark://[::1]:7077", "yarn", "k8s://https://10.0.0.1:443"],
)  # fmt: skip
def test_every_master_spark_takes_is_accepted(tmp_path: Path, master: str) -> None:
    assert settings_at(tmp_path, spark_master=master).spark_master == master


def test_a_yarn_master_without_its_hadoop_configuration_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # spark-submit refuses it too, but its JVM exits then and pyspark says only "Java gateway process exited".
    monkeypatch.delenv("HADOOP_CONF_DIR", raising=False)
    monkeypatch.delenv("YARN_CONF_DIR", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    settings = settings_at(tmp_path, spark_master="yarn")
    with pytest.raises(session.SparkEngineError, match="yarn needs HADOOP_CONF_DIR or YARN_CONF_DIR"):
        session.check_master(settings)
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "41000")  # under spark-submit, which has checked it already
    session.check_master(settings)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(tmp_path))
    session.check_master(settings)


def test_an_unreachable_master_says_why_for_each_address(tmp_path: Path) -> None:
    # Before: "does not answer (tried for 10 s)" whatever happened, a refusal taking no time at all.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    master = f"spark://127.0.0.1:{port},no-such-host.invalid:7077"
    with pytest.raises(session.SparkEngineError) as failed:
        session.check_master(settings_at(tmp_path, spark_master=master, spark_connect_seconds=2))
    assert failed.value.message == (
        f"the Spark master {master} does not answer (127.0.0.1:{port}: nothing listens there; "
        "no-such-host.invalid:7077: no such host): check setting spark_master and that the master is running"
    )


class _Listener:
    """A loopback TCP server that accepts connections and, once a client has sent something, answers
    ``answer`` (nothing: it stays silent, as a Spark master does until it has a whole frame)."""

    def __init__(self, answer: bytes) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.answer = answer
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                connection, _ = self.server.accept()
                self.connections.append(connection)
                connection.recv(64)
                connection.sendall(self.answer)

    def close(self) -> None:
        for connection in [*self.connections, self.server]:
            connection.close()


def test_an_address_where_a_web_server_answers_is_refused_at_once(tmp_path: Path) -> None:
    """A master's web UI port (8080) or REST port (6066) given for the port it takes applications on (7077):
    Spark itself retried for about 90 s and then failed with "Too large frame: 5211883372140375593" (the
    bytes "HTTP/1.1" read as a frame's length)."""
    web = _Listener(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    other = _Listener(b"SSH-2.0-OpenSSH_9.2\r\n")
    master = _Listener(b"")
    try:
        given = f"spark://127.0.0.1:{web.port},127.0.0.1:{other.port}"
        start = time.monotonic()
        with pytest.raises(session.SparkEngineError) as failed:
            session.check_master(settings_at(tmp_path, spark_master=given))
        assert time.monotonic() - start < 5
        assert failed.value.message == (
            f"the Spark master {given} is not a Spark master's address (127.0.0.1:{web.port}: a web server "
            f"answers there; 127.0.0.1:{other.port}: a server that is not a Spark master answers there): "
            "check setting spark_master: a standalone master takes applications at the spark:// URL its web "
            "UI shows at the top (port 7077 by default), not at its web UI's or REST server's port"
        )
        # A silent server, as a Spark master is, passes: alone, or as the standby after a wrong address.
        # (The probe waits at most spark_connect_seconds for an answer that does not come.)
        alone = f"spark://127.0.0.1:{master.port}"
        session.check_master(settings_at(tmp_path, spark_master=alone, spark_connect_seconds=0.2))
        standby = f"spark://127.0.0.1:{web.port},127.0.0.1:{master.port}"
        session.check_master(settings_at(tmp_path, spark_master=standby))
    finally:
        for listener in (web, other, master):
            listener.close()


def test_why_the_jvm_exited_is_read_from_its_output(tmp_path: Path) -> None:
    log = tmp_path / "spark.log"
    log.write_text("26/12/06 05:42:18 WARN Utils: an older application's line\n")
    start = log.stat().st_size
    with log.open("a") as out:
        out.write(
            "WARNING: Using incubator modules: jdk.incubator.vector\n"
            "Exception in thread \"main\" org.apache.spark.SparkException: When running with master 'yarn' "
            "either HADOOP_CONF_DIR or YARN_CONF_DIR must be set in the environment.\n"
            "\tat org.apache.spark.deploy.SparkSubmitArguments.error(SparkSubmitArguments.scala:670)\n"
        )
    assert launch_log.launch_failure(log, start) == (
        "When running with master 'yarn' either HADOOP_CONF_DIR or YARN_CONF_DIR must be set in the "
        "environment."
    )
    log.write_text("Invalid maximum heap size: -Xmxlots\nError: Could not create the Java Virtual Machine.\n")
    assert launch_log.launch_failure(log, 0) == "Invalid maximum heap size: -Xmxlots"
    assert launch_log.launch_failure(log, log.stat().st_size) is None


#: What the driver's log holds when a standalone master refused the application (it lacks its secret):
#: log4j entries, each followed by its exception's lines (an excerpt of a real run).
REFUSED_APPLICATION = """\
WARNING: Using incubator modules: jdk.incubator.vector
26/12/06 16:07:08 WARN StandaloneAppClient$ClientEndpoint: Failed to connect to master 127.0.0.1:36765
org.apache.spark.SparkException: Exception thrown in awaitResult:\x20
\tat org.apache.spark.util.SparkThreadUtils$.awaitResult(SparkThreadUtils.scala:70)
Caused by: org.apache.spark.SparkException: Message is dropped because Outbox is stopped
\tat org.apache.spark.rpc.netty.Outbox.stop(Outbox.scala:279)
\t... 22 more
26/12/06 16:07:08 ERROR TransportClientFactory: Exception while bootstrapping client after 747 ms
java.lang.RuntimeException: java.util.concurrent.TimeoutException
26/12/06 16:07:47 ERROR StandaloneSchedulerBackend: Application has been killed. Reason: All masters are \
unresponsive! Giving up.
"""


def test_a_logged_exception_is_not_taken_for_the_jvms_own_output(tmp_path: Path) -> None:
    """The master's refusal of the application failed the job with "Exception thrown in awaitResult:", a
    line of an exception in Spark's log taken for the JVM's own output: pyspark's "stopped SparkContext"
    is the reason, and the message says what to set."""
    log = tmp_path / "spark.log"
    log.write_text(REFUSED_APPLICATION)
    assert launch_log.launch_failure(log, 0) is None
    settings = settings_at(tmp_path, spark_master="spark://127.0.0.1:36765")
    assert launch_log.no_master(settings, log, 0) is None
    message = session.start_failure(settings, "Cannot call methods on a stopped SparkContext.")
    assert "spark.authenticate.secret in spark_conf and in the cluster's spark-defaults.conf" in message
    # The JVM's own lines before Spark logs anything are still its reason.
    log.write_text("Invalid maximum heap size: -Xmxlots\n" + REFUSED_APPLICATION)
    assert launch_log.launch_failure(log, 0) == "Invalid maximum heap size: -Xmxlots"


def test_a_spark_process_that_is_no_master_is_named_as_such(tmp_path: Path) -> None:
    """A worker's port given for the master's: Spark retried for 90 s, and the job failed with "Exception
    thrown in awaitResult:"."""
    log = tmp_path / "spark.log"
    log.write_text(
        "26/12/06 15:58:15 WARN StandaloneAppClient$ClientEndpoint: Failed to connect to master "
        "127.0.0.1:33741\n"
        "org.apache.spark.SparkException: Exception thrown in awaitResult:\x20\n"
        "\tat org.apache.spark.util.SparkThreadUtils$.awaitResult(SparkThreadUtils.scala:70)\n"
        "Caused by: org.apache.spark.rpc.RpcEndpointNotFoundException: Cannot find endpoint: "
        "spark://Master@127.0.0.1:33741\n"
        "\tat org.apache.spark.rpc.netty.NettyRpcEnv.setupEndpointRef(NettyRpcEnv.scala:148)\n"
    )
    settings = settings_at(tmp_path, spark_master="spark://127.0.0.1:33741")
    assert launch_log.no_master(settings, log, 0) == (
        "a Spark process answers at spark://127.0.0.1:33741, but no master (Cannot find endpoint: "
        "spark://Master@127.0.0.1:33741): the address of a worker or of another application's driver? "
        "Check setting spark_master: a standalone master takes applications at the spark:// URL its web UI "
        "shows at the top (port 7077 by default)"
    )
    assert launch_log.no_master(settings, log, log.stat().st_size) is None  # an earlier application's line


REFUSED_DRIVER = """
import pathlib, sys
from emrml.config import Settings
from emrml.engine.spark.session import SparkEngineError, spark_session

home = pathlib.Path(sys.argv[1])
settings = Settings.load(environ={}, home=home, spark_master="local[1]",
                         spark_conf={"spark.driver.memory": "lots"})
try:
    spark_session(settings)
except SparkEngineError as exc:
    print(exc.message)
"""


def test_a_driver_that_refuses_its_settings_says_why_and_the_terminal_stays_clean(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", REFUSED_DRIVER, str(tmp_path / "home")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    # Before: "Java gateway process exited before sending its port number", the JVM's lines on stderr.
    assert run.stdout.startswith("the Spark application did not start: Invalid maximum heap size: -Xmxlots;")
    assert run.stderr == ""
    log = (tmp_path / "home" / "logs" / "spark.log").read_text()
    assert "Could not create the Java Virtual Machine" in log


DYING_DRIVER = """
import json, os, pathlib, signal, sys, threading
from emrml.config import Settings
from emrml.engine.spark import session
from emrml.engine.spark.runner import SparkRunner

settings = Settings.load(environ={}, home=pathlib.Path(sys.argv[1]), spark_master="local[1]")
spark = session.spark_session(settings)
first = spark.sparkContext.applicationId
reports = []

def progress(fraction, message):
    reports.append(fraction)
    # A task has ended (the driver has sent its accumulator updates to this Python): the driver is killed,
    # as the kernel short of memory does.
    if fraction > 0 and len([seen for seen in reports if seen > 0]) == 1:
        os.kill(spark.sparkContext._gateway.proc.pid, signal.SIGKILL)

slow = lambda seconds, report=None: __import__("time").sleep(seconds)
outcome = {}
try:
    SparkRunner(spark, progress).map(slow, [(2.0,)] * 30, "sleeping", (0.0, 1.0))
except session.SparkEngineError as exc:
    outcome["error"] = exc.message
# The next job of the same process (a server's) starts a new driver rather than calling the dead one.
again = session.spark_session(settings)
outcome["count"] = again.sparkContext.parallelize(range(10), 2).count()
outcome["new"] = again.sparkContext.applicationId != first
print(json.dumps(outcome))
"""


def test_a_driver_killed_in_the_middle_of_a_job_fails_it_saying_so_and_the_next_job_starts_another(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", DYING_DRIVER, str(tmp_path / "home")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    # Before: a bare connection error, so the job was FAILED as an internal error (or its progress thread
    # died and the step hung), and every later job of a server failed the same way.
    assert outcome["error"].startswith("the Spark driver (this process's JVM) exited in the middle of")
    assert "spark.driver.memory" in outcome["error"]
    assert outcome["count"] == 10 and outcome["new"]
    # The progress thread ended quietly, and py4j's and pyspark's own reports (a failed command, the
    # accumulator server's EOFError) went to the driver's log: the job's message is all the user sees.
    assert run.stderr == ""


def test_a_step_without_executors_says_it_waits_for_one_until_it_fails(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application whose only worker died, or that no worker has room for: the job's progress says what
    it waits for, and for how long it will, instead of sitting at its last progress as if it worked."""
    monkeypatch.setattr(runner, "_has_executors", lambda context: False)
    monkeypatch.setattr(session, "_executor_wait", 3.0)
    reports: list[tuple[float, str | None]] = []
    start = time.monotonic()
    with pytest.raises(session.SparkEngineError, match=r"no executor for 3 s .* spark_executor_wait"):
        runner.SparkRunner(spark, lambda *report: reports.append(report)).map(
            lambda seconds, report=None: __import__("time").sleep(seconds), [(3,)] * 8, "waiting", (0.5, 1.0)
        )
    assert time.monotonic() - start < 12  # eight tasks of 3 s on two cores: 12 s if they all ran
    waiting = [message for _, message in reports if message and message.startswith("waiting for an executor")]
    assert waiting, reports
    assert "the job fails at 3 s, setting spark_executor_wait_seconds): waiting (" in waiting[-1]
    assert waiting[-1].endswith(f"application {spark.sparkContext.applicationId})")
    assert all(fraction >= 0.5 for fraction, _ in reports)


def test_a_running_job_names_its_application_from_its_first_step(spark: Any) -> None:
    """The jobs browser's "Ran on" of a running job: recorded as its first step starts, not as it ends."""
    recorded: list[tuple[str, list[int]]] = []
    seen_while_running: list[list[tuple[str, list[int]]]] = []

    def progress(_fraction: float, _message: str | None) -> None:
        seen_while_running.append(list(recorded))

    token = runner.SPARK_JOBS.set(lambda application, ids: recorded.append((application, ids)))
    try:
        runner.SparkRunner(spark, progress).map(
            lambda seconds, report=None: __import__("time").sleep(seconds), [(1.5,)] * 2, "sleeping", (0, 1)
        )
    finally:
        runner.SPARK_JOBS.reset(token)
    application = spark.sparkContext.applicationId
    assert seen_while_running and seen_while_running[0] == [(application, [])]
    assert recorded[-1][0] == application and recorded[-1][1]  # then its Spark jobs, as the step ends
