"""objects created through the server are confined; SQL datasource passwords are stored encrypted

``confined`` marks objects created by a request through ``emrml serve``: their jobs read local files only
inside the data roots. ``database_password`` holds an RDS or Redshift datasource's password, encrypted with
the home's secrets.key; the stored request keeps a keyed hash of it instead (objects recorded before keep
their request as it was, and their job reads the password from it).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("data_sources", "ml_models", "evaluations", "batch_predictions")


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.add_column(sa.Column("confined", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("data_sources") as table:
        table.add_column(sa.Column("database_password", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("data_sources") as table:
        table.drop_column("database_password")
    for name in TABLES:
        with op.batch_alter_table(name) as table:
            table.drop_column("confined")
