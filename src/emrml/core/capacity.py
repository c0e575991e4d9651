"""The capacity planner: HDFS space by the replication rules of Amazon EMR, and what compression buys.

EMR's default HDFS replication factor depends on the cluster's size: 3 for 10 or more core nodes, 2 for 4
to 9, 1 for 3 or fewer. Usable capacity is the raw capacity (nodes × disk per node) divided by it: 10
nodes of 800 GB hold 8 TB raw and 2.67 TB of data, which is not enough for 3 TB. ``plan`` says so, and
names the smallest cluster of the same nodes that fits — which, because the factor falls below 10 nodes,
may be smaller than the cluster asked about; the smallest that keeps the asked cluster's factor is given
beside it.

``measure_codecs`` compresses a sample of the user's data with each codec emrml reads and reports ratio,
speeds and splittability: a file compressed with a codec that cannot be split is read by one task, so it
bounds a job's parallelism; bzip2 can be split at its blocks, LZO where an index marks them.

Sizes are decimal (GB = 10^9 bytes, as disks are sold and as the origin's example counts) unless given
with a binary unit (GiB = 2^30).
"""

from __future__ import annotations

import bz2
import math
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

#: Unit → bytes. Decimal and binary; the bare letter is decimal (``800G`` = 800 GB).
UNITS = {
    "B": 1,
    **{f"{p}B": 1000**i for i, p in enumerate("KMGTPE", 1)},
    **{p: 1000**i for i, p in enumerate("KMGTPE", 1)},
    **{f"{p}IB": 1024**i for i, p in enumerate("KMGTPE", 1)},
}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*")
MAX_NODES = 100_000


def parse_size(text: str, what: str) -> int:
    """Bytes of a size such as ``800GB``, ``3TB``, ``1.5 TiB`` (``what`` names it in errors)."""
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise ValueError(f"{what} {text!r} is not a size (a number and a unit, e.g. 800GB or 3TB)")
    number, unit = float(match.group(1)), match.group(2).upper()
    if unit not in UNITS:
        raise ValueError(
            f"{what} {text!r}: unknown unit {match.group(2)!r} (use B, KB, MB, GB, TB, PB or KiB…PiB)"
        )
    size = number * UNITS[unit]
    if not math.isfinite(size):
        raise ValueError(f"{what} {text!r} is too large a size")
    if size < 1:
        raise ValueError(f"{what} {text!r} must be at least one byte")
    return int(size)


def replication_factor(nodes: int) -> int:
    """EMR's default ``dfs.replication`` for a cluster of ``nodes`` core nodes."""
    return 3 if nodes >= 10 else 2 if nodes >= 4 else 1


def human(size: float) -> str:
    """Bytes as a decimal size with two decimals (2.67 TB)."""
    for unit in ("PB", "TB", "GB", "MB", "KB"):
        if size >= UNITS[unit]:
            return f"{size / UNITS[unit]:.2f} {unit}"
    return f"{size:.0f} B"


@dataclass(frozen=True)
class Plan:
    nodes: int
    disk_per_node: int
    data: int
    replication: int
    raw: int
    usable: int
    fits: bool
    #: The fewest nodes of this size whose usable space holds the data (their own replication factor).
    smallest_nodes: int
    smallest_replication: int
    #: The fewest nodes that hold the data at this cluster's replication factor.
    smallest_nodes_same_replication: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _smallest(disk: int, data: int, keep: int | None = None) -> int:
    """The fewest nodes whose usable space holds ``data`` (at factor ``keep``, or each size's default)."""
    if keep is not None:
        nodes = max(1, math.ceil(data * keep / disk))
        # Keeping a factor means staying within the sizes that have it by default.
        return max(nodes, {1: 1, 2: 4, 3: 10}[keep])
    return next(n for n in range(1, MAX_NODES + 1) if n * disk // replication_factor(n) >= data)


def plan(nodes: int, disk_per_node: int, data: int) -> Plan:
    """HDFS capacity of ``nodes`` × ``disk_per_node`` bytes for ``data`` bytes (all positive)."""
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"nodes must be between 1 and {MAX_NODES:,} (got {nodes})")
    if disk_per_node < 1 or data < 1:
        raise ValueError("disk per node and data must be positive")
    if data * 3 > MAX_NODES * disk_per_node:
        raise ValueError(f"{human(data)} needs more than {MAX_NODES:,} nodes of {human(disk_per_node)}")
    factor = replication_factor(nodes)
    raw = nodes * disk_per_node
    usable = raw // factor
    smallest = _smallest(disk_per_node, data)
    return Plan(
        nodes=nodes,
        disk_per_node=disk_per_node,
        data=data,
        replication=factor,
        raw=raw,
        usable=usable,
        fits=usable >= data,
        smallest_nodes=smallest,
        smallest_replication=replication_factor(smallest),
        smallest_nodes_same_replication=_smallest(disk_per_node, data, keep=factor),
    )


def _nodes(count: int) -> str:
    return f"{count} node" if count == 1 else f"{count} nodes"


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """A plan (``Plan.to_dict()``, as PlanCapacity returns it) as the sentences the CLI and console show."""
    lines = [
        f"Cluster: {_nodes(plan['nodes'])} × {human(plan['disk_per_node'])} = {human(plan['raw'])} raw",
        f"Default HDFS replication factor for {_nodes(plan['nodes'])}: {plan['replication']}",
        f"Usable HDFS capacity: {human(plan['raw'])} / {plan['replication']} = {human(plan['usable'])}",
        f"Verdict: {'enough' if plan['fits'] else 'not enough'} space for {human(plan['data'])}",
        f"Smallest cluster of these nodes that fits: {_nodes(plan['smallest_nodes'])} (replication "
        f"{plan['smallest_replication']}); keeping replication {plan['replication']}: "
        f"{_nodes(plan['smallest_nodes_same_replication'])}",
    ]
    return lines


# --- codecs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    name: str
    extension: str
    splittable: str
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _codecs() -> list[Codec]:
    import cramjam
    import lzallright
    import zstandard

    lzo = lzallright.LZOCompressor()
    return [
        Codec("gzip", ".gz", "no", lambda b: zlib.compress(b, 6), zlib.decompress),
        Codec("bzip2", ".bz2", "yes (at its blocks)", lambda b: bz2.compress(b, 9), bz2.decompress),
        Codec("lzo", ".lzo", "yes, when indexed", lzo.compress, lzo.decompress),
        Codec("snappy", ".snappy", "no", lambda b: bytes(cramjam.snappy.compress(b)),
              lambda b: bytes(cramjam.snappy.decompress(b))),
        Codec("zstd", ".zst", "no", zstandard.ZstdCompressor(level=3).compress,
              zstandard.ZstdDecompressor().decompress),
    ]  # fmt: skip


CODECS = ("gzip", "bzip2", "lzo", "snappy", "zstd")


@dataclass(frozen=True)
class CodecMeasure:
    codec: str
    #: Uncompressed size / compressed size on the sample.
    ratio: float
    compress_mb_per_s: float
    decompress_mb_per_s: float
    splittable: str
    #: What it means for reading the data in parallel.
    parallel_reading: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Each codec runs on the sample until this long has passed (its best run counts): one run of a small
#: sample measures a first call's warm-up and the clock's resolution, not the codec.
MEASURE_SECONDS = 0.05


def _timed(action: Callable[[], bytes]) -> tuple[bytes, float]:
    """The action's result and its fastest run's seconds."""
    best = float("inf")
    spent = 0.0
    while spent < MEASURE_SECONDS:
        started = time.perf_counter()
        result = action()
        took = time.perf_counter() - started
        best, spent = min(best, took), spent + took
    return result, max(best, 1e-9)


def measure_codecs(sample: bytes, only: str | None = None) -> list[CodecMeasure]:
    """Each codec's ratio and speed on ``sample`` (the first bytes of the user's data)."""
    if not sample:
        raise ValueError("the sample is empty")
    measures = []
    megabytes = len(sample) / 1e6
    for codec in _codecs():
        if only is not None and codec.name != only:
            continue
        packed, packing = _timed(lambda c=codec: c.compress(sample))  # type: ignore[misc]
        unpacked, unpacking = _timed(lambda c=codec, p=packed: c.decompress(p))  # type: ignore[misc]
        if unpacked != sample:
            raise RuntimeError(f"{codec.name} did not give the sample back")
        parallel = "one task per file" if codec.splittable == "no" else "several tasks per file"
        measures.append(
            CodecMeasure(
                codec=codec.name,
                ratio=round(len(sample) / max(len(packed), 1), 2),
                compress_mb_per_s=round(megabytes / packing, 1),
                decompress_mb_per_s=round(megabytes / unpacking, 1),
                splittable=codec.splittable,
                parallel_reading=parallel,
            )
        )
    return measures
