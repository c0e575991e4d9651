"""The ORM's classes of the metastore's rows, each mapped onto its table of ``service.tables``.

For the operations that load, create and change rows as objects. Imported by the first of them (through
``Sessions``), not by a server's start nor its Predict path, which read the tables through Core: the ORM
and the mapping take a sixth of a server's start.
"""

# No ``from __future__ import annotations`` here: SQLAlchemy reads the ``Mapped[...]`` annotations when a
# class is declared, and string annotations would have to be evaluated first.
from typing import TYPE_CHECKING

from sqlalchemy.orm import DeclarativeBase, Mapped

from emrml.service import tables

if TYPE_CHECKING:
    from emrml.core.model import ExpectedModel


class Base(DeclarativeBase):
    metadata = tables.metadata


class Entity:
    """Columns every asynchronous Amazon ML object has (``tables._entity_columns``), typed."""

    id: Mapped[str]
    name: Mapped[str | None]
    status: Mapped[str]
    message: Mapped[str | None]
    created_by: Mapped[str]
    created_at: Mapped[float]
    last_updated_at: Mapped[float]
    started_at: Mapped[float | None]
    finished_at: Mapped[float | None]
    compute_time: Mapped[int | None]
    request: Mapped[str]
    progress: Mapped[float]
    progress_message: Mapped[str | None]
    worker: Mapped[str | None]
    heartbeat_at: Mapped[float | None]
    attempts: Mapped[int]
    tries: Mapped[int]
    confined: Mapped[bool]
    spark_application: Mapped[str | None]
    spark_jobs: Mapped[str | None]


class DataSource(Entity, Base):
    __table__ = tables.DATA_SOURCES
    kind = "DataSource"

    data_location: Mapped[str]
    data_rearrangement: Mapped[str | None]
    data_schema: Mapped[str | None]
    compute_statistics: Mapped[bool]
    role_arn: Mapped[str | None]
    redshift_metadata: Mapped[str | None]
    rds_metadata: Mapped[str | None]
    database_password: Mapped[str | None]
    data_size: Mapped[int | None]
    number_of_files: Mapped[int | None]
    total_records: Mapped[int | None]
    invalid_records: Mapped[int | None]
    invalid_examples: Mapped[str | None]
    statistics: Mapped[str | None]
    split_keys: Mapped[str]


class ReadsDatasource:
    """The column of the objects whose job reads a datasource, typed."""

    input_data_location: Mapped[str | None]


class MLModel(Entity, ReadsDatasource, Base):
    __table__ = tables.ML_MODELS
    kind = "MLModel"

    model_type: Mapped[str]
    training_data_source_id: Mapped[str]
    training_parameters: Mapped[str]
    recipe: Mapped[str | None]
    recipe_uri: Mapped[str | None]
    data_schema: Mapped[str | None]
    artifact_location: Mapped[str | None]
    size_in_bytes: Mapped[int | None]
    score_threshold: Mapped[float | None]
    score_threshold_updated_at: Mapped[float | None]
    endpoint_status: Mapped[str]
    endpoint_url: Mapped[str | None]
    endpoint_created_at: Mapped[float | None]
    peak_requests_per_second: Mapped[int]

    def expected(self) -> "ExpectedModel":
        """What this model's file must state too (``core.model.load_artifact``): every door loading the
        file for this model passes it, so that another model's file is refused rather than used."""
        from emrml.core.model import ExpectedModel

        return ExpectedModel(
            self.id, self.model_type, self.data_schema, self.recipe, self.training_parameters
        )


class Evaluation(Entity, ReadsDatasource, Base):
    __table__ = tables.EVALUATIONS
    kind = "Evaluation"

    ml_model_id: Mapped[str]
    evaluation_data_source_id: Mapped[str]
    performance_metrics: Mapped[str | None]
    insights: Mapped[str | None]


class BatchPrediction(Entity, ReadsDatasource, Base):
    __table__ = tables.BATCH_PREDICTIONS
    kind = "BatchPrediction"

    ml_model_id: Mapped[str]
    batch_prediction_data_source_id: Mapped[str]
    output_uri: Mapped[str]
    total_records: Mapped[int | None]
    invalid_records: Mapped[int | None]
    unparsed_records: Mapped[int | None]


class Tag(Base):
    __table__ = tables.TAGS

    resource_type: Mapped[str]
    resource_id: Mapped[str]
    key: Mapped[str]
    value: Mapped[str | None]
    position: Mapped[int]


class Stream(Base):
    __table__ = tables.STREAMS

    id: Mapped[str]
    name: Mapped[str | None]
    status: Mapped[str]
    message: Mapped[str | None]
    created_by: Mapped[str]
    created_at: Mapped[float]
    last_updated_at: Mapped[float]
    request: Mapped[str]
    ml_model_id: Mapped[str]
    input_uri: Mapped[str]
    output_uri: Mapped[str]
    dead_letter_uri: Mapped[str]
    starting_position: Mapped[str]
    starting_timestamp: Mapped[float | None]
    record_format: Mapped[str]
    confined: Mapped[bool]
    stop_requested_at: Mapped[float | None]
    start_generation: Mapped[int]


class StreamLease(Base):
    __table__ = tables.STREAM_LEASES

    stream_id: Mapped[str]
    shard_id: Mapped[str]
    parents: Mapped[str]
    owner: Mapped[str | None]
    counter: Mapped[int]
    checkpoint: Mapped[str | None]
    checkpointed_at: Mapped[float | None]
    renewed_at: Mapped[float | None]
    owner_switches: Mapped[int]
    records_in: Mapped[int]
    records_out: Mapped[int]
    records_failed: Mapped[int]
    millis_behind_latest: Mapped[int | None]


class StreamConsumer(Base):
    __table__ = tables.STREAM_CONSUMERS

    id: Mapped[str]
    stream_id: Mapped[str]
    host: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[float]
    heartbeat_at: Mapped[float]
    status: Mapped[str]
    records_per_second: Mapped[float]
    message: Mapped[str | None]


class User(Base):
    __table__ = tables.USERS

    name: Mapped[str]
    created_at: Mapped[float]
    enabled: Mapped[bool]


class AccessKey(Base):
    __table__ = tables.ACCESS_KEYS

    access_key_id: Mapped[str]
    user_name: Mapped[str]
    secret_encrypted: Mapped[str]
    created_at: Mapped[float]
    active: Mapped[bool]


class Group(Base):
    __table__ = tables.GROUPS

    name: Mapped[str]
    description: Mapped[str]
    builtin: Mapped[bool]
    created_at: Mapped[float]


class GroupMember(Base):
    __table__ = tables.GROUP_MEMBERS

    group_name: Mapped[str]
    user_name: Mapped[str]


class GroupStatement(Base):
    __table__ = tables.GROUP_STATEMENTS

    group_name: Mapped[str]
    sid: Mapped[int]
    document: Mapped[str]


class Login(Base):
    __table__ = tables.CONSOLE_LOGINS

    user_name: Mapped[str]
    password_hash: Mapped[str]
    updated_at: Mapped[float]


class BrowserSession(Base):
    __table__ = tables.CONSOLE_SESSIONS

    token_hash: Mapped[str]
    user_name: Mapped[str]
    csrf_token: Mapped[str]
    created_at: Mapped[float]
    last_seen_at: Mapped[float]


class LoginFailure(Base):
    __table__ = tables.LOGIN_FAILURES

    id: Mapped[int]
    throttle_key: Mapped[str]
    failed_at: Mapped[float]


class ShareLink(Base):
    __table__ = tables.SHARE_LINKS

    token_hash: Mapped[str]
    link_id: Mapped[str]
    kind: Mapped[str]
    object_id: Mapped[str]
    created_by: Mapped[str]
    created_at: Mapped[float]
    expires_at: Mapped[float | None]
    revoked_at: Mapped[float | None]


#: The classes of the Amazon ML entities, by kind (``tables.ENTITY_TABLES``'s).
ENTITY_CLASSES: dict[str, type[DataSource | MLModel | Evaluation | BatchPrediction]] = {
    cls.kind: cls for cls in (DataSource, MLModel, Evaluation, BatchPrediction)
}
