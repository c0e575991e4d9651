"""Values read from the metastore, remembered for a few seconds: the access keys a server verifies
signatures with (``auth.CredentialCache``) and the users' policies it authorizes with (``access.Access``).

A server reloads what it remembers from a thread of its own every ``ttl / 2`` seconds (:meth:`refresh`),
so a request for a known key never waits for the metastore, nor do all the requests that meet an expired
entry at once each query it; a change made by another process is seen within ``ttl`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """``read(key)``'s answers, each remembered for ``ttl`` seconds (``clock``: monotonic seconds);
    :meth:`refresh` reads again the keys whose value ``reread`` accepts (default: all).

    Safe to use from several threads. Past ``max_entries`` keys everything is forgotten at once (a stream
    of made-up keys must not grow the memory). A reading equal (``==``) to the remembered value keeps the
    remembered object, and so what it has remembered itself (a policy's decisions).
    """

    def __init__(
        self,
        read: Callable[[K], V],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        reread: Callable[[V], bool] | None = None,
        max_entries: int = 10_000,
    ) -> None:
        self.read = read
        self.ttl = ttl
        self.clock = clock
        self.reread = reread
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def fresh(self, key: K) -> tuple[bool, V | None]:
        """(True, the value) if remembered and fresh, else (False, None); never reads."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < self.clock():
            return False, None
        return True, entry[1]

    def get(self, key: K) -> V:
        """The fresh value of ``key``, read (blocking) if it is not remembered or has expired."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] >= self.clock():
            return entry[1]
        return self.load(key)

    def load(self, key: K) -> V:
        """Read ``key`` now (blocking) and remember the answer."""
        value = self.read(key)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[1] == value:
                value = entry[1]
            elif len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (self.clock() + self.ttl, value)
        return value

    def refresh(self) -> None:
        """Read the remembered keys again (a server's thread calls this every ``ttl / 2`` seconds)."""
        reread = self.reread
        for key, (_, value) in list(self._entries.items()):
            if reread is None or reread(value):
                self.load(key)

    def expires_at(self, key: K) -> float | None:
        """When the remembered value of ``key`` expires (``clock`` seconds); None if not remembered."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
