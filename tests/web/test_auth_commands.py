"""The users, keys and groups commands, and serve's first start: the admin key file it writes, its help,
its warning without auth, and a served process that logs signed requests and stops on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import boto3
import pytest
import typer
from typer.testing import CliRunner
from web_helpers import SERVE_SCRIPT

from emrml.cli_server import register
from emrml.config import Settings
from emrml.service.app import EmrML
from emrml.web import access_log, server
from emrml.web.server import reserve_socket


def _root_app() -> typer.Typer:
    """A root app with the main command line's --home and --output options, plus ours."""
    app = typer.Typer()

    @app.callback()
    def main(
        home: Path = typer.Option(..., "--home"),
        output: str = typer.Option("table", "--output"),
    ) -> None:
        """emrml"""

    register(app)
    return app


def test_users_and_keys_commands(tmp_path: Path) -> None:
    app, runner, home = _root_app(), CliRunner(), ["--home", str(tmp_path)]
    created = runner.invoke(app, [*home, "users", "create", "dana"])
    assert created.exit_code == 0 and "arn:aws:iam::000000000000:user/dana" in created.output
    duplicate = runner.invoke(app, [*home, "users", "create", "dana"])
    assert duplicate.exit_code == 2 and "InvalidInputException" in duplicate.output
    key = json.loads(runner.invoke(app, [*home, "--output", "json", "keys", "create", "dana"]).output)
    assert key["UserName"] == "dana" and len(key["SecretAccessKey"]) == 40
    listing = runner.invoke(app, [*home, "--output", "json", "keys", "list"]).output
    assert key["AccessKeyId"] in listing and key["SecretAccessKey"] not in listing
    users = json.loads(runner.invoke(app, [*home, "--output", "json", "users", "list"]).output)["Results"]
    assert users == [
        {
            "UserName": "dana",
            "Arn": "arn:aws:iam::000000000000:user/dana",
            "CreatedAt": users[0]["CreatedAt"],
            "AccessKeys": 1,
            "Enabled": True,
            "Groups": ["users"],
        }
    ]
    assert runner.invoke(app, [*home, "keys", "delete", "EMRLNOSUCHKEY0000000"]).exit_code == 3
    (listed,) = json.loads(runner.invoke(app, [*home, "--output", "json", "keys", "list"]).output)["Results"]
    key_id = listed["AccessKeyId"]
    assert listed["Status"] == "Active"
    assert runner.invoke(app, [*home, "keys", "deactivate", key_id]).exit_code == 0
    (listed,) = json.loads(runner.invoke(app, [*home, "--output", "json", "keys", "list"]).output)["Results"]
    assert listed["Status"] == "Inactive"
    assert "Inactive" in runner.invoke(app, [*home, "keys", "list"]).output
    assert runner.invoke(app, [*home, "keys", "activate", key_id]).exit_code == 0
    assert runner.invoke(app, [*home, "keys", "deactivate", "EMRLNOSUCHKEY0000000"]).exit_code == 3
    deleted = runner.invoke(app, [*home, "users", "delete", "dana"])
    assert deleted.exit_code == 0 and "1 access key" in deleted.output
    assert "No users." in runner.invoke(app, [*home, "users", "list"]).output


def test_groups_commands_grant_and_take_permissions(tmp_path: Path) -> None:
    app, runner, home = _root_app(), CliRunner(), ["--home", str(tmp_path)]

    def ok(*args: str) -> str:
        result = runner.invoke(app, [*home, *args])
        assert result.exit_code == 0, result.output
        return result.output

    ok("users", "create", "erin", "--group", "viewers")
    ok("groups", "create", "data", "--description", "the shared folder")
    ok("groups", "allow", "data", "-a", "storage:Read", "-r", "/srv/shared/*")
    ok("groups", "deny", "data", "-a", "Delete*", "--owner", "self")
    ok("users", "add-to-group", "erin", "data")
    ok("users", "disable", "erin")
    shown = json.loads(ok("--output", "json", "groups", "show", "data"))
    assert shown["Members"] == ["erin"]
    assert [(s["Sid"], s["Effect"], s["Action"], s["Resource"], s["Owner"]) for s in shown["Statements"]] == [
        (1, "Allow", ["storage:Read"], ["/srv/shared/*"], "any"),
        (2, "Deny", ["machinelearning:Delete*"], ["*"], "self"),
    ]
    (erin,) = json.loads(ok("--output", "json", "users", "list"))["Results"]
    assert erin["Groups"] == ["data", "viewers"] and erin["Enabled"] is False
    # A description is the user's text, not rich markup: "[/red]" failed the whole list.
    ok("groups", "create", "marked", "--description", "team [/red] [b]x")
    assert "team [/red] [b]x" in ok("groups", "list")
    ok("groups", "delete", "marked")
    typo = runner.invoke(app, [*home, "groups", "allow", "data", "-a", "Descrbe*"])
    assert typo.exit_code == 2 and "matches no action" in typo.output
    builtin = runner.invoke(app, [*home, "groups", "delete", "viewers"])
    assert builtin.exit_code == 2 and "built-in" in builtin.output
    # A statement file with its own Sid is refused: the group numbers statements, and removes by that number.
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"Sid": "s1", "Effect": "Allow", "Action": "Predict", "Resource": "*"}))
    with_sid = runner.invoke(app, [*home, "groups", "add-statement", "data", str(named)])
    assert with_sid.exit_code == 2 and "takes no Sid" in with_sid.output and "groups show" in with_sid.output
    # A file in another encoding was an internal error; a member given twice took its last value silently.
    for content, says in [
        ('{"Effect": "Allow", "Action": "Predict"}'.encode("utf-16"), "is not UTF-8 text (byte 1 "),
        (b'{"Effect": "Deny", "Action": "Predict", "Effect": "Allow"}', "names the member 'Effect' twice"),
    ]:
        named.write_bytes(content)
        odd = runner.invoke(app, [*home, "groups", "add-statement", "data", str(named)])
        assert odd.exit_code == 2 and odd.output == f"error: InvalidInputException: {named} {says}" + (
            "cannot be read): save it as UTF-8 JSON\n" if "UTF-8" in says else "\n"
        )
    not_a_number = runner.invoke(app, [*home, "groups", "remove-statement", "data", "s1"])
    assert not_a_number.exit_code == 2 and not_a_number.output.count("\n") == 1
    assert not_a_number.output.startswith("error: InvalidInputException: SID: ")
    assert "'s1' is not a whole number" in not_a_number.output and "groups show data" in not_a_number.output
    assert len(json.loads(ok("--output", "json", "groups", "show", "data"))["Statements"]) == 2
    ok("groups", "remove-statement", "data", "2")
    ok("users", "remove-from-group", "erin", "data")
    ok("groups", "delete", "data")
    assert "data" not in ok("groups", "list")
    ok("users", "create", "root-admin", "--group", "admins")
    last = runner.invoke(app, [*home, "users", "delete", "root-admin"])
    assert last.exit_code == 2 and "last enabled member of admins" in last.output


def test_a_deleted_users_name_is_given_out_again_once_its_objects_are_reassigned(tmp_path: Path) -> None:
    app, runner, home = _root_app(), CliRunner(), ["--home", str(tmp_path)]
    for name in ("fay", "keeper"):  # keeper: the admin left when fay goes
        assert runner.invoke(app, [*home, "users", "create", name, "--group", "admins"]).exit_code == 0
    service = EmrML(Settings.load(environ={}, home=tmp_path))
    try:
        schema = {
            "version": "1.0",
            "dataFormat": "CSV",
            "attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}],
        }
        spec = {"DataLocationS3": "/srv/fay.csv", "DataSchema": json.dumps(schema)}
        fay = service.access.user_arn("fay")
        service.call("CreateDataSourceFromS3", {"DataSourceId": "ds-fay", "DataSpec": spec}, caller=fay)
        assert runner.invoke(app, [*home, "users", "delete", "fay"]).exit_code == 0
        refused = runner.invoke(app, [*home, "users", "create", "fay"])
        assert refused.exit_code == 2 and "1 object(s) (1 DataSource)" in refused.output
        assert "emrml users reassign-objects fay OTHER_USER" in refused.output
        assert runner.invoke(app, [*home, "users", "create", "gus"]).exit_code == 0
        moved = runner.invoke(app, [*home, "users", "reassign-objects", "fay", "gus"])
        assert moved.exit_code == 0 and "Gave 1 object(s) of fay to gus (1 DataSource)" in moved.output, (
            moved.output
        )
        gus = service.access.user_arn("gus")
        assert service.call("GetDataSource", {"DataSourceId": "ds-fay"})["CreatedByIamUser"] == gus
        assert runner.invoke(app, [*home, "users", "create", "fay"]).exit_code == 0
    finally:
        service.close()


def test_serve_prints_first_start_help_once_and_warns_without_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[str, int]] = []
    monkeypatch.setattr(server, "serve", lambda app, host, port, **_: served.append((host, port)))
    # The real serve logs to stderr; here stderr is the runner's capture, closed after each invoke.
    monkeypatch.setattr(access_log, "configure_logging", lambda: None)
    app, runner = _root_app(), CliRunner()
    first = runner.invoke(app, ["--home", str(tmp_path), "serve", "--port", "8123", "--workers-jobs", "0"])
    assert first.exit_code == 0, first.output
    credentials_file = tmp_path / "admin-credentials.json"
    credentials = json.loads(credentials_file.read_text())
    assert str(credentials_file) in first.output and credentials["aws_secret_access_key"] not in first.output
    assert (
        "aws machinelearning describe-data-sources --profile emrml --endpoint-url http://127.0.0.1:8123"
        in (first.output)
    )
    assert 'boto3.client("machinelearning", endpoint_url="http://127.0.0.1:8123"' in first.output
    again = runner.invoke(app, ["--home", str(tmp_path), "serve", "--port", "8123", "--workers-jobs", "0"])
    assert again.exit_code == 0 and "First start" not in again.output
    assert json.loads(credentials_file.read_text()) == credentials
    open_home = tmp_path / "open"
    no_auth = runner.invoke(app, ["--home", str(open_home), "serve", "--no-auth", "--host", "0.0.0.0"])
    assert no_auth.exit_code == 0 and "WARNING: Authentication is OFF" in no_auth.output
    # The job slots: the max_concurrent_jobs setting's 25 unless --workers-jobs says otherwise.
    assert "up to 25 job(s) at once" in no_auth.output and "up to 0 job(s) at once" in first.output
    assert not (open_home / "admin-credentials.json").exists()
    assert served == [("127.0.0.1", 8123), ("127.0.0.1", 8123), ("0.0.0.0", 8080)]


def test_serve_runs_signed_requests_logs_them_and_stops_on_sigint(tmp_path: Path) -> None:
    sock = reserve_socket()
    port = sock.getsockname()[1]
    sock.close()
    command = [sys.executable, "-c", SERVE_SCRIPT, "--home", str(tmp_path), "serve", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "emrml serve did not become healthy"
            try:
                with urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    health = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.2)
        assert health == {"status": "ok"}
        credentials = saved = json.loads((tmp_path / "admin-credentials.json").read_text())
        assert saved["console_user"] == "admin" and len(saved["console_password"]) >= 16
        client = boto3.client(
            "machinelearning",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id=saved["aws_access_key_id"],
            aws_secret_access_key=saved["aws_secret_access_key"],
        )
        assert client.describe_data_sources()["Results"] == []
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert "Application shutdown complete" in output
    access = [json.loads(line) for line in output.splitlines() if line.startswith('{"time"')]
    [logged] = [line for line in access if line["target"] == "AmazonML_20141212.DescribeDataSources"]
    assert logged["status"] == 200 and logged["access_key_id"] == credentials["aws_access_key_id"]
    assert set(logged) == {
        "time",
        "request_id",
        "method",
        "path",
        "target",
        "status",
        "duration_ms",
        "access_key_id",
        "client",
    }
    assert credentials["aws_secret_access_key"] not in output


def test_a_key_file_emrml_did_not_write_is_named_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real serve logs to stderr; here stderr is the runner's capture, closed after each invoke.
    monkeypatch.setattr(access_log, "configure_logging", lambda: None)
    app, home = _root_app(), tmp_path / "home"
    assert CliRunner().invoke(app, ["--home", str(home), "users", "create", "bob"]).exit_code == 0
    for garbled in (b"", b"not a key\n", b"x" * 44):
        (home / "secrets.key").write_bytes(garbled)
        refused = CliRunner().invoke(app, ["--home", str(home), "keys", "create", "bob"])
        assert refused.exit_code == 2 and refused.output == (
            f"error: InvalidInputException: {home / 'secrets.key'} holds no key (emrml writes 44 characters "
            "of base64 there): restore the copy the metastore's secrets were encrypted with; every server "
            "sharing the metastore needs it\n"
        )
    # The server says so too, before it listens (it was a traceback).
    refused = CliRunner().invoke(app, ["--home", str(home), "serve", "--port", "1", "--workers-jobs", "0"])
    assert refused.exit_code == 2 and refused.output.endswith("every server sharing the metastore needs it\n")


def test_a_server_whose_metastore_has_no_room_for_its_admin_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start of a server on a metastore with no room to add the admin user (its disk full, here
    SQLite's ``max_page_count``) ended in a traceback; it now names the metastore, and writes no key file."""
    import sqlite3

    from sqlalchemy import Engine, event

    from emrml.service import app as service_app

    monkeypatch.setattr(server, "serve", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(access_log, "configure_logging", lambda: None)
    runner, app = CliRunner(), _root_app()
    assert runner.invoke(app, ["--home", str(tmp_path), "users", "list"]).exit_code == 0
    database = tmp_path / "metastore.db"
    with sqlite3.connect(database) as connection:
        # The user's row would fit in a page the metastore has: it comes with more than it has room for.
        connection.execute("CREATE TABLE filler (x BLOB)")
        connection.execute(
            "CREATE TRIGGER grows AFTER INSERT ON users "
            "BEGIN INSERT INTO filler VALUES (zeroblob(1 << 20)); END"
        )
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
    open_engine = service_app.open_engine

    def limited(url: str) -> Engine:
        engine = open_engine(url)
        event.listen(
            engine, "connect", lambda connection, _: connection.execute(f"PRAGMA max_page_count={pages}")
        )
        return engine

    monkeypatch.setattr(service_app, "open_engine", limited)
    refused = runner.invoke(app, ["--home", str(tmp_path), "serve", "--port", "8123", "--workers-jobs", "0"])
    assert (refused.exit_code, refused.output) == (
        1,
        f"error: InternalServerException: the metastore (sqlite:///{database}) is full: the disk it is on is "
        "full or past a size limit; free some space and try again\n",
    )
    assert not (tmp_path / "admin-credentials.json").exists()
