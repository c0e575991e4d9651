"""Describe* sorted by a name or location reads its page from an index, not the whole table

Describe* sorts by the filter variable's value and then by id, an object without a name (or location)
sorting as "": ``ORDER BY COALESCE(name, ''), id``. The indexes of 0018 hold the plain column, which the
sort does not use: every metastore read and sorted every object of the table for each page (a tenth of a
second or more for 50,000 objects). On SQLite and PostgreSQL, each text column Describe* sorts by gets an
index on that very sort key, the value (NULL as "") and the id, so that a page reads its objects in order
from where the last one ended (``service.describe``) and stops after a page.

MySQL and MariaDB index no expression, and a LONGTEXT column only by its first characters, which no sort
uses: each of these columns gets a virtual column of its sort key's first 255 characters,
``<column>_sort`` (computed, not stored), indexed (with the id, as InnoDB's every index is). That
key sorts as the value does (by code point, without padding: the table's collation), so Describe* finds
from it which first characters the page's last object has, and reads and sorts only the objects up to
there (``service.describe``).

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


#: The characters of a sort key MySQL and MariaDB index (utf8mb4: at most 1,020 bytes of a key's 3,072).
KEY_LENGTH = 255


def _index_name(table: str, column: str) -> str:
    return f"ix_{table}_{column}_id"


def _sort_key_index(table: str, column: str) -> str:
    return f"ix_{table}_{column}_sort"


def upgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        for table, columns in SORTED.items():
            # One statement per table: MySQL copies the table for each ALTER.
            added = [
                f"ADD COLUMN `{column}_sort` VARCHAR({KEY_LENGTH}) AS (LEFT(COALESCE(`{column}`, ''), "
                f"{KEY_LENGTH})) VIRTUAL"
                for column, _ in columns
            ] + [f"ADD INDEX {_sort_key_index(table, column)} (`{column}_sort`)" for column, _ in columns]
            op.execute(f"ALTER TABLE `{table}` {', '.join(added)}")
        return
    for table, columns in SORTED.items():
        for column, nullable in columns:
            # The expression as service.describe writes it ('' a constant, not a parameter); on PostgreSQL
            # it has the column's collation, "C" (0018), as the id has.
            key = f"COALESCE({column}, '')" if nullable else column
            op.execute(f"CREATE INDEX {_index_name(table, column)} ON {table} ({key}, id)")


def downgrade() -> None:
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        for table, columns in SORTED.items():
            dropped = [f"DROP INDEX {_sort_key_index(table, column)}" for column, _ in columns] + [
                f"DROP COLUMN `{column}_sort`" for column, _ in columns
            ]
            op.execute(f"ALTER TABLE `{table}` {', '.join(dropped)}")
        return
    for table, columns in SORTED.items():
        for column, _ in columns:
            op.drop_index(_index_name(table, column), table_name=table)
