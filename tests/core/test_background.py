"""Background tasks: a failure is logged when it happens, and stopping is always bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from app.core.background import BackgroundTask, background


async def test_a_failing_loop_is_logged_the_moment_it_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("the loop broke")

    with caplog.at_level(logging.ERROR, logger="keel.background"):
        async with background("test.broken", broken) as task:
            while task.running:  # noqa: ASYNC110 (waiting for the task under test)
                await asyncio.sleep(0.001)
            failures = [r for r in caplog.records if r.getMessage() == "test.broken failed"]
            assert len(failures) == 1  # logged already, before the owner stops it
            assert failures[0].exc_info is not None
    assert len([r for r in caplog.records if "test.broken" in r.getMessage()]) == 1


async def test_stop_gives_up_on_a_task_that_swallows_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Like a client library that turns a cancellation mid-call into its own error, caught."""
    entered = asyncio.Event()
    release = asyncio.Event()

    async def stubborn() -> None:
        entered.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = BackgroundTask("test.stubborn", stubborn, stop_timeout=0.05)
    task.start()
    await entered.wait()
    with caplog.at_level(logging.ERROR, logger="keel.background"):
        async with asyncio.timeout(5):
            await task.stop()  # returns: the wait is bounded
    assert any("did not stop within" in r.getMessage() for r in caplog.records)
    release.set()


async def test_grace_lets_a_loop_told_to_stop_finish_its_step() -> None:
    stop = asyncio.Event()
    finished = []

    async def loop() -> None:
        await stop.wait()
        await asyncio.sleep(0.01)  # the step under way when it was told to stop
        finished.append(True)

    task = BackgroundTask("test.graceful", loop)
    task.start()
    stop.set()
    await task.stop(grace=5)
    assert finished == [True]
    assert not task.running
