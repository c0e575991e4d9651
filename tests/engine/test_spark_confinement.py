"""Confined jobs on the Spark engine: the executors, which open the files, check each one as opened as the
local engine's reader does (``service.confinement``), not only the driver that lists them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from emrml.config import Settings
from emrml.engine.spark import datasource as datasource_on_spark
from emrml.engine.spark import training as training_on_spark
from emrml.engine.training import DatasourceData, train_model
from emrml.errors import AccessDeniedException
from emrml.samples import bank_sample_schema, write_bank_sample
from emrml.service.confinement import confined_job
from emrml.service.parameters import parse_parameters

Swap = Callable[[ModuleType, str], None]


def quiet(*_: Any) -> None:
    pass


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", engine="spark")


@pytest.fixture
def data(settings: Settings) -> Path:
    return write_bank_sample(settings.data_roots[0] / "bank.csv", 2_000)


@pytest.fixture
def swap_at(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[ModuleType, str], None]]:
    """``swap_at(module, name)``: the data file, in the data roots, becomes a symbolic link to a file outside
    them when the driver calls ``module.name`` (after it listed and checked the file), and is put back before
    the driver checks that the files were unchanged: what whoever can write in a root can time."""
    outside = write_bank_sample(tmp_path / "elsewhere" / "secret.csv", 3_000, seed=11)
    kept = data.with_name(".bank.csv.kept")

    def around(function: Callable[..., Any], before: Callable[[], None]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            before()
            return function(*args, **kwargs)

        return wrapped

    def swap() -> None:
        if not kept.exists():
            os.rename(data, kept)
            os.symlink(outside, data)

    def put_back() -> None:
        if kept.exists():
            os.replace(kept, data)

    def patch(module: ModuleType, name: str) -> None:
        monkeypatch.setattr(module, name, around(getattr(module, name), swap))
        monkeypatch.setattr(module, "check_unchanged", around(module.check_unchanged, put_back))

    yield patch
    put_back()


def test_a_datasource_file_swapped_for_a_link_out_of_the_roots_is_not_read_by_the_executors(
    spark: Any, settings: Settings, data: Path, swap_at: Swap
) -> None:
    swap_at(datasource_on_spark, "plan_units")
    with confined_job(settings, True), pytest.raises(AccessDeniedException) as refused:
        datasource_on_spark.build_datasource(
            str(data), bank_sample_schema(), None, compute_statistics=True, settings=settings,
            progress=quiet, spark=spark,
        )  # fmt: skip
    assert "outside the data roots" in refused.value.message and "bank.csv" in refused.value.message


def test_a_training_file_swapped_before_the_executors_featurize_it_is_not_read(
    spark: Any, settings: Settings, data: Path, swap_at: Swap
) -> None:
    """Featurizing takes the driver's checks in its broadcast setup, not through the runner's tasks: swapped
    just before that setup is made, after the recipe was fitted on the file as it was."""
    swap_at(training_on_spark, "storage_settings")
    schema = bank_sample_schema()
    text = pcsv.ConvertOptions(column_types={name: pa.string() for name in schema.names})
    with confined_job(settings, True), pytest.raises(AccessDeniedException) as refused:
        train_model(
            model_id="ml-swapped", model_type="BINARY", data=DatasourceData(str(data), schema, None),
            recipe_text=None, sample=pcsv.read_csv(data, convert_options=text),
            parameters=parse_parameters({}), settings=settings, progress=quiet, spark=spark,
        )  # fmt: skip
    assert "outside the data roots" in refused.value.message and "bank.csv" in refused.value.message
