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
from emrml.errors import AccessDeniedException, InvalidInputException
from emrml.service.confinement import server_write_refusal

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
    """Whether the user may read the sample (its datasources do, as the user) and the server may write it
    there: else the buttons could only lead to a refusal."""
    settings = visit.console.service.settings
    path = os.path.realpath(sample_location(settings.home))
    readable = visit.console.service.access.policy(visit.arn).allows("storage:Read", path, False)
    return readable and server_write_refusal(settings, path) is None


def run_sample(visit: Visit) -> Response:
    name = visit.field("sample")
    if name not in SAMPLES:
        raise InvalidInputException(f"no sample {name!r}: choose one of {', '.join(SAMPLES)}")
    target, model_type, title = SAMPLES[name]
    settings = visit.console.service.settings
    path = sample_location(settings.home)
    # Written where it resolves, and only there if that is in the data roots: whoever may write in a root
    # could have made its samples/ folder a link to any folder the server can write.
    resolved = Path(os.path.realpath(path))
    # Checked before the file is written: a user who may not read it gets the refusal and leaves nothing.
    visit.console.service.access.check(visit.arn, "storage:Read", str(resolved))
    refusal = server_write_refusal(settings, str(resolved))
    if refusal:
        raise AccessDeniedException(f"the sample '{path}' {refusal}")
    # Imported here: the generator loads Arrow's compute kernels, which serving pages does not need.
    from emrml.samples import bank_sample_schema, write_bank_sample

    if not resolved.exists():
        write_bank_sample(resolved, SAMPLE_ROWS, private=True)
    schema = dataclasses.replace(bank_sample_schema(), target=target).to_json()
    model_id = default_model(visit, str(path), schema, model_type, title, f"sample-{name}")
    return visit.redirect(f"models/{model_id}")
