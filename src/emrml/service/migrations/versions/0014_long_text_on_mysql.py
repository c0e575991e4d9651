"""text columns hold what the API allows on MySQL and MariaDB: LONGTEXT, not TEXT (65,535 bytes)

A request within the bounds of the API's model (a DataSchema or Recipe of 131,071 characters, a
SelectSqlQuery of 16 MiB) did not fit the request column of a MySQL or MariaDB metastore, nor did the schema
or statistics a job wrote of a wide datasource: the write failed with an internal error. Text on SQLite and
PostgreSQL has no such bound; there, nothing changes.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _retype(old: str, new: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    inspector = sa.inspect(bind)
    for table in inspector.get_table_names():
        changes = [
            f"MODIFY `{column['name']}` {new} {'NULL' if column['nullable'] else 'NOT NULL'}"
            for column in inspector.get_columns(table)
            if type(column["type"]).__name__ == old
        ]
        if changes:
            # One statement per table: MySQL copies the table for each ALTER. (MySQL's DDL is not
            # transactional: a migration cut short leaves some tables done, which this one skips again.)
            op.execute(f"ALTER TABLE `{table}` {', '.join(changes)}")


def upgrade() -> None:
    _retype("TEXT", "LONGTEXT")


def downgrade() -> None:
    _retype("LONGTEXT", "TEXT")
