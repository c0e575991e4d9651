"""A pytest plugin: the Spark engine's tests run on one pytest-xdist process (``--dist loadgroup``).

The session fixture ``spark`` starts a JVM (10–30 s here) in each process that uses it; grouped, one JVM
serves them all and the other process keeps its core for the rest of the suite.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

GROUP = "spark"


def in_group(item: pytest.Item) -> bool:
    """A test of the Spark engine: its module is named for Spark, or it uses a ``spark…`` fixture."""
    return GROUP in item.path.name or any(name.startswith(GROUP) for name in item.fixturenames)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None]:
    for item in items:
        if in_group(item):
            item.add_marker(pytest.mark.xdist_group(GROUP))
    yield
    # pytest-xdist groups a test by the "@group" its worker appends to the test's id, through the attribute
    # pytest before 9.2 kept the id in (_nodeid); pytest 9.2 keeps a structured _id instead, so the suffix
    # is lost and every test is scheduled alone (pytest-xdist issue 1386). Where it was lost, it is put
    # where this pytest reads it; once pytest-xdist appends it again, this finds it and does nothing.
    if not getattr(config.option, "loadgroup", False):
        return
    suffix = f"@{GROUP}"
    for item in items:
        if in_group(item) and not item.nodeid.endswith(suffix):
            grouped = item.nodeid + suffix
            if hasattr(item, "_id"):
                item._id = type(item._id).parse(grouped)
            else:
                item._nodeid = grouped
