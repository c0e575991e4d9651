"""stream scoring: streams, their shard leases and consumers

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_updated_at", sa.Float(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("ml_model_id", sa.String(length=64), nullable=False),
        sa.Column("input_uri", sa.Text(), nullable=False),
        sa.Column("output_uri", sa.Text(), nullable=False),
        sa.Column("dead_letter_uri", sa.Text(), nullable=False),
        sa.Column("starting_position", sa.String(length=16), nullable=False),
        sa.Column("starting_timestamp", sa.Float(), nullable=True),
        sa.Column("record_format", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_streams_status", "streams", ["status"])
    op.create_index("ix_streams_ml_model_id", "streams", ["ml_model_id"])
    op.create_table(
        "stream_leases",
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("shard_id", sa.String(length=128), nullable=False),
        sa.Column("parents", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint", sa.String(length=128), nullable=True),
        sa.Column("checkpointed_at", sa.Float(), nullable=True),
        sa.Column("renewed_at", sa.Float(), nullable=True),
        sa.Column("owner_switches", sa.Integer(), nullable=False),
        sa.Column("records_in", sa.BigInteger(), nullable=False),
        sa.Column("records_out", sa.BigInteger(), nullable=False),
        sa.Column("records_failed", sa.BigInteger(), nullable=False),
        sa.Column("millis_behind_latest", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("stream_id", "shard_id"),
    )
    op.create_table(
        "stream_consumers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("records_per_second", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stream_consumers_stream_id", "stream_consumers", ["stream_id"])


def downgrade() -> None:
    op.drop_table("stream_consumers")
    op.drop_table("stream_leases")
    op.drop_index("ix_streams_ml_model_id", table_name="streams")
    op.drop_index("ix_streams_status", table_name="streams")
    op.drop_table("streams")
