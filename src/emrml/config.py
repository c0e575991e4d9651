"""One ``Settings`` object: defaults, then ``$EMRML_HOME/emrml.toml``, then ``EMRML_*`` environment variables.

emrml runs with no configuration at all: home ``~/.emrml``, a SQLite metastore inside it, the local engine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from emrml.core.schema import DEFAULT_MAX_ATTRIBUTES
from emrml.errors import InvalidInputException

#: The account of the ARNs when the settings name none.
DEFAULT_ACCOUNT_ID = "000000000000"


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path("~/.emrml").expanduser())
    #: The folders whose files requests arriving through ``emrml serve`` (API and console) may read and write
    #: (service/confinement.py); empty means ``<home>/data``. EMRML_DATA_ROOTS lists them separated by
    #: ``os.pathsep`` (``:``), emrml.toml as an array. The CLI and library on their own home are not confined.
    data_roots: tuple[Path, ...] = ()
    #: SQLAlchemy URL; empty means the SQLite file ``<home>/metastore.db``.
    metastore_url: str = ""
    #: Account id used in ``CreatedByIamUser`` ARNs.
    account_id: str = DEFAULT_ACCOUNT_ID
    #: Amazon ML limits (spec section 11); all adjustable.
    max_record_bytes: int = 100 * 1024
    max_invalid_records: int = 10_000
    #: The schemas users give (requests, schema files, inference, SQL queries) have at most this many
    #: attributes; stored ones (a datasource's, a model's) load whatever their size (core/schema.py).
    max_attributes: int = DEFAULT_MAX_ATTRIBUTES
    max_concurrent_jobs: int = 25
    #: A worker that has not reported for this long is presumed dead and its job is retried.
    job_lease_seconds: float = 60.0
    job_max_attempts: int = 2
    #: Bytes of CSV per Arrow record batch when streaming data; bounds memory.
    batch_bytes: int = 4 * 1024 * 1024
    #: Training parameters a CreateMLModel leaves out: "console" (the Amazon ML console's: shuffle auto,
    #: L2 1e-6, 100 MiB; the default, since rows in a meaningful order train badly unshuffled) or "api"
    #: (the Amazon ML API's, strictly: 10 passes, no shuffle, no regularization, 32 MiB).
    training_defaults: str = "console"
    #: The base URL clients reach this server at: returned as a real-time endpoint's ``EndpointUrl``, which
    #: boto3 sends ``Predict`` to (spec 1.3).
    public_url: str = "http://127.0.0.1:8080"
    #: Requests per second one real-time endpoint admits, and all endpoints of this process together.
    peak_requests_per_second: int = 200
    total_requests_per_second: int = 10_000
    #: The largest request body of a console form carrying a file (the storage browser's upload: the file
    #: and the form's few fields), refused with 413 beyond. Starlette spools an upload past 1 MiB to a file
    #: in the temporary folder (TMPDIR) until it is written to its folder.
    console_upload_max_bytes: int = 1024 * 1024 * 1024
    #: The server's access log, one JSON line per request: lines are written this many at a time (and at
    #: least once a second), so a request costs no write; 1 writes every line at once, 0 turns it off.
    #: The lines of a batch are formatted together on the event loop: 64 keeps that pause short (wrk, three
    #: interleaved pairs: 256 gave 3 % fewer requests a second and a higher p99).
    access_log_batch: int = 64
    #: The share of requests the access log records (1.0 all, 0.01 one in a hundred at random).
    access_log_sample: float = 1.0
    #: "strict": a ``Predict`` whose ``PredictEndpoint`` is not the model's ``EndpointUrl`` is refused;
    #: "lenient": ``PredictEndpoint`` is not checked (spec open question 20).
    predict_endpoint_check: str = "strict"
    #: ``emrml serve`` over HTTPS: PEM certificate chain and key; client certificates signed by
    #: ``tls_client_ca`` are asked for when ``tls_client_auth`` is "optional", demanded when "required"
    #: (default: "required" when a client CA is given). ``--tls-*`` options override these.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tls_client_auth: str = ""
    #: The proxies in front of ``emrml serve`` whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are
    #: believed: IP addresses and networks, comma-separated (``"10.0.0.5, 10.1.0.0/16"``). Empty (the
    #: default): none, so the client address the console's login throttle counts and the access log records
    #: is the connection's own, which a client cannot choose. emrml.toml may give an array;
    #: ``--forwarded-allow-ips`` overrides it.
    forwarded_allow_ips: str = ""
    #: SQL datasources: each RDS InstanceIdentifier / Redshift ClusterIdentifier a request may name, mapped to
    #: a connection URL without credentials (the request brings them), e.g. ``{"sales-db":
    #: "mysql://db.internal:3306", "warehouse": "postgresql://dw.internal:5439"}``: a ``[sql_connections]``
    #: table in emrml.toml, a JSON object in EMRML_SQL_CONNECTIONS.
    sql_connections: dict[str, str] = field(default_factory=dict)
    #: Seconds a SQL datasource's server has to take a connection and sign in: one that says nothing for
    #: that long (a proxy with no database behind it, a port of another protocol) fails the datasource,
    #: naming it. A query is then waited for as long as it runs.
    sql_connect_seconds: float = 10.0
    #: Stream scoring (``emrml stream``): the Kinesis endpoint (empty: AWS's, from the region), the region
    #: (empty: the AWS configuration's, else us-east-1); a consumer that has not renewed its shard leases
    #: for ``stream_lease_seconds`` loses them to the others; records per GetRecords (micro-batch: Kinesis's
    #: maximum, the KCL's default: GetRecords returns what is there, so a large limit adds no latency, and
    #: each micro-batch pays the featurizer's fixed cost of a few ms once); file outputs roll to a new part
    #: after this many bytes or seconds; an empty read waits this long.
    kinesis_endpoint_url: str = ""
    kinesis_region: str = ""
    stream_lease_seconds: float = 10.0
    stream_batch_records: int = 10_000
    stream_roll_bytes: int = 64 * 1024 * 1024
    stream_roll_seconds: float = 60.0
    stream_idle_seconds: float = 0.5
    #: S3 (storage/s3.py): an S3-compatible store's URL (empty: AWS), the region (empty: boto3's default),
    #: server-side encryption of every object written ("" = the bucket's default, "AES256", "aws:kms" with
    #: ``s3_sse_kms_key_id``, empty for the account's aws/s3 key) and the multipart part size.
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_sse: str = ""
    s3_sse_kms_key_id: str = ""
    s3_part_bytes: int = 16 * 1024 * 1024
    #: Client-side encryption of S3 objects (storage/cse.py, docs/encryption.md): the key that encrypts
    #: what emrml writes and decrypts what it reads ("aes:<key file>", "rsa:<PEM file>", "kms:<key id>",
    #: "plugin:<module>:<factory>"; empty: none), older keys still accepted for reading (comma-separated,
    #: same forms), and the KMS endpoint for kms: keys (empty: AWS). With a key set, an object without an
    #: encryption envelope is refused (anyone who can write to the bucket could have put it there), unless
    #: ``s3_cse_allow_plaintext`` is true (while migrating a bucket to client-side encryption).
    s3_cse_key: str = ""
    s3_cse_old_keys: str = ""
    s3_cse_allow_plaintext: bool = False
    kms_endpoint_url: str = ""
    #: Where jobs run (engine/): "local" (this machine's processes) or "spark" (an Apache Spark application,
    #: engine/spark/, docs/spark.md). ``spark_master``: the Spark master URL (``local[N]``,
    #: ``spark://host:port``, ``yarn``, ``k8s://...``); ``spark_conf``: any ``spark.*`` settings passed
    #: through (a ``[spark_conf]`` table in emrml.toml, a JSON object in EMRML_SPARK_CONF);
    #: ``spark_encryption``: authentication and encryption between the driver and executors ("auto": on for
    #: every master that is not ``local``, "on", "off"); a master that does not answer within
    #: ``spark_connect_seconds`` fails the job rather than waiting, and so does a job whose application has
    #: had no executor for ``spark_executor_wait_seconds`` (its only worker died, or none fits it).
    #: Console logins against an LDAP directory (service/directory.py, docs/security.md); empty ``ldap_url``
    #: (``ldap://host:389``, ``ldaps://host:636``): local passwords only. A user's entry is the
    #: ``ldap_user_dn`` pattern (``uid={user},ou=people,dc=example,dc=org``) or found under
    #: ``ldap_search_base`` by ``ldap_search_filter`` after a bind as ``ldap_bind_dn``; ``ldap_start_tls``
    #: "on" upgrades ldap:// with StartTLS. Groups: entries under ``ldap_group_base`` naming the user
    #: (member, uniqueMember or memberUid); ``ldap_group_map`` maps their DNs to emrml groups, set at every
    #: login.
    ldap_url: str = ""
    ldap_user_dn: str = ""
    ldap_search_base: str = ""
    ldap_search_filter: str = "(uid={user})"
    ldap_bind_dn: str = ""
    ldap_bind_password: str = ""
    ldap_start_tls: str = "off"
    ldap_group_base: str = ""
    ldap_group_map: dict[str, str] = field(default_factory=dict)
    ldap_timeout: float = 5.0
    engine: str = "local"
    spark_master: str = "local[2]"
    spark_conf: dict[str, str] = field(default_factory=dict)
    spark_encryption: str = "auto"
    spark_connect_seconds: float = 10.0
    spark_executor_wait_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not self.data_roots:
            # A frozen dataclass: the default depends on the home, so it is filled in here.
            object.__setattr__(self, "data_roots", (self.home / "data",))
        choices = {
            "training_defaults": ("api", "console"),
            "predict_endpoint_check": ("strict", "lenient"),
            "s3_sse": ("", "AES256", "aws:kms"),
            "engine": ("local", "spark"),
            "spark_encryption": ("auto", "on", "off"),
            "ldap_start_tls": ("off", "on"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                # An empty choice (s3_sse: none) is said in words: a list starting ", AES256" reads as a typo.
                listed = ", ".join(choice for choice in allowed if choice) + (
                    ", or empty" if "" in allowed else ""
                )
                raise InvalidInputException(
                    f"setting {name} must be one of {listed} (got {getattr(self, name)!r})"
                )
        if self.s3_sse_kms_key_id and self.s3_sse != "aws:kms":
            # Else the key was left out of every write: objects were stored under the bucket's default
            # encryption (or SSE-S3), not the KMS key the setting names, without a word.
            raise InvalidInputException(
                f'setting s3_sse_kms_key_id names a KMS key, which only s3_sse = "aws:kms" uses (s3_sse is '
                f"{self.s3_sse or 'empty'!r}): set s3_sse to aws:kms, or remove s3_sse_kms_key_id"
            )
        if self.console_upload_max_bytes < 1:
            raise InvalidInputException(
                "setting console_upload_max_bytes must be a positive number of bytes, e.g. 1073741824 "
                f"(got {self.console_upload_max_bytes})"
            )
        if not 0 < self.sql_connect_seconds < math.inf:
            # Else every SQL datasource failed at its first connection (0: no wait at all), or waited on a
            # silent server for ever.
            raise InvalidInputException(
                f"setting sql_connect_seconds must be a positive number of seconds, e.g. 10 (got "
                f"{self.sql_connect_seconds:g})"
            )
        if self.batch_bytes < 1:
            # Else every job failed with an internal error as it started reading its data.
            raise InvalidInputException(
                "setting batch_bytes must be a positive number of bytes, e.g. 4194304 "
                f"(got {self.batch_bytes})"
            )
        object.__setattr__(self, "forwarded_allow_ips", proxy_addresses(self.forwarded_allow_ips))
        for name in ("s3_endpoint_url", "kms_endpoint_url"):
            url = getattr(self, name)
            # Else every read of S3 failed later with botocore's "ValueError: Invalid endpoint", unnamed.
            if url and not re.fullmatch(r"https?://[^/?#\s]+(/\S*)?", url):
                raise InvalidInputException(
                    f"setting {name} must be an http:// or https:// URL, e.g. http://127.0.0.1:9000 "
                    f"(got {url!r})"
                )

        if self.ldap_url:
            self._check_ldap()

        if not _SPARK_MASTER.fullmatch(self.spark_master):
            # Else a typo showed only once a job ran: as a master that "does not answer" (spark://host without
            # its port), or as Spark's own parse error after the JVM's start.
            raise InvalidInputException(
                f"setting spark_master must be local, local[N], local[*], spark://host:port (several "
                f"host:port comma-separated for standby masters), yarn or k8s://https://host:port "
                f"(got {self.spark_master!r})"
            )

    def _check_ldap(self) -> None:
        """Refuse LDAP settings that would let one entry's password log in as any user name."""
        if not self.ldap_user_dn and not self.ldap_search_base:
            raise InvalidInputException(
                "setting ldap_url needs ldap_user_dn (e.g. uid={user},ou=people,dc=example,dc=org) or "
                "ldap_search_base to find a user's entry"
            )
        # The pattern in use (ldap_user_dn, else the search's filter) without {user} would find the same
        # entry for every name typed at the login page: its password would log in as any user the console
        # has no local password for.
        name = "ldap_user_dn" if self.ldap_user_dn else "ldap_search_filter"
        if "{user}" not in getattr(self, name):
            raise InvalidInputException(
                f"setting {name} must contain {{user}}, where the login's user name goes "
                f"(got {getattr(self, name)!r})"
            )

    @property
    def database_url(self) -> str:
        return self.metastore_url or f"sqlite:///{self.home / 'metastore.db'}"

    @property
    def scratch_dir(self) -> Path:
        return self.home / "scratch"

    @property
    def s3_configured(self) -> bool:
        """An S3 setting is given, so jobs are likely to read or write S3 (their fork server preloads it)."""
        return bool(self.s3_endpoint_url or self.s3_region or self.s3_sse or self.s3_cse_key)

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``emrml.toml`` in the home folder and ``EMRML_<FIELD>`` variables."""
        env = os.environ if environ is None else environ
        home = Path(str(overrides.get("home") or env.get("EMRML_HOME") or "~/.emrml")).expanduser()
        values: dict[str, object] = {"home": home}
        toml_file = home / "emrml.toml"
        if toml_file.is_file():
            import tomllib  # only for a home with a settings file: a few ms of every command's start

            try:
                values.update(tomllib.loads(toml_file.read_text()))
            except tomllib.TOMLDecodeError as exc:
                raise InvalidInputException(f"{toml_file}: {exc}") from None
        for f in dataclasses.fields(cls):
            raw = env.get(f"EMRML_{f.name.upper()}")
            if raw is not None and f.name != "home":
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**_coerce(values))


#: The master URLs Spark takes (its SparkContext's forms; local-cluster is Spark's own test mode).
_SPARK_HOST_PORT = r"(\[[0-9A-Fa-f:.]+\]|[^\s/:,\[\]]+):[0-9]{1,5}"
_SPARK_MASTER = re.compile(
    r"local(\[([1-9][0-9]*|\*)(,\s*[0-9]+)?\])?"
    r"|local-cluster\[\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*,\s*[1-9][0-9]*\s*\]"
    rf"|spark://{_SPARK_HOST_PORT}(,{_SPARK_HOST_PORT})*"
    r"|yarn"
    r"|k8s://\S+"
)


#: Comma-separated settings that emrml.toml may also give as an array, as it does the data roots.
_COMMA_LISTS = ("forwarded_allow_ips",)


def _coerce(values: dict[str, object]) -> dict[str, object]:
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    out: dict[str, object] = {}
    for name, value in values.items():
        if name not in types:
            raise InvalidInputException(f"unknown setting {name!r}")
        kind = types[name]
        try:
            if kind == "Path":
                out[name] = Path(str(value)).expanduser()
            elif kind.startswith("tuple[Path"):
                out[name] = _paths(value)
            elif kind == "bool":
                out[name] = _flag(value)
            elif kind == "int":
                out[name] = int(value)  # type: ignore[call-overload]
            elif kind == "float":
                out[name] = float(value)  # type: ignore[arg-type]
            elif kind.startswith("dict"):
                out[name] = _mapping(name, value)
            elif name in _COMMA_LISTS and isinstance(value, list):
                out[name] = ",".join(str(item) for item in value)
            else:
                out[name] = str(value)
        except ValueError:
            raise InvalidInputException(f"setting {name}: {value!r} is not a valid {kind}") from None
    return out


def proxy_addresses(value: str) -> str:
    """``value`` (IP addresses and networks, comma-separated) in canonical form; InvalidInputException
    naming the first entry that is neither. uvicorn would take such an entry for a host name that never
    matches, and ``*`` (every peer) would hand the choice of client address back to the clients."""
    entries = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        try:
            if "/" in entry:
                entries.append(str(ipaddress.ip_network(entry, strict=False)))
            else:
                entries.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            raise InvalidInputException(
                f"setting forwarded_allow_ips: {entry!r} is not an IP address or network (e.g. 10.0.0.5, "
                "10.1.0.0/16)"
            ) from None
    return ",".join(entries)


def _flag(value: object) -> bool:
    """A true/false setting: a TOML boolean, or (environment) true/false, 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    spelled = str(value).strip().lower()
    if spelled in ("true", "1", "yes", "on"):
        return True
    if spelled in ("false", "0", "no", "off"):
        return False
    raise ValueError(value)


def _paths(value: object) -> tuple[Path, ...]:
    """Folders: a list (emrml.toml) or one string of them separated by ``os.pathsep`` (environment); each
    absolute (``~`` expanded, relative ones taken from the working directory)."""
    items = value.split(os.pathsep) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str | Path) for item in items):
        raise ValueError(value)
    return tuple(Path(str(item)).expanduser().absolute() for item in items if str(item).strip())


def _mapping(name: str, value: object) -> dict[str, str]:
    """A table of strings: a dict (emrml.toml) or a JSON object (environment)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidInputException(f"setting {name}: not a JSON object ({exc})") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInputException(f"setting {name}: expected a table of strings, got {value!r}")
    return {str(k): v for k, v in value.items()}
