"""Client-side encryption of S3 objects (Amazon S3 Encryption Client format).

So far emrml recognizes objects written by an encryption client (their envelope metadata) and refuses to
read them without a key provider, rather than returning ciphertext as data; it writes plain objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

from emrml.errors import InvalidInputException

if TYPE_CHECKING:
    from emrml.config import Settings
    from emrml.storage.s3 import MultipartWriter

_ENVELOPE_KEYS = ("x-amz-key-v2", "x-amz-key", "x-amz-3", "x-amz-c")


def provider_from_settings(settings: Settings) -> Any:
    return None


def is_encrypted(head: dict[str, Any]) -> bool:
    metadata = head.get("Metadata") or {}
    return any(name in metadata for name in _ENVELOPE_KEYS)


def plaintext_size(head: dict[str, Any]) -> int:
    return int(head["ContentLength"])


def open_decrypting(raw: Any, head: dict[str, Any], location: str, provider: Any) -> Any:
    if is_encrypted(head):
        raise InvalidInputException(
            f"'{location}' is encrypted on the client side and no key provider is configured"
        )
    return raw


@contextmanager
def encrypting(upload: MultipartWriter, provider: Any, location: str) -> Iterator[BinaryIO]:
    yield upload  # type: ignore[misc]
