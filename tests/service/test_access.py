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
