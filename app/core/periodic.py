"""A background task that runs a step every few seconds for the life of a plugin.

Stopping must not depend on cancellation alone: some client libraries turn a
cancellation that lands mid-call into their own connection error, which a
step rightly catches — and a `while True` loop would then run forever. So the
loop also checks a stop flag, and the stop itself is bounded
(`app.core.background`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from app.core.background import background


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

    async with background(name, loop):
        try:
            yield
        finally:
            stop.set()
