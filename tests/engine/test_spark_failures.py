"""What a user of the Spark engine sees when it cannot run: a master URL that is not one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emrml.config import Settings
from emrml.errors import InvalidInputException


def settings_at(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings.load(environ={}, home=tmp_path / "home", **overrides)


@pytest.mark.parametrize(
    "master",
    ["spark://127.0.0.1", "spark//127.0.0.1:7077", "local[x]", "local[0]", "spark://h:7077/", "yarn-x", ""],
)
def test_a_master_url_that_is_not_one_is_refused_with_the_settings(tmp_path: Path, master: str) -> None:
    # Before, "spark://127.0.0.1" (no port) failed each job as a master that "does not answer", and the
    # others as Spark's parse error after the JVM's start.
    with pytest.raises(InvalidInputException, match=r"setting spark_master must be local, local\[N\].*got"):
        settings_at(tmp_path, spark_master=master)


@pytest.mark.parametrize(
    "master",
    ["local", "local[2]", "local[*]", "local[1,2]", "spark://127.0.0.1:7077", "spark://a:7077,b:7077",
     "spark://[::1]:7077", "yarn", "k8s://https://10.0.0.1:443"],
)  # fmt: skip
def test_every_master_spark_takes_is_accepted(tmp_path: Path, master: str) -> None:
    assert settings_at(tmp_path, spark_master=master).spark_master == master
