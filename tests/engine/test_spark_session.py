"""How the process's Spark application is started and started again: what a job says while it starts, a
new driver JVM for settings the running one cannot take, and what py4j and pyspark print going to the
driver's log. The session's logic, on stand-ins for the driver's JVM and the SparkSession (no JVM)."""

from __future__ import annotations

import contextvars
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import py4j.java_gateway
import pytest
from pyspark import SparkContext
from pyspark.sql import SparkSession

from emrml.config import Settings
from emrml.engine.spark import pylogs, session
from emrml.service.app import EmrML
from emrml.service.rows import DataSource
from emrml.service.worker import JobContext


class _Gateway:
    """A driver JVM's stand-in: a process that, as pyspark's gateway JVM does, exits once its standard
    input closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)

    def shutdown(self) -> None:
        pass


class _Session:
    def __init__(self, conf: dict[str, str]) -> None:
        self.conf = conf
        self.stopped = False
        self.sparkContext = self  # what the session module asks of it: _jsc.sc().isStopped()
        self._jsc = self

    def sc(self) -> _Session:
        return self

    def isStopped(self) -> bool:
        return self.stopped

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[_Gateway]]:
    """Stand-ins for the driver's start (each one's gateway listed) and its sessions; pyspark's and the
    session module's state restored afterwards (a test session's real application may hold them)."""
    for name in ("_gateway", "_jvm", "_active_spark_context"):
        monkeypatch.setattr(SparkContext, name, None)
    for name in ("_instantiatedSession", "_activeSession"):
        monkeypatch.setattr(SparkSession, name, None)
    monkeypatch.setattr(session, "_session", None)
    monkeypatch.setattr(session, "_key", None)
    monkeypatch.setattr(session, "_driver_options", {})
    monkeypatch.setattr(session, "_holders", 0)
    monkeypatch.setattr(session, "_starting", None)
    monkeypatch.setattr(session, "_log", session._log)
    monkeypatch.setattr(session, "_executor_wait", session._executor_wait)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setattr(session.pylogs, "route_to", lambda log: None)
    launched: list[_Gateway] = []

    def launch(conf: Any, log: Path) -> None:
        SparkContext._gateway = _Gateway()
        launched.append(SparkContext._gateway)

    monkeypatch.setattr(session, "_launch_driver", launch)
    monkeypatch.setattr(session, "_new_session", lambda conf: _Session(dict(conf.getAll())))
    yield launched
    for gateway in launched:
        gateway.proc.kill()
        gateway.proc.wait()


def settings_at(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", **{"spark_master": "local[1]", **overrides})


def test_the_start_of_the_application_is_told_and_its_reuse_is_not(
    driver: list[_Gateway], tmp_path: Path
) -> None:
    told: list[str] = []
    settings = settings_at(tmp_path)
    first = session.spark_session(settings, starting=told.append)
    assert told == ["starting the Spark application (master local[1])"]
    assert session.spark_session(settings, starting=told.append) is first
    assert len(told) == 1 and len(driver) == 1


def test_driver_options_changed_in_the_settings_start_a_new_driver(
    driver: list[_Gateway], tmp_path: Path
) -> None:
    """A server whose settings changed (or a test process): the new heap, Java options... were silently
    ignored, the application started again on the first JVM."""
    first = session.spark_session(settings_at(tmp_path, spark_conf={"spark.driver.memory": "1g"}))
    # An option an application reads as it starts: a new application, on the same JVM.
    second = session.spark_session(
        settings_at(tmp_path, spark_conf={"spark.driver.memory": "1g", "spark.sql.shuffle.partitions": "3"})
    )
    assert first.stopped and not second.stopped
    assert len(driver) == 1 and driver[0].proc.poll() is None
    # The driver's heap: a new JVM, the first one ended.
    third = session.spark_session(settings_at(tmp_path, spark_conf={"spark.driver.memory": "2g"}))
    assert second.stopped and third.conf["spark.driver.memory"] == "2g"
    assert len(driver) == 2 and driver[0].proc.poll() is not None and driver[1].proc.poll() is None
    # Options the user no longer gives count as a change too.
    session.spark_session(settings_at(tmp_path))
    assert len(driver) == 3 and driver[1].proc.poll() is not None


def test_other_settings_wait_for_the_jobs_holding_the_application_instead_of_stopping_it(
    driver: list[_Gateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs of one process, the second with another master: it stopped the application under the
    first, which then failed. It now waits for the first to end, saying why, and a job with the running
    application's settings starts meanwhile."""
    import threading

    monkeypatch.setattr(session, "_HOLD_POLL_SECONDS", 0.05)
    first, release_first = session.hold(settings_at(tmp_path))
    same, release_same = session.hold(settings_at(tmp_path))
    assert same is first
    told: list[str] = []
    got: list[Any] = []
    other = settings_at(tmp_path, spark_master="local[2]")
    waiter = threading.Thread(target=lambda: got.append(session.hold(other, starting=told.append)))
    waiter.start()
    release_same()
    waiter.join(0.5)
    assert waiter.is_alive() and not first.stopped  # one job still runs on it
    assert told == [
        "waiting for the jobs running on the Spark application (master local[1]) to end: this job's "
        "Spark settings (master local[2]) are not theirs, and a process runs one application at a time"
    ]
    release_first()
    release_first()  # a second call lets go of nothing more
    waiter.join(10)
    assert not waiter.is_alive()
    second, release_second = got[0]
    assert first.stopped and second.conf["spark.master"] == "local[2]" and not second.stopped
    assert told[-1] == "starting the Spark application (master local[2])"

    # A job deleted while it waits stops waiting (check_stop raises), the application left running.
    class Stopped(BaseException):
        pass

    def stop() -> None:
        raise Stopped

    with pytest.raises(Stopped):
        session.hold(settings_at(tmp_path), check_stop=stop)
    assert not second.stopped
    release_second()
    third, release_third = session.hold(settings_at(tmp_path))  # no job holds it: started at once
    assert second.stopped and third.conf["spark.master"] == "local[1]"
    release_third()


def test_jobs_wait_for_an_application_another_job_starts_and_can_stop_meanwhile(
    driver: list[_Gateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application's start (the JVM, the master's registration: 10-90 s) held the process's lock, so a
    second job stood blocked on it: not told why, and not stopped when deleted. It now waits for the start
    where it can stop, then takes the application started for it."""
    import threading

    monkeypatch.setattr(session, "_HOLD_POLL_SECONDS", 0.05)
    registering, registered = threading.Event(), threading.Event()
    made: list[_Session] = []

    def slow_registration(conf: Any) -> _Session:
        registering.set()
        registered.wait(10)
        made.append(_Session(dict(conf.getAll())))
        return made[-1]

    monkeypatch.setattr(session, "_new_session", slow_registration)
    held: list[Any] = []
    first = threading.Thread(target=lambda: held.append(session.hold(settings_at(tmp_path))))
    first.start()
    assert registering.wait(10)

    class Stopped(BaseException):
        pass

    told: list[str] = []
    outcome: list[BaseException] = []

    def deleted() -> None:
        raise Stopped

    def stopped_job() -> None:
        try:
            session.hold(settings_at(tmp_path), starting=told.append, check_stop=deleted)
        except Stopped as stop:
            outcome.append(stop)

    waiter = threading.Thread(target=stopped_job)
    waiter.start()
    waiter.join(5)
    assert not waiter.is_alive() and outcome, "a deleted job waited for the application's start"
    second: list[Any] = []
    patient = threading.Thread(
        target=lambda: second.append(session.hold(settings_at(tmp_path), starting=told.append))
    )
    patient.start()
    patient.join(0.3)
    assert patient.is_alive()  # waits for the start another job makes, starts none of its own
    assert told[-1] == "waiting for the Spark application (master local[1]) that another job starts"
    registered.set()
    first.join(10)
    patient.join(10)
    assert not first.is_alive() and not patient.is_alive()
    assert len(made) == 1 and held[0][0] is made[0] and second[0][0] is made[0]
    held[0][1]()
    second[0][1]()


def test_a_job_says_that_its_spark_application_starts_its_progress_kept(
    tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient job (the CLI's worker) stood at progress 0 with no message for the 10-30 s of its JVM's
    start; a datasource from a query stands at half already, and must not go back."""
    from emrml.service import tasks

    app = EmrML(Settings.load(environ={}, home=tmp_path / "home"))
    try:
        app.call(
            "CreateDataSourceFromS3",
            {
                "DataSourceId": "ds-spark-start",
                "DataSpec": {
                    "DataLocationS3": str(shared_datasets / "bank_marketing" / "data.csv"),
                    "DataSchema": (shared_datasets / "bank_marketing" / "data.csv.schema").read_text(),
                },
            },
        )
        attempt = app.jobs.claim("DataSource", "ds-spark-start")
        spark_settings = Settings.load(
            environ={}, home=tmp_path / "home", engine="spark", spark_master="local[1]"
        )
        context = JobContext(spark_settings, "DataSource", "ds-spark-start", app.sessions, attempt)

        def row() -> tuple[float, str | None]:
            with app.sessions() as db:
                entity = db.get(DataSource, "ds-spark-start")
                return entity.progress, entity.progress_message

        seen: list[tuple[float, str | None]] = []
        released: list[str] = []

        def starts(settings: Settings, starting: Any = None, check_stop: Any = None) -> tuple[str, Any]:
            if starting is not None:
                starting(f"starting the Spark application (master {settings.spark_master})")
            seen.append(row())
            return "the application", lambda: released.append(settings.spark_master)

        monkeypatch.setattr(session, "hold", starts)
        context.progress(0.5, "staged the query's result")
        # In a context of its own, as a job runs (what spark_of sets for the job ends with it).
        assert contextvars.copy_context().run(tasks.spark_of, context) == "the application"
        assert seen == [(0.5, "starting the Spark application (master local[1])")]
        assert row() == (0.5, None)  # started: the first step says what it does
        assert released == []
        context.end()  # the job ended: it lets go of the application
        assert released == ["local[1]"]
    finally:
        app.close()


@pytest.fixture
def quiet_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """py4j's and pyspark's logging as it was, after the test has routed it."""
    monkeypatch.setattr(py4j.java_gateway, "logging", logging)
    monkeypatch.setattr(pylogs, "_handler", None)
    loggers = [logging.getLogger(name) for name in pylogs.LOGGERS]
    saved = [(logger.handlers[:], logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, propagate) in zip(loggers, saved, strict=True):
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:] = handlers
        logger.propagate = propagate


def test_what_py4j_and_pyspark_print_as_the_driver_dies_goes_to_the_drivers_log(
    quiet_logs: None, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The terminal showed py4j's "ERROR:root:Exception while sending command." and the accumulator
    server's EOFError traceback after emrml's own message that the driver exited."""
    from pyspark.accumulators import _start_update_server

    log = tmp_path / "spark.log"
    pylogs.route_to(log)
    root_handlers = logging.getLogger().handlers[:]
    try:
        raise ConnectionResetError("the JVM is gone")
    except ConnectionResetError:
        py4j.java_gateway.logging.exception("Exception while sending command.")  # as py4j logs it
    assert logging.getLogger().handlers == root_handlers  # no basicConfig's stderr handler on the root logger

    server = _start_update_server("token", False)
    try:

        class Context:
            _accumulatorServer = server

        pylogs.quiet_accumulator_server(Context())
        try:
            raise EOFError
        except EOFError:
            server.handle_error(None, ("127.0.0.1", 1))  # as socketserver calls it
    finally:
        server.shutdown()
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    text = log.read_text()
    assert "ERROR py4j.java_gateway: Exception while sending command." in text
    assert "ConnectionResetError: the JVM is gone" in text
    assert "WARNING pyspark.accumulators: accumulator updates from ('127.0.0.1', 1) ended" in text
    assert "EOFError" in text


def test_a_spark_jobs_compute_time_counts_its_executors_cpu_time(
    tmp_path: Path, shared_datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the runner adds for each step (``SPARK_CPU``: its executors' CPU time) is in the job's
    ComputeTime, beside the driver's: it held the driver's only, a fraction of the job's cost."""
    from emrml.engine.spark.runner import SPARK_CPU, SPARK_STOP
    from emrml.service import tasks, worker

    settings = Settings.load(environ={}, home=tmp_path / "home", engine="spark", spark_master="local[1]")
    app = EmrML(settings)
    try:
        data = shared_datasets / "bank_marketing" / "data.csv"
        spec = {"DataLocationS3": str(data), "DataSchema": (data.parent / "data.csv.schema").read_text()}
        app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-cpu", "DataSpec": spec})
        attempt = app.jobs.claim("DataSource", "ds-cpu")

        def on_spark(context: JobContext) -> dict[str, Any]:
            assert tasks.spark_of(context) == "the application"
            add = SPARK_CPU.get()
            assert add is not None
            add(2.5)  # two steps' executors
            add(1.25)
            return {}

        monkeypatch.setattr(session, "hold", lambda *args, **kwargs: ("the application", lambda: None))
        monkeypatch.setitem(worker.JOB_FUNCTIONS, "DataSource", on_spark)
        worker.run_job_in_this_process(settings, "DataSource", "ds-cpu", attempt, worker=False)
        with app.sessions() as db:
            row = db.get(DataSource, "ds-cpu")
            assert row.status == "COMPLETED"
            assert 3750 <= row.compute_time < 3750 + 1000  # the driver's thread did next to nothing
        # What the job set for its thread ended with it: the thread's next job (a pipeline's) would have
        # reported to this one's context, stopped since (its progress watcher raised JobStopped at once).
        assert SPARK_CPU.get() is None and SPARK_STOP.get() is None
    finally:
        app.close()
