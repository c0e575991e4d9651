"""The threads the API's operations run in, off the event loop.

The server's own pool rather than Starlette's ``run_in_threadpool``: that goes through anyio, whose asyncio
back end is imported on its first use, 10-25 ms of CPU in the middle of a new server's first answer (the
start to the first Predict is a goal of ``bench/startup.py``); asyncio's ``run_in_executor`` needs nothing
uvicorn has not imported. The same bound as ``run_in_threadpool`` (anyio's default limiter: 40 threads),
and the function sees the caller's context variables, as there.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: anyio's default number of worker threads, which bounds Starlette's ``run_in_threadpool``.
THREADS = 40


class RequestThreads:
    """At most ``threads`` functions run at once; the others wait for a thread. Threads start as needed; a
    pool closed (its server stopped) is replaced by a new one if the server starts again."""

    def __init__(self, threads: int = THREADS) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` in a thread, in a copy of the caller's context."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="emrml-request")
        call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        """No new function runs in the threads; those running finish."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
