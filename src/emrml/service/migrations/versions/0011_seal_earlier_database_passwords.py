"""SQL datasources recorded before 0007 get their password encrypted too

Before 0007 an RDS or Redshift datasource kept its whole Create request, database password included, in
the ``request`` column. Each such row now gets what 0007 gives a new one: the password encrypted with the
home's secrets.key in ``database_password`` and a keyed digest in its place in the request (so a retry of
the same request still matches it). Nothing to undo on downgrade: a sealed row reads as a new one.

Revision ID: 0011
Revises: 0010
"""

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_EARLIER = sa.text(
    "SELECT id, request, rds_metadata FROM data_sources WHERE database_password IS NULL "
    "AND (rds_metadata IS NOT NULL OR redshift_metadata IS NOT NULL)"
)
_SEAL = sa.text("UPDATE data_sources SET request = :request, database_password = :password WHERE id = :id")


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(_EARLIER).all()
    if not rows:
        return
    # Imported here: only a metastore with such rows needs the key (a fresh one never does).
    from emrml.service.credentials import seal_with
    from emrml.service.identity import KEY_FILE_NAME, SecretBox
    from emrml.service.operations import canonical

    box = SecretBox(Path(context.config.attributes["home"]) / KEY_FILE_NAME)
    for entity_id, request, rds_metadata in rows:
        operation = "CreateDataSourceFromRDS" if rds_metadata else "CreateDataSourceFromRedshift"
        stored, password = seal_with(box, operation, json.loads(request))
        if password is not None:
            connection.execute(_SEAL, {"request": canonical(stored), "password": password, "id": entity_id})


def downgrade() -> None:
    pass
