"""tag keys differing only in trailing blanks are two tags on MySQL and MariaDB too

Their utf8mb4_bin collation pads with spaces: the keys "a" and "a " were one primary key, so adding the
second failed with an internal error, and DeleteTags of "a " deleted "a". The key column takes the server's
binary collation without padding (MariaDB's utf8mb4_nopad_bin, MySQL 8's utf8mb4_0900_bin; MySQL 5.7 has
none and stays as it was). SQLite and PostgreSQL compare keys exactly; there, nothing changes.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: The binary collations without padding, in order of preference: MariaDB's, then MySQL 8's.
NO_PAD_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")


def _collate_key(collations: tuple[str, ...]) -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    available = set(bind.exec_driver_sql("SHOW COLLATION WHERE Charset = 'utf8mb4'").scalars())
    chosen = next((name for name in collations if name in available), None)
    if chosen is not None:
        column = f"VARCHAR(128) CHARACTER SET utf8mb4 COLLATE {chosen} NOT NULL"
        op.execute(f"ALTER TABLE tags MODIFY `key` {column}")


def upgrade() -> None:
    _collate_key(NO_PAD_COLLATIONS)


def downgrade() -> None:
    _collate_key(("utf8mb4_bin",))
