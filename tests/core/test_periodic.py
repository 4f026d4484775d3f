"""Background steps stop at shutdown even when a step swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from app.core.periodic import periodic


async def test_runs_the_step_every_interval_until_the_context_closes() -> None:
    ticks = 0

    async def step() -> None:
        nonlocal ticks
        ticks += 1

    async with periodic("test.ticks", lambda: 0.01, step):
        async with asyncio.timeout(5):
            while ticks < 3:  # noqa: ASYNC110 (waiting on the task under test)
                await asyncio.sleep(0.005)
    seen = ticks
    await asyncio.sleep(0.05)
    assert ticks == seen  # stopped


async def test_stops_when_a_step_turns_its_cancellation_into_an_error() -> None:
    """Like a client library that answers a cancel mid-call with its own error."""
    entered = asyncio.Event()

    async def stubborn_step() -> None:
        entered.set()
        # Swallowed: a plain `while True` loop would go on forever.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    async with asyncio.timeout(2):
        async with periodic("test.stubborn", lambda: 0.001, stubborn_step):
            await entered.wait()
