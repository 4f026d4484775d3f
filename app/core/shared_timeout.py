"""One timeout for many awaits at once, on one timer.

`asyncio.timeout` makes and cancels a timer and a context manager per await:
on a path taken a few thousand times a second (every shard statement) that is
a few percent of the event loop. Here every await under the same number of
seconds shares one timer: entering records the task and its deadline, leaving
forgets it, and the timer — armed for the oldest entry only — cancels the
tasks whose deadline has passed. The caller turns that cancellation into
`TimeoutError`, exactly as `asyncio.timeout` does (a cancellation from
elsewhere stays a cancellation).

The deadlines are the same as `asyncio.timeout`'s; only the timer may fire for
an entry already gone, and then re-arms for the next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class _Entry:
    __slots__ = ("cancelling", "deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()
        self.expired = False


class SharedTimeout:
    """`await timeout.run(awaitable)`: like `async with asyncio.timeout(seconds)`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # Insertion order is deadline order: every entry gets the same `seconds`.
        self._entries: dict[int, _Entry] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, awaitable: Awaitable[T]) -> T:
        # The loop is remembered: asyncio.current_task() looks it up first, which costs
        # more than the rest of this. A task of another loop is never current on it.
        task = asyncio.current_task(self._loop) if self._loop is not None else None
        if task is None:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:
                self._loop, self._timer = loop, None  # a timer of another loop never fires
            task = asyncio.current_task(loop)
            assert task is not None, "SharedTimeout.run outside a task"
        entry = _Entry(task, time.monotonic() + self.seconds)
        key = id(entry)
        self._entries[key] = entry
        if self._timer is None:
            self._arm(entry.deadline)
        try:
            return await awaitable
        except asyncio.CancelledError as exc:
            if entry.expired and task.uncancel() <= entry.cancelling:
                raise TimeoutError from exc
            raise
        finally:
            del self._entries[key]

    def _arm(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        # The loop's clock is time.monotonic (both asyncio's and uvloop's).
        self._timer = loop.call_at(loop.time() + (deadline - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        for entry in self._entries.values():
            if entry.deadline > now:
                self._arm(entry.deadline)
                return
            if not entry.expired and not entry.task.done():
                entry.expired = True
                entry.task.cancel()
