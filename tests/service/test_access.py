"""Access: what a user's policy is made of, read back from every supported metastore."""

from __future__ import annotations

import json

import pytest

from emrml.config import Settings
from emrml.errors import AccessDeniedException
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
