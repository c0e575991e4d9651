"""the key scheme of each datasource's random split

Random splits now hash each file's path relative to the datasource location; datasources recorded before
keep the absolute keys they were split with.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("data_sources") as table:
        table.add_column(
            sa.Column("split_keys", sa.String(length=16), nullable=False, server_default="absolute")
        )


def downgrade() -> None:
    with op.batch_alter_table("data_sources") as table:
        table.drop_column("split_keys")
