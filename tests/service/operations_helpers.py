"""Datasources created through the operations, the ids a Describe* answer lists, and installations on
each metastore for the tests of the operations API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from emrml.config import Settings
from emrml.service.app import EmrML
from metastores import Templates
from raw_models import XY_SCHEMA

SCHEMA = json.dumps(XY_SCHEMA)


def create(app: EmrML, entity_id: str, name: str | None = None, location: str = "/data/x.csv", **extra):
    request = {"DataSourceId": entity_id, "DataSpec": {"DataLocationS3": location, "DataSchema": SCHEMA}}
    if name is not None:
        request["DataSourceName"] = name
    request.update(extra)
    return app.call("CreateDataSourceFromS3", request)


def ids(response: dict) -> list[str]:
    return [result["DataSourceId"] for result in response["Results"]]


@contextmanager
def installation_on(request: pytest.FixtureRequest, folder: Path, templates: Templates) -> Iterator[EmrML]:
    """An installation on the metastore named by a module-scoped fixture's parameter."""
    for url in templates.new_metastore(request.param, folder):
        app = EmrML(Settings.load(environ={}, home=folder / "home", metastore_url=url))
        try:
            yield app
        finally:
            app.close()
