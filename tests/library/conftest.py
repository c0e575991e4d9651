"""Fixtures of the notebook API's tests (``import emrml``): a bank sample and a client of its own home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from library_helpers import ROWS

import emrml
from emrml.samples import bank_sample_schema, write_bank_sample


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("data")
    schema = folder / "bank.schema.json"
    schema.write_text(bank_sample_schema().to_json())
    return write_bank_sample(folder / "bank.csv", ROWS), schema


@pytest.fixture
def client(tmp_path: Path) -> Iterator[emrml.Client]:
    with emrml.Client(home=tmp_path / "home") as opened:
        yield opened
