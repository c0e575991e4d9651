"""Access: what a user's policy is made of, read back from every supported metastore."""

from __future__ import annotations

from emrml.config import Settings
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
