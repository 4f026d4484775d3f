"""`eventually()`: wait for what a background task brings about, never a fixed sleep.

The deadline only stops a hang: it is a wait, not a timed assertion, so it is
generous (a loaded machine may be slow).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str = "the condition",
    *,
    timeout: float = 10.0,
    every: float = 0.02,
) -> None:
    """Poll `condition()` (plain or async) until it is true; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)
