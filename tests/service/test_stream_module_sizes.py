"""The stream service and the consumer package stay in modules a reader takes in whole: the project's
limit of about 600 lines a module."""

from __future__ import annotations

from pathlib import Path

import emrml

LIMIT = 600


def test_the_stream_modules_stay_within_the_line_limit() -> None:
    root = Path(emrml.__file__).parent
    modules = [*root.glob("service/stream*.py"), *(root / "stream").glob("*.py")]
    assert any(module.name == "streams.py" for module in modules)
    lengths = {module.name: len(module.read_text(encoding="utf-8").splitlines()) for module in modules}
    assert {name: length for name, length in lengths.items() if length > LIMIT} == {}
