"""groups, their members and permission statements; users can be disabled

Seeds the built-in groups (a frozen copy of ``service.groups.BUILTIN_GROUPS`` as of this revision) and puts
the existing users in them: ``admin`` in ``admins``, every other user in ``users``.

Revision ID: 0008
Revises: 0007
"""

import json
import time

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SELF_SERVICE = ["iam:GetUser", "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:DeleteAccessKey"]
BUILTIN_GROUPS = {
    "admins": (
        "Everything: every operation on every object, storage, users and groups.",
        [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"], "Owner": "any"}],
    ),
    "users": (
        "Create and manage their own objects; nothing of others' and no storage unless another group "
        "grants it.",
        [
            {"Effect": "Allow", "Action": ["machinelearning:*"], "Resource": ["*"], "Owner": "self"},
            {"Effect": "Allow", "Action": _SELF_SERVICE, "Resource": ["*"], "Owner": "self"},
        ],
    ),
    "viewers": (
        "Read-only: see every object, its evaluation and statistics.",
        [
            {
                "Effect": "Allow",
                "Action": ["machinelearning:Get*", "machinelearning:Describe*"],
                "Resource": ["*"],
                "Owner": "any",
            }
        ],
    ),
    "predictors": (
        "Real-time predictions with any model, nothing else.",
        [{"Effect": "Allow", "Action": ["machinelearning:Predict"], "Resource": ["*"], "Owner": "any"}],
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    groups = op.create_table(
        "groups",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    members = op.create_table(
        "group_members",
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["group_name"], ["groups.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_name"], ["users.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_name", "user_name"),
    )
    with op.batch_alter_table("group_members") as table:
        table.create_index(table.f("ix_group_members_user_name"), ["user_name"], unique=False)
    statements = op.create_table(
        "group_statements",
        sa.Column("group_name", sa.String(length=64), nullable=False),
        sa.Column("sid", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["group_name"], ["groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_name", "sid"),
    )
    moment = round(time.time(), 3)
    op.bulk_insert(
        groups,
        [
            {"name": name, "description": description, "builtin": True, "created_at": moment}
            for name, (description, _) in BUILTIN_GROUPS.items()
        ],
    )
    op.bulk_insert(
        statements,
        [
            {"group_name": name, "sid": sid, "document": json.dumps(document)}
            for name, (_, documents) in BUILTIN_GROUPS.items()
            for sid, document in enumerate(documents, start=1)
        ],
    )
    users = [row[0] for row in op.get_bind().execute(sa.text("SELECT name FROM users"))]
    op.bulk_insert(
        members,
        [{"group_name": "admins" if user == "admin" else "users", "user_name": user} for user in users],
    )


def downgrade() -> None:
    op.drop_table("group_statements")
    with op.batch_alter_table("group_members") as table:
        table.drop_index(table.f("ix_group_members_user_name"))
    op.drop_table("group_members")
    op.drop_table("groups")
    with op.batch_alter_table("users") as table:
        table.drop_column("enabled")
