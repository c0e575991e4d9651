"""The metastore's tables, declared once with SQLAlchemy Core: one per Amazon ML entity, plus tags, streams,
users, groups, console logins and share links.

Times are epoch seconds (floats), as the API speaks them. JSON documents (schemas, statistics, parameters)
are stored as text so the same tables work on SQLite, PostgreSQL and MySQL / MariaDB. The schema is created
and upgraded by the Alembic migrations in ``migrations/``; never by ``create_all``.

Core, not the ORM: a server reads access keys, policies and its endpoints' models through these tables
alone, so it answers its first Predict without importing the ORM. The ORM's classes (``service.rows``) are
mapped onto these same tables for the operations that load and change rows as objects.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    true,
)

ENTITY_ID = String(64)
STATUS = String(16)

metadata = MetaData()


def _entity_columns() -> list[Column[Any]]:
    """Columns every asynchronous Amazon ML object has (spec 4.1), plus the job bookkeeping: new ones for
    each table (a column belongs to one)."""
    return [
        Column("id", ENTITY_ID, primary_key=True),
        #: Indexed, as the creator and the data location, for Describe*'s filters; on MySQL and MariaDB, the
        #: first 255 characters of each (migration 0018).
        Column("name", Text, index=True),
        Column("status", STATUS, index=True, nullable=False),
        Column("message", Text),
        Column("created_by", String(256), index=True, nullable=False),
        Column("created_at", Float, index=True, nullable=False),
        Column("last_updated_at", Float, nullable=False),
        Column("started_at", Float),
        Column("finished_at", Float),
        Column("compute_time", BigInteger),
        #: The Create request as canonical JSON: a repeated Create with other parameters is a mismatch.
        Column("request", Text, nullable=False),
        # Job bookkeeping: fraction done, the worker holding the job, its last sign of life.
        Column("progress", Float, default=0.0, nullable=False),
        Column("progress_message", Text),
        Column("worker", String(128)),
        Column("heartbeat_at", Float),
        #: The number of the job's latest attempt: it only grows (every write of a worker is fenced by it, and
        #: a batch prediction's temporaries are named after it).
        Column("attempts", Integer, default=0, nullable=False),
        #: Tries since the job was last queued as new, for ``Settings.job_max_attempts``: a FAILED job queued
        #: again starts anew, and a try interrupted by a server's stop does not count.
        Column("tries", Integer, default=0, nullable=False),
        #: Created by a request through ``emrml serve``: the job reads local files only inside the data roots
        #: (``service.confinement``), checking each file again as it opens it.
        Column("confined", Boolean, default=False, server_default=false(), nullable=False),
        #: On the Spark engine: the application the job ran on and the Spark job ids it ran (a JSON list).
        Column("spark_application", String(128)),
        Column("spark_jobs", Text),
    ]


def _reads_datasource() -> Column[Any]:
    """The column of the objects whose job reads a datasource: models, evaluations, batch predictions."""
    #: The datasource's location when the object was created (the API's ``InputDataLocationS3``).
    return Column("input_data_location", Text, index=True)


DATA_SOURCES = Table(
    "data_sources",
    metadata,
    *_entity_columns(),
    Column("data_location", Text, index=True, nullable=False),
    Column("data_rearrangement", Text),
    Column("data_schema", Text),
    Column("compute_statistics", Boolean, default=False, nullable=False),
    Column("role_arn", String(110)),
    Column("redshift_metadata", Text),
    Column("rds_metadata", Text),
    #: An RDS or Redshift request's DatabaseCredentials.Password, encrypted with the home's secrets.key
    #: (``service.identity.SecretBox``); ``request`` holds a keyed hash of it in its place.
    Column("database_password", Text),
    Column("data_size", BigInteger),
    Column("number_of_files", Integer),
    Column("total_records", BigInteger),
    Column("invalid_records", BigInteger),
    Column("invalid_examples", Text),
    Column("statistics", Text),
    #: What a random split hashes for each file: "relative" (its path below the location) or "absolute"
    #: (its object key: datasources recorded before relative keys keep the split they had).
    Column("split_keys", String(16), default="relative", nullable=False),
)


ML_MODELS = Table(
    "ml_models",
    metadata,
    *_entity_columns(),
    _reads_datasource(),
    Column("model_type", String(16), nullable=False),
    Column("training_data_source_id", ENTITY_ID, index=True, nullable=False),
    Column("training_parameters", Text, nullable=False),
    Column("recipe", Text),
    Column("recipe_uri", Text),
    Column("data_schema", Text),
    Column("artifact_location", Text),
    Column("size_in_bytes", BigInteger),
    Column("score_threshold", Float),
    Column("score_threshold_updated_at", Float),
    Column("endpoint_status", String(16), default="NONE", nullable=False),
    #: No longer written (older versions kept the creating process's URL here): a model's EndpointUrl is
    #: the public URL of the server asked (``service.mounted.endpoint_url``).
    Column("endpoint_url", Text),
    Column("endpoint_created_at", Float),
    Column("peak_requests_per_second", Integer, default=0, nullable=False),
)


EVALUATIONS = Table(
    "evaluations",
    metadata,
    *_entity_columns(),
    _reads_datasource(),
    Column("ml_model_id", ENTITY_ID, index=True, nullable=False),
    Column("evaluation_data_source_id", ENTITY_ID, index=True, nullable=False),
    Column("performance_metrics", Text),
    Column("insights", Text),
)


BATCH_PREDICTIONS = Table(
    "batch_predictions",
    metadata,
    *_entity_columns(),
    _reads_datasource(),
    Column("ml_model_id", ENTITY_ID, index=True, nullable=False),
    Column("batch_prediction_data_source_id", ENTITY_ID, index=True, nullable=False),
    Column("output_uri", Text, nullable=False),
    Column("total_records", BigInteger),
    Column("invalid_records", BigInteger),
    #: Records scored although a NUMERIC or BINARY value could not be read (it counted as missing).
    Column("unparsed_records", BigInteger),
)


TAGS = Table(
    "tags",
    metadata,
    Column("resource_type", String(32), primary_key=True),
    Column("resource_id", ENTITY_ID, primary_key=True),
    #: On MySQL and MariaDB in a collation without padding (migration 0017): "a" and "a " are two keys.
    Column("key", String(128), primary_key=True),
    Column("value", String(256)),
    #: Insertion order, so DescribeTags lists tags as they were added.
    Column("position", Integer, nullable=False),
)


#: A stream scoring: consumers score the records of a Kinesis stream with a model (``emrml.stream``).
#:
#: ``status``: RUNNING (consumers should run), STOPPING (consumers finish their batch, checkpoint and
#: exit), STOPPED. Not an Amazon ML entity: it has no job; its consumers are processes of their own.
STREAMS = Table(
    "streams",
    metadata,
    Column("id", ENTITY_ID, primary_key=True),
    Column("name", Text),
    Column("status", STATUS, index=True, nullable=False),
    Column("message", Text),
    Column("created_by", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_updated_at", Float, nullable=False),
    #: The start request as canonical JSON: a repeated start with other parameters is a mismatch.
    Column("request", Text, nullable=False),
    Column("ml_model_id", ENTITY_ID, index=True, nullable=False),
    Column("input_uri", Text, nullable=False),
    Column("output_uri", Text, nullable=False),
    Column("dead_letter_uri", Text, nullable=False),
    #: TRIM_HORIZON, LATEST or AT_TIMESTAMP: where a shard without a checkpoint starts.
    Column("starting_position", String(16), nullable=False),
    Column("starting_timestamp", Float),
    #: "auto", "json" or "csv": how records are read.
    Column("record_format", String(8), nullable=False),
    #: Started (or started again) by a request through ``emrml serve``: its consumers write the local output
    #: and dead-letter parts the request named through the confined jobs' write check
    #: (``service.confinement.checked_here``), each file in its folder as opened.
    Column("confined", Boolean, default=False, server_default=false(), nullable=False),
    #: When the stream was last asked to stop (it became STOPPING): the consumers that ran then and went
    #: silent instead of stopping make it FAILED (``service.stream_status.settle_stopping``). Not
    #: ``last_updated_at``, which a consumer's failure message written after the stop moves later.
    Column("stop_requested_at", Float),
    #: How many times StartStream has claimed the stream to start its consumers: a start raises it from the
    #: value it read, with the status it read (``service.streams._claim``), so that of two starts that read
    #: the stream alike only one starts consumers.
    Column("start_generation", Integer, default=0, nullable=False),
)


#: One shard of a stream: who holds it, its lease counter and checkpoint (KCL's lease table).
#:
#: An owner renews by raising ``counter``; another consumer takes the lease over once it has seen the
#: counter unchanged for a lease time on its own clock, so no two machines need agreeing clocks.
#: ``checkpoint`` is the sequence number of the last record whose outputs are durable, or ``SHARD_END``.
STREAM_LEASES = Table(
    "stream_leases",
    metadata,
    Column("stream_id", ENTITY_ID, primary_key=True),
    Column("shard_id", String(128), primary_key=True),
    #: The shard's parents as a JSON list (a split has one, a merge two): consumed only once they end.
    Column("parents", Text, nullable=False),
    Column("owner", String(128)),
    Column("counter", BigInteger, default=0, nullable=False),
    Column("checkpoint", String(128)),
    Column("checkpointed_at", Float),
    Column("renewed_at", Float),
    #: How often the lease was taken from a live or expired owner (takeovers and steals).
    Column("owner_switches", Integer, default=0, nullable=False),
    Column("records_in", BigInteger, default=0, nullable=False),
    Column("records_out", BigInteger, default=0, nullable=False),
    Column("records_failed", BigInteger, default=0, nullable=False),
    Column("millis_behind_latest", BigInteger),
)


#: A consumer process of a stream, as it last reported itself.
STREAM_CONSUMERS = Table(
    "stream_consumers",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("stream_id", ENTITY_ID, index=True, nullable=False),
    Column("host", String(256), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("status", STATUS, nullable=False),
    #: Records per second scored over the last reporting interval.
    Column("records_per_second", Float, default=0.0, nullable=False),
    Column("message", Text),
)


USERS = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    #: A disabled user's access keys, console logins and share links are refused (``service.access``).
    Column("enabled", Boolean, server_default=true(), nullable=False),
)


ACCESS_KEYS = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name", ondelete="CASCADE"), index=True, nullable=False),
    #: The secret access key, Fernet-encrypted with the key-encryption key (URL-safe base64 text).
    Column("secret_encrypted", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    #: An inactive key is refused like an unknown one, and can be made active again (IAM's Inactive).
    Column("active", Boolean, server_default=true(), nullable=False),
)


GROUPS = Table(
    "groups",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("builtin", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
)


GROUP_MEMBERS = Table(
    "group_members",
    metadata,
    Column("group_name", String(64), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True),
    Column(
        "user_name", String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True, index=True
    ),
)


GROUP_STATEMENTS = Table(
    "group_statements",
    metadata,
    Column("group_name", String(64), ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True),
    Column("sid", Integer, primary_key=True, autoincrement=False),
    #: The statement as JSON (``Statement.document``).
    Column("document", Text, nullable=False),
)


CONSOLE_LOGINS = Table(
    "console_logins",
    metadata,
    Column("user_name", String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)


CONSOLE_SESSIONS = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name", ondelete="CASCADE"), index=True, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
)


#: One failed login, counted against one throttle key (a row per key it counts against).
LOGIN_FAILURES = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    #: SHA-256 of the key as JSON: a fixed length, whatever user name and address were tried.
    Column("throttle_key", String(64), index=True, nullable=False),
    Column("failed_at", Float, index=True, nullable=False),
)


SHARE_LINKS = Table(
    "share_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    #: Shown in listings so a link can be told apart and revoked; the token itself is never stored.
    Column("link_id", String(16), unique=True, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("object_id", String(64), index=True, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
)


#: The tables of the Amazon ML entities, by kind (``DataSource``, ``MLModel``, ...).
ENTITY_TABLES: dict[str, Table] = {
    "DataSource": DATA_SOURCES,
    "MLModel": ML_MODELS,
    "Evaluation": EVALUATIONS,
    "BatchPrediction": BATCH_PREDICTIONS,
}
#: The tables of the objects users create, by kind: each row's ``created_by`` is its creator's ARN.
OWNED_TABLES: dict[str, Table] = {**ENTITY_TABLES, "Stream": STREAMS}
