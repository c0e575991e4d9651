"""AWS Signature Version 4 verification of API requests against the metastore's access keys.

Clients (boto3, the aws CLI, any AWS SDK) sign each request with
``Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/machinelearning/aws4_request,
SignedHeaders=<h1;h2;...>, Signature=<hex>``. The server rebuilds the canonical request from what it
received, exactly as botocore builds it before sending, recomputes the HMAC chain with the key's secret and
compares. Failures answer the errors AWS's JSON services answer (all HTTP 403 Forbidden):

* no ``Authorization`` header → ``MissingAuthenticationTokenException``;
* a header that cannot be parsed, or no date → ``IncompleteSignatureException``;
* an unknown access key id, or a session token (emrml issues none) → ``UnrecognizedClientException``;
* a signature that does not match, a timestamp more than 15 minutes from the server's clock, a scope for
  another service or date → ``InvalidSignatureException``.

Within the 15-minute window a captured request can be replayed, as with AWS; use TLS in front of emrml.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import operator
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError

from emrml.errors import (
    IncompleteSignatureException,
    InternalServerException,
    InvalidInputException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from emrml.service.groups import ADMINS
from emrml.service.identity import Credential, Identities, NewAccessKey
from emrml.service.remembered import Remembered

SERVICE = "machinelearning"
ALGORITHM = "AWS4-HMAC-SHA256"
#: How far a request's timestamp may be from the server's clock (AWS: 15 minutes).
MAX_CLOCK_SKEW_SECONDS = 15 * 60
#: Headers a signature must cover: without x-amz-target, a signed GetDataSource body could be replayed
#: as a DeleteDataSource with the same id.
REQUIRED_SIGNED_HEADERS = ("host", "x-amz-target")
ADMIN_USER = "admin"
ADMIN_CREDENTIALS_FILE = "admin-credentials.json"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_PATTERN = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_ACCESS_KEY_ID = re.compile(r"[A-Za-z0-9]{16,128}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_USUAL_PREFIX = f"{ALGORITHM} Credential="


_INVALID_TOKEN = "The security token included in the request is invalid."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)


class HttpRequest(NamedTuple):
    """What verification reads of a request. ``headers``: lower-case name → value as received; a header
    sent more than once has its values, each trimmed, joined by commas (as SigV4 reads them)."""

    method: str
    raw_path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes


def received_headers(pairs: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI's ``(name, value)`` byte pairs (names in lower case) as :class:`HttpRequest`'s mapping."""
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in pairs}
    if len(headers) < len(pairs):  # a header sent more than once (rare): its values in one
        headers = {}
        for name, value in pairs:
            key, text = name.decode("latin-1"), " ".join(value.decode("latin-1").split())
            headers[key] = f"{headers[key]},{text}" if key in headers else text
    return headers


class SignatureClaim(NamedTuple):
    """A parsed, well-formed, timely SigV4 Authorization header, not yet checked against a secret."""

    access_key_id: str
    date: str
    region: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: str
    string_to_sign: str


class Caller(NamedTuple):
    """An authenticated caller."""

    user_name: str
    access_key_id: str


def _authorization_parts(header: str) -> tuple[str, str, str]:
    """(Credential, SignedHeaders, Signature) of an ``Authorization`` header."""
    if header.startswith(_USUAL_PREFIX):
        # As every AWS SDK writes it, read by two partitions: a regular expression takes a µs more.
        credential, _, rest = header[len(_USUAL_PREFIX) :].partition(", SignedHeaders=")
        signed, _, signature = rest.partition(", Signature=")
        joined = credential + signed + signature
        # Each part non-empty, without commas or whitespace (one word when split).
        if credential and signed and signature and "," not in joined and len(joined.split(maxsplit=1)) == 1:
            return credential, signed, signature
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignatureException(
            f"Unsupported authorization algorithm {algorithm[:40]!r}: only {ALGORITHM} (Signature Version 4)"
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, equals, value = item.strip().partition("=")
        if equals:
            parts[name] = value
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not parts.get(name)]
    if missing:
        raise IncompleteSignatureException(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Authorization={header[:200]}"
        )
    return parts["Credential"], parts["SignedHeaders"], parts["Signature"]


def _request_time(headers: Mapping[str, str]) -> tuple[str, float]:
    """The request's timestamp as signed (``yyyyMMdd'T'HHmmss'Z'``) and in seconds since the epoch."""
    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        stamp = amz_date.strip()
        moment = _basic_timestamp(stamp)
        if moment is None:
            raise IncompleteSignatureException(
                f"Date must be in ISO-8601 'basic format' (yyyyMMdd'T'HHmmss'Z'). Got {amz_date[:40]!r}."
            )
        return stamp, moment
    http_date = headers.get("date")
    if http_date is None:
        raise IncompleteSignatureException(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    try:
        moment = parsedate_to_datetime(http_date).astimezone(UTC)
    except (TypeError, ValueError):
        raise IncompleteSignatureException(f"Date header {http_date[:60]!r} is not an HTTP date") from None
    return moment.strftime(_TIMESTAMP), moment.timestamp()


@functools.lru_cache(maxsize=64)
def _basic_timestamp(stamp: str) -> float | None:
    """``yyyyMMdd'T'HHmmss'Z'`` in seconds since the epoch, None if it is not one. Remembered: the
    requests of one second share their timestamp."""
    match = _TIMESTAMP_PATTERN.fullmatch(stamp)
    try:
        # Faster than strptime, which would cost a fifth of the whole verification.
        return None if match is None else datetime(*map(int, match.groups()), tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _check_clock(moment: float, now: float) -> None:
    if abs(moment - now) <= MAX_CLOCK_SKEW_SECONDS:
        return
    stamp, clock = (datetime.fromtimestamp(t, UTC).strftime(_TIMESTAMP) for t in (moment, now))
    if moment < now:
        earliest = datetime.fromtimestamp(now - MAX_CLOCK_SKEW_SECONDS, UTC).strftime(_TIMESTAMP)
        raise InvalidSignatureException(
            f"Signature expired: {stamp} is now earlier than {earliest} ({clock} - 15 min.)"
        )
    latest = datetime.fromtimestamp(now + MAX_CLOCK_SKEW_SECONDS, UTC).strftime(_TIMESTAMP)
    raise InvalidSignatureException(
        f"Signature not yet current: {stamp} is still later than {latest} ({clock} + 15 min.)"
    )


def normalize_url_path(path: str) -> str:
    """The path as botocore signs it: dot segments resolved (RFC 3986, 5.2.4) and empty segments dropped.

    The same steps as ``botocore.utils.normalize_url_path``, written out because importing botocore for
    them would cost every server start half a second.
    """
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and segments else ""
    return first + "/".join(segments) + last


@functools.lru_cache(maxsize=256)
def _canonical_path(raw_path: str) -> str:
    # Remembered: an API client sends every request to the same path ("/").
    return quote(normalize_url_path(raw_path), safe="/~")


def _canonical_query(query_string: str) -> str:
    # As botocore builds it from the URL it sends: pairs sorted, not re-encoded.
    if not query_string:
        return ""
    pairs = [pair.partition("=")[::2] for pair in query_string.split("&")]
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()
    _check_declared_hash(headers, digest)
    return digest


def _check_declared_hash(headers: Mapping[str, str], digest: str) -> None:
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != digest:
        # The declared hash is what the signature covers; the body must be the one it describes.
        reason = (
            "is not a SHA-256 hex digest"
            if not _HEX_SHA256.fullmatch(declared)
            else "does not match the body"
        )
        raise InvalidSignatureException(f"x-amz-content-sha256 {reason}")


def _canonical_head(
    method: str, raw_path: str, query: str, headers: Mapping[str, str], signed_headers: Sequence[str]
) -> str:
    """The canonical request up to its last line, the payload hash: the same for every body."""
    try:
        lines = "".join([f"{name}:{' '.join(headers[name].split())}\n" for name in signed_headers])
    except KeyError as missing:
        raise InvalidSignatureException(
            f"The signed header {missing.args[0]!r} is not in the request."
        ) from None
    return (
        f"{method.upper()}\n{_canonical_path(raw_path)}\n"
        f"{_canonical_query(query)}\n{lines}\n{';'.join(signed_headers)}\n"
    )


class _Scope(NamedTuple):
    """What the part of an ``Authorization`` header before its signature says, checked once: a client
    sends the same part with every request of a day (only the signature differs)."""

    access_key_id: str
    date: str
    region: str
    signed_headers: tuple[str, ...]
    #: ``f"{date}/{region}/{SERVICE}/aws4_request"``, as the string to sign has it.
    credential_scope: str
    #: The values of the signed headers, in their order, from a request's headers (KeyError if one is not).
    values: Callable[[Mapping[str, str]], tuple[str, ...]]


#: The checked parts before the signature (``_Scope``) by their text, and the canonical requests without
#: their payload hash by (signed headers, method, raw path, query, signed headers' values; the timestamp
#: among them, so a new one every second). Both are remembered before any signature is verified, so both
#: are small, and forgotten all at once when full: made-up requests cannot grow them.
_SCOPES: dict[str, _Scope] = {}
_MAX_SCOPES = 256
_CANONICAL: dict[tuple[tuple[str, ...], str, str, str, tuple[str, ...]], str] = {}
_MAX_CANONICAL = 256
_SIGNATURE_SEPARATOR = ", Signature="


def _scope(credential: str, signed: str) -> _Scope:
    """The checked scope of a ``Credential`` and ``SignedHeaders`` (the errors of malformed ones)."""
    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise IncompleteSignatureException(
            f"Credential {credential[:120]!r} must be <access key id>/<yyyymmdd>/<region>/"
            f"{SERVICE}/aws4_request"
        )
    access_key_id, date, region, service, _ = scope
    if service != SERVICE:
        raise InvalidSignatureException(f"Credential should be scoped to correct service: '{SERVICE}'.")
    signed_headers = tuple(signed.split(";"))
    for name in REQUIRED_SIGNED_HEADERS:
        if name not in signed_headers:
            raise IncompleteSignatureException(f"'{name}' must be a 'SignedHeader' in the AWS Authorization.")
    # Two signed headers at least (the required ones), so itemgetter gives a tuple.
    values = operator.itemgetter(*signed_headers)
    credential_scope = f"{date}/{region}/{SERVICE}/aws4_request"
    return _Scope(access_key_id, date, region, signed_headers, credential_scope, values)


def _read_authorization(header: str) -> tuple[_Scope, str]:
    """The checked scope and the signature of an ``Authorization`` header."""
    head, separator, signature = header.rpartition(_SIGNATURE_SEPARATOR)
    if separator and _HEX_SHA256.fullmatch(signature):
        known = _SCOPES.get(head)
        if known is not None:
            return known, signature
    credential, signed, signature = _authorization_parts(header)
    scope = _scope(credential, signed)
    if not _HEX_SHA256.fullmatch(signature):
        raise IncompleteSignatureException("Signature must be 64 lower-case hexadecimal characters.")
    # Remembered only when the signature is the header's tail: the same head with any other signature then
    # reads as this one did, so the checks above hold for it too.
    if separator and signature == header[len(head) + len(separator) :]:
        if len(_SCOPES) >= _MAX_SCOPES:
            _SCOPES.clear()
        _SCOPES[head] = scope
    return scope, signature


def _canonical_prefix(
    method: str, raw_path: str, query: str, headers: Mapping[str, str], scope: _Scope
) -> str:
    """``_canonical_head`` of the request, remembered for requests alike."""
    try:
        values = scope.values(headers)
    except KeyError:
        # _canonical_head names the missing header
        return _canonical_head(method, raw_path, query, headers, scope.signed_headers)
    key = (scope.signed_headers, method, raw_path, query, values)
    known = _CANONICAL.get(key)
    if known is None:
        known = _canonical_head(method, raw_path, query, headers, scope.signed_headers)
        if len(_CANONICAL) >= _MAX_CANONICAL:
            _CANONICAL.clear()
        _CANONICAL[key] = known
    return known


#: ``SignatureClaim``'s fields as a plain tuple, in its order: what the server's request path passes from
#: ``signature_claim`` to ``check_signature`` (a named tuple costs a Python-level call to make).
ClaimFields = tuple[str, str, str, tuple[str, ...], str, str, str]


def parse_signature(request: HttpRequest, now: float) -> SignatureClaim:
    """Check the form and timeliness of a request's SigV4 signature; the secret is checked by ``verify``."""
    return SignatureClaim._make(signature_claim(*request, now))


def signature_claim(
    method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes, now: float
) -> ClaimFields:
    """``parse_signature`` of the request made of these fields (``HttpRequest``'s), as a plain tuple."""
    header = headers.get("authorization")
    if header is None:
        raise MissingAuthenticationTokenException("Request is missing Authentication Token")
    if "x-amz-security-token" in headers:
        raise UnrecognizedClientException(_INVALID_TOKEN)
    # The usual request's way through _read_authorization, _request_time, _check_clock and _payload_hash
    # written out here (each is called for what it alone handles): a Python call costs as much as its work.
    head, separator, signature = header.rpartition(_SIGNATURE_SEPARATOR)
    scope = _SCOPES.get(head) if separator and _HEX_SHA256.fullmatch(signature) else None
    if scope is None:
        scope, signature = _read_authorization(header)
    amz_date = headers.get("x-amz-date")
    moment = None if amz_date is None else _basic_timestamp(amz_date)
    if amz_date is None or moment is None:  # a Date header, or an X-Amz-Date with spaces around it or none
        timestamp, moment = _request_time(headers)
    else:
        timestamp = amz_date
    date = scope.date
    if date != timestamp[:8]:
        raise InvalidSignatureException(
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{date[:16]}' != '{timestamp[:8]}', from '{timestamp}'."
        )
    if not -MAX_CLOCK_SKEW_SECONDS <= moment - now <= MAX_CLOCK_SKEW_SECONDS:
        _check_clock(moment, now)
    prefix = _canonical_prefix(method, raw_path, query, headers, scope)  # before the body's hash is checked
    payload_hash = hashlib.sha256(body).hexdigest()
    if "x-amz-content-sha256" in headers:
        _check_declared_hash(headers, payload_hash)
    canonical = prefix + payload_hash
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{timestamp}\n{scope.credential_scope}\n{digest}"
    key_id, region, signed = scope.access_key_id, scope.region, scope.signed_headers
    return (key_id, date, region, signed, signature, timestamp, string_to_sign)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode(), "sha256")


class _Hmac:
    """HMAC-SHA256 under one key (RFC 2104) with the padded key hashed once. Written out because OpenSSL
    3's one-shot HMAC, which ``hmac.digest`` calls, fetches its algorithm by name on every call: copying
    these two hash states costs less than half as much, and the key serves a whole day of requests."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")  # a SHA-256 key is 32 bytes, shorter than the 64-byte block
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str) -> _Hmac:
    """The SigV4 key of ``secret`` for one day and region; remembered, since it changes once a day."""
    return _Hmac(_hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), SERVICE), "aws4_request"))


def verify(claim: ClaimFields, credential: Credential | None) -> Caller:
    """Check the claim's signature with the key's secret; ``credential`` None means an unknown key."""
    known = check_signature(claim, credential)
    return Caller(known.user_name, known.access_key_id)


def check_signature(claim: ClaimFields, credential: Credential | None) -> Credential:
    """``verify`` answering the key's ``credential`` itself (its user and key id are the caller's)."""
    if credential is None:
        raise UnrecognizedClientException(_INVALID_TOKEN)
    # By position: a SignatureClaim and signature_claim's plain tuple alike.
    _, date, region, _, signature, _, string_to_sign = claim
    expected = signing_key(credential.secret_access_key, date, region).hexdigest(string_to_sign.encode())
    if not hmac.compare_digest(expected, signature):
        raise InvalidSignatureException(_MISMATCH)
    return credential


class CredentialCache(Remembered[str, Credential | None]):
    """Access keys by id, remembered for ``ttl`` seconds so most requests need no metastore query.

    A deleted key stops working within ``ttl`` seconds (it may have been deleted by another process).
    Unknown ids are remembered too, so a stream of bad keys costs one query per id and period; a server's
    :meth:`refresh` reloads the known keys only.
    """

    def __init__(
        self, identities: Identities, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(self._read, ttl, clock, reread=_known)
        self.identities = identities

    def _read(self, access_key_id: str) -> Credential | None:
        if not _ACCESS_KEY_ID.fullmatch(access_key_id):
            return None
        return self.identities.credential(access_key_id)


def _known(credential: Credential | None) -> bool:
    return credential is not None


def write_private_json(path: Path, document: dict[str, str]) -> None:
    """Write ``document`` to ``path``, a file only its owner can read (mode 0600), whole or not at all:
    written to a new file beside it, then renamed over it. The file it replaces (the admin's access key,
    to which the console password is added) is kept, whole, when the new one cannot be written: a full
    disk left it empty, the key and password it held known nowhere else. Raises InternalServerException
    naming the file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with suppress(OSError):
            temporary.unlink()
        raise InternalServerException(
            f"{path}: cannot write it ({exc.strerror}); free some space or make the folder writable, and "
            "start again"
        ) from None


def ensure_admin(identities: Identities, home: Path) -> tuple[NewAccessKey, Path] | None:
    """On a metastore without users, create user ``admin`` with one access key.

    The key is written to ``<home>/admin-credentials.json`` (mode 0600) as ``aws_access_key_id`` and
    ``aws_secret_access_key``; returns it and the file, or None when users already exist.
    """
    if identities.count_users() > 0:
        return None
    try:
        identities.create_user(ADMIN_USER, groups=(ADMINS,))
    except (InvalidInputException, IntegrityError):
        if identities.count_users() > 0:
            return None  # another process starting on this metastore created it first, and writes its key
        raise
    key = identities.create_key(ADMIN_USER)
    path = home / ADMIN_CREDENTIALS_FILE
    try:
        write_private_json(
            path, {"aws_access_key_id": key.access_key_id, "aws_secret_access_key": key.secret_access_key}
        )
    except InternalServerException:
        # A key written down nowhere: the user goes, for the next start to make it again.
        identities.delete_user(ADMIN_USER)
        raise
    return key, path
