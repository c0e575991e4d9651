"""initial metastore

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _entity_columns() -> list[sa.Column | sa.PrimaryKeyConstraint]:
    """The columns the four entity tables share, after their own: id, name, status and the job's state."""
    return [
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_updated_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("compute_time", sa.BigInteger(), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("progress_message", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    ]


def upgrade() -> None:
    op.create_table(
        "batch_predictions",
        sa.Column("ml_model_id", sa.String(length=64), nullable=False),
        sa.Column("batch_prediction_data_source_id", sa.String(length=64), nullable=False),
        sa.Column("input_data_location", sa.Text(), nullable=True),
        sa.Column("output_uri", sa.Text(), nullable=False),
        sa.Column("total_records", sa.BigInteger(), nullable=True),
        sa.Column("invalid_records", sa.BigInteger(), nullable=True),
        *_entity_columns(),
    )
    with op.batch_alter_table("batch_predictions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_batch_predictions_batch_prediction_data_source_id"),
            ["batch_prediction_data_source_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_batch_predictions_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_predictions_ml_model_id"), ["ml_model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_predictions_status"), ["status"], unique=False)

    op.create_table(
        "data_sources",
        sa.Column("data_location", sa.Text(), nullable=False),
        sa.Column("data_rearrangement", sa.Text(), nullable=True),
        sa.Column("data_schema", sa.Text(), nullable=True),
        sa.Column("compute_statistics", sa.Boolean(), nullable=False),
        sa.Column("role_arn", sa.String(length=110), nullable=True),
        sa.Column("redshift_metadata", sa.Text(), nullable=True),
        sa.Column("rds_metadata", sa.Text(), nullable=True),
        sa.Column("data_size", sa.BigInteger(), nullable=True),
        sa.Column("number_of_files", sa.Integer(), nullable=True),
        sa.Column("total_records", sa.BigInteger(), nullable=True),
        sa.Column("invalid_records", sa.BigInteger(), nullable=True),
        sa.Column("invalid_examples", sa.Text(), nullable=True),
        sa.Column("statistics", sa.Text(), nullable=True),
        *_entity_columns(),
    )
    with op.batch_alter_table("data_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_sources_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_data_sources_status"), ["status"], unique=False)

    op.create_table(
        "evaluations",
        sa.Column("ml_model_id", sa.String(length=64), nullable=False),
        sa.Column("evaluation_data_source_id", sa.String(length=64), nullable=False),
        sa.Column("input_data_location", sa.Text(), nullable=True),
        sa.Column("performance_metrics", sa.Text(), nullable=True),
        sa.Column("insights", sa.Text(), nullable=True),
        *_entity_columns(),
    )
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evaluations_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_evaluations_evaluation_data_source_id"),
            ["evaluation_data_source_id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_evaluations_ml_model_id"), ["ml_model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_evaluations_status"), ["status"], unique=False)

    op.create_table(
        "ml_models",
        sa.Column("model_type", sa.String(length=16), nullable=False),
        sa.Column("training_data_source_id", sa.String(length=64), nullable=False),
        sa.Column("input_data_location", sa.Text(), nullable=True),
        sa.Column("training_parameters", sa.Text(), nullable=False),
        sa.Column("recipe", sa.Text(), nullable=True),
        sa.Column("recipe_uri", sa.Text(), nullable=True),
        sa.Column("data_schema", sa.Text(), nullable=True),
        sa.Column("artifact_location", sa.Text(), nullable=True),
        sa.Column("size_in_bytes", sa.BigInteger(), nullable=True),
        sa.Column("score_threshold", sa.Float(), nullable=True),
        sa.Column("score_threshold_updated_at", sa.Float(), nullable=True),
        sa.Column("endpoint_status", sa.String(length=16), nullable=False),
        sa.Column("endpoint_url", sa.Text(), nullable=True),
        sa.Column("endpoint_created_at", sa.Float(), nullable=True),
        sa.Column("peak_requests_per_second", sa.Integer(), nullable=False),
        *_entity_columns(),
    )
    with op.batch_alter_table("ml_models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ml_models_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ml_models_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ml_models_training_data_source_id"), ["training_data_source_id"], unique=False
        )

    op.create_table(
        "tags",
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("resource_type", "resource_id", "key"),
    )


def downgrade() -> None:
    op.drop_table("tags")
    with op.batch_alter_table("ml_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ml_models_training_data_source_id"))
        batch_op.drop_index(batch_op.f("ix_ml_models_status"))
        batch_op.drop_index(batch_op.f("ix_ml_models_created_at"))

    op.drop_table("ml_models")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evaluations_status"))
        batch_op.drop_index(batch_op.f("ix_evaluations_ml_model_id"))
        batch_op.drop_index(batch_op.f("ix_evaluations_evaluation_data_source_id"))
        batch_op.drop_index(batch_op.f("ix_evaluations_created_at"))

    op.drop_table("evaluations")
    with op.batch_alter_table("data_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_sources_status"))
        batch_op.drop_index(batch_op.f("ix_data_sources_created_at"))

    op.drop_table("data_sources")
    with op.batch_alter_table("batch_predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batch_predictions_status"))
        batch_op.drop_index(batch_op.f("ix_batch_predictions_ml_model_id"))
        batch_op.drop_index(batch_op.f("ix_batch_predictions_created_at"))
        batch_op.drop_index(batch_op.f("ix_batch_predictions_batch_prediction_data_source_id"))

    op.drop_table("batch_predictions")
