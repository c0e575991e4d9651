"""The local batch prediction pool's size: a process per core, at most ``LOCAL_WORKERS_MAX``, and no more than
the memory available holds at ``worker_budget`` each; the memory read from /proc/meminfo and the cgroup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from emrml.config import Settings
from emrml.core.schema import parse_schema
from emrml.engine import batch, pool_size, units
from emrml.engine.pool_size import LOCAL_WORKERS_MAX, worker_budget
from emrml.engine.training import DatasourceData, train_model
from emrml.service.parameters import parse_parameters
from raw_models import XY_SCHEMA

MiB = 1 << 20
SCHEMA = parse_schema(json.dumps(XY_SCHEMA))


def _machine(monkeypatch: pytest.MonkeyPatch, cores: int, memory: int | None) -> None:
    monkeypatch.setattr(pool_size.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(pool_size, "available_memory", lambda: memory)


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (6, 6), (64, LOCAL_WORKERS_MAX)])
def test_the_local_pool_has_a_worker_per_core(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int
) -> None:
    """A batch prediction on a machine with more cores than two uses them (up to ``LOCAL_WORKERS_MAX``),
    counting the cores this process may run on."""
    _machine(monkeypatch, cores, 1 << 40)
    assert units.Parallelism().workers == workers
    assert units.planned(None, None).workers == workers


@pytest.mark.parametrize(
    ("budgets", "workers"), [(0.5, 1), (1, 1), (2.9, 2), (3, 3), (100, 8)], ids=lambda value: str(value)
)
def test_the_local_pool_has_no_more_workers_than_the_memory_holds(
    monkeypatch: pytest.MonkeyPatch, budgets: float, workers: int
) -> None:
    """On 8 cores, as many workers as whole ``worker_budget``s the memory available holds, and one when it
    holds less than one."""
    _machine(monkeypatch, 8, int(budgets * worker_budget(Settings.batch_bytes)))
    assert units.planned(None, None).workers == workers
    assert units.Parallelism().workers == workers


def test_larger_batches_leave_room_for_fewer_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget grows with the batch size setting: memory for four workers of 4 MiB batches holds one of
    64 MiB batches."""
    assert worker_budget(64 * MiB) > 4 * worker_budget(4 * MiB)
    _machine(monkeypatch, 8, 4 * worker_budget(4 * MiB))
    assert units.planned(None, None, 4 * MiB).workers == 4
    assert units.planned(None, None, 64 * MiB).workers == 1


def test_memory_that_cannot_be_read_leaves_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    _machine(monkeypatch, 6, None)
    assert units.planned(None, None).workers == 6


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A /proc/meminfo, /proc/self/cgroup and /sys/fs/cgroup of the test's making under ``tmp_path``."""
    monkeypatch.setattr(pool_size, "_MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(pool_size, "_SELF_CGROUP", tmp_path / "self-cgroup")
    monkeypatch.setattr(pool_size, "_CGROUP", tmp_path / "cgroup")
    return tmp_path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


MEMINFO = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:    2000000 kB\n"


def test_the_memory_available_is_meminfos_without_a_cgroup_limit(files: Path) -> None:
    _write(files / "meminfo", MEMINFO)
    assert pool_size.available_memory() == 2_000_000 * 1024
    # cgroup v2 without a limit
    _write(files / "self-cgroup", "0::/jobs\n")
    _write(files / "cgroup/jobs/memory.max", "max\n")
    _write(files / "cgroup/jobs/memory.current", "1000\n")
    assert pool_size.available_memory() == 2_000_000 * 1024


def test_a_cgroup_v2_limit_bounds_the_memory_available(files: Path) -> None:
    _write(files / "meminfo", MEMINFO)
    _write(files / "self-cgroup", "0::/jobs\n")
    _write(files / "cgroup/jobs/memory.max", f"{1024 * MiB}\n")
    _write(files / "cgroup/jobs/memory.current", f"{700 * MiB}\n")
    assert pool_size.available_memory() == 324 * MiB


def test_a_limit_on_a_parent_cgroup_bounds_the_memory_available(files: Path) -> None:
    """A container runtime or a systemd slice sets the limit on a cgroup above the process's, which has
    none: the least room along the path counts (it was ignored, and the pool sized by MemAvailable)."""
    _write(files / "meminfo", MEMINFO)
    _write(files / "self-cgroup", "0::/machine.slice/box/jobs\n")
    levels = {
        "machine.slice": (f"{4096 * MiB}", 1000 * MiB),
        "machine.slice/box": (f"{1024 * MiB}", 900 * MiB),  # the tightest: 124 MiB left
        "machine.slice/box/jobs": ("max", 600 * MiB),
    }
    for level, (limit, used) in levels.items():
        _write(files / "cgroup" / level / "memory.max", f"{limit}\n")
        _write(files / "cgroup" / level / "memory.current", f"{used}\n")
    _write(files / "cgroup/memory.current", f"{20_000 * MiB}\n")  # the root cgroup: no limit file
    assert pool_size.available_memory() == 124 * MiB
    # A limit of the process's own cgroup that leaves less than its parents' counts as before.
    _write(files / "cgroup/machine.slice/box/jobs/memory.max", f"{700 * MiB}\n")
    assert pool_size.available_memory() == 100 * MiB


def test_a_cgroup_path_outside_the_namespace_reads_the_mounts_root(files: Path) -> None:
    """A process outside its cgroup namespace's root sees a path with "..": the mount's root is read, not a
    folder beside the mount."""
    _write(files / "meminfo", MEMINFO)
    _write(files / "self-cgroup", "0::/../elsewhere\n")
    _write(files / "elsewhere/memory.max", f"{64 * MiB}\n")
    _write(files / "elsewhere/memory.current", "0\n")
    _write(files / "cgroup/memory.max", f"{512 * MiB}\n")
    _write(files / "cgroup/memory.current", f"{256 * MiB}\n")
    assert pool_size.available_memory() == 256 * MiB


def test_a_cgroup_v1_limit_bounds_the_memory_available(files: Path) -> None:
    """The memory controller's line of a hybrid hierarchy, its files at the mount's root as a container
    without its own cgroup namespace sees them (the host's path does not exist there)."""
    _write(files / "meminfo", MEMINFO)
    _write(files / "self-cgroup", "4:memory:/host/path/abc\n1:cpu,cpuacct:/\n0::/\n")
    _write(files / "cgroup/memory/memory.limit_in_bytes", f"{512 * MiB}\n")
    _write(files / "cgroup/memory/memory.usage_in_bytes", f"{500 * MiB}\n")
    assert pool_size.available_memory() == 12 * MiB


def test_nothing_to_read_gives_no_bound(files: Path) -> None:
    assert pool_size.available_memory() is None


def test_this_machines_memory_is_read() -> None:
    """On Linux the real /proc/meminfo gives a figure."""
    available = pool_size.available_memory()
    assert available is not None and available > 0


@pytest.mark.parametrize(("batch_bytes", "workers"), [(4 * MiB, 4), (64 * MiB, 1)])
def test_a_batch_prediction_sizes_its_pool_by_the_batch_size_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_bytes: int, workers: int
) -> None:
    """The job plans its pool with the ``batch_bytes`` it reads with: memory for four workers of 4 MiB
    batches runs one of 64 MiB (whose input is then not cut: ``_cut_points`` is for a pool)."""
    data = tmp_path / "in"
    for i in range(2):
        _write(data / f"part-{i}.csv", "x,y\n" + "".join(f"{n},{n % 2}\n" for n in range(20)))
    settings = Settings(home=tmp_path / "home", batch_bytes=batch_bytes)
    trained = train_model(
        model_id="ml-pool",
        model_type="BINARY",
        data=DatasourceData(str(data), SCHEMA, None),
        recipe_text=json.dumps({"outputs": ["ALL_INPUTS"]}),
        sample=pa.table({}),
        parameters=parse_parameters({"sgd.maxPasses": "1"}),
        settings=settings,
        progress=lambda *_: None,
    )
    _machine(monkeypatch, 8, 4 * worker_budget(4 * MiB))
    planned: list[int] = []
    cut_points = batch._cut_points

    def recording(files: Any, parallelism: units.Parallelism) -> Any:
        planned.append(parallelism.workers)
        return cut_points(files, parallelism)

    monkeypatch.setattr(batch, "_cut_points", recording)
    result = batch.batch_predict(
        batch_prediction_id="bp-pool",
        artifact_location=trained.artifact_path,
        data=DatasourceData(str(data), SCHEMA, None),
        output_uri=str(tmp_path / "out") + "/",
        score_threshold=None,
        settings=settings,
        progress=lambda *_: None,
    )
    assert result.total_records == 40
    assert planned == ([] if workers == 1 else [workers])
