"""Fixtures of the storage tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cse_helpers import aes_key


@pytest.fixture
def aes_key_file(tmp_path: Path) -> Path:
    """A 256-bit AES key file for client-side encryption (``s3_cse_key = "aes:PATH"``)."""
    return aes_key(tmp_path / "aes.key")
