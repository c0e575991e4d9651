"""Where a batch prediction's files go under its ``OutputUri`` (spec 9).

Plain string functions, apart from the engine's scoring code: the service names these locations when it
accepts or describes a batch prediction, and importing ``engine.batch`` (numpy, pyarrow, scipy: about a
quarter of a second) for them would make every ``CreateBatchPrediction`` and ``GetBatchPrediction`` of a
fresh process — each CLI command — pay for a job it does not run.
"""

from __future__ import annotations


def output_prefix(output_uri: str) -> str:
    """``OutputUri`` as a "directory": with a trailing ``/`` (spec 9 proposal)."""
    return output_uri if output_uri.endswith("/") else output_uri + "/"


def manifest_location(output_uri: str, batch_prediction_id: str) -> str:
    """The manifest, written last as the commit marker: ``<out>/batch-prediction/<id>.manifest``."""
    return f"{output_prefix(output_uri)}batch-prediction/{batch_prediction_id}.manifest"


def result_location(prefix: str, name: str) -> str:
    """One input file's result under the output ``prefix``: ``<out>/batch-prediction/result/<name>``."""
    return f"{prefix}batch-prediction/result/{name}"
