"""Ready-to-run samples on the home page, like the ones Hue installs: one click writes a sample file into
the home's ``data/`` folder and trains a model on it with the default settings (split, model, evaluation).

The three share the bank-marketing generator of ``emrml.samples``, with a different target each: whether
the client subscribed (BINARY), the client's job (MULTICLASS), the client's age (REGRESSION).
"""

from __future__ import annotations

import dataclasses

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


def run_sample(visit: Visit) -> Response:
    name = visit.field("sample")
    if name not in SAMPLES:
        raise InvalidInputException(f"no sample {name!r}: choose one of {', '.join(SAMPLES)}")
    target, model_type, title = SAMPLES[name]
    # Imported here: the generator loads Arrow's compute kernels, which serving pages does not need.
    from emrml.samples import bank_sample_schema, sample_path, write_bank_sample

    path = sample_path(visit.console.service.settings.home)
    if not path.exists():
        write_bank_sample(path, SAMPLE_ROWS, private=True)
    schema = dataclasses.replace(bank_sample_schema(), target=target).to_json()
    model_id = default_model(visit, str(path), schema, model_type, title, f"sample-{name}")
    return visit.redirect(f"models/{model_id}")
