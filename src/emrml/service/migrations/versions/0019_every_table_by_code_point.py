"""the text of every table compares by code point on PostgreSQL too: users, groups and their members list so

0018 gave the "C" collation to the text columns of the tables Describe* lists, and left the others (users,
access keys, groups, their members and statements, console logins, tags, streams) in the database's own,
often English, one. So PostgreSQL listed users, groups and a group's members (and the statements of a
policy, by group name) as "_x" < "a" < "B" < "Z", where SQLite and MySQL / MariaDB (whose every table 0018
made binary) list "B" < "Z" < "_x" < "a". Every text column of the other tables takes "C" now. Equality
was exact already; SQLite, MySQL and MariaDB are unchanged.

Revision ID: 0019
Revises: 0018
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

#: The tables whose text 0018 collated already; 0018's downgrade sets them back itself.
DONE_BY_0018 = ("data_sources", "ml_models", "evaluations", "batch_predictions")


def _collate_postgresql(collation: str) -> None:
    # One catalog query (the inspector's would be several per table).
    rows = op.get_bind().exec_driver_sql(
        "SELECT c.table_name, c.column_name, c.data_type, c.character_maximum_length"
        " FROM information_schema.columns c JOIN information_schema.tables t"
        " ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " AND c.data_type IN ('text', 'character varying')"
        f" AND c.table_name NOT IN ('alembic_version', {', '.join(repr(table) for table in DONE_BY_0018)})"
        " ORDER BY c.table_name, c.ordinal_position"
    )
    changes: dict[str, list[str]] = {}
    for table, column, kind, length in rows:
        spelled = f"VARCHAR({length})" if kind == "character varying" and length else "TEXT"
        changes.setdefault(table, []).append(f'ALTER COLUMN "{column}" TYPE {spelled} COLLATE "{collation}"')
    for table, clauses in changes.items():
        op.execute(f'ALTER TABLE "{table}" {", ".join(clauses)}')


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _collate_postgresql("C")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _collate_postgresql("default")
