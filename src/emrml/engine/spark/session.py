"""The Spark application a process runs its jobs on, built from ``Settings`` (docs/spark.md).

One ``SparkSession`` per process (Spark allows one ``SparkContext`` per JVM): ``spark_session`` creates
it on first use and returns it afterwards, so a server keeps one application for all its jobs and a job
worker pays the JVM's start once. A job holds the application while it runs (``hold``): one whose settings
ask for another application waits for the jobs on the current one to end instead of stopping it under them.

Set up here, because the defaults do not fit emrml:

* **Loopback.** For ``local[...]`` and ``spark://127.0.0.1...`` masters the driver binds and advertises
  127.0.0.1 (``spark.driver.host``, ``SPARK_LOCAL_IP``): otherwise it advertises the machine's first
  non-loopback address, which a sandbox or a laptop on a changing network may not route.
* **The Python of the executors** is this interpreter (``spark.pyspark.python``, also put in
  ``PYSPARK_PYTHON``, which is what a session made from Python reads), so that tasks import the same
  emrml; on a real cluster set ``spark_conf`` ``spark.pyspark.python`` to the nodes' interpreter.
* **Encryption in transit** (the origin's "Hadoop encrypted shuffle"): with ``spark_encryption`` "on", or
  "auto" and a master that is not ``local``, ``spark.authenticate`` with a secret generated per
  application, ``spark.network.crypto.enabled`` (AES between driver and executors, block transfers
  included) and ``spark.io.encryption.enabled`` (shuffle and spill files encrypted on disk). SSL for the
  web UIs is the user's ``spark.ssl.*`` settings in ``spark_conf``, which pass through unchanged.
* **The driver's log** goes to ``<home>/logs/spark.log`` (warnings and errors: lost executors, task
  failures with their stack traces), not to the terminal of the CLI or the server, where Spark's banner
  and its log lines would stand among emrml's own messages (a job's failure is its Message, one line).
* **What py4j and pyspark log** on the Python side goes to that log as well (``pylogs``): a driver that
  died made them print tracebacks on the terminal, beside emrml's one-line message saying so.
* **An application's start lets go of the process's lock.** Its JVM's start and the master's registration
  take 10–30 s (about 90 s when a master refuses it), which other jobs spend waiting where they can still
  be stopped and say why (``_starting``), rather than blocked on the lock.
* **The driver's JVM** starts once per process and outlives an application; settings that change options
  it reads only as it starts (``DRIVER_OPTIONS``) have it started anew rather than silently ignored.
* **A master that does not answer** fails at once: its port is tried for ``spark_connect_seconds`` first,
  instead of Spark's own minute of retries; so does an address where another server answers (a web UI's
  port given for the master's: ``_foreign_server``). An application without an executor fails a job after
  ``spark_executor_wait_seconds`` (runner.py) instead of waiting for one for ever.

``spark_conf`` comes last and overrides everything above.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emrml.config import Settings
from emrml.engine.spark import pylogs
from emrml.engine.spark.launch_log import launch_failure, no_master
from emrml.errors import InternalServerException

_logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_session: Any = None
_key: tuple[Any, ...] | None = None
#: The running application's master, as its settings name it.
_master = ""
#: Jobs running on the application (``hold``): an application with other settings waits for them to end.
_holders = 0
_released = threading.Condition(_LOCK)
#: The master of the application a thread is starting with ``_LOCK`` let go (``_start``), else None: every
#: other caller waits for the start to end, jobs able to stop meanwhile.
_starting: str | None = None
#: How often a job waiting for the application's jobs to end looks whether it is to stop.
_HOLD_POLL_SECONDS = 1.0
_executor_wait = 300.0
_log = Path("spark.log")
#: How long a call that lost its connection to the driver waits for the driver's JVM to end.
_DRIVER_GRACE_SECONDS = 5.0

#: What the error names when pyspark is missing.
INSTALL_HINT = "pip install 'emrml[spark]' (and a Java 17 runtime)"


class SparkEngineError(InternalServerException):
    """The Spark engine cannot run the job: pyspark missing, the master unreachable, a Spark job failed."""


def encryption_on(settings: Settings) -> bool:
    """Whether the application authenticates and encrypts its traffic and local files."""
    if settings.spark_encryption == "auto":
        return not settings.spark_master.startswith("local")
    return settings.spark_encryption == "on"


def _loopback(master: str) -> bool:
    if master.startswith("local"):
        return True
    host = urlsplit(master).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


#: The driver JVM's log4j2 configuration: Spark's own default, sent to a file instead of the console.
_LOG_CONFIG = """\
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = error
"""


def log_config_path(settings: Settings) -> Path:
    return settings.home / "logs" / "spark-log4j2.properties"


def _write_log_config(settings: Settings) -> None:
    path = log_config_path(settings)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(_LOG_CONFIG.format(log=path.parent / "spark.log"))


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every setting the application gets (``spark.master`` included); pure, so it can be tested and shown
    (``spark.authenticate.secret`` is generated afresh for each application)."""
    conf = {
        "spark.master": settings.spark_master,
        "spark.app.name": f"emrml ({settings.home})",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.ui.showConsoleProgress": "false",
        # One Python worker per executor core for every task: the model and imports load once, not per task.
        "spark.python.worker.reuse": "true",
    }
    if _loopback(settings.spark_master):
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    if encryption_on(settings):
        conf.update(
            {
                "spark.authenticate": "true",
                "spark.authenticate.secret": secrets.token_hex(32),
                "spark.network.crypto.enabled": "true",
                "spark.io.encryption.enabled": "true",
            }
        )
    conf.update(settings.spark_conf)
    # The log's place is added to the user's driver options rather than replaced by them (quoted: Spark
    # splits the options as a shell does, and a home may hold a blank).
    logging = f'"-Dlog4j2.configurationFile={log_config_path(settings)}"'
    theirs = conf.get("spark.driver.extraJavaOptions", "")
    conf["spark.driver.extraJavaOptions"] = f"{logging} {theirs}".strip()
    return conf


def check_master(settings: Settings) -> None:
    """Fail at once, saying so, when a ``spark://`` master does not accept connections, or a ``yarn``
    master has no Hadoop configuration to find its resource manager by."""
    master = settings.spark_master
    configured = any(os.environ.get(name) for name in ("HADOOP_CONF_DIR", "YARN_CONF_DIR"))
    # Under spark-submit (its JVM started this Python: PYSPARK_GATEWAY_PORT) the driver exists already.
    if master == "yarn" and not configured and "PYSPARK_GATEWAY_PORT" not in os.environ:
        # spark-submit checks this too, but its JVM then exits before pyspark can say why.
        raise SparkEngineError(
            "setting spark_master yarn needs HADOOP_CONF_DIR or YARN_CONF_DIR in emrml's environment: the "
            "folder of the cluster's yarn-site.xml and core-site.xml (on an EMR node, /etc/hadoop/conf)"
        )
    if not master.startswith("spark://"):
        return
    reasons, answered = [], False
    for address in master[len("spark://") :].split(","):  # a standby list: host1:port1,host2:port2
        host, _, port = address.rpartition(":")
        try:
            target = (host.strip("[]"), int(port))  # an IPv6 address is bracketed in the URL
            with socket.create_connection(target, timeout=settings.spark_connect_seconds) as connection:
                foreign = _foreign_server(connection, min(_PROBE_SECONDS, settings.spark_connect_seconds))
            if foreign is None:
                return
            reasons.append(f"{address}: {foreign}")
            answered = True
        except ValueError:
            reasons.append(f"{address}: not host:port")
        except socket.gaierror:
            reasons.append(f"{address}: no such host")
        except ConnectionRefusedError:
            reasons.append(f"{address}: nothing listens there")
        except TimeoutError:
            reasons.append(f"{address}: no answer in {settings.spark_connect_seconds:g} s")
        except OSError as exc:
            reasons.append(f"{address}: {exc.strerror or exc}")
    if answered:
        raise SparkEngineError(
            f"the Spark master {master} is not a Spark master's address ({'; '.join(reasons)}): check "
            "setting spark_master: a standalone master takes applications at the spark:// URL its web UI "
            "shows at the top (port 7077 by default), not at its web UI's or REST server's port"
        )
    raise SparkEngineError(
        f"the Spark master {master} does not answer ({'; '.join(reasons)}): check setting spark_master and "
        "that the master is running"
    )


#: What the master's port is sent once it accepts a connection: fewer bytes than a frame's length prefix
#: of Spark's RPC protocol (8) or a TLS record's header (5), so a Spark master (TLS or not) waits for more
#: and says nothing, while a web server (the master's web UI on 8080, its REST server on 6066: mistakes
#: that Spark itself reports only after about 90 s of retries, as "Too large frame") answers at once.
_PROBE = b"\0\0\0\0"
#: How long the probe waits for an answer; a Spark master gives none, so every start waits this long.
_PROBE_SECONDS = 1.0


def _foreign_server(connection: socket.socket, seconds: float) -> str | None:
    """Why the server on ``connection`` is not a Spark master, when it answers ``_PROBE`` (a Spark master
    never speaks first); None when it stays silent or closes (let Spark's own registration tell)."""
    try:
        connection.sendall(_PROBE)
        connection.settimeout(seconds)
        answer = connection.recv(16)
    except OSError:  # the timeout (a master's silence) among them
        return None
    if answer.startswith(b"HTTP/"):
        return "a web server answers there"
    if answer:
        return "a server that is not a Spark master answers there"
    return None


def spark_session(settings: Settings, starting: Callable[[str], None] | None = None) -> Any:
    """The process's SparkSession for these settings (made on first use). ``starting`` is told, before
    the application is started (10–30 s when its JVM starts too), what the job waits for meanwhile. An
    application with other settings is stopped, jobs running on it or not: a job holds it with ``hold``."""
    with _LOCK:
        _await_start()
        return _session_for(settings, starting)


def _await_start() -> None:
    """Wait, ``_LOCK`` held, until no thread is starting an application."""
    while _starting is not None:
        _released.wait(_HOLD_POLL_SECONDS)


def hold(
    settings: Settings,
    starting: Callable[[str], None] | None = None,
    check_stop: Callable[[], None] | None = None,
) -> tuple[Any, Callable[[], None]]:
    """``spark_session`` for a job, and the function to call once the job is done with it.

    Spark runs one application per process. While jobs hold it, a job whose settings ask for another one
    (another master, other options) waits until they have ended, ``starting`` told why, ``check_stop``
    called every second (it raises when the job is to stop): stopping the application would fail the
    running jobs, and a second one cannot run beside it. Jobs with the running application's settings
    start meanwhile. While another job starts the application, a job waits for it the same way."""
    global _holders
    with _LOCK:
        key, told = _key_of(settings), ""
        while _starting is not None or (
            _holders and _session is not None and _key != key and not _stopped(_session)
        ):
            if _starting is None and driver_exited():
                break
            if check_stop is not None:
                check_stop()
            why = (
                f"waiting for the Spark application (master {_starting}) that another job starts"
                if _starting is not None
                else f"waiting for the jobs running on the Spark application (master {_master}) to end: "
                f"this job's Spark settings (master {settings.spark_master}) are not theirs, and a "
                "process runs one application at a time"
            )
            if starting is not None and why != told:
                told = why
                starting(why)
            _released.wait(_HOLD_POLL_SECONDS)
        spark = _session_for(settings, starting)
        _holders += 1
    released = threading.Event()

    def release() -> None:
        global _holders
        with _LOCK:
            if not released.is_set():
                released.set()
                _holders -= 1
                _released.notify_all()

    return spark, release


def _key_of(settings: Settings) -> tuple[Any, ...]:
    """What tells one application's settings from another's."""
    return (settings.spark_master, tuple(sorted(settings.spark_conf.items())), settings.spark_encryption)


def _session_for(settings: Settings, starting: Callable[[str], None] | None) -> Any:
    """``spark_session``, called with ``_LOCK`` held and no application starting."""
    global _session, _key, _executor_wait, _log, _master, _starting
    _executor_wait = settings.spark_executor_wait_seconds
    _log = driver_log(settings)
    key = _key_of(settings)
    try:
        from pyspark import SparkContext
    except ImportError:
        raise SparkEngineError(f"the Spark engine needs pyspark: {INSTALL_HINT}") from None
    if _session is not None and driver_exited():
        _forget_driver()  # a server's next job starts a new driver, as a job worker would
        _session = None
    if _session is not None and _key == key and not _stopped(_session):
        return _session
    if _session is not None:
        _session.stop()
        _session, _key = None, None
    if SparkContext._gateway is not None:
        _restart_if_driver_options_changed(settings)
    if starting is not None:
        starting(f"starting the Spark application (master {settings.spark_master})")
    _starting = settings.spark_master
    _LOCK.release()
    try:
        started = _start(settings)
    finally:
        _LOCK.acquire()
        _starting = None
        _released.notify_all()
    _session, _key, _master = started, key, settings.spark_master
    return _session


def _start(settings: Settings) -> Any:
    """A new application for ``settings`` (its driver's JVM started first when the process has none), run
    with ``_LOCK`` let go and ``_starting`` set, so that no other thread touches pyspark's state meanwhile."""
    from pyspark import SparkConf, SparkContext

    check_master(settings)
    if _loopback(settings.spark_master):
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    effective = spark_conf(settings)
    _write_log_config(settings)
    # A SparkContext made in a running Python takes its executors' interpreter from PYSPARK_PYTHON,
    # else "python3" on the PATH: spark.pyspark.python is read only by spark-submit. Without this, an
    # emrml run from a virtual environment that is not activated has tasks that cannot import emrml.
    os.environ["PYSPARK_PYTHON"] = effective["spark.pyspark.python"]
    conf = SparkConf().setAll(list(effective.items()))
    log = driver_log(settings)
    start = log.stat().st_size if log.exists() else 0
    try:
        if SparkContext._gateway is None:  # one JVM per process, kept after a context stops
            _launch_driver(conf, log)
            _driver_options.clear()
            _driver_options.update(driver_options(settings))
        pylogs.route_to(log)
        with warnings.catch_warnings():  # pyspark's about pandas versions: emrml's tasks use no pandas
            warnings.simplefilter("ignore", FutureWarning)
            started = _new_session(conf)
    except Exception as exc:
        reason = no_master(settings, log, start) or launch_failure(log, start) or one_line(exc)
        raise SparkEngineError(start_failure(settings, reason)) from None
    pylogs.quiet_accumulator_server(started.sparkContext)
    return started


def _launch_driver(conf: Any, log: Path) -> None:
    """Start the driver's JVM (or, under spark-submit, connect to the one that started this Python)."""
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    # The JVM's own output (spark-submit refusing its arguments, the JVM's notices) goes to the driver's
    # log as well, not to the terminal: why it exited is read back from there.
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as output:
        gateway = launch_gateway(conf, popen_kwargs={"stderr": output})
    SparkContext._ensure_initialized(gateway=gateway)


def _new_session(conf: Any) -> Any:
    from pyspark.sql import SparkSession

    return SparkSession.builder.config(conf=conf).getOrCreate()


#: ``spark_conf`` settings that the driver's JVM reads as it starts, not as an application starts on it:
#: its heap, its command line and class path (spark-submit's), the packages spark-submit resolves.
DRIVER_OPTIONS = (
    "spark.driver.memory",
    "spark.driver.extraJavaOptions",
    "spark.driver.defaultJavaOptions",
    "spark.driver.extraClassPath",
    "spark.driver.extraLibraryPath",
    "spark.jars.packages",
    "spark.jars.repositories",
    "spark.jars.excludes",
    "spark.jars.ivy",
    "spark.jars.ivySettings",
)
#: The ``DRIVER_OPTIONS`` of ``spark_conf`` the running driver's JVM was started with.
_driver_options: dict[str, str] = {}


def driver_options(settings: Settings) -> dict[str, str]:
    return {name: value for name, value in settings.spark_conf.items() if name in DRIVER_OPTIONS}


def _restart_if_driver_options_changed(settings: Settings) -> None:
    """Stop the driver's JVM when the settings change options it reads only as it starts, so that the
    next application starts a JVM with them: reusing it (pyspark's way) left them silently ignored. Called
    with the application stopped (no job of this process runs on it any more)."""
    from pyspark import SparkContext

    wanted = driver_options(settings)
    changed = sorted(
        name for name in {*wanted, *_driver_options} if wanted.get(name) != _driver_options.get(name)
    )
    if not changed:
        return
    process = getattr(SparkContext._gateway, "proc", None)
    if process is None:  # under spark-submit: its JVM is this process's parent, started with its options
        _logger.warning(
            "setting spark_conf changed %s, which the driver reads as it starts: under spark-submit they "
            "take effect only when given to spark-submit",
            ", ".join(changed),
        )
        return
    _logger.info("setting spark_conf changed %s: starting a new driver JVM with them", ", ".join(changed))
    with contextlib.suppress(Exception):
        SparkContext._gateway.shutdown()
    # The gateway's JVM exits once its standard input closes (pyspark's PythonGatewayServer).
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        process.wait(timeout=_DRIVER_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _forget_driver()
    _driver_options.clear()


def driver_log(settings: Settings) -> Path:
    return settings.home / "logs" / "spark.log"


def start_failure(settings: Settings, reason: str) -> str:
    """Why the application did not start, as the user can act on it. A standalone master that answers
    (``check_master``) but refuses the application gives up after a minute of retries, and all pyspark
    then says is that the context is stopped: most often the master lacks the application's secret."""
    message = f"the Spark application did not start: {reason}"
    if settings.spark_master.startswith("spark://") and "stopped SparkContext" in reason:
        message = (
            f"the Spark master {settings.spark_master} answered but did not register the application "
            "(it gave up after about a minute)"
        )
        if encryption_on(settings):
            message += (
                ": with spark_encryption on, the master and its workers must have the application's secret, "
                "spark.authenticate.secret in spark_conf and in the cluster's spark-defaults.conf (or set "
                "spark_encryption off)"
            )
    return f"{message}; the driver's log is {driver_log(settings)}"


def executor_wait_seconds() -> float:
    """How long a step of a job waits while the application has no executor (the settings' of the last
    ``spark_session`` call: one application per process)."""
    return _executor_wait


def driver_exited(grace: float = 0.0) -> bool:
    """Whether this process's Spark driver, its JVM, has exited (killed: most often by the kernel short of
    memory, which picks the largest process), given ``grace`` seconds to end: a call into a JVM being
    killed fails before the process is gone. pyspark then fails every call with a connection error."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return False
    process = getattr(gateway, "proc", None)  # None under spark-submit, whose JVM started this Python
    if process is not None:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        gateway.jvm.java.lang.System.nanoTime()
    except Exception:
        return True
    return False


def lost_driver(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a call into the driver, is its JVM having exited (waited for a few seconds
    when the call lost its connection: the JVM may still be ending)."""
    from py4j.protocol import Py4JNetworkError

    lost = isinstance(exc, (Py4JNetworkError, OSError))
    return driver_exited(_DRIVER_GRACE_SECONDS if lost else 0.0)


def driver_exit_error() -> SparkEngineError:
    """What a job whose driver exited under it fails with."""
    return SparkEngineError(
        "the Spark driver (this process's JVM) exited in the middle of the job: killed, most often by the "
        "kernel short of memory (see spark.driver.memory in setting spark_conf, and the machine's memory); "
        f"run the job again (its driver starts anew); the driver's log is {_log}"
    )


def _forget_driver() -> None:
    """Drop pyspark's hold on a driver that exited, so that the next session launches a new one (pyspark
    keeps one JVM per process and would go on calling the dead one)."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    with SparkContext._lock:
        SparkContext._gateway = None
        SparkContext._jvm = None
        SparkContext._active_spark_context = None
    SparkSession._instantiatedSession = None
    SparkSession._activeSession = None


def _stopped(session: Any) -> bool:
    context = session.sparkContext
    return context._jsc is None or context._jsc.sc().isStopped()


def stop() -> None:
    """Stop the process's application, if any (tests, and a server shutting down)."""
    global _session, _key
    with _LOCK:
        _await_start()
        if _session is not None:
            _session.stop()
        _session, _key = None, None


def one_line(exc: BaseException) -> str:
    """A Spark failure as one readable line: the Java exception's own message (the deepest cause's that has
    one: a task's Python error travels as the text of a PythonException, a crashed Python worker as a
    SparkException caused by a bare EOFException), without stack traces."""
    java = getattr(exc, "java_exception", None)
    text = ""
    if java is not None:
        try:
            cause = java
            while cause is not None:
                text = str(cause.getMessage() or "") or text
                cause = cause.getCause()
        except Exception:  # the JVM is gone: fall back to the Python side's text
            text = ""
    text = text or str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # A Python error inside a task ends its traceback with "Type: message": that is the reason.
    reason = next(
        (line for line in reversed(lines) if ": " in line and not line.startswith(("at ", "File "))),
        lines[0] if lines else type(exc).__name__,
    )
    return reason[:500]
