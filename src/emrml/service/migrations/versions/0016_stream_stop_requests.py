"""streams record when they were asked to stop

``stop_requested_at``: when the stream became STOPPING (StopStream, or a consumer stopping it for a model
gone). A stream's ``last_updated_at`` moves with every message a consumer writes afterwards (a failure,
one that hung), so it cannot tell which consumers ran when the stop was asked. A stream STOPPING as the
metastore is upgraded takes its ``last_updated_at``, the best record of that moment there is.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("streams") as table:
        table.add_column(sa.Column("stop_requested_at", sa.Float(), nullable=True))
    op.execute("UPDATE streams SET stop_requested_at = last_updated_at WHERE status = 'STOPPING'")


def downgrade() -> None:
    with op.batch_alter_table("streams") as table:
        table.drop_column("stop_requested_at")
