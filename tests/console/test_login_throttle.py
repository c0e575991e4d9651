"""Failed logins are throttled per account at one client address, with larger ceilings per address and per
account (service/logins.py): one person's mistakes lock neither the colleagues behind the same address nor
themselves elsewhere, while guessing across accounts from one address, or at one account from many
addresses, is still stopped."""

from __future__ import annotations

import pytest
from console_helpers import BOB_PASSWORD, Installation, log_in
from starlette.testclient import TestClient

from emrml.service.logins import MAX_FAILURES, LoginRefused, Logins, LoginThrottle
from emrml.web.server import create_app


def test_one_users_failures_do_not_lock_another_user_at_the_same_address(installation: Installation) -> None:
    with TestClient(create_app(installation.service), follow_redirects=False) as client:
        for _ in range(MAX_FAILURES):
            assert log_in(client, "bob", "not the password").status_code == 401
        assert log_in(client, "bob", BOB_PASSWORD).status_code == 429
        # A colleague behind the same address (the test client's) logs in.
        assert log_in(client, "admin", installation.admin_password).status_code == 303


def _logins(installation: Installation, address: int, account: int) -> Logins:
    limits = {"account at address": 2, "address": address, "account": account}
    sessions = installation.service.sessions
    return Logins(sessions, throttle=LoginThrottle(sessions, limits))


def test_guessing_across_accounts_from_one_address_is_stopped(installation: Installation) -> None:
    logins = _logins(installation, address=6, account=100)
    for name in ("alice", "carl", "dora"):
        for guess in range(2):
            with pytest.raises(LoginRefused) as wrong:
                logins.log_in(name, f"guess-{guess}", "10.0.0.9")
            assert wrong.value.retry_after is None
    # The address has reached its ceiling: even a right password of an account not tried yet waits there.
    with pytest.raises(LoginRefused) as throttled:
        logins.log_in("bob", BOB_PASSWORD, "10.0.0.9")
    assert throttled.value.retry_after and "Too many failed logins" in throttled.value.message
    assert logins.log_in("bob", BOB_PASSWORD, "10.0.0.10").token


def test_guessing_one_account_from_many_addresses_is_stopped(installation: Installation) -> None:
    logins = _logins(installation, address=100, account=4)
    for address in range(4):
        with pytest.raises(LoginRefused):
            logins.log_in("bob", "a guess", f"10.0.1.{address}")
    with pytest.raises(LoginRefused) as throttled:
        logins.log_in("bob", BOB_PASSWORD, "10.0.1.200")
    assert throttled.value.retry_after
    assert logins.log_in("admin", installation.admin_password, "10.0.1.200").token
