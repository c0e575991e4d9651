"""The Spark engine's tests go to one pytest-xdist process (tests/xdist_groups.py) on any pytest, and the
tests of a module with a fixture of module scope to one process each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PLUGIN = Path(__file__).with_name("xdist_groups.py")

ENGINE_MODULE = """
import pytest

@pytest.mark.parametrize("n", range(4))
def test_engine(n):
    pass
"""

OTHER_MODULE = """
import pytest

@pytest.fixture
def spark_home(tmp_path):
    return tmp_path

def test_uses_the_engine(spark_home):
    pass

@pytest.mark.parametrize("n", range(8))
def test_other(n):
    pass
"""

BUILT_ONCE_MODULE = """
import os

import pytest

@pytest.fixture(scope="module")
def model():
    with open(os.environ["BUILDS"], "a") as builds:
        builds.write("model\\n")

@pytest.mark.parametrize("n", range(6))
def test_scores(model, n):
    pass
"""


def test_the_tests_sharing_an_expensive_fixture_run_on_one_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only xdist is loaded in the three processes: the installed plugins' imports would take most of the time
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest(PLUGIN.read_text())
    monkeypatch.setenv("BUILDS", str(pytester.path / "builds"))
    pytester.makepyfile(
        test_spark_engine=ENGINE_MODULE, test_other=OTHER_MODULE, test_built_once=BUILT_ONCE_MODULE
    )
    options = ("-p", "xdist", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-v")
    result = pytester.runpytest_subprocess(*options)
    result.assert_outcomes(passed=19)
    ran = re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED (\S+)", result.stdout.str())
    assert len(ran) == 19
    grouped = {test: worker for worker, test in ran if test.endswith("@spark")}
    # the scheduler groups by this suffix: without it each test is scheduled on its own
    assert sorted(grouped) == sorted(
        [f"test_spark_engine.py::test_engine[{n}]@spark" for n in range(4)]
        + ["test_other.py::test_uses_the_engine@spark"]
    )
    assert len(set(grouped.values())) == 1
    # the module's own group: its fixture built by one process, once
    built_once = {test: worker for worker, test in ran if test.startswith("test_built_once.py")}
    assert sorted(built_once) == [
        f"test_built_once.py::test_scores[{n}]@test_built_once.py" for n in range(6)
    ]
    assert len(set(built_once.values())) == 1
    assert (pytester.path / "builds").read_text() == "model\n"
