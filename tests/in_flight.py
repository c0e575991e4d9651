"""Counting calls under way at once, for tests that show requests overlap without timing them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class InFlight:
    """Wraps ``function``: counts its calls (``calls``) and the most under way at once (``most``), holding
    each until a second is under way (or ``patience`` seconds pass), so calls made one after another show
    as such however fast ``function`` answers."""

    def __init__(self, function: Callable[..., Any], patience: float = 5.0) -> None:
        self.function, self.patience = function, patience
        self.lock = threading.Lock()
        self.now = self.most = self.calls = 0
        self.overlapped = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.calls += 1
            self.now += 1
            self.most = max(self.most, self.now)
            if self.now >= 2:
                self.overlapped.set()
        try:
            self.overlapped.wait(self.patience)
            return self.function(*args, **kwargs)
        finally:
            with self.lock:
                self.now -= 1
