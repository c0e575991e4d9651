"""Arrow set-up shared by emrml's own processes (CLI, server, job workers).

pyarrow looks for pandas twice, importing it if it is installed (about a second): ``pyarrow.array()`` on
its first call, and the first conversion to numpy that is not zero-copy (the C++ converter's one-time
set-up). emrml never hands pandas objects to Arrow, so its processes settle both once, with pandas hidden
(``skip_pandas_probe``); a server, which may answer Predict without ever loading Arrow, hides pandas for its
whole life instead (``hide_pandas``), so that neither import happens at its start. Library users
(notebooks) are left alone: ``emrml.loading.score`` accepts pandas data frames, and pyarrow's
own pandas conversions still import pandas when they are called.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NoPandas:
    """A meta-path finder that makes ``import pandas`` fail while it is installed."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def skip_pandas_probe() -> None:
    """Settle pyarrow's "is pandas installed?" probe without importing pandas (a no-op once pandas is
    imported, or once the probe has run)."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        # The first array() call runs the Python probe, the first copying to_numpy() the C++ one.
        pa.array([None], pa.int64()).to_numpy(zero_copy_only=False)
    finally:
        sys.meta_path.remove(finder)


def hide_pandas() -> None:
    """Make ``import pandas`` fail in this process from now on, without importing anything: pyarrow's
    probes, whenever a request first uses Arrow, settle as if pandas were not installed. For processes
    that never use pandas (``emrml serve``: its operations hand Arrow no pandas objects, and its Spark
    driver uses none)."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
