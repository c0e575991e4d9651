"""A pytest plugin: the tests that share an expensive fixture run on one pytest-xdist process
(``--dist loadgroup``), which builds it once.

- The Spark engine's tests (group ``spark``): the session fixture ``spark`` starts a JVM (10–30 s here) in
  each process that uses it; grouped, one JVM serves them all and the other process keeps its core for the
  rest of the suite.
- The tests of a module that use a fixture of module or class scope (a group per module, named by its
  path): a trained model, a server, a browser, built by each process that runs one of the module's tests
  (1–10 s each here). Found by their fixtures' scope, so a module that gains such a fixture is grouped
  without being listed.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

SPARK = "spark"
#: The scopes of fixtures built again by each process that runs a test using one (session fixtures are
#: built once by each process whatever the grouping; package ones span modules).
_MODULE_SCOPES = ("module", "class")


def group_of(item: pytest.Item) -> str | None:
    """The item's group: ``spark`` for a test of the Spark engine (its module is named for Spark, or it
    uses a ``spark…`` fixture), its module's path for one using a module or class fixture, else None."""
    if SPARK in item.path.name or any(name.startswith(SPARK) for name in item.fixturenames):
        return SPARK
    fixtures = getattr(item, "_fixtureinfo", None)  # a doctest, or another plugin's item, may have none
    if fixtures is None:
        return None
    if any(definitions[-1].scope in _MODULE_SCOPES for definitions in fixtures.name2fixturedefs.values()):
        return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Generator[None]:
    groups = {item: group for item in items if (group := group_of(item)) is not None}
    for item, group in groups.items():
        item.add_marker(pytest.mark.xdist_group(group))
    yield
    # pytest-xdist groups a test by the "@group" its worker appends to the test's id, through the attribute
    # pytest before 9.2 kept the id in (_nodeid); pytest 9.2 keeps a structured _id instead, so the suffix
    # is lost and every test is scheduled alone (pytest-xdist issue 1386). Where it was lost, it is put
    # where this pytest reads it; once pytest-xdist appends it again, this finds it and does nothing.
    if not getattr(config.option, "loadgroup", False):
        return
    for item, group in groups.items():
        if not item.nodeid.endswith(f"@{group}"):
            grouped = f"{item.nodeid}@{group}"
            if hasattr(item, "_id"):
                item._id = type(item._id).parse(grouped)
            else:
                item._nodeid = grouped
