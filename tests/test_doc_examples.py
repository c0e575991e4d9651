"""The Python the docs show runs as written: README's library walk-through (and the operation called by
name after it) on the bank sample, and docs/model-format.md's reading of a model file without emrml."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emrml.samples import bank_sample_schema, write_bank_sample

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder of a user who has bank.csv and bank.schema.json, with a fresh EMRML_HOME."""
    write_bank_sample(tmp_path / "bank.csv", 2_000)
    (tmp_path / "bank.schema.json").write_text(bank_sample_schema().to_json())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMRML_HOME", str(tmp_path / "home"))
    return tmp_path


def test_the_readme_library_walk_through_runs(folder: Path) -> None:
    blocks = [block for block in python_blocks("README.md") if "import emrml" in block]
    by_name = [block for block in python_blocks("README.md") if block.startswith("client.service.call(")]
    assert len(blocks) == 1 and len(by_name) == 1
    names: dict[str, Any] = {}
    exec(compile(blocks[0] + by_name[0], "README.md", "exec"), names)
    assert 0.5 < names["evaluation"].metric <= 1.0
    assert names["batch"].results().num_rows == names["test"].statistics()["TotalRecordCount"]
    assert (folder / "predictions" / "batch-prediction").is_dir()  # the output folder the call named
    names["client"].close()


def test_the_model_format_reader_runs(folder: Path) -> None:
    import emrml

    with emrml.Client(progress=False) as client:
        source = client.datasource("bank.csv", schema="bank.schema.json")
        model = client.train(source, "BINARY", parameters={"sgd.maxPasses": 2})
    shutil.copy(folder / "home" / "models" / f"{model.id}.zip", folder / "model.zip")  # where docs say
    (block,) = python_blocks("docs/model-format.md")
    names: dict[str, Any] = {}
    exec(compile(block, "model-format.md", "exec"), names)
    assert names["weights"].shape == tuple(names["model"]["weights"]["shape"])
    assert isinstance(names["bias"], np.ndarray) and names["bias"].shape == (1,)
