"""A pytest plugin: under CI (or ``EMRML_REQUIRE_ALL=1``) a skipped test fails the run.

A missing service, binary or data set must break CI rather than quietly shrink what it checks. Expected
failures (``xfail``) are left alone; every other skip is reported as a failure that carries the skip's reason.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

#: Values of ``CI`` that mean "not under CI" (some runners export ``CI=false``).
FALSE_VALUES = {"", "0", "false", "no"}


def require_all(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """True when skips must fail: ``EMRML_REQUIRE_ALL`` or ``CI`` set to a true value."""
    return any(
        environ.get(name, "").strip().lower() not in FALSE_VALUES for name in ("EMRML_REQUIRE_ALL", "CI")
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and require_all():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where every test must run (CI / EMRML_REQUIRE_ALL): {reason}"


def pytest_report_header(config: pytest.Config) -> str:
    return f"emrml: skipped tests {'fail' if require_all() else 'are allowed'} in this run"
