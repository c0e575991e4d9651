"""jobs count their tries apart from their attempt numbers, which only grow

A FAILED job queued again (a pipeline re-run) starts its tries anew, and one interrupted by a server's stop
does not count the try, but neither gets an attempt number it had: the fences of its workers' writes and
the names of its temporaries rely on them.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TABLES = ("data_sources", "ml_models", "evaluations", "batch_predictions")


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("tries", sa.Integer(), nullable=False, server_default="0"))
        # A job running or queued again as the metastore is upgraded keeps the tries it has had.
        op.execute(f"UPDATE {name} SET tries = attempts")


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.drop_column("tries")
