"""emrml: a self-hosted Amazon Machine Learning.

The Python API (``emrml.library``): ``Client`` creates datasources, trains models, evaluates them and runs
batch predictions; ``DataSource``, ``Model``, ``Evaluation`` and ``BatchPrediction`` are handles to those
objects; ``JobFailed`` is raised when an object's job ends FAILED. ``load_model`` loads a trained model
(artifact file or model id) for scoring records (``Predictor.predict``) or tables (``score``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emrml import collector

# The console script's first line imports the command line, and with it this package: the collector is
# paused for the start of the program (``emrml.collector``).
collector.pause_while_starting()

__version__ = "0.1.0"
__all__ = [
    "BatchPrediction",
    "Client",
    "DataSource",
    "Evaluation",
    "JobFailed",
    "Model",
    "load_model",
    "score",
]
_MODULES = {"load_model": "loading", "score": "loading"}

if TYPE_CHECKING:
    from emrml.library import BatchPrediction, Client, DataSource, Evaluation, JobFailed, Model
    from emrml.loading import load_model, score


def __getattr__(name: str) -> Any:
    # Loaded on first use: every worker process imports this package, and most never need the library.
    if name in __all__:
        import importlib

        module = importlib.import_module(f"emrml.{_MODULES.get(name, 'library')}")
        return getattr(module, name)
    raise AttributeError(f"module 'emrml' has no attribute {name!r}")
