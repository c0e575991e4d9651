"""every text column compares by code point, without padding; Describe*'s text filters use indexes

Describe* compared text by code point on every metastore by wrapping each column in the query (COLLATE
"C" on PostgreSQL, CAST AS BINARY on MySQL and MariaDB), which kept the indexes on those columns from being
used: a filter on a name or id, or a sort, read the whole table. The columns themselves now compare so:

* PostgreSQL: the text columns of the tables Describe* lists take the "C" collation (the database's
  own, often English, sorts "apple" < "b" < "Banana"). Equality was exact already, on every table; order
  and LIKE 'prefix%' now use the indexes.
* MySQL and MariaDB: every table takes the binary collation without padding (MariaDB's utf8mb4_nopad_bin,
  MySQL 8's utf8mb4_0900_bin), as 0017 did for tag keys: utf8mb4_bin compared "bob" and "bob " equal, so a
  console login as "bob " found bob's password, counted its failures apart from bob's and opened a session
  of "bob " with bob's groups. MySQL 5.7 has no such collation and stays as it was.

The entity tables get indexes on the text Describe* filters on: the name, the creator (IAMUser, and every
"Owner: self" policy) and the data location. MySQL and MariaDB index the first 255 characters of the
LONGTEXT columns (an index key holds at most 3,072 bytes).

Revision ID: 0018
Revises: 0017
"""

from alembic import op
from sqlalchemy import inspect

from emrml.service.metastore import mysql_collation

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: The indexed columns of each entity table.
INDEXED = {
    "data_sources": ("name", "created_by", "data_location"),
    "ml_models": ("name", "created_by", "input_data_location"),
    "evaluations": ("name", "created_by", "input_data_location"),
    "batch_predictions": ("name", "created_by", "input_data_location"),
}
#: The characters of a LONGTEXT column a MySQL or MariaDB index holds (4 bytes each in utf8mb4).
PREFIX_LENGTH = 255
#: The foreign keys of the metastore (0002, 0006, 0008), named as MySQL and MariaDB name them: each
#: column references the ``name`` of the table named last.
FOREIGN_KEYS = (
    ("access_keys_ibfk_1", "access_keys", "user_name", "users"),
    ("console_logins_ibfk_1", "console_logins", "user_name", "users"),
    ("console_sessions_ibfk_1", "console_sessions", "user_name", "users"),
    ("group_members_ibfk_1", "group_members", "group_name", "groups"),
    ("group_members_ibfk_2", "group_members", "user_name", "users"),
    ("group_statements_ibfk_1", "group_statements", "group_name", "groups"),
)
#: MySQL's and MariaDB's collation before this revision.
PADDED = "utf8mb4_bin"


def _collate_postgresql(collation: str) -> None:
    # One catalog query (the inspector's would be several per table).
    rows = op.get_bind().exec_driver_sql(
        "SELECT table_name, column_name, data_type, character_maximum_length FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying')"
        f" AND table_name IN ({', '.join(repr(table) for table in INDEXED)})"
        " ORDER BY table_name, ordinal_position"
    )
    changes: dict[str, list[str]] = {}
    for table, column, kind, length in rows:
        spelled = f"VARCHAR({length})" if kind == "character varying" and length else "TEXT"
        changes.setdefault(table, []).append(f'ALTER COLUMN "{column}" TYPE {spelled} COLLATE "{collation}"')
    for table, clauses in changes.items():
        op.execute(f'ALTER TABLE "{table}" {", ".join(clauses)}')


def _collate_mysql(collation: str) -> None:
    bind = op.get_bind()
    # The tables with a text column or default of another collation: a new metastore's tables were
    # created in this one (``metastore.mysql_collation``), and a migration cut short (MySQL's DDL is not
    # transactional) left some tables done.
    others = bind.exec_driver_sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        f" AND table_collation <> '{collation}' UNION SELECT table_name FROM information_schema.columns"
        f" WHERE table_schema = DATABASE() AND collation_name <> '{collation}'"
    ).scalars()
    tables = sorted(set(others))
    if not tables:
        return
    # MariaDB changes no column of a foreign key, whatever foreign_key_checks says: the keys go, and come
    # back as FOREIGN_KEYS declares them (not as found: a migration cut short may have dropped some).
    inspector = inspect(bind)
    for table in inspector.get_table_names():
        for key in inspector.get_foreign_keys(table):
            op.drop_constraint(key["name"], table, type_="foreignkey")
    for table in tables:
        # One statement per table: MySQL copies the table for each ALTER.
        op.execute(f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
    for name, table, column, referred in FOREIGN_KEYS:
        op.create_foreign_key(name, table, referred, [column], ["name"], ondelete="CASCADE")


def _index_name(table: str, column: str) -> str:
    return f"ix_{table}_{column}"


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    mysql = dialect in ("mysql", "mariadb")
    if dialect == "postgresql":
        _collate_postgresql("C")
    elif mysql and mysql_collation(bind.dialect) != PADDED:
        _collate_mysql(mysql_collation(bind.dialect))
    for table, columns in INDEXED.items():
        if mysql:
            # One statement per table, as above; LONGTEXT is indexed by its first characters.
            added = [
                f"ADD INDEX {_index_name(table, column)} (`{column}`"
                f"{'' if column == 'created_by' else f'({PREFIX_LENGTH})'})"
                for column in columns
            ]
            op.execute(f"ALTER TABLE `{table}` {', '.join(added)}")
        else:
            for column in columns:
                op.create_index(_index_name(table, column), table, [column])


def downgrade() -> None:
    for table, columns in INDEXED.items():
        for column in columns:
            op.drop_index(_index_name(table, column), table_name=table)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _collate_postgresql("default")
    elif bind.dialect.name in ("mysql", "mariadb") and mysql_collation(bind.dialect) != PADDED:
        _collate_mysql(PADDED)
        # Tag keys stay without padding, as 0017 left them.
        op.execute(
            "ALTER TABLE tags MODIFY `key` VARCHAR(128) CHARACTER SET utf8mb4 "
            f"COLLATE {mysql_collation(bind.dialect)} NOT NULL"
        )
