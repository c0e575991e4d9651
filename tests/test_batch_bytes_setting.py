"""The ``batch_bytes`` setting, which bounds each job worker's memory, is checked as the settings load."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.errors import InvalidInputException


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_batch_size_that_is_not_positive_is_refused_naming_the_setting(tmp_path: Path, value: str) -> None:
    with pytest.raises(
        InvalidInputException, match=rf"setting batch_bytes must be a positive .*\(got {value}\)"
    ):
        Settings.load(environ={"EMRML_BATCH_BYTES": value}, home=tmp_path)
