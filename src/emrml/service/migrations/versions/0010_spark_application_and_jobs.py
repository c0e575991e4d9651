"""objects record the Spark application and Spark job ids their job ran on (the Spark engine)

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLES = ("data_sources", "ml_models", "evaluations", "batch_predictions")


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("spark_application", sa.String(128), nullable=True))
            table.add_column(sa.Column("spark_jobs", sa.Text(), nullable=True))


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.drop_column("spark_jobs")
            table.drop_column("spark_application")
