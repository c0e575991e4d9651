"""What the tests of the Spark engine on a real application share: a progress callback that ignores its
reports, and settings in a test's own home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emrml.config import Settings


def quiet(*_: Any) -> None:
    pass


def settings_at(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", **overrides)
