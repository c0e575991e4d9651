"""emrml: a self-hosted Amazon Machine Learning.

The Python API (``emrml.library``): ``Client`` creates datasources, trains models and evaluates them;
``DataSource``, ``Model`` and ``Evaluation`` are handles to those objects; ``JobFailed`` is raised when an
object's job ends FAILED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "DataSource", "Evaluation", "JobFailed", "Model"]

if TYPE_CHECKING:
    from emrml.library import Client, DataSource, Evaluation, JobFailed, Model


def __getattr__(name: str) -> Any:
    # Loaded on first use: every worker process imports this package, and most never need the library.
    if name in __all__:
        from emrml import library

        return getattr(library, name)
    raise AttributeError(f"module 'emrml' has no attribute {name!r}")
