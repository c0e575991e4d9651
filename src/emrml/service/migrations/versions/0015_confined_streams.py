"""streams started through the server are confined: their consumers write local outputs only in the roots

``confined`` marks a stream started by a request through ``emrml serve``: its consumers write their local
output and dead-letter parts through the confined jobs' write check, each file in its folder as opened, so
a folder swapped for a symbolic link after StartStream was checked is refused. Streams recorded before are
not confined (as objects were before 0007).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("streams") as table:
        table.add_column(sa.Column("confined", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("streams") as table:
        table.drop_column("confined")
