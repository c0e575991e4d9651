"""The Spark engine's tests go to one pytest-xdist process (tests/spark_group.py) on any pytest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PLUGIN = Path(__file__).with_name("spark_group.py")

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


def test_the_spark_tests_run_on_one_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only xdist is loaded in the three processes: the installed plugins' imports would take most of the time
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest(PLUGIN.read_text())
    pytester.makepyfile(test_spark_engine=ENGINE_MODULE, test_other=OTHER_MODULE)
    options = ("-p", "xdist", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-v")
    result = pytester.runpytest_subprocess(*options)
    result.assert_outcomes(passed=13)
    ran = re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED (\S+)", result.stdout.str())
    assert len(ran) == 13
    grouped = {test: worker for worker, test in ran if test.endswith("@spark")}
    # the scheduler groups by this suffix: without it each test is scheduled on its own
    assert sorted(grouped) == sorted(
        [f"test_spark_engine.py::test_engine[{n}]@spark" for n in range(4)]
        + ["test_other.py::test_uses_the_engine@spark"]
    )
    assert len(set(grouped.values())) == 1
