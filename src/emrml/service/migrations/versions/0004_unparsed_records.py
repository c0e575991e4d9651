"""batch predictions count the records scored with unreadable values

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_predictions") as table:
        table.add_column(sa.Column("unparsed_records", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_predictions") as table:
        table.drop_column("unparsed_records")
