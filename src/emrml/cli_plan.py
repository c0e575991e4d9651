"""``emrml plan``: HDFS capacity by EMR's replication rules, and what each codec does to the user's data
(the ``PlanCapacity`` operation; core/capacity.py has the rules)."""

from __future__ import annotations

from typing import Any

import typer

from emrml.cli_common import (
    PLAN_DOES_NOT_FIT_EXIT_CODE,
    State,
    named_as_options,
    present,
    print_json,
    print_sections,
    reports_errors,
    state,
)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)


@reports_errors
def plan(
    ctx: typer.Context,
    nodes: int = typer.Option(..., "--nodes", help="Core nodes in the cluster."),
    disk_per_node: str = typer.Option(
        ..., "--disk-per-node", metavar="SIZE", help="HDFS disk per node, e.g. 800GB."
    ),
    data: str = typer.Option(..., "--data", metavar="SIZE", help="The data to store, e.g. 3TB."),
    codec: str | None = typer.Option(None, "--codec", help="Measure only this codec (gzip, bzip2, lzo…)."),
    sample: str | None = typer.Option(
        None, "--sample", metavar="FILE", help="A file of your data to measure codecs on."
    ),
) -> None:
    """Say whether data fits a cluster's HDFS, the smallest cluster that holds it, and what each codec
    does to a sample of the data.

    Exit status: 0 when the data fits, 8 when it does not (the plan is printed either way, --output json
    too), 2 for invalid input."""
    current = state(ctx)
    request = present(
        {
            "Nodes": nodes,
            "DiskPerNode": disk_per_node,
            "Data": data,
            "Codec": codec,
            "SampleLocation": current.existing_location(sample, what="--sample") if sample else None,
        }
    )
    options = {"Nodes": "--nodes", "DiskPerNode": "--disk-per-node", "Data": "--data", "Codec": "--codec"}
    with named_as_options(options | {"SampleLocation": "--sample"}):
        result = current.service().call("PlanCapacity", request)
    if current.json:
        print_json(result)
    else:
        _print_plan(current, result)
    if not result["Plan"]["fits"]:
        raise typer.Exit(PLAN_DOES_NOT_FIT_EXIT_CODE)


def _print_plan(current: State, result: dict[str, Any]) -> None:
    from rich.table import Table

    from emrml.core.capacity import plan_lines

    sections: list[Any] = ["\n".join(plan_lines(result["Plan"]))]
    if "Codecs" in result:
        table = Table(title="Codecs on the sample")
        columns = ("codec", "ratio", "compress MB/s", "decompress MB/s", "splittable", "parallel reading")
        for column in columns:
            table.add_column(column)
        for row in result["Codecs"]:
            table.add_row(
                row["codec"],
                f"{row['ratio']:.2f}",
                f"{row['compress_mb_per_s']:.1f}",
                f"{row['decompress_mb_per_s']:.1f}",
                row["splittable"],
                row["parallel_reading"],
            )
        sections.append(table)
    print_sections(current, sections)
