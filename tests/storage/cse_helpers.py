"""What the tests of encrypted S3 storage share: emrml's storage pointed at the test server with given
settings, whole-object writes and reads through it, and a small datasource's rows and schema."""

from __future__ import annotations

import base64
import dataclasses
import os
from pathlib import Path
from typing import Any

from emrml.config import Settings
from emrml.storage import locations
from emrml.storage.locations import atomic_write, open_binary
from s3_server import S3

#: A schema of two columns, the target ``b`` BINARY, for datasources built over encrypted objects.
SCHEMA = {
    "version": "1.0",
    "dataFileContainsHeader": True,
    "targetAttributeName": "b",
    "attributes": [
        {"attributeName": "a", "attributeType": "NUMERIC"},
        {"attributeName": "b", "attributeType": "BINARY"},
    ],
}


def rows(count: int) -> bytes:
    """``count`` records of ``SCHEMA``, with the header."""
    return b"a,b\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(count))


def aes_key(path: Path) -> Path:
    """A new 256-bit AES key in ``path``, as ``s3_cse_key = "aes:PATH"`` reads it."""
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    return path


def use(s3: S3, **settings: Any) -> Settings:
    """Point emrml's storage at the test server with ``settings`` (S3's part size at its minimum)."""
    configured = dataclasses.replace(
        s3.settings, **{"kms_endpoint_url": s3.endpoint_url, "s3_part_bytes": 5 << 20, **settings}
    )
    locations.configure(configured)
    return configured


def write(location: str, data: bytes) -> None:
    with atomic_write(location) as stream:
        for start in range(0, len(data), 1 << 20):
            stream.write(data[start : start + (1 << 20)])


def read(location: str) -> bytes:
    with open_binary(location) as stream:
        return stream.read()


def head(s3: S3, key: str) -> dict[str, Any]:
    return s3.client.head_object(Bucket=s3.bucket, Key=key)  # type: ignore[no-any-return]
