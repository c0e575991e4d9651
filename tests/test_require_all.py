"""The CI guard: under CI or EMRML_REQUIRE_ALL a skipped test fails the run; elsewhere it stays a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

from require_all import require_all

PLUGIN = Path(__file__).with_name("require_all.py")

SUITE = """
import pytest

def test_runs():
    assert True

def test_needs_a_service():
    pytest.skip("PostgreSQL is not reachable")

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, **environ: str) -> pytest.RunResult:
    for name in ("CI", "EMRML_REQUIRE_ALL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    pytester.makeconftest(PLUGIN.read_text())
    pytester.makepyfile(SUITE)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


def test_a_skip_fails_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, CI="true")
    result.assert_outcomes(passed=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*every test must run*PostgreSQL is not reachable*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_skip_fails_with_emrml_require_all(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(pytester, monkeypatch, EMRML_REQUIRE_ALL="1").assert_outcomes(passed=1, failed=1, xfailed=1)


def test_a_skip_stays_a_skip_outside_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, CI="false")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"CI": "0"}, False),
        ({"CI": "1"}, True),
        ({"CI": "true"}, True),
        ({"EMRML_REQUIRE_ALL": "1"}, True),
    ],
)
def test_which_environments_require_every_test(environ: dict[str, str], expected: bool) -> None:
    assert require_all(environ) is expected
