"""Downloading a client-side encrypted S3 object from the storage browser: its AES-GCM tag, at the end of
the object, is checked before any byte is sent, so an altered object is refused with an error page rather
than sent cut short (or garbled) under a 200."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import log_in
from starlette.testclient import TestClient

from emrml.service.app import EmrML
from emrml.service.auth import ensure_admin
from emrml.service.identity import Identities
from emrml.service.logins import Logins, ensure_admin_password
from emrml.storage import locations
from emrml.storage.locations import atomic_write
from emrml.web.server import create_app
from s3_server import S3


@pytest.fixture
def admin(s3: S3, tmp_path: Path) -> Iterator[Any]:
    """A console on S3 with client-side encryption (an AES key), an admin logged in."""
    key = tmp_path / "aes.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode())
    settings = dataclasses.replace(s3.settings, s3_cse_key=f"aes:{key}", s3_part_bytes=5 << 20)
    locations.configure(settings)
    service = EmrML(settings)
    ensure_admin(Identities(service.sessions, settings.home), settings.home)
    ensure_admin_password(Logins(service.sessions), settings.home)
    password = json.loads((settings.home / "admin-credentials.json").read_text())["console_password"]
    with TestClient(create_app(service), follow_redirects=False) as client:
        assert log_in(client, "admin", password).status_code == 303
        yield client
    service.close()


def _tamper(s3: S3, key: str, position: int) -> None:
    """Flip one bit of the stored body, keeping the envelope (metadata)."""
    stored = bytearray(s3.get(key))
    stored[position] ^= 1
    metadata = s3.client.head_object(Bucket=s3.bucket, Key=key)["Metadata"]
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(stored), Metadata=metadata)


@pytest.mark.parametrize("size", [1000, 3 << 20])  # within one read, and over several
def test_a_tampered_encrypted_object_is_refused_not_sent(admin: Any, s3: S3, size: int) -> None:
    data = os.urandom(size)
    with atomic_write(s3.uri("secret.bin")) as out:
        out.write(data)
    intact = admin.get("/console/storage/download", params={"location": s3.uri("secret.bin")})
    assert intact.status_code == 200 and intact.content == data
    _tamper(s3, "secret.bin", size // 2)
    tampered = admin.get("/console/storage/download", params={"location": s3.uri("secret.bin")})
    assert tampered.status_code == 400
    assert "attachment" not in tampered.headers.get("content-disposition", "")
    assert "authentication failed (the body or its tag was altered" in tampered.text
    assert data[:100] not in tampered.content
