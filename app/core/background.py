"""A task that runs in the background for the life of its owner, and stops in bounded time.

Every long-lived loop (a listener, a health check, a lease renewer, the outbox
relay) is one `BackgroundTask`: started by its owner's lifespan, logged the
moment it fails (a loop that dies silently is an outage nobody sees), and
stopped by cancelling it and waiting at most `stop_timeout` seconds — some
client libraries turn a cancellation that lands mid-call into their own error,
which a loop rightly catches, so shutdown must never wait on a task unbounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

log = logging.getLogger("keel.background")

STOP_TIMEOUT = 5.0

Work = Callable[[], Coroutine[Any, Any, None]]


class BackgroundTask:
    """`work()` as a named task: `start()`, then `await stop()` (cancel, bounded wait)."""

    def __init__(self, name: str, work: Work, *, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.name = name
        self._work = work
        self.stop_timeout = stop_timeout
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(self._work(), name=self.name)
        self._task.add_done_callback(self._report)

    def _report(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s failed", self.name, exc_info=error)

    async def stop(self, *, grace: float = 0.0) -> None:
        """Cancel and wait up to `stop_timeout`; a task that will not stop is abandoned, logged.

        With `grace`, first give the work that long to return by itself (its owner
        has told it to stop: it may finish what it is doing).
        """
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if grace > 0:
            done, _ = await asyncio.wait([task], timeout=grace)
            if done:
                return
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=self.stop_timeout)
        if not done:
            log.error("%s did not stop within %.0f s; abandoning it", self.name, self.stop_timeout)

    async def wait(self) -> None:
        """Wait until the work returns by itself (not through `stop`)."""
        if self._task is not None:
            await asyncio.wait([self._task])


@contextlib.asynccontextmanager
async def background(
    name: str, work: Work, *, stop_timeout: float = STOP_TIMEOUT
) -> AsyncIterator[BackgroundTask]:
    """Run `work()` while the context is open: `async with background("x", loop): ...`."""
    task = BackgroundTask(name, work, stop_timeout=stop_timeout)
    task.start()
    try:
        yield task
    finally:
        await task.stop()
