"""streams count the starts that claimed them

``start_generation``: how many times StartStream has claimed the stream to start its consumers (a new
stream, created by its first start, has 0). A start claims the stream by raising it from the value it read
together with the stream's status, in the transaction that makes the stream RUNNING
(``service.streams._claim``): of two starts that read a stream alike (FAILED, its consumers gone, or
STOPPED), one claims it and starts consumers, the other finds its reading out of date. Before it, both
made the stream RUNNING and both started consumers. Streams in the metastore as it is upgraded start at 0.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("streams") as table:
        table.add_column(sa.Column("start_generation", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("streams") as table:
        table.drop_column("start_generation")
