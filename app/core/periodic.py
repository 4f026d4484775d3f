"""A background task that runs a step every few seconds for the life of a plugin.

Stopping must not depend on cancellation alone: some client libraries turn a
cancellation that lands mid-call into their own connection error, which a
step rightly catches — and a `while True` loop would then run forever and hang
shutdown. So the loop also checks a stop flag, and the exit waits a bounded
time before giving up on the task (with a log line naming it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger("keel.periodic")

STOP_TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def periodic(
    name: str, interval: Callable[[], float], step: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """Run `step()` every `interval()` seconds while the context is open."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval()):
                    await stop.wait()
            if stop.is_set():
                return
            await step()

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=STOP_TIMEOUT)
        if not done:
            log.error("%s did not stop within %.0f s; abandoning it", name, STOP_TIMEOUT)
        elif not task.cancelled() and task.exception() is not None:
            log.error("%s failed", name, exc_info=task.exception())
