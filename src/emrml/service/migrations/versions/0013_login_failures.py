"""failed console logins are counted in the metastore, by every process serving the console together

Counted in each process's memory, they allowed N times the failures with N processes (or servers) on one
metastore, and started again from none whenever a server restarted.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("throttle_key", sa.String(length=64), nullable=False),
        sa.Column("failed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("login_failures") as table:
        table.create_index("ix_login_failures_throttle_key", ["throttle_key"], unique=False)
        table.create_index("ix_login_failures_failed_at", ["failed_at"], unique=False)


def downgrade() -> None:
    op.drop_table("login_failures")
