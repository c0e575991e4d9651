"""Objects of S3 and S3-compatible stores, through boto3.

Credentials come from boto3's standard chain (environment, shared files, instance or container roles);
``Settings.s3_endpoint_url`` (``EMRML_S3_ENDPOINT_URL``) points the client at an S3-compatible store.

* **Reads stream.** ``open`` returns a seekable reader that issues one ranged ``GetObject`` from the
  current position and reads its body as the caller consumes it; a seek starts a new range. A body that
  breaks off is resumed from where it stopped, with backoff; every range is pinned to the object's ETag, so
  an object replaced while it is read fails the read instead of mixing two versions.
* **Listings page** through ``ListObjectsV2`` (1,000 keys a page) until the end.
* **Writes are whole or absent** (``storage.s3_upload``). An object is one ``PutObject`` when small, else
  a multipart upload of ``part_bytes`` parts (larger past a thousand parts: S3 takes ten thousand), a few
  in flight at once (memory: the part size × (in flight + 1)); a failed block aborts the upload, so
  nothing appears and no parts are left behind.
* **Retries** of every request (throttling, 5xx, broken connections) are botocore's "standard" mode:
  exponential backoff with jitter, ``max_attempts`` tries.

S3 errors become ``OSError`` subclasses whose message starts with S3's error code (``NoSuchBucket: …``),
which ``storage.locations`` turns into the user's error naming the location.
"""

from __future__ import annotations

import errno
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from emrml.errors import InvalidInputException
from emrml.storage.backend import Commit, commit_now

if TYPE_CHECKING:
    from emrml.config import Settings
    from emrml.storage.locations import FileRef

#: Objects of at most this size are read whole when opened (``S3Store.open``).
SMALL_OBJECT_BYTES = 256 << 10
#: The smallest part S3 accepts (all but the last part of a multipart upload).
MIN_PART_BYTES = 5 << 20
#: S3's largest part, and largest PutObject (an object smaller than a part is one).
MAX_PART_BYTES = 5 << 30


@dataclass(frozen=True)
class S3Settings:
    """How emrml reaches S3 and what it asks of every object it writes."""

    endpoint_url: str = ""
    region: str = ""
    #: Server-side encryption of written objects: "" (the bucket's default), "AES256" or "aws:kms".
    sse: str = ""
    #: The KMS key for ``sse == "aws:kms"``; empty means the account's ``aws/s3`` key.
    sse_kms_key_id: str = ""
    #: Objects of at least this size are written by multipart upload, in parts of this size.
    part_bytes: int = 16 << 20
    #: Parts uploaded at once (each buffered in memory).
    parts_in_flight: int = 4
    #: Tries of each request (botocore's standard retry mode: exponential backoff with jitter).
    max_attempts: int = 5
    #: Client-side encryption (``storage.cse``): a provider, or None for none.
    cse: Any = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Settings:
        cse = None
        if settings.s3_cse_key:  # only then: the encryption code is not imported by every command
            from emrml.storage.cse_settings import provider_from_settings

            cse = provider_from_settings(settings)
        return cls(
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            sse=settings.s3_sse,
            sse_kms_key_id=settings.s3_sse_kms_key_id,
            part_bytes=min(max(settings.s3_part_bytes, MIN_PART_BYTES), MAX_PART_BYTES),
            cse=cse,
        )

    def write_arguments(self) -> dict[str, str]:
        """The SSE members of PutObject / CreateMultipartUpload / CopyObject."""
        if not self.sse:
            return {}
        arguments = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.sse_kms_key_id:
            arguments["SSEKMSKeyId"] = self.sse_kms_key_id
        return arguments


class S3Error(OSError):
    """An S3 request failed; ``code`` is S3's error code (``NoSuchBucket``, ``AccessDenied``…)."""

    def __init__(self, code: str, message: str, number: int = errno.EIO, location: str = "") -> None:
        text = f"{code}: {message}" if message else code
        if location:
            # The object as a file's OSError names its file: in ``str()``, not in ``strerror``, which the
            # messages that name the object themselves (``storage_error``, ``named_reads``) give.
            super().__init__(number, text, location)
        else:
            super().__init__(number, text)
        self.code = code


class S3NotFound(S3Error, FileNotFoundError):
    pass


class S3AccessDenied(S3Error, PermissionError):
    pass


def split(location: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); the key may be empty."""
    bucket, _, key = location[len("s3://") :].partition("/")
    return bucket, key


def s3_error(exc: Exception, bucket: str = "", key: str = "") -> OSError:
    """A botocore exception as an ``OSError`` carrying S3's error code."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        message = str(error.get("Message") or "")
        if code in ("404", "NoSuchKey"):
            return S3NotFound("NoSuchKey", message or "The specified key does not exist.", errno.ENOENT)
        if code == "NoSuchBucket" or (code == "404" and not key):
            return S3Error("NoSuchBucket", message or f"The specified bucket {bucket} does not exist")
        if code in ("403", "AccessDenied"):
            return S3AccessDenied("AccessDenied", message or "Access Denied", errno.EACCES)
        return S3Error(code, message)
    if isinstance(exc, NoCredentialsError):
        return S3Error("NoCredentials", "no AWS credentials found (environment, ~/.aws or instance role)")
    if isinstance(exc, BotoCoreError):
        location = f"s3://{bucket}/{key}" if key else f"s3://{bucket}" if bucket else ""
        return S3Error(type(exc).__name__, _endpoint_only(exc), location=location)
    return S3Error(type(exc).__name__, str(exc))


def _endpoint_only(exc: Exception) -> str:
    """botocore's message of a request that failed for good (it cannot connect, timed out, the connection
    closed), the request's URL in it cut to the endpoint: the rest is the bucket and the key, which the
    error names already."""
    text = str(exc)
    url = getattr(exc, "kwargs", {}).get("endpoint_url")
    if isinstance(url, str):
        parts = urlsplit(url)
        if parts.scheme and parts.netloc:
            text = text.replace(url, f"{parts.scheme}://{parts.netloc}")
    return text


class S3Store:
    """Lists, reads and writes objects; one boto3 client per process (clients do not survive a fork)."""

    def __init__(self, settings: S3Settings | None = None) -> None:
        self.settings = settings or S3Settings(endpoint_url=os.environ.get("EMRML_S3_ENDPOINT_URL", ""))
        self._client: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = self._new_client()
                    self._pid = os.getpid()
        return self._client

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"max_attempts": self.settings.max_attempts, "mode": "standard"},
            # Upload parts in flight, and the objects ``locations.open_files`` reads ahead.
            max_pool_connections=max(10, self.settings.parts_in_flight * 2) + 8,
            s3={"addressing_style": "path"} if self.settings.endpoint_url else {},
        )
        session = boto3.session.Session()
        region = self.settings.region or session.region_name or "us-east-1"
        return session.client(
            "s3", endpoint_url=self.settings.endpoint_url or None, region_name=region, config=config
        )

    def warm_up(self) -> None:
        """Import boto3 and build one client that never sends a request, so that the modules a client
        loads lazily (about 0.5 s) are in memory before the job fork server forks its workers. Explicit
        credentials: resolving real ones could wait on an instance metadata service that is not there."""
        import boto3

        boto3.session.Session().client(
            "s3", region_name="us-east-1", aws_access_key_id="-", aws_secret_access_key="-"
        )

    def call(self, operation: str, bucket: str, key: str = "", **arguments: Any) -> Any:
        """``client.<operation>(Bucket=bucket, [Key=key,] **arguments)``, errors as ``S3Error``."""
        try:
            if key:
                arguments["Key"] = key
            return getattr(self.client, operation)(Bucket=bucket, **arguments)
        except Exception as exc:
            if isinstance(exc, OSError | InvalidInputException):
                raise
            raise s3_error(exc, bucket, key) from exc

    # --- listing ----------------------------------------------------------------------------------------

    def iter_objects(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix``, in key order, following continuation tokens."""
        token: str | None = None
        while True:
            page = self.call(
                "list_objects_v2", bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {})
            )
            yield from page.get("Contents", [])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def list_page(
        self, bucket: str, prefix: str, token: str | None = None, limit: int = 1000
    ) -> tuple[list[str], list[dict[str, Any]], str | None]:
        """One page of a folder view: (sub-prefixes, objects, next token or None)."""
        page = self.call(
            "list_objects_v2",
            bucket,
            Prefix=prefix,
            Delimiter="/",
            MaxKeys=limit,
            **({"ContinuationToken": token} if token else {}),
        )
        folders = [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
        return folders, page.get("Contents", []), page.get("NextContinuationToken")

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The object's HeadObject response, or None when there is no such key."""
        try:
            return self.call("head_object", bucket, key)
        except S3NotFound:
            return None

    def list(self, location: str, visible: Callable[[str], bool]) -> list[FileRef]:
        from emrml.storage.locations import FileRef

        bucket, key = split(location)
        if key and not key.endswith("/"):
            head = self.head(bucket, key)
            if head is not None:
                etag = head.get("ETag") or ""
                return [FileRef(uri=location, key=key, size=self.plain_size(head), name="", etag=etag)]
            key += "/"
        files = []
        for entry in self.iter_objects(bucket, key):
            name = entry["Key"][len(key) :]
            if name and not name.endswith("/") and visible(name):
                uri = f"s3://{bucket}/{entry['Key']}"
                size, etag = self.listed_size(entry), entry.get("ETag") or ""
                files.append(FileRef(uri=uri, key=entry["Key"], size=size, name=name, etag=etag))
        return files

    def current_etags(self, bucket: str, keys: list[str]) -> dict[str, str]:
        """The ETags the objects ``keys`` of ``bucket`` have now (a key missing now is left out): one
        HeadObject for one key, else a listing of the keys' common prefix (a page a thousand keys)."""
        if len(keys) == 1:
            head = self.head(bucket, keys[0])
            return {} if head is None else {keys[0]: head.get("ETag") or ""}
        wanted = set(keys)
        return {
            entry["Key"]: entry.get("ETag") or ""
            for entry in self.iter_objects(bucket, _common_prefix(keys))
            if entry["Key"] in wanted
        }

    def plain_size(self, head: dict[str, Any]) -> int:
        from emrml.storage.cse import plaintext_size

        return plaintext_size(head)

    def listed_size(self, entry: dict[str, Any]) -> int:
        """The size of a listed object's data. A listing does not say whether an object is encrypted on the
        client; where every object read must be (client-side encryption without
        ``s3_cse_allow_plaintext``), its data is its tag shorter. Else the stored size."""
        stored = int(entry["Size"])
        cse = self.settings.cse
        if cse is None or cse.allow_plaintext:
            return stored
        from emrml.storage.cse import TAG_BYTES

        return max(stored - TAG_BYTES, 0)

    def exists(self, location: str) -> bool:
        bucket, key = split(location)
        if key and not key.endswith("/") and self.head(bucket, key) is not None:
            return True
        prefix = key if not key or key.endswith("/") else key + "/"
        page = self.call("list_objects_v2", bucket, Prefix=prefix, MaxKeys=1)
        return bool(page.get("KeyCount") or page.get("Contents")) or (not key and page is not None)

    # --- reading ----------------------------------------------------------------------------------------

    def open(
        self, location: str, buffer_bytes: int, *, etag: str = "", whole_up_to: int = 0, start: int = 0
    ) -> BinaryIO:
        """The object's bytes, buffered, from byte ``start``. ``etag``: the version its listing found,
        which the read is pinned to (an object replaced since fails the read). ``whole_up_to``: an object
        of at most that many bytes is read whole now, into memory (``locations.open_files`` reads the next
        few ahead so)."""
        from emrml.storage.cse import is_encrypted, open_decrypting

        bucket, key = split(location)
        if not key or key.endswith("/"):
            raise IsADirectoryError(errno.EISDIR, "Is a directory (an S3 prefix)", location)
        # One GET, no HeadObject first: its response says all a HEAD would (size, ETag, the client-side
        # encryption envelope), and that HEAD was half the requests of reading many small objects.
        arguments = {"IfMatch": etag} if etag else {}
        if start:
            arguments["Range"] = f"bytes={start}-"
        try:
            response = _pinned(lambda: self.call("get_object", bucket, key, **arguments))
        except S3Error as exc:
            if exc.code != "InvalidRange":
                raise
            # At or past the end: an empty range of the object, whose size a HEAD tells.
            response = {**self.call("head_object", bucket, key), "Body": io.BytesIO()}
            start = int(response["ContentLength"])
        if start and is_encrypted(response):
            # A range of a decrypted stream could not be authenticated (as a seek of one is refused).
            response["Body"].close()
            raise io.UnsupportedOperation("an object encrypted on the client side is read from its start")
        size = int(str(response.get("ContentRange", "")).rpartition("/")[2] or response["ContentLength"])
        raw: Any = RangeReader(self, bucket, key, size, response.get("ETag"), response["Body"], start)
        # A small object is read whole at once, so that reading its first bytes again (the codec sniffed
        # from its head, then the stream rewound) costs no second GET.
        if not start and size <= max(whole_up_to, SMALL_OBJECT_BYTES):
            with raw:
                raw = io.BytesIO(raw.readall())
        decrypted = open_decrypting(raw, response, location, self.settings.cse)
        return io.BufferedReader(decrypted, buffer_bytes)  # type: ignore[arg-type,return-value]

    # --- writing ----------------------------------------------------------------------------------------

    @contextmanager
    def atomic_write(self, location: str, commit: Commit = commit_now) -> Iterator[BinaryIO]:
        from emrml.storage.cse import encrypting
        from emrml.storage.s3_upload import MultipartWriter

        bucket, key = split(location)
        if not key or key.endswith("/"):
            raise IsADirectoryError(errno.EISDIR, "it is an S3 prefix, not an object key", location)
        upload = MultipartWriter(self, bucket, key)
        try:
            # The encryption's tag is written as its block ends: a failure then aborts the upload too.
            with encrypting(upload, self.settings.cse, location) as stream:
                yield stream
        except BaseException:
            upload.abort()
            raise
        upload.finish(commit)

    def delete(self, location: str) -> None:
        bucket, key = split(location)
        self.call("delete_object", bucket, key)

    def copy(self, source: str, target: str) -> None:
        """A server-side copy (metadata, so client-side encryption envelopes, included)."""
        source_bucket, source_key = split(source)
        bucket, key = split(target)
        try:
            self.client.copy(
                {"Bucket": source_bucket, "Key": source_key},
                bucket,
                key,
                ExtraArgs=self.settings.write_arguments() or None,
            )
        except Exception as exc:
            raise s3_error(exc, bucket, key) from exc


def _common_prefix(keys: list[str]) -> str:
    """The longest string every key starts with (S3 prefixes are strings, not paths)."""
    first, last = min(keys), max(keys)
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return first[:length]


def _pinned(get: Callable[[], Any]) -> Any:
    """``get()``, a GET pinned to a version (``IfMatch``), its "precondition failed" said as what it means."""
    try:
        return get()
    except S3Error as exc:
        if exc.code == "PreconditionFailed":
            raise S3Error("PreconditionFailed", "the object changed while it was being read") from None
        raise


# Errors of a body that broke off mid-stream, worth resuming from where it stopped.
def _transient_read_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (
        BotoConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
        Urllib3Error,
        ConnectionError,
        TimeoutError,
    )


class RangeReader(io.RawIOBase):
    """The bytes of one object version, read through ranged GETs from the current position."""

    def __init__(
        self,
        store: S3Store,
        bucket: str,
        key: str,
        size: int,
        etag: str | None,
        body: Any = None,
        position: int = 0,
    ) -> None:
        self.store = store
        self.bucket, self.key, self.size, self.etag = bucket, key, size, etag
        self.position = position
        #: The body being read from ``position``: the opening GET's, then that of each range requested.
        self.body: Any = body

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        target = max(base + offset, 0)
        if target != self.position:
            self._drop_body()
            self.position = target
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self.position)
        if wanted <= 0:
            return 0
        transient = _transient_read_errors()
        for attempt in range(self.store.settings.max_attempts):
            try:
                if self.body is None:
                    self.body = self._get()
                data = self.body.read(wanted)
                if not data:
                    raise ConnectionError("the object's body ended early")
                break
            except transient:
                self._drop_body()
                if attempt + 1 >= self.store.settings.max_attempts:
                    raise S3Error(
                        "ReadInterrupted",
                        f"reading failed {attempt + 1} times in a row (the connection broke off, timed out "
                        "or ended early)",
                        location=f"s3://{self.bucket}/{self.key}",
                    ) from None
                time.sleep(min(0.1 * 2**attempt, 5.0))
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _get(self) -> Any:
        arguments: dict[str, Any] = {"Range": f"bytes={self.position}-"}
        if self.etag:
            arguments["IfMatch"] = self.etag
        return _pinned(lambda: self.store.call("get_object", self.bucket, self.key, **arguments))["Body"]

    def _drop_body(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
