"""Console logins against a real LDAP directory: Debian's slapd, started here on a loopback port with a
throwaway directory, and emrml's login page through Starlette's test client."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import log_in, login_token

from emrml.config import Settings
from emrml.errors import InvalidInputException
from emrml.service.app import EmrML
from emrml.service.groups import groups_of

SUFFIX = "dc=example,dc=org"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "directory-secret"
SLAPD = Path("/usr/sbin/slapd")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not SLAPD.exists():
        pytest.skip("Debian's slapd is not installed; .ci/run installs it")
    import ldap3

    folder = tmp_path_factory.mktemp("slapd")
    (folder / "db").mkdir()
    includes = "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in SCHEMAS)
    (folder / "slapd.conf").write_text(
        f"{includes}modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {folder}/slapd.pid\n"
        f'database mdb\nmaxsize 10485760\nsuffix "{SUFFIX}"\nrootdn "{ADMIN_DN}"\nrootpw {ADMIN_PASSWORD}\n'
        f"directory {folder}/db\n"
    )
    port = _free_port()
    url = f"ldap://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(SLAPD), "-h", f"{url}/", "-f", str(folder / "slapd.conf"), "-d", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "slapd did not start"
                time.sleep(0.2)
        connection = ldap3.Connection(url, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
        connection.add(SUFFIX, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
        for unit in ("people", "groups"):
            connection.add(f"ou={unit},{SUFFIX}", ["organizationalUnit"], {"ou": unit})
        for user, password in (("alice", "alice-secret-1"), ("bob", "bob-secret-22")):
            connection.add(
                f"uid={user},ou=people,{SUFFIX}", ["inetOrgPerson"],
                {"cn": user, "sn": user, "uid": user, "userPassword": password},
            )  # fmt: skip
        connection.add(
            f"cn=ml-admins,ou=groups,{SUFFIX}", ["groupOfNames"], {"member": f"uid=alice,ou=people,{SUFFIX}"}
        )
        assert connection.result["description"] == "success", connection.result
        connection.unbind()
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def ldap_settings(home: Path, url: str, **overrides: Any) -> Settings:
    return Settings.load(environ={}, home=home, **{
        "ldap_url": url, "ldap_user_dn": f"uid={{user}},ou=people,{SUFFIX}",
        "ldap_group_base": f"ou=groups,{SUFFIX}",
        "ldap_group_map": {f"cn=ML-Admins,ou=groups,{SUFFIX}": "admins"},
        **overrides,
    })  # fmt: skip


@pytest.fixture
def console(directory: str, tmp_path: Path) -> Iterator[tuple[Any, EmrML]]:
    from starlette.testclient import TestClient

    from emrml.web.server import create_app

    service = EmrML(ldap_settings(tmp_path / "home", directory))
    with TestClient(create_app(service), follow_redirects=False) as client:
        yield client, service
    service.close()


def groups(service: EmrML, user: str) -> list[str]:
    with service.sessions() as session:
        return groups_of(session, user)


def test_a_directory_user_logs_in_and_gets_the_mapped_groups(
    console: tuple[Any, EmrML], directory: str
) -> None:
    client, service = console
    service.access.create_user("root-admin", ("admins",))  # so alice is not the last admin (who stays one)
    assert log_in(client, "alice", "alice-secret-1").status_code == 303
    assert groups(service, "alice") == ["admins"]  # created at first login, in the mapped group
    assert client.get("/console/users").status_code == 200  # an admin's page
    # In the directory, alice leaves ml-admins: her next login takes the group away.
    import ldap3

    connection = ldap3.Connection(directory, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
    connection.modify(
        f"cn=ml-admins,ou=groups,{SUFFIX}",
        {"member": [(ldap3.MODIFY_REPLACE, [f"uid=carol,ou=people,{SUFFIX}"])]},
    )
    connection.unbind()
    client.post("/console/logout", data={"csrf_token": login_token(client.get("/console/").text)})
    assert log_in(client, "alice", "alice-secret-1").status_code == 303
    assert groups(service, "alice") == []  # the directory decides admins; it grants nothing else
    assert client.get("/console/users").status_code == 403


def test_a_directory_user_whose_name_a_deleted_users_objects_hold_is_refused_without_a_fault(
    console: tuple[Any, EmrML],
) -> None:
    from sqlalchemy import update

    from emrml.service.rows import DataSource

    client, service = console
    service.access.create_user("bob")  # bob, as the directory knows him, logged in and created a datasource
    attributes = [{"attributeName": "a", "attributeType": "NUMERIC"}]
    schema = json.dumps({"version": "1.0", "dataFormat": "CSV", "attributes": attributes})
    spec = {"DataLocationS3": "/srv/bob.csv", "DataSchema": schema}
    service.call("CreateDataSourceFromS3", {"DataSourceId": "ds-bob", "DataSpec": spec})
    with service.sessions() as session, session.begin():
        bobs = update(DataSource).where(DataSource.id == "ds-bob")
        session.execute(bobs.values(created_by=service.access.user_arn("bob")))
    service.access.delete_user("bob")
    refused = log_in(client, "bob", "bob-secret-22")
    assert refused.status_code == 401 and "ask an administrator" in refused.text
    assert "bob" not in [user.name for user in service.access.list_users()]
    service.access.create_user("keeper")
    service.access.reassign_objects("bob", "keeper")
    assert log_in(client, "bob", "bob-secret-22").status_code == 303


def test_wrong_passwords_unknown_users_and_injections_are_refused(console: tuple[Any, EmrML]) -> None:
    client, service = console
    for user, password in (("bob", "not-bobs-password"), ("nobody", "whatever-1"), ("*)(uid=*", "x")):
        refused = log_in(client, user, password)
        assert refused.status_code == 401 and "Wrong user name or password." in refused.text
    names = [user.name for user in service.access.list_users()]
    assert "nobody" not in names and "*)(uid=*" not in names and "bob" not in names


def test_failed_directory_logins_are_throttled_like_local_ones(console: tuple[Any, EmrML]) -> None:
    client, _ = console
    for _ in range(5):
        assert log_in(client, "bob", "wrong-password-1").status_code == 401
    refused = log_in(client, "bob", "bob-secret-22")
    assert refused.status_code == 429 and "Too many failed logins" in refused.text


def test_a_user_found_by_search_lands_in_the_default_group(directory: str, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from emrml.web.server import create_app

    settings = dataclasses.replace(
        ldap_settings(tmp_path / "home", directory), ldap_user_dn="", ldap_search_base=f"ou=people,{SUFFIX}",
        ldap_bind_dn=ADMIN_DN, ldap_bind_password=ADMIN_PASSWORD,
    )  # fmt: skip
    service = EmrML(settings)
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            assert log_in(client, "bob", "bob-secret-22").status_code == 303
            assert client.get("/console/users").status_code == 403  # a plain user
        assert groups(service, "bob") == ["users"]
    finally:
        service.close()


def test_an_unreachable_directory_is_said_so_on_the_login_page(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from emrml.web.server import create_app

    service = EmrML(ldap_settings(tmp_path / "home", f"ldap://127.0.0.1:{_free_port()}", ldap_timeout=2))
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            refused = log_in(client, "alice", "alice-secret-1")
        assert refused.status_code == 401 and "The user directory (LDAP) cannot be reached" in refused.text
    finally:
        service.close()


def test_a_directory_user_is_sent_to_the_directory_to_change_the_password(
    console: tuple[Any, EmrML],
) -> None:
    client, _ = console
    assert log_in(client, "alice", "alice-secret-1").status_code == 303
    page = client.get("/console/account")
    assert "change it there" in page.text and 'id="current"' not in page.text
    assert client.get("/console/account?format=json").json()["account"]["PasswordFrom"] == "directory"
    for _ in range(6):  # more than the throttle allows: none of them is a failed login
        refused = client.post(
            "/console/account",
            data={"csrf_token": login_token(page.text), "current": "x", "new": "y" * 8, "again": "y" * 8},
        )
        assert refused.status_code == 400 and "directory&#39;s (LDAP): change it there" in refused.text
    client.post("/console/logout", data={"csrf_token": login_token(page.text)})
    assert log_in(client, "alice", "alice-secret-1").status_code == 303


def test_settings_that_would_find_one_entry_for_every_name_are_refused(tmp_path: Path) -> None:
    """A user DN or search filter without {user} bound every login name to the same entry: whoever knew
    that entry's password logged in as any user name the console had no local password for."""
    for overrides, message in [
        ({"ldap_user_dn": f"uid=shared,ou=people,{SUFFIX}"}, "setting ldap_user_dn must contain {user}"),
        (
            {"ldap_user_dn": "", "ldap_search_base": SUFFIX, "ldap_search_filter": "(uid=shared)"},
            "setting ldap_search_filter must contain {user}",
        ),
        ({"ldap_user_dn": ""}, "setting ldap_url needs ldap_user_dn (e.g. uid={user},"),
    ]:
        with pytest.raises(InvalidInputException) as refused:
            ldap_settings(tmp_path, "ldap://127.0.0.1:389", **overrides)
        assert refused.value.message.startswith(message)


def test_a_mapping_to_a_missing_group_is_named_to_the_user_and_the_administrator(
    directory: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A login whose directory group is mapped to an emrml group that does not exist was refused with "Your
    account cannot be set up yet", the log saying "group 'analysts' does not exist" without the mapping."""
    import ldap3
    from starlette.testclient import TestClient

    from emrml.web.server import create_app

    connection = ldap3.Connection(directory, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
    # A group of the test's own: whether alice is still in ml-admins depends on which tests ran before on
    # this process (the directory lives as long as the module's tests on it).
    analysts = f"cn=ml-analysts,ou=groups,{SUFFIX}"
    connection.add(analysts, ["groupOfNames"], {"member": f"uid=alice,ou=people,{SUFFIX}"})
    mapping = {f"cn=ML-Analysts,ou=groups,{SUFFIX}": "analysts"}
    service = EmrML(ldap_settings(tmp_path / "home", directory, ldap_group_map=mapping))
    try:
        with TestClient(create_app(service), follow_redirects=False) as client:
            with caplog.at_level("ERROR", logger="emrml.service.logins"):
                refused = log_in(client, "alice", "alice-secret-1")
            assert refused.status_code == 401
            assert "mapped to emrml group(s) &#39;analysts&#39;, which do not exist" in refused.text
            assert "alice" not in [user.name for user in service.access.list_users()]
            logins = [r.getMessage() for r in caplog.records if r.name == "emrml.service.logins"]
            assert logins == [
                "LDAP login of 'alice' refused: setting ldap_group_map names emrml group(s) that do not "
                f"exist (directory group 'cn=ML-Analysts,ou=groups,{SUFFIX}' is mapped to emrml group "
                "'analysts'): create the group(s) (console Groups page, or emrml groups create NAME) or "
                "correct the mapping"
            ]
            # A user already set up keeps the groups it had while the mapping is broken.
            service.access.create_user("alice", ("users",))
            assert log_in(client, "alice", "alice-secret-1").status_code == 401
            assert groups(service, "alice") == ["users"]
            service.access.create_group("analysts", "")
            assert log_in(client, "alice", "alice-secret-1").status_code == 303
        assert groups(service, "alice") == ["analysts", "users"]
    finally:
        service.close()
        connection.delete(analysts)
        connection.unbind()


def test_a_mapping_to_a_missing_group_is_logged_when_the_console_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from emrml.console.app import Console

    mapping = {
        f"cn=analysts,ou=groups,{SUFFIX}": "data-readers",
        f"cn=ml-admins,ou=groups,{SUFFIX}": "admins",
    }
    service = EmrML(ldap_settings(tmp_path / "home", "ldap://127.0.0.1:9", ldap_group_map=mapping))
    try:
        with caplog.at_level("WARNING", logger="emrml.console.app"):
            Console(service)
    finally:
        service.close()
    assert [record.getMessage() for record in caplog.records if record.name == "emrml.console.app"] == [
        f"setting ldap_group_map: directory group 'cn=analysts,ou=groups,{SUFFIX}' is mapped to emrml group "
        "'data-readers', which does not exist (logins through it are refused until it does)"
    ]
