"""Helpers shared by the benchmarks: threads, machine facts, emrml calls, the job processes' memory and CPU.

Not a library: the benchmarks run by hand from the repository root, with ``bench/`` on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from emrml.service.app import EmrML

BENCH_DIR = Path(__file__).resolve().parent
README = BENCH_DIR / "README.md"
#: Variables that cap the thread pools of OpenBLAS, MKL, OpenMP (LightGBM, scikit-learn) and numexpr.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
#: Packages whose versions a result depends on.
VERSIONED_PACKAGES = ("numpy", "pyarrow", "scipy", "scikit-learn", "lightgbm")
#: Seconds between two reads of ``/proc`` by ``ProcessMonitor``.
POLL_SECONDS = 0.02


def single_threaded() -> None:
    """Make this process and every process it starts single-threaded in native code.

    The thread pools read their variables once, when the native library loads — usually long before
    ``main`` runs — so a process that lacks them re-executes itself with them set. Timings on these
    2-core machines swung 60x with OpenMP threads competing.
    """
    if all(os.environ.get(name) == "1" for name in THREAD_VARIABLES):
        return
    environment = os.environ | dict.fromkeys(THREAD_VARIABLES, "1")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], environment)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. ``1.02, 0.87, 0.65``."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _command(*args: str) -> str:
    # Without the thread limits: nproc reports OMP_NUM_THREADS when it is set.
    environment = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    return subprocess.run(args, check=True, capture_output=True, text=True, env=environment).stdout.strip()


def emrml_source() -> str:
    """Where the measured emrml code came from: its folder, and its git commit when it is a checkout."""
    import emrml

    package = Path(emrml.__file__).resolve().parent
    try:
        commit = _command("git", "-C", str(package), "rev-parse", "--short", "HEAD")
        changed = _command("git", "-C", str(package), "status", "--porcelain", "--", ".")
    except subprocess.CalledProcessError:
        return f"emrml from `{package}`"
    return f"emrml from `{package}` (commit {commit}{', with local changes' if changed else ''})"


def machine_report() -> str:
    """Markdown lines describing the machine and the versions that matter, for the README; the last says
    whether this process runs with the thread pools capped (:func:`single_threaded`)."""
    memory = _command("free", "-h").splitlines()[1].split()
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = match.group(1).strip() if match else cpu
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in VERSIONED_PACKAGES)
    return (
        f"- machine: `nproc` = {_command('nproc')} ({cpu}), `free -h`: {memory[1]} total, "
        f"{memory[6]} available; {platform.platform()}\n"
        f"- Python {platform.python_version()}, {versions}; {emrml_source()}\n"
        + (
            f"- native thread pools limited to 1 thread ({', '.join(THREAD_VARIABLES[:3])}, ... = 1)"
            if all(os.environ.get(name) == "1" for name in THREAD_VARIABLES)
            else "- native thread pools at their defaults (both cores)"
        )
    )


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the lines between ``<!-- name:begin -->`` and ``<!-- name:end -->`` set to ``body``;
    the marked block is appended when ``text`` has none."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def write_readme_section(name: str, body: str) -> None:
    """Put ``body`` into the marked block ``name`` of ``bench/README.md``."""
    README.write_text(replace_section(README.read_text(), name, body))


@dataclass(frozen=True)
class Trained:
    """A finished CreateMLModel: its id, wall seconds of create + wait, and its GetMLModel description."""

    model_id: str
    seconds: float
    description: dict[str, Any]


@contextmanager
def emrml_app(home: Path, training_defaults: str = "api") -> Iterator[EmrML]:
    """An emrml installation at ``home`` (created if needed) whose unset training parameters take
    ``training_defaults`` (``api`` or ``console``); several may share one home."""
    from emrml.config import Settings

    app = EmrML(Settings.load(environ={}, home=home, training_defaults=training_defaults))
    try:
        yield app
    finally:
        app.close()


def create_datasource(
    app: EmrML, datasource_id: str, location: Path, schema_json: str, rearrangement: dict | None = None
) -> dict[str, Any]:
    """Create a datasource with statistics over ``location`` and wait for it; fails loudly if it fails."""
    spec: dict[str, Any] = {"DataLocationS3": str(location), "DataSchema": schema_json}
    if rearrangement is not None:
        spec["DataRearrangement"] = json.dumps(rearrangement)
    app.call(
        "CreateDataSourceFromS3",
        {"DataSourceId": datasource_id, "DataSpec": spec, "ComputeStatistics": True},
    )
    return _completed(app.wait("DataSource", datasource_id), f"datasource {datasource_id}")


def train(
    app: EmrML,
    model_id: str,
    model_type: str,
    datasource_id: str,
    *,
    recipe: str | None = None,
    parameters: dict[str, str] | None = None,
) -> Trained:
    """CreateMLModel (suggested recipe unless ``recipe``; defaults unless ``parameters``) and wait."""
    request: dict[str, Any] = {
        "MLModelId": model_id,
        "MLModelType": model_type,
        "TrainingDataSourceId": datasource_id,
    }
    if recipe is not None:
        request["Recipe"] = recipe
    if parameters:
        request["Parameters"] = parameters
    started = time.perf_counter()
    app.call("CreateMLModel", request)
    description = app.wait("MLModel", model_id)
    seconds = time.perf_counter() - started
    return Trained(model_id, seconds, _completed(description, f"model {model_id}"))


def evaluate(app: EmrML, model_id: str, datasource_id: str) -> float:
    """Evaluate ``model_id`` on ``datasource_id``; returns the model type's metric (AUC, macro F1, RMSE)."""
    evaluation_id = f"ev-{model_id}-{datasource_id}"
    app.call(
        "CreateEvaluation",
        {"EvaluationId": evaluation_id, "MLModelId": model_id, "EvaluationDataSourceId": datasource_id},
    )
    result = _completed(app.wait("Evaluation", evaluation_id), f"evaluation {evaluation_id}")
    (value,) = result["PerformanceMetrics"]["Properties"].values()
    return float(value)


def recipe_of(app: EmrML, model_id: str) -> str:
    """The recipe a trained model actually used (the suggested one when it was given none)."""
    return app.call("GetMLModel", {"MLModelId": model_id, "Verbose": True})["Recipe"]


def _completed(description: dict[str, Any], what: str) -> dict[str, Any]:
    if description["Status"] != "COMPLETED":
        raise SystemExit(f"{what} ended {description['Status']}: {description.get('Message')}")
    return description


class ProcessMonitor:
    """Peak RSS (``VmHWM``) and CPU time (``utime + stime``) of the processes that appear below this one
    after it starts (job workers forked by the fork server, their pools), polled from ``/proc`` every
    20 ms (a process's last 20 ms may be missed). ``getrusage(RUSAGE_CHILDREN)`` would not see them: they
    are the fork server's children, not this process's."""

    def __init__(self) -> None:
        self.existing = set(_descendants(os.getpid()))
        self.peaks: dict[int, int] = {}
        self.ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ProcessMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            for pid in _descendants(os.getpid()):
                if pid not in self.existing:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), _peak_kib(pid))
                    self.ticks[pid] = max(self.ticks.get(pid, 0), _cpu_ticks(pid))

    @property
    def max_rss_mb(self) -> float:
        return max(self.peaks.values(), default=0) * 1024 / 1_000_000

    @property
    def total_rss_mb(self) -> float:
        return sum(self.peaks.values()) * 1024 / 1_000_000

    @property
    def cpu_seconds(self) -> float:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> Iterator[int]:
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/children") as stream:
                for child in stream.read().split():
                    yield int(child)
                    yield from _descendants(int(child))
    except FileNotFoundError:  # ended between two reads
        return


def _peak_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
