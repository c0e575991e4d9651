"""Alembic environment: the connection comes from ``emrml.service.metastore.migrate``."""

from alembic import context

from emrml.service.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
