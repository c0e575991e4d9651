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
    """Whether the user may read the sample (its datasources do, as the user): else the buttons could
    only lead to a refusal."""
    path = os.path.realpath(sample_location(visit.console.service.settings.home))
    return visit.console.service.access.policy(visit.arn).allows("storage:Read", path, False)


def run_sample(visit: Visit) -> Response:
    name = visit.field("sample")
    if name not in SAMPLES:
        raise InvalidInputException(f"no sample {name!r}: choose one of {', '.join(SAMPLES)}")
    target, model_type, title = SAMPLES[name]
    path = sample_location(visit.console.service.settings.home)
    # Checked before the file is written: a user who may not read it gets the refusal and leaves nothing.
    visit.console.service.access.check(visit.arn, "storage:Read", os.path.realpath(path))
    # Imported here: the generator loads Arrow's compute kernels, which serving pages does not need.
    from emrml.samples import bank_sample_schema, write_bank_sample

    if not path.exists():
        write_bank_sample(path, SAMPLE_ROWS, private=True)
    schema = dataclasses.replace(bank_sample_schema(), target=target).to_json()
    model_id = default_model(visit, str(path), schema, model_type, title, f"sample-{name}")
    return visit.redirect(f"models/{model_id}")
