"""How the ``emrml`` command line draws objects: rich tables and block-character charts.

Each ``*_view`` function takes the raw operation outputs a command fetched (the same dict ``--output json``
prints) and returns the sections to print, in order; each ``*_summary`` is the one line ``--no-wait`` and
``wait`` print. Nothing here calls the service. One module per kind of object, plus ``parts`` (formats and
drawing pieces they share) and ``lists`` (the ``list`` tables). rich is imported by the functions that
draw, not by these modules: a command that draws nothing (``emrml serve``, ``--output json``) starts without
it (15-20 ms).
"""

from emrml.cli_render.datasources import datasource_summary, datasource_view
from emrml.cli_render.evaluations import evaluation_summary, evaluation_view
from emrml.cli_render.lists import (
    BATCH_PREDICTION_COLUMNS,
    DATASOURCE_COLUMNS,
    EVALUATION_COLUMNS,
    MODEL_COLUMNS,
    Column,
    list_table,
)
from emrml.cli_render.models import model_summary, model_view
from emrml.cli_render.predictions import (
    batch_prediction_summary,
    batch_prediction_view,
    endpoint_view,
    prediction_view,
    tags_table,
)

__all__ = [
    "BATCH_PREDICTION_COLUMNS",
    "DATASOURCE_COLUMNS",
    "EVALUATION_COLUMNS",
    "MODEL_COLUMNS",
    "Column",
    "batch_prediction_summary",
    "batch_prediction_view",
    "datasource_summary",
    "datasource_view",
    "endpoint_view",
    "evaluation_summary",
    "evaluation_view",
    "list_table",
    "model_summary",
    "model_view",
    "prediction_view",
    "tags_table",
]
