"""Describe* sorted by a name or location reads its page from an index, not the whole table

Describe* sorts by the filter variable's value and then by id, an object without a name (or location)
sorting as "": ``ORDER BY COALESCE(name, ''), id``. The indexes of 0018 hold the plain column, which the
sort does not use: SQLite and PostgreSQL read and sorted every object of the table for each page, 50,000
objects in a tenth of a second. Each text column Describe* sorts by gets an index on that very sort key,
the value (NULL as "") and the id, so that a page reads its objects in order from where the last one
ended (``service.describe``'s row-value comparison) and stops after a page.

SQLite and PostgreSQL only: MySQL and MariaDB index no expression, and a LONGTEXT column only by its first
characters, which no sort uses.

Revision ID: 0020
Revises: 0019
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

#: The text columns of each entity table Describe* sorts by, with whether they may hold NULL.
SORTED = {
    "data_sources": (("name", True), ("data_location", False)),
    "ml_models": (("name", True), ("input_data_location", True)),
    "evaluations": (("name", True), ("input_data_location", True)),
    "batch_predictions": (("name", True), ("input_data_location", True)),
}


def _index_name(table: str, column: str) -> str:
    return f"ix_{table}_{column}_id"


def upgrade() -> None:
    if op.get_bind().dialect.name not in ("sqlite", "postgresql"):
        return
    for table, columns in SORTED.items():
        for column, nullable in columns:
            # The expression as service.describe writes it ('' a constant, not a parameter); on PostgreSQL
            # it has the column's collation, "C" (0018), as the id has.
            key = f"COALESCE({column}, '')" if nullable else column
            op.execute(f"CREATE INDEX {_index_name(table, column)} ON {table} ({key}, id)")


def downgrade() -> None:
    if op.get_bind().dialect.name not in ("sqlite", "postgresql"):
        return
    for table, columns in SORTED.items():
        for column, _ in columns:
            op.drop_index(_index_name(table, column), table_name=table)
