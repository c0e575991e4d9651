"""Failed console logins are counted in the metastore (service/logins.py): every process serving the
console on it counts together, and a restart forgets nothing, on every supported metastore."""

from __future__ import annotations

import pytest

from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.service.logins import MAX_FAILURES, LoginRefused, Logins, LoginThrottle


def test_failures_leave_the_count_as_they_leave_the_window(settings: Settings) -> None:
    app = EmrML(settings)
    try:
        moment = [1000.0]
        throttle = LoginThrottle(app.sessions, {"account": 3}, window=60, clock=lambda: moment[0])
        for _ in range(3):
            assert throttle.retry_after(("account", "a")) is None
            throttle.failed(("account", "a"))
            moment[0] += 1
        assert throttle.retry_after(("account", "a")) == pytest.approx(57)
        assert throttle.retry_after(("account", "b")) is None
        moment[0] = 1061  # the first failure has left the window
        assert throttle.retry_after(("account", "a")) is None
        throttle.succeeded(("account", "a"))
        moment[0] = 1000
        assert throttle.retry_after(("account", "a")) is None
    finally:
        app.close()


def test_two_processes_on_one_metastore_count_failed_logins_together(settings: Settings) -> None:
    first, second = EmrML(settings), EmrML(settings)  # two servers, or a server before and after a restart
    try:
        first.access.create_user("erin")
        Logins(first.sessions).set_password("erin", "erin-password-1")
        servers = (Logins(first.sessions), Logins(second.sessions))
        for attempt in range(MAX_FAILURES):
            with pytest.raises(LoginRefused) as wrong:
                servers[attempt % 2].log_in("erin", f"guess-{attempt}", "10.0.0.7")
            assert wrong.value.retry_after is None
        # Each server saw about half of the guesses, and both refuse the next try, even the right password.
        for logins in servers:
            with pytest.raises(LoginRefused) as throttled:
                logins.log_in("erin", "erin-password-1", "10.0.0.7")
            assert throttled.value.retry_after and "Too many failed logins" in throttled.value.message
        # The lock is of the account at that address, wherever it is asked about.
        assert servers[0].log_in("erin", "erin-password-1", "10.0.0.8").token
        assert servers[1].log_in("erin", "erin-password-1", "10.0.0.9").token
    finally:
        second.close()
        first.close()


def test_a_user_name_with_a_trailing_blank_is_not_that_user(settings: Settings) -> None:
    """MariaDB's utf8mb4_bin compared "bob " equal to "bob": a console login as "bob " (the console passes
    the name as typed) opened a session with bob's password, its failures counted apart from bob's (a way
    around the account's throttle), and "bob " had bob's groups and statements."""
    app = EmrML(settings)
    try:
        app.access.create_user("bob")
        logins = Logins(app.sessions)
        logins.set_password("bob", "bob-password-1")
        for name in ("bob ", "bob  "):
            assert not logins.has_password(name)
            assert not app.access.enabled(name)
            with pytest.raises(LoginRefused, match="Wrong user name or password"):
                logins.log_in(name, "bob-password-1", "10.0.0.7")
        assert app.access.enabled("bob")
        assert logins.log_in("bob", "bob-password-1", "10.0.0.7").token
    finally:
        app.close()


def test_a_user_name_no_user_can_have_is_a_wrong_login(settings: Settings) -> None:
    """The console's login form sends the name as typed: one holding a NUL was a 500 on PostgreSQL (its text
    holds no NUL), where it is a wrong login, counted as one."""
    app = EmrML(settings)
    try:
        app.access.create_user("bob")
        logins = Logins(app.sessions)
        logins.set_password("bob", "bob-password-1")
        for _ in range(5):
            with pytest.raises(LoginRefused, match="Wrong user name or password"):
                logins.log_in("bob\x00", "bob-password-1", "10.0.0.8")
        with pytest.raises(LoginRefused, match="Too many failed logins"):
            logins.log_in("bob\x00", "bob-password-1", "10.0.0.8")
        assert logins.log_in("bob", "bob-password-1", "10.0.0.9").token
    finally:
        app.close()
