"""Ready-to-run samples on the home page, like the ones Hue installs: one click writes a sample file into
the home's ``data/`` folder and trains a model on it with the default settings (split, model, evaluation).

The three share the bank-marketing generator of ``emrml.samples``, with a different target each: whether
the client subscribed (BINARY), the client's job (MULTICLASS), the client's age (REGRESSION).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from starlette.responses import Response

from emrml.console.app import Visit
from emrml.console.forms import default_model
from emrml.errors import InvalidInputException
from emrml.service.confinement import server_write_refusal
from emrml.service.sample_files import write_sample

SAMPLE_ROWS = 5_000
#: name: (target attribute, model type, title)
SAMPLES = {
    "binary": ("y", "BINARY", "Sample: will the client subscribe?"),
    "multiclass": ("job", "MULTICLASS", "Sample: the client's job"),
    "regression": ("age", "REGRESSION", "Sample: the client's age"),
}


def sample_location(home: Path) -> Path:
    """``emrml.samples.sample_path``, without importing the generator (Arrow) to serve the home page."""
    return home / "data" / "samples" / "bank-sample.csv"


def may_run(visit: Visit) -> bool:
    """Whether the user may read and write the sample (``service.sample_files``: its datasources read it, as
    the user) and the server may write it there: else the buttons could only lead to a refusal."""
    settings, access = visit.console.service.settings, visit.console.service.access
    path = os.path.realpath(sample_location(settings.home))
    granted = all(access.permits(visit.arn, action, path) for action in ("storage:Read", "storage:Write"))
    return granted and server_write_refusal(settings, path) is None


def run_sample(visit: Visit) -> Response:
    name = visit.field("sample")
    if name not in SAMPLES:
        raise InvalidInputException(f"no sample {name!r}: choose one of {', '.join(SAMPLES)}")
    target, model_type, title = SAMPLES[name]
    path = sample_location(visit.console.service.settings.home)
    write_sample(visit.console.service, visit.arn, path, SAMPLE_ROWS)
    # Imported here: the generator loads Arrow's compute kernels, which serving pages does not need.
    from emrml.samples import bank_sample_schema

    schema = dataclasses.replace(bank_sample_schema(), target=target).to_json()
    model_id = default_model(visit, str(path), schema, model_type, title, f"sample-{name}")
    return visit.redirect(f"models/{model_id}")
