"""The capacity planner (core/capacity.py) through its three doors: the rules, ``PlanCapacity`` and
``emrml plan``."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from cli_helpers import error_line, invoke, invoke_json
from emrml.cli_common import PLAN_DOES_NOT_FIT_EXIT_CODE
from emrml.core import capacity
from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service.app import EmrML

GB, TB = 10**9, 10**12


def test_the_origins_worked_example() -> None:
    # 10 nodes of 800 GB: replication 3, 8 TB raw, 2.67 TB usable: not enough for 3 TB.
    plan = capacity.plan(10, capacity.parse_size("800GB", "disk"), capacity.parse_size("3TB", "data"))
    assert (plan.replication, plan.raw, plan.fits) == (3, 8 * TB, False)
    assert capacity.human(plan.usable) == "2.67 TB"
    # 8 nodes hold it at their own factor (2); at factor 3, 12 nodes (12 × 800 GB / 3 = 3.2 TB).
    smallest = (plan.smallest_nodes, plan.smallest_replication, plan.smallest_nodes_same_replication)
    assert smallest == (8, 2, 12)


@pytest.mark.parametrize(("nodes", "factor"), [(1, 1), (3, 1), (4, 2), (9, 2), (10, 3), (500, 3)])
def test_replication_follows_the_cluster_size(nodes: int, factor: int) -> None:
    assert capacity.replication_factor(nodes) == factor
    assert capacity.plan(nodes, 100 * GB, GB).usable == nodes * 100 * GB // factor


def test_the_smallest_cluster_is_the_first_size_that_fits() -> None:
    for data in (GB, 250 * GB, 3 * TB, 41 * TB):
        plan = capacity.plan(10, 800 * GB, data)
        fits = [n for n in range(1, 200) if capacity.plan(n, 800 * GB, data).fits]
        assert plan.smallest_nodes == fits[0]
        kept = [n for n in fits if capacity.replication_factor(n) == 3]
        assert plan.smallest_nodes_same_replication == kept[0]


@pytest.mark.parametrize(
    ("text", "size"),
    [("800GB", 800 * GB), ("3TB", 3 * TB), ("1.5 TiB", int(1.5 * 2**40)), ("800g", 800 * GB)],
)
def test_sizes_take_decimal_and_binary_units(text: str, size: int) -> None:
    assert capacity.parse_size(text, "disk") == size


@pytest.mark.parametrize(
    ("text", "message"),
    [("-5GB", "is not a size"), ("0TB", "must be at least one byte"), ("800XB", "unknown unit 'XB'"),
     ("", "not a size"), ("GB", "not a size"), ("1e400TB", "too large"), ("1e300TB", "too large")],
)  # fmt: skip
def test_bad_sizes_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        capacity.parse_size(text, "DiskPerNode")


def test_codecs_are_measured_on_the_sample_with_their_splittability() -> None:
    sample = b"".join(b"%d,married,university.degree,no,%d\n" % (i, i % 97) for i in range(50_000))
    measures = {m.codec: m for m in capacity.measure_codecs(sample)}
    assert set(measures) == {"gzip", "bzip2", "lzo", "snappy", "zstd"}
    assert measures["gzip"].ratio == pytest.approx(len(sample) / len(gzip.compress(sample, 6)), rel=0.05)
    assert all(m.ratio > 1.5 and m.compress_mb_per_s > 0 for m in measures.values())
    assert measures["bzip2"].splittable.startswith("yes") and measures["gzip"].splittable == "no"
    assert measures["snappy"].parallel_reading == "one task per file"
    assert [m.codec for m in capacity.measure_codecs(sample, "zstd")] == ["zstd"]


def test_a_codec_is_timed_by_its_best_of_several_runs_on_a_small_sample() -> None:
    calls = []
    result, seconds = capacity._timed(lambda: calls.append(1) or b"packed")
    assert result == b"packed" and len(calls) > 1 and seconds < capacity.MEASURE_SECONDS


def test_plan_capacity_through_the_api(sqlite_app: EmrML, tmp_path: Path) -> None:
    sample = sqlite_app.settings.home / "data" / "sample.csv.gz"
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_bytes(gzip.compress(b"a,b\n" + b"1,hello world\n" * 20_000))
    answer = sqlite_app.call(
        "PlanCapacity", {"Nodes": 10, "DiskPerNode": "800GB", "Data": "3TB", "SampleLocation": str(sample)}
    )
    assert answer["Plan"]["fits"] is False and answer["Plan"]["usable"] == 8 * TB // 3
    assert {row["codec"] for row in answer["Codecs"]} == set(capacity.CODECS)
    assert all(row["ratio"] > 10 for row in answer["Codecs"])  # measured on the decompressed rows
    for request, member in (
        ({"Nodes": 0, "DiskPerNode": "800GB", "Data": "3TB"}, "Nodes"),
        ({"Nodes": "10", "DiskPerNode": "800GB", "Data": "3TB"}, "Nodes"),
        # Past the planner's bound: the message names the member, as for every other bad value.
        (
            {"Nodes": 10**9, "DiskPerNode": "1B", "Data": "1GB"},
            r"^Nodes must be at most 100,000 \(got 1,000,000,000\)$",
        ),
        ({"Nodes": 10, "DiskPerNode": "800 furlongs", "Data": "3TB"}, "DiskPerNode"),
        ({"Nodes": 10, "DiskPerNode": "800GB"}, "Data is required"),
        ({"Nodes": 10, "DiskPerNode": "800GB", "Data": "3TB", "Codec": "rar"}, "Codec 'rar'"),
    ):
        with pytest.raises(InvalidInputException, match=member):
            sqlite_app.call("PlanCapacity", request)
    # The sample is read through the same door as every location: a user without storage is refused.
    sqlite_app.access.create_user("dana")
    dana = f"arn:aws:iam::{sqlite_app.settings.account_id}:user/dana"
    request = {"Nodes": 4, "DiskPerNode": "1TB", "Data": "1TB"}
    assert sqlite_app.call("PlanCapacity", request, dana, remote=True)["Plan"]["fits"] is True
    with pytest.raises(AccessDeniedException, match="storage:Read"):
        sqlite_app.call("PlanCapacity", {**request, "SampleLocation": str(sample)}, dana, remote=True)


def test_emrml_plan(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    # "Not enough space" is an exit status a script can test, with the plan printed as when it fits.
    text = invoke("--home", home, "plan", "--nodes", "10", "--disk-per-node", "800GB", "--data", "3TB",
                  columns=200, code=PLAN_DOES_NOT_FIT_EXIT_CODE).stdout  # fmt: skip
    assert "Default HDFS replication factor for 10 nodes: 3" in text
    assert "Usable HDFS capacity: 8.00 TB / 3 = 2.67 TB" in text and "not enough space for 3.00 TB" in text
    data = tmp_path / "rows.csv"
    data.write_bytes(b"x,y\n" + b"1,2\n" * 10_000)
    answer = invoke_json("--home", home, "plan", "--nodes", "3", "--disk-per-node", "2TB", "--data", "1TB",
                         "--sample", str(data), "--codec", "bzip2")  # fmt: skip
    too_much = invoke_json("--home", home, "plan", "--nodes", "3", "--disk-per-node", "1TB", "--data", "5TB",
                           code=PLAN_DOES_NOT_FIT_EXIT_CODE)  # fmt: skip
    assert too_much["Plan"]["fits"] is False
    assert answer["Plan"]["fits"] is True and [row["codec"] for row in answer["Codecs"]] == ["bzip2"]
    small = invoke("--home", home, "plan", "--nodes", "3", "--disk-per-node", "2TB", "--data", "1TB",
                   columns=200).stdout  # fmt: skip
    assert "Smallest cluster of these nodes that fits: 1 node (replication 1)" in small
    arguments = ("--nodes", "-1", "--disk-per-node", "1TB", "--data", "1TB")
    refused = invoke("--home", home, "plan", *arguments, code=2)
    # The error starts with the option the user typed, then the API member it became.
    assert (
        error_line(refused)
        == "error: InvalidInputException: --nodes: Nodes must be a positive integer (got -1)"
    )
    unit = invoke("--home", home, "plan", "--nodes", "3", "--disk-per-node", "800XB", "--data", "1TB", code=2)
    assert error_line(unit).startswith("error: InvalidInputException: --disk-per-node: DiskPerNode '800XB'")
