"""The server's request threads (``web.threads``): off the event loop, bounded, in the caller's context."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from emrml.web.threads import RequestThreads

_CALLER = contextvars.ContextVar("caller", default="none")


def test_functions_run_off_the_loop_seeing_the_callers_context() -> None:
    threads = RequestThreads()

    def where() -> tuple[str, str, int]:
        return _CALLER.get(), threading.current_thread().name, threading.get_ident()

    async def main() -> tuple[str, str, int]:
        _CALLER.set("alice")
        return await threads.run(where)

    try:
        seen, name, ident = asyncio.run(main())
    finally:
        threads.close()
    assert seen == "alice" and name.startswith("emrml-request") and ident != threading.get_ident()


def test_at_most_the_bound_run_at_once_and_a_closed_pool_starts_again() -> None:
    threads = RequestThreads(threads=2)
    running = 0
    most = 0
    lock = threading.Lock()
    release = threading.Event()

    def hold() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        release.wait(5)
        with lock:
            running -= 1

    async def main() -> None:
        tasks = [asyncio.ensure_future(threads.run(hold)) for _ in range(5)]
        while True:  # two hold a thread each, the others wait for one
            with lock:
                if running == 2:
                    break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        with lock:
            assert running == 2
        release.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert most == 2
    threads.close()
    # A server started again (its lifespan closed the pool as it stopped) runs on new threads.
    assert asyncio.run(threads.run(lambda: 41 + 1)) == 42
    threads.close()
