"""Access: what a user's policy is made of, read back from every supported metastore."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from emrml.config import Settings
from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service.app import EmrML


def test_a_policy_holds_the_statements_of_every_group_of_its_user_in_order(settings: Settings) -> None:
    app = EmrML(settings)
    try:
        access = app.access
        access.create_user("dora", ())
        access.create_user("erin", ())
        for group in ("zeta", "alpha", "empty"):
            access.create_group(group)
            access.add_member(group, "dora")
        sids = {
            (group, action): access.add_statement(
                group, {"Effect": effect, "Action": [action], "Resource": ["*"]}
            )
            for group, effect, action in [
                ("zeta", "Allow", "Predict"),
                ("alpha", "Deny", "GetMLModel"),
                ("alpha", "Allow", "DescribeMLModels"),
            ]
        }
        expected = [access.get_group(name).statements for name in ("alpha", "zeta")]  # by group name
        account = app.settings.account_id
        dora = access.policy(f"arn:aws:iam::{account}:user/dora")
        assert dora.enabled and dora.statements == expected[0] + expected[1]
        assert [s.sid for s in dora.statements] == [
            sids["alpha", "GetMLModel"],
            sids["alpha", "DescribeMLModels"],
            sids["zeta", "Predict"],
        ]
        erin = access.policy(f"arn:aws:iam::{account}:user/erin")  # no group, no statement
        assert erin.enabled and erin.statements == ()
        access.set_user_enabled("erin", False)
        assert not access.policy(f"arn:aws:iam::{account}:user/erin").enabled
        nobody = access.policy(f"arn:aws:iam::{account}:user/nobody")
        assert not nobody.enabled and nobody.statements == ()
    finally:
        app.close()


def test_a_reread_policy_that_says_the_same_keeps_its_remembered_decisions(settings: Settings) -> None:
    app, other = EmrML(settings), EmrML(settings)  # other: a second process on the same metastore
    try:
        app.access.create_user("dora", ())
        app.access.create_group("scorers")
        app.access.add_member("scorers", "dora")
        app.access.add_statement("scorers", {"Effect": "Allow", "Action": ["Predict"], "Resource": ["*"]})
        caller = f"arn:aws:iam::{app.settings.account_id}:user/dora"
        policy = app.access.policy(caller)
        assert policy.allows("machinelearning:Predict", "mlmodel/m", False)
        app.access.policies.refresh()  # what a server does every ttl / 2
        assert app.access.policy(caller) is policy and policy._decisions
        other.access.add_statement("scorers", {"Effect": "Deny", "Action": ["Predict"], "Resource": ["*"]})
        app.access.policies.refresh()
        changed = app.access.policy(caller)
        assert changed is not policy and len(changed.statements) == 2
        assert not changed.allows("machinelearning:Predict", "mlmodel/m", False)
    finally:
        app.close()
        other.close()


def test_a_server_rereads_policies_and_keys_without_the_orm(settings: Settings) -> None:
    # A server rereads every known caller's policy and key from threads of its own, which hold the
    # interpreter lock the event loop's requests wait for: through a Core connection each reread holds it
    # for a third of what an ORM session's execution costs. Same answers either way.
    app = EmrML(settings)
    orm: list[object] = []

    def note(state: object) -> None:
        orm.append(state)

    try:
        app.access.create_user("dora", ())
        app.access.create_group("scorers")
        app.access.add_member("scorers", "dora")
        app.access.add_statement("scorers", {"Effect": "Allow", "Action": ["Predict"], "Resource": ["*"]})
        key = app.access.identities.create_key("dora")
        caller = f"arn:aws:iam::{app.settings.account_id}:user/dora"
        event.listen(Session, "do_orm_execute", note)
        try:
            policy = app.access.policy(caller)
            app.access.policies.refresh()
            credential = app.access.identities.credential(key.access_key_id)
            unknown = app.access.identities.credential("EMRL" + "X" * 16)
        finally:
            event.remove(Session, "do_orm_execute", note)
        assert orm == []
        assert policy.enabled and [s.sid for s in policy.statements] != []
        assert app.access.policy(caller) is policy
        assert credential is not None and unknown is None
        assert (credential.secret_access_key, credential.user_name) == (key.secret_access_key, "dora")
        app.access.identities.set_key_active(key.access_key_id, False)
        assert app.access.identities.credential(key.access_key_id) is None
    finally:
        app.close()


def test_describe_lists_only_what_get_allows_whatever_the_case_of_the_ids(settings: Settings) -> None:
    # Ids are case-sensitive (SECRET-ds and secret-ds are two objects), and so are resource patterns: but
    # SQLite's LIKE ignores case, so on the default metastore DescribeDataSources listed SECRET-ds (its
    # name, location, owner...) to a user whose statements allow only datasource/secret-*.
    app = EmrML(settings)
    try:
        schema = json.dumps(
            {
                "version": "1.0",
                "dataFormat": "CSV",
                "attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}],
            }
        )
        for entity_id in ("SECRET-ds", "secret-ds"):
            spec = {"DataLocationS3": f"/srv/{entity_id}.csv", "DataSchema": schema}
            request = {"DataSourceId": entity_id, "DataSourceName": f"name of {entity_id}", "DataSpec": spec}
            app.call("CreateDataSourceFromS3", request)
        access = app.access
        access.create_user("dora", ())
        access.create_group("team")
        access.add_member("team", "dora")
        access.add_statement(
            "team", {"Effect": "Allow", "Action": ["Describe*", "Get*"], "Resource": ["datasource/secret-*"]}
        )
        caller = f"arn:aws:iam::{app.settings.account_id}:user/dora"
        listed = app.call("DescribeDataSources", {}, caller=caller)["Results"]
        assert [d["DataSourceId"] for d in listed] == ["secret-ds"]
        app.call("GetDataSource", {"DataSourceId": "secret-ds"}, caller=caller)
        with pytest.raises(AccessDeniedException):
            app.call("GetDataSource", {"DataSourceId": "SECRET-ds"}, caller=caller)
        # The Prefix filter compares as the ids and names are, on every metastore.
        prefixed = app.call("DescribeDataSources", {"FilterVariable": "Name", "Prefix": "name of S"})[
            "Results"
        ]
        assert [d["DataSourceId"] for d in prefixed] == ["SECRET-ds"]
    finally:
        app.close()


def test_readable_answers_as_get_would_for_every_id_at_once(settings: Settings) -> None:
    """``Access.readable`` (the console's links) agrees with ``allowed`` on GetDataSource for each id: a
    resource pattern (case-sensitive), an Owner self grant, a Deny, and an id that does not exist."""
    app = EmrML(settings)
    try:
        access = app.access
        access.create_user("dora", ())
        access.create_group("team")
        access.add_member("team", "dora")
        statements = [
            {"Effect": "Allow", "Action": ["GetDataSource"], "Resource": ["datasource/secret-*"]},
            {"Effect": "Allow", "Action": ["GetDataSource", "CreateDataSourceFromS3"], "Owner": "self"},
            {"Effect": "Allow", "Action": ["storage:Read"], "Resource": ["*"]},
            {"Effect": "Deny", "Action": ["GetDataSource"], "Resource": ["datasource/secret-denied"]},
        ]
        for statement in statements:
            access.add_statement("team", statement)
        caller = f"arn:aws:iam::{app.settings.account_id}:user/dora"
        schema = json.dumps(
            {
                "version": "1.0",
                "dataFormat": "CSV",
                "attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}],
            }
        )
        created = {"SECRET-ds": None, "secret-ds": None, "secret-denied": None, "other-ds": None}
        created["dora-ds"] = caller
        for entity_id, creator in created.items():
            spec = {"DataLocationS3": f"/srv/{entity_id}.csv", "DataSchema": schema}
            named = {"DataSourceName": f"Data {entity_id}"} if creator else {}
            request = {"DataSourceId": entity_id, "DataSpec": spec, **named}
            app.call("CreateDataSourceFromS3", request, caller=creator)
        ids = [*created, "unknown-ds"]
        assert access.readable(caller, "DataSource", ids) == {"secret-ds", "dora-ds"}
        # The same, with their names (none given to secret-ds), for the console to name what it links.
        assert access.readable_names(caller, "DataSource", ids) == {
            "secret-ds": None,
            "dora-ds": "Data dora-ds",
        }
        existing = {i for i in ids if i in created}
        assert {i for i in existing if access.allowed(caller, "GetDataSource", {"DataSourceId": i})} == {
            "secret-ds",
            "dora-ds",
        }
        assert access.readable(None, "DataSource", ids) == existing  # the root reads everything there is
        assert access.readable(caller, "DataSource", []) == set()
    finally:
        app.close()


def test_the_schema_beside_the_data_needs_its_own_storage_grant(settings: Settings, tmp_path: Path) -> None:
    # A datasource given no schema reads <data>.schema (or <folder>/.schema): its job read that file for
    # a caller whose grant covered only the data, so a schema the caller may not read was used and shown
    # (GetDataSource's DataSourceSchema). The request now needs storage:Read there too.
    app = EmrML(settings)
    try:
        data = tmp_path / "data.csv"
        data.write_text("a\n1\n")
        folder = tmp_path / "parts"
        folder.mkdir()
        (folder / "part-0.csv").write_text("a\n2\n")  # accepted below: a folder of no file is refused
        access = app.access
        access.create_user("dora")  # in users: her own objects, no storage
        access.create_group("readers")
        access.add_member("readers", "dora")
        # The folders granted as folders (their trailing slash): a file's name grants no folder.
        grants = [str(data), f"{folder}/", "s3://bucket/data.csv", "s3://bucket/parts/", "s3://other/"]
        access.add_statement("readers", {"Effect": "Allow", "Action": ["storage:Read"], "Resource": grants})
        caller = f"arn:aws:iam::{app.settings.account_id}:user/dora"

        def create(entity_id: str, location: str) -> None:
            request = {"DataSourceId": entity_id, "DataSpec": {"DataLocationS3": location}}
            app.call("CreateDataSourceFromS3", request, caller=caller)

        for entity_id, location, schema in [
            ("ds-file", str(data), f"{data}.schema"),
            ("ds-folder", str(folder), f"{folder}/.schema"),
            ("ds-s3-file", "s3://bucket/data.csv", "s3://bucket/data.csv.schema"),
            ("ds-s3-prefix", "s3://bucket/parts/", "s3://bucket/parts/.schema"),
            ("ds-bucket", "s3://other", "s3://other/.schema"),
        ]:
            with pytest.raises(
                AccessDeniedException, match=f"storage:Read on resource: {re.escape(schema)}$"
            ):
                create(entity_id, location)
        # Given the schema, or granted the file beside, the same requests are accepted.
        schema = json.dumps({"attributes": [{"attributeName": "a", "attributeType": "NUMERIC"}]})
        request = {
            "DataSourceId": "ds-given",
            "DataSpec": {"DataLocationS3": str(data), "DataSchema": schema},
        }
        app.call("CreateDataSourceFromS3", request, caller=caller)
        beside = [f"{data}.schema", f"{folder}/.schema", "s3://bucket/data.csv*", "s3://bucket/parts/.schema"]
        access.add_statement("readers", {"Effect": "Allow", "Action": ["storage:Read"], "Resource": beside})
        for entity_id, location in [
            ("ds-file", str(data)),
            ("ds-folder", str(folder)),
            ("ds-s3-file", "s3://bucket/data.csv"),
            ("ds-s3-prefix", "s3://bucket/parts/"),
        ]:
            create(entity_id, location)
    finally:
        app.close()


def test_a_user_created_with_a_deleted_users_name_inherits_nothing_of_it(settings: Settings) -> None:
    from emrml.errors import InvalidInputException, ResourceNotFoundException
    from emrml.service.logins import Logins

    app = EmrML(settings)
    try:
        access, logins = app.access, Logins(app.sessions)
        carol, dora = (access.user_arn(name) for name in ("carol", "dora"))
        access.create_user("carol")
        access.create_group("readers")
        access.add_statement("readers", {"Effect": "Allow", "Action": "storage:Read", "Resource": "*"})
        access.add_member("readers", "carol")
        access.create_key("carol")
        logins.set_password("carol", "carol-password-1")
        attributes = [{"attributeName": "a", "attributeType": "NUMERIC"}]
        schema = json.dumps({"version": "1.0", "dataFormat": "CSV", "attributes": attributes})
        spec = {"DataLocationS3": "/srv/carol.csv", "DataSchema": schema}
        app.call("CreateDataSourceFromS3", {"DataSourceId": "ds-carol", "DataSpec": spec}, caller=carol)
        access.delete_user("carol")
        # Her datasource still names her ARN: a new carol would own it, so the name is not given out yet.
        with pytest.raises(InvalidInputException) as refused:
            access.create_user("carol")
        assert "1 object(s) (1 DataSource)" in refused.value.message
        assert "emrml users reassign-objects carol OTHER_USER" in refused.value.message
        access.create_user("dora", ())
        with pytest.raises(AccessDeniedException, match="iam:ReassignObjects"):
            access.reassign_objects("carol", "dora", caller=dora)
        assert access.reassign_objects("carol", "dora") == {"DataSource": 1}
        assert app.call("GetDataSource", {"DataSourceId": "ds-carol"})["CreatedByIamUser"] == dora
        # The new carol: her own default group only, no key, no password, none of the objects.
        assert access.create_user("carol").groups == ("users",)
        assert access.get_user("carol").access_keys == 0 and not logins.has_password("carol")
        assert "carol" not in access.get_group("readers").members
        assert app.call("DescribeDataSources", {}, caller=carol)["Results"] == []
        with pytest.raises(ResourceNotFoundException):
            app.call("GetDataSource", {"DataSourceId": "ds-carol"}, caller=carol)
    finally:
        app.close()


def test_another_users_key_is_answered_like_an_unknown_key(settings: Settings) -> None:
    from emrml.errors import ResourceNotFoundException

    app = EmrML(settings)
    try:
        access = app.access
        access.create_user("dora")  # the default group: her own keys only
        access.create_user("erin")
        dora, erins = access.user_arn("dora"), access.create_key("erin").access_key_id
        unknown = "AKID" + "0" * (len(erins) - 4)
        for change in (
            lambda key: access.delete_key(key, caller=dora),
            lambda key: access.set_key_active(key, False, caller=dora),
        ):
            answers = []
            for key in (erins, unknown):
                with pytest.raises(ResourceNotFoundException) as raised:
                    change(key)
                answers.append(raised.value.message.replace(key, "KEY"))
            assert answers[0] == answers[1]
        assert [k.active for k in access.list_keys("erin")] == [True]
        with pytest.raises(AccessDeniedException, match="iam:UpdateAccessKey"):  # her own: she knows it
            access.set_key_active(access.create_key("dora").access_key_id, False, caller=dora)
    finally:
        app.close()


def test_a_stored_storage_grant_on_a_relative_path_still_loads(settings: Settings) -> None:
    # Adding such a statement is refused now (it matches no location); one stored before still loads
    # beside the user's other grants.
    from emrml.service.rows import GroupStatement

    app = EmrML(settings)
    try:
        access = app.access
        access.create_user("fay", ())
        access.create_group("old")
        access.add_member("old", "fay")
        sid = access.add_statement("old", {"Effect": "Allow", "Action": "storage:Read", "Resource": "/srv/*"})
        stored = {"Effect": "Allow", "Action": ["storage:Read"], "Resource": ["relative/*"], "Owner": "any"}
        with pytest.raises(InvalidInputException, match="Resource 'relative/\\*' can match no location"):
            access.add_statement("old", stored)
        with app.sessions() as session, session.begin():
            session.add(GroupStatement(group_name="old", sid=sid + 1, document=json.dumps(stored)))
        access.forget()
        fay = access.policy(f"arn:aws:iam::{app.settings.account_id}:user/fay")
        assert [s.document() for s in fay.statements][1] == stored
        assert fay.allows("storage:Read", "/srv/a.csv", False)
    finally:
        app.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql-english", "mariadb"])
def test_users_groups_and_members_list_by_code_point_on_every_metastore(kind: str, tmp_path: Path) -> None:
    """Not in the database's locale order: an English one (PostgreSQL's default on many servers) puts "_x"
    before "a" and "a" before "B"."""
    from metastores import empty_metastore

    names = ["B", "a", "_x", "Z", "b"]
    for url in empty_metastore(kind, tmp_path):
        app = EmrML(Settings.load(environ={}, home=tmp_path / "home", metastore_url=url))
        try:
            access = app.access
            for name in names:
                access.create_user(name, ())
                access.create_key(name)
                access.add_member("users", name)
            for name in names:
                group = f"{name}-group"
                access.create_group(group)
                access.add_member(group, "a")
                statement = {"Effect": "Allow", "Action": ["GetMLModel"], "Resource": [f"mlmodel/{name}"]}
                access.add_statement(group, statement)
            listed = [user.name for user in access.list_users()]
            assert [name for name in listed if name in names] == sorted(names)
            groups = [group.name for group in access.list_groups() if group.name.endswith("-group")]
            assert groups == sorted(f"{name}-group" for name in names)
            assert list(access.get_group("users").members) == sorted(names)
            assert [key.user_name for key in access.list_keys()] == sorted(names)
            a = access.policy(f"arn:aws:iam::{app.settings.account_id}:user/a")
            models = [r for s in a.statements for r in s.resources if r.startswith("mlmodel/")]
            assert models == [f"mlmodel/{name}" for name in sorted(names)]  # by group name
        finally:
            app.close()
