"""Client-side encryption of S3 objects in the Amazon S3 Encryption Client format (docs/encryption.md).

Writing (format v2): each object gets a fresh 256-bit data key; the body is ``AES-GCM(data key, 12-byte
random IV)`` of the plaintext followed by the 16-byte tag, and the envelope is user metadata:
``x-amz-key-v2`` (the data key, wrapped by a key provider, base64), ``x-amz-iv``, ``x-amz-cek-alg``
(``AES/GCM/NoPadding``), ``x-amz-wrap-alg`` (``kms+context``, ``RSA-OAEP-SHA1`` or ``AES/GCM``),
``x-amz-matdesc`` (the material description: the KMS encryption context, or which key wrapped it) and
``x-amz-tag-len`` (``128``). Reading also accepts format v3 (key-committing
``ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY``: ``x-amz-c``, ``x-amz-3``, ``x-amz-w``, ``x-amz-m``/``x-amz-t``,
``x-amz-d``, ``x-amz-i``), whose key commitment is verified before any byte is decrypted.

Decryption streams: the body is decrypted as it is read, and the GCM tag, at the end of the object, is
checked when the reader reaches it; a failed check raises ``DecryptionError``. Bytes handed out before
that point are unauthenticated: every emrml job that reads data writes its outputs atomically, so a job
whose input fails the check ends FAILED and nothing derived from those bytes becomes visible. A decrypting
stream cannot seek (a ranged read could not be authenticated), so batch prediction reads an encrypted file
whole rather than in byte ranges.

With a key configured, an object without an envelope is refused (``open_decrypting``) unless
``s3_cse_allow_plaintext`` is set: nothing authenticates it, so it could have been put there by anyone
allowed to write to the bucket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from emrml.errors import InvalidInputException

V2_CIPHER = "AES/GCM/NoPadding"
V3_SUITE = "115"
V3_CIPHER = "AES/GCM/HKDF/CommitKey"
_V3_SUITE_BYTES = b"\x00\x73"
_V3_WRAP = {"02": "AES/GCM", "12": "kms+context", "22": "RSA-OAEP-SHA1"}
TAG_BYTES = 16
#: Room ``update_into`` needs in its output beyond the input: the AES block size less one byte.
_SPARE = 15
KMS_CONTEXT_KEY = "aws:x-amz-cek-alg"
#: Metadata naming the key that wrapped an object's data key (in ``x-amz-matdesc``), for key rotation.
KEY_ID = "emrml-key-id"
#: Any of these marks an object as encrypted (so one that lost part of its envelope is refused, never
#: returned as ciphertext).
_ENVELOPE_KEYS = (
    *("x-amz-key-v2", "x-amz-key", "x-amz-iv", "x-amz-cek-alg", "x-amz-wrap-alg", "x-amz-matdesc"),
    *("x-amz-tag-len", "x-amz-crypto-instr-file", "x-amz-c", "x-amz-3", "x-amz-w", "x-amz-d", "x-amz-i"),
)


class DecryptionError(InvalidInputException):
    """An encrypted object cannot be decrypted (wrong or missing key, altered envelope or body), or an
    unencrypted one is refused because client-side encryption is configured."""

    def naming(self, what: str, location: str) -> DecryptionError:
        """The same error, the object ``location`` said as the request member ``what`` that gave it
        (``DataSpec.DataLocationS3 's3://…'``), as other errors of reading it are."""
        quoted = f"'{location}'"
        if not what or quoted not in self.message:
            return self
        return type(self)(self.message.replace(quoted, f"{what} {quoted}", 1))


class KeyUnavailable(Exception):
    """A key provider could not be asked to unwrap a data key (its key service refused or could not be
    reached), as opposed to a key that does not fit, which any other exception of ``unwrap`` means."""


class PublicKeyOnly(ValueError):
    """An RSA provider given a public key was asked to unwrap: it writes, and reads nothing."""


#: The ``s3_cse_key`` kind that makes each built-in wrap algorithm, for errors naming the key an object needs.
_KIND_OF_WRAP = {
    "AES/GCM": "aes:<key file>",
    "RSA-OAEP-SHA1": "rsa:<PEM file>",
    "kms+context": "kms:<key id>",
}
_KEY_SETTINGS = "settings s3_cse_key, s3_cse_old_keys"


class KeyProvider(Protocol):
    """Wraps and unwraps data keys, like an EMRFS encryption-materials provider.

    ``wrap_algorithms`` lists the ``x-amz-wrap-alg`` values it can unwrap; ``key_id`` identifies its key in
    ``x-amz-matdesc`` (empty for KMS, whose wrapped keys name their KMS key). ``new_data_key(cipher)``
    returns (plaintext data key, wrapped data key, wrap algorithm, material description) for content
    encrypted with ``cipher``; ``unwrap`` reverses it and raises any exception when its key does not fit,
    ``KeyUnavailable`` when its key service cannot be asked (the user is told why, not "wrong key").
    """

    wrap_algorithms: Sequence[str]
    key_id: str

    def new_data_key(self, cipher: str) -> tuple[bytes, bytes, str, dict[str, str]]: ...

    def unwrap(
        self, wrap_algorithm: str, wrapped: bytes, description: dict[str, str], cipher: str
    ) -> bytes: ...


class AesKeyProvider:
    """A customer AES key (128, 192 or 256 bits) wraps data keys with AES-GCM (``AES/GCM``): the wrapped key
    is a 12-byte nonce, then the encrypted data key and its tag; the content cipher's name is the AAD."""

    wrap_algorithms = ("AES/GCM",)

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise InvalidInputException(f"an AES wrapping key has 16, 24 or 32 bytes (got {len(key)})")
        self.aead = AESGCM(key)
        self.key_id = "aes-" + hashlib.sha256(b"emrml aes key id\0" + key).hexdigest()[:16]

    def new_data_key(self, cipher: str) -> tuple[bytes, bytes, str, dict[str, str]]:
        data_key, nonce = os.urandom(32), os.urandom(12)
        wrapped = nonce + self.aead.encrypt(nonce, data_key, cipher.encode())
        return data_key, wrapped, "AES/GCM", {KEY_ID: self.key_id}

    def unwrap(self, wrap_algorithm: str, wrapped: bytes, description: dict[str, str], cipher: str) -> bytes:
        return self.aead.decrypt(wrapped[:12], wrapped[12:], cipher.encode())


class RsaKeyProvider:
    """A customer RSA key pair wraps data keys with RSA-OAEP (SHA-1, MGF1-SHA-1) (``RSA-OAEP-SHA1``). The
    wrapped message is the key's length (one byte), the key, then the content cipher's name. A public key
    alone can write; reading needs the private key."""

    wrap_algorithms = ("RSA-OAEP-SHA1",)
    _PADDING = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)

    def __init__(self, pem: bytes) -> None:
        """ValueError, saying what the file holds instead, unless ``pem`` is an RSA key."""
        self.private: rsa.RSAPrivateKey | None = None
        try:
            if b"PRIVATE KEY" in pem:
                key = serialization.load_pem_private_key(pem, password=None)
            else:
                key = serialization.load_pem_public_key(pem)
        except TypeError:  # cryptography's answer to a key that needs a password
            raise ValueError(
                "holds a password-protected private key, which cannot be opened unattended: store it "
                "without a password in a file readable by its owner only"
            ) from None
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError(
                "holds no RSA key in PEM (a PKCS#8 or PKCS#1 private key, or a public key)"
            ) from None
        if isinstance(key, rsa.RSAPrivateKey):
            self.private, public = key, key.public_key()
        elif isinstance(key, rsa.RSAPublicKey):
            public = key
        else:
            raise ValueError(f"holds a key of another algorithm ({type(key).__name__}), not an RSA key")
        self.public = public
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = "rsa-" + hashlib.sha256(der).hexdigest()[:16]

    def new_data_key(self, cipher: str) -> tuple[bytes, bytes, str, dict[str, str]]:
        data_key = os.urandom(32)
        wrapped = self.public.encrypt(bytes([len(data_key)]) + data_key + cipher.encode(), self._PADDING)
        return data_key, wrapped, "RSA-OAEP-SHA1", {KEY_ID: self.key_id}

    def unwrap(self, wrap_algorithm: str, wrapped: bytes, description: dict[str, str], cipher: str) -> bytes:
        if self.private is None:
            raise PublicKeyOnly("only the public key is configured")
        message = self.private.decrypt(wrapped, self._PADDING)
        length = message[0]
        if length not in (16, 24, 32) or message[1 + length :] != cipher.encode():
            raise ValueError("the wrapped key does not name the content cipher")
        return message[1 : 1 + length]


class KmsKeyProvider:
    """AWS KMS wraps data keys (``kms+context``): GenerateDataKey with the encryption context
    ``{"aws:x-amz-cek-alg": <content cipher>}``, stored as the material description; Decrypt with it."""

    wrap_algorithms = ("kms+context",)
    key_id = ""

    def __init__(self, key_id: str, endpoint_url: str = "", region: str = "") -> None:
        self.kms_key_id = key_id
        self.endpoint_url, self.region = endpoint_url, region
        self._client: Any = None
        self._pid = 0

    @property
    def client(self) -> Any:
        if self._client is None or self._pid != os.getpid():
            import boto3

            session = boto3.session.Session()
            self._client = session.client(
                "kms",
                endpoint_url=self.endpoint_url or None,
                region_name=self.region or session.region_name or "us-east-1",
            )
            self._pid = os.getpid()
        return self._client

    def new_data_key(self, cipher: str) -> tuple[bytes, bytes, str, dict[str, str]]:
        context = {KMS_CONTEXT_KEY: cipher}
        response = self.client.generate_data_key(
            KeyId=self.kms_key_id, KeySpec="AES_256", EncryptionContext=context
        )
        return response["Plaintext"], response["CiphertextBlob"], "kms+context", context

    def unwrap(self, wrap_algorithm: str, wrapped: bytes, description: dict[str, str], cipher: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.decrypt(CiphertextBlob=wrapped, EncryptionContext=description)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise  # another key's (or an altered envelope): the next provider may open it
            raise KeyUnavailable(f"KMS Decrypt: {code}: {error.get('Message') or exc}") from exc
        except BotoCoreError as exc:
            raise KeyUnavailable(f"KMS Decrypt: {exc}") from exc
        return response["Plaintext"]


@dataclass
class KeyProviders:
    """The provider that encrypts what emrml writes, and every provider that may decrypt what it reads
    (the active one first, then older keys kept for reading during a key rotation)."""

    active: KeyProvider
    readers: list[KeyProvider]
    #: Whether an object without an envelope is read as it is (``s3_cse_allow_plaintext``). Off, it is
    #: refused: nothing authenticates it, so anyone who can write to the bucket could have substituted it
    #: (the AWS S3 Encryption Client v3 refuses such objects too).
    allow_plaintext: bool = False


# --- the envelope ---------------------------------------------------------------------------------------


def is_encrypted(head: dict[str, Any]) -> bool:
    metadata = head.get("Metadata") or {}
    return any(name in metadata for name in _ENVELOPE_KEYS)


def plaintext_size(head: dict[str, Any]) -> int:
    size = int(head["ContentLength"])
    return max(size - TAG_BYTES, 0) if is_encrypted(head) else size


@dataclass(frozen=True)
class Envelope:
    cipher: str  # the content cipher name the key providers bind the data key to
    wrap_algorithm: str
    wrapped_key: bytes
    description: dict[str, str]
    iv: bytes
    #: v3: (message id, stored commitment); None for v2.
    commitment: tuple[bytes, bytes] | None = None


def read_envelope(metadata: dict[str, str], location: str) -> Envelope:
    """The envelope of an encrypted object; ``DecryptionError`` naming what is missing or unsupported."""

    def need(name: str) -> str:
        value = metadata.get(name)
        if not value:
            raise DecryptionError(f"cannot decrypt '{location}': its encryption metadata lacks {name}")
        return value

    def b64(name: str) -> bytes:
        try:
            return base64.b64decode(need(name), validate=True)
        except ValueError:
            raise DecryptionError(f"cannot decrypt '{location}': {name} is not base64") from None

    def description(name: str) -> dict[str, str]:
        try:
            value = json.loads(metadata.get(name) or "{}")
        except (ValueError, RecursionError):  # the object's writer wrote it: nested past the reader's limit
            value = None
        if not isinstance(value, dict):
            raise DecryptionError(f"cannot decrypt '{location}': {name} is not a JSON object")
        return value

    if "x-amz-crypto-instr-file" in metadata or ("x-amz-key" in metadata and "x-amz-key-v2" not in metadata):
        raise DecryptionError(
            f"cannot decrypt '{location}': it uses the legacy v1 format or an instruction file, which "
            "emrml does not read (re-encrypt it with a v2 or v3 client)"
        )
    if "x-amz-c" in metadata:
        if need("x-amz-c") != V3_SUITE:
            raise DecryptionError(
                f"cannot decrypt '{location}': unknown algorithm suite {metadata['x-amz-c']}"
            )
        wrap = _V3_WRAP.get(metadata.get("x-amz-w") or "12")
        if wrap is None:
            raise DecryptionError(
                f"cannot decrypt '{location}': unknown wrapping algorithm {metadata['x-amz-w']}"
            )
        return Envelope(
            cipher=V3_CIPHER,
            wrap_algorithm=wrap,
            wrapped_key=b64("x-amz-3"),
            description=description("x-amz-t" if wrap == "kms+context" else "x-amz-m"),
            iv=b"\x01" * 12,
            commitment=(b64("x-amz-i"), b64("x-amz-d")),
        )
    cipher = need("x-amz-cek-alg")
    if cipher != V2_CIPHER:
        raise DecryptionError(
            f"cannot decrypt '{location}': content cipher {cipher} is not supported (only {V2_CIPHER})"
        )
    if metadata.get("x-amz-tag-len", "128") != "128":
        raise DecryptionError(
            f"cannot decrypt '{location}': tag length {metadata['x-amz-tag-len']} is not 128"
        )
    iv = b64("x-amz-iv")
    if len(iv) != 12:
        raise DecryptionError(f"cannot decrypt '{location}': x-amz-iv has {len(iv)} bytes, not 12")
    return Envelope(
        cipher=cipher,
        wrap_algorithm=need("x-amz-wrap-alg"),
        wrapped_key=b64("x-amz-key-v2"),
        description=description("x-amz-matdesc"),
        iv=iv,
    )


def _data_key(envelope: Envelope, providers: KeyProviders | None, location: str) -> bytes:
    if providers is None:
        raise DecryptionError(
            f"'{location}' is encrypted on the client side ({envelope.wrap_algorithm}) and no key is "
            "configured (setting s3_cse_key)"
        )
    fitting = [p for p in providers.readers if envelope.wrap_algorithm in p.wrap_algorithms]
    if not fitting:
        kind = _KIND_OF_WRAP.get(envelope.wrap_algorithm)
        needs = f"only a key configured as {kind} opens, and none is" if kind else "no configured key handles"
        raise DecryptionError(
            f"cannot decrypt '{location}': its data key is wrapped with {envelope.wrap_algorithm}, which "
            f"{needs} ({_KEY_SETTINGS})"
        )
    named = envelope.description.get(KEY_ID)
    fitting.sort(key=lambda provider: provider.key_id != named)  # the key the object names first
    unavailable: list[str] = []
    public_only = False
    for provider in fitting:
        try:
            key = provider.unwrap(
                envelope.wrap_algorithm, envelope.wrapped_key, envelope.description, envelope.cipher
            )
        except KeyUnavailable as exc:
            unavailable.append(str(exc))
            continue
        except PublicKeyOnly:
            public_only = True
            continue
        except Exception:
            continue
        if len(key) == 32:
            return key
    if unavailable:
        raise DecryptionError(
            f"cannot decrypt '{location}': its data key could not be unwrapped, the key service failing: "
            + "; ".join(unavailable)
        )
    raise DecryptionError(
        f"cannot decrypt '{location}': none of the configured keys opens its data key (wrong key, or the "
        f"envelope was altered; {_KEY_SETTINGS})"
        + ("; an RSA public key alone cannot read: configure the private key" if public_only else "")
    )


def _content_key(envelope: Envelope, data_key: bytes, location: str) -> bytes:
    """The content key: the data key (v2), or derived from it by HKDF-SHA512 after checking the key
    commitment (v3)."""
    if envelope.commitment is None:
        return data_key
    message_id, stored = envelope.commitment
    prk = hmac.new(message_id, data_key, "sha512").digest()
    content = HKDFExpand(hashes.SHA512(), 32, _V3_SUITE_BYTES + b"DERIVEKEY").derive(prk)
    commitment = HKDFExpand(hashes.SHA512(), 28, _V3_SUITE_BYTES + b"COMMITKEY").derive(prk)
    if not hmac.compare_digest(commitment, stored):
        raise DecryptionError(f"cannot decrypt '{location}': its key commitment does not match its data key")
    return content


# --- streams --------------------------------------------------------------------------------------------


class DecryptingReader(io.RawIOBase):
    """The plaintext of an encrypted body, decrypted as it is read; the tag is checked at the end."""

    def __init__(self, raw: BinaryIO, size: int, key: bytes, envelope: Envelope, location: str) -> None:
        if size < TAG_BYTES:
            raise DecryptionError(f"cannot decrypt '{location}': the body is shorter than its tag")
        self.raw, self.location = raw, location
        self.remaining = size - TAG_BYTES  # ciphertext bytes not yet read
        self.position = 0
        self.decryptor = Cipher(algorithms.AES(key), modes.GCM(envelope.iv)).decryptor()
        if envelope.commitment is not None:
            self.decryptor.authenticate_additional_data(_V3_SUITE_BYTES)
        self.verified = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.remaining <= 0:
            self._verify()
            return 0
        # Decrypted straight into the caller's buffer, which update_into needs a block larger than the
        # input: a copy and an allocation less per read than update(), a third of the decryption's cost.
        room = len(view) - _SPARE
        data = self.raw.read(min(room if room > 0 else len(view), self.remaining))
        if not data:
            raise DecryptionError(f"cannot decrypt '{self.location}': the body ended early (truncated)")
        self.remaining -= len(data)
        if room > 0:
            size = self.decryptor.update_into(data, view)
        else:
            plain = self.decryptor.update(data)
            size = len(plain)
            view[:size] = plain
        self.position += size
        if self.remaining <= 0:
            self._verify()
        return size

    def _verify(self) -> None:
        if self.verified:
            return
        tag = self.raw.read(TAG_BYTES)
        if len(tag) != TAG_BYTES:
            raise DecryptionError(f"cannot decrypt '{self.location}': the body ended early (truncated)")
        try:
            self.decryptor.finalize_with_tag(tag)
        except InvalidTag:
            raise DecryptionError(
                f"cannot decrypt '{self.location}': authentication failed (the body or its tag was altered, "
                "or the key is wrong); nothing read from it is kept"
            ) from None
        self.verified = True

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_decrypting(raw: Any, head: dict[str, Any], location: str, providers: KeyProviders | None) -> Any:
    """``raw`` itself for a plain object, else a stream of its plaintext. Every read of an S3 object comes
    here, so this is where an unencrypted object is refused when client-side encryption is configured."""
    if not is_encrypted(head):
        if providers is not None and not providers.allow_plaintext:
            raise DecryptionError(
                f"'{location}' is not encrypted on the client side, and client-side encryption is "
                "configured (setting s3_cse_key): an unencrypted object is refused, since anyone who can "
                "write to the bucket could have put it there; to read unencrypted objects as well, set "
                "s3_cse_allow_plaintext = true"
            )
        return raw
    metadata = {name.lower(): value for name, value in (head.get("Metadata") or {}).items()}
    envelope = read_envelope(metadata, location)
    key = _content_key(envelope, _data_key(envelope, providers, location), location)
    return DecryptingReader(raw, int(head["ContentLength"]), key, envelope, location)


class EncryptingWriter(io.RawIOBase):
    """Encrypts what is written into ``upload``; ``finish`` appends the tag."""

    def __init__(self, upload: Any, key: bytes, iv: bytes) -> None:
        self.upload = upload
        self.encryptor = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.upload.write(self.encryptor.update(view))
        return len(view)

    def tell(self) -> int:
        return int(self.upload.tell())

    def close(self) -> None:  # finished by the atomic_write block, as MultipartWriter
        pass

    @property
    def closed(self) -> bool:
        return False

    def finish(self) -> None:
        self.upload.write(self.encryptor.finalize() + self.encryptor.tag)


def envelope_metadata(providers: KeyProviders) -> tuple[bytes, bytes, dict[str, str]]:
    """A new data key, IV and the v2 metadata that carries them."""
    data_key, wrapped, wrap_algorithm, description = providers.active.new_data_key(V2_CIPHER)
    iv = os.urandom(12)
    metadata = {
        "x-amz-key-v2": base64.b64encode(wrapped).decode(),
        "x-amz-iv": base64.b64encode(iv).decode(),
        "x-amz-cek-alg": V2_CIPHER,
        "x-amz-wrap-alg": wrap_algorithm,
        "x-amz-matdesc": json.dumps(description, separators=(",", ":")),
        "x-amz-tag-len": "128",
    }
    return data_key, iv, metadata


@contextmanager
def encrypting(upload: Any, providers: KeyProviders | None, location: str) -> Iterator[BinaryIO]:
    """``upload`` itself without a key, else a stream encrypting into it (the envelope in its metadata)."""
    if providers is None:
        yield upload
        return
    try:
        data_key, iv, metadata = envelope_metadata(providers)
    except InvalidInputException:
        raise
    except Exception as exc:
        raise InvalidInputException(f"cannot encrypt '{location}': the key provider failed: {exc}") from exc
    upload.metadata.update(metadata)
    writer = EncryptingWriter(upload, data_key, iv)
    yield writer  # type: ignore[misc]
    writer.finish()
